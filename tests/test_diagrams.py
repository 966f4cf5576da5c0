"""The architecture diagrams: every model has one, they are consistent data, and they draw."""

import pytest

from refmann import diagrams
from refmann.diagrams import DIAGRAMS, Arrow, Box, Diagram


def test_every_memory_model_and_layer_has_a_diagram():
    assert set(DIAGRAMS) == {"ntm", "dam", "sam", "dnc", "sdnc", "pkm", "sketch", "hma"}


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_a_diagram_is_consistent_and_draws_a_png(name, tmp_path):
    d = DIAGRAMS[name]
    keys = {b.key for b in d.boxes}
    assert all(a.src in keys and a.dst in keys for a in d.arrows)
    assert diagrams.overlaps(d) == []
    assert all(b.role in diagrams.COLORS for b in d.boxes)
    path = diagrams.draw(name, tmp_path / f"{name}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_broken_diagram_is_refused_with_what_is_wrong(monkeypatch, tmp_path):
    bad = Diagram("bad", (Box("a", "A", 1, 1), Box("b", "B", 1.5, 1)), (Arrow("a", "c"),))
    monkeypatch.setitem(DIAGRAMS, "bad", bad)
    with pytest.raises(ValueError, match=r"boxes overlap: \[\('a', 'b'\)\]"):
        diagrams.draw("bad", tmp_path / "bad.png")
    monkeypatch.setitem(DIAGRAMS, "bad", bad._replace(boxes=(Box("a", "A", 1, 1), Box("b", "B", 6, 1))))
    with pytest.raises(ValueError, match=r"arrow a -> c names no box 'c'"):
        diagrams.draw("bad", tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"name: expected one of"):
        diagrams.draw("nope", tmp_path / "x.png")


def test_the_command_line_draws_the_named_diagrams_and_refuses_unknown_names(tmp_path, capsys):
    assert diagrams.main(["--out", str(tmp_path), "sam", "pkm"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch-pkm.png", "arch-sam.png"]
    with pytest.raises(SystemExit) as info:
        diagrams.main(["--out", str(tmp_path), "wobble"])
    assert info.value.code == 2
    assert "names: expected some of" in capsys.readouterr().err
