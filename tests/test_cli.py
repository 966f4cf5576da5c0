import json

import pytest

from refmann import cli, ops


def test_gradcheck_prints_a_row_for_every_op_and_exits_zero(capsys):
    assert cli.main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for name in ops.OP_NAMES:
        assert f"\n{name} " in out
    assert "FAIL" not in out


def test_gradcheck_json_selects_ops(capsys):
    assert cli.main(["gradcheck", "softmax", "dense_write", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"softmax", "dense_write"}
    assert all(entry["ok"] and entry["max_rel_error"] < 1e-7 for entry in data.values())


def test_gradcheck_rejects_an_unknown_op(capsys):
    assert cli.main(["gradcheck", "no_such_op"]) == 2
    assert "unknown op" in capsys.readouterr().err


def test_info_and_version(capsys):
    assert cli.main(["info"]) == 0
    assert "numba" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0


def test_usage_errors_exit_two():
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
