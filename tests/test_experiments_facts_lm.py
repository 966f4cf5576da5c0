"""E5 (facts_lm): the quick run trains every arm and reports what the docs table shows."""

import json

import pytest

from refmann.experiments import facts_lm
from refmann.models.feedforward import TransformerConfig

KEYS = {
    "arm", "params_dense", "params_values", "madds_per_token", "train_tokens_per_s", "train_seconds", "perplexity",
    "fact_recall", "other_accuracy",
}  # fmt: skip


def test_the_quick_run_trains_every_arm_and_writes_its_rows(tmp_path, capsys):
    out = tmp_path / "e5.json"
    assert facts_lm.main(["--quick", "--quiet", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["arm"] for r in rows] == list(facts_lm.ARMS)
    for r in rows:
        assert KEYS <= set(r)
        assert 0.0 <= r["fact_recall"] <= 1.0 and 0.0 <= r["other_accuracy"] <= 1.0 and r["perplexity"] >= 1.0
        memory = "memory_layers" in facts_lm.ARMS[r["arm"]]
        assert ("memory_usage" in r) == memory and (r["params_values"] > 0) == memory
        if memory:
            assert 0.0 < r["memory_usage"] <= 1.0 and r["memory_kl"] >= 0.0
    assert "| depth2+pkm |" in capsys.readouterr().out


def test_multiply_adds_count_each_part_once():
    base = dict(input_size=10, output_size=10, model_dim=8, num_heads=2, max_len=4, tokens=True, loss="softmax_ce")
    plain = TransformerConfig(num_layers=1, mlp_dim=32, **base)
    memory = TransformerConfig(
        num_layers=1, memory_layers=(0,), memory_keys=4, memory_heads=2, memory_k=3, memory_key_dim=6, **base
    )
    attention = 4 * 8 * 8 + 2 * 4 * 8
    assert facts_lm.multiply_adds_per_token(plain) == 8 * 10 + attention + 2 * 8 * 32
    pkm = 8 * 2 * 6 + 2 * 4 * 6 + 2 * 3 * 3 + 2 * 3 * 8
    assert facts_lm.multiply_adds_per_token(memory) == 8 * 10 + attention + pkm


def test_bad_flags_exit_2_with_a_one_line_message(capsys):
    for argv in (["--arms", "depth9"], ["--seed", "-1"], ["--optimizer", "lbfgs"]):
        with pytest.raises(SystemExit) as exc:
            facts_lm.main(argv)
        assert exc.value.code == 2
    with pytest.raises(ValueError, match="arms: expected some of"):
        facts_lm.run(["depth9"])
