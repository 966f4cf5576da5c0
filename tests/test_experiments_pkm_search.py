"""E8 (refmann/experiments/pkm_search.py): at the CI sizes every (token, head) of the product search equals brute
force over all n² slots, rows carry the documented keys, ``--out`` writes valid JSON, a bad flag exits 2. The
brute-force baselines are themselves checked against the op. No timing assertions."""

import json

import numpy as np
import pytest

from refmann import ops
from refmann.experiments import pkm_search


@pytest.fixture(scope="module")
def quick_rows():
    return pkm_search.run(**pkm_search.QUICK)


def test_quick_run_is_exact_for_every_token_and_head_as_a_set_and_in_order(quick_rows):
    assert [r["n"] for r in quick_rows] == list(pkm_search.QUICK["sizes"])
    for row in quick_rows:
        assert row["exact_set_fraction"] == 1.0 and row["exact_order_fraction"] == 1.0, row


def test_quick_rows_have_the_documented_keys_and_positive_times(quick_rows):
    for row in quick_rows:
        assert tuple(row) == pkm_search.ROW_KEYS
        assert row["N"] == row["n"] ** 2 and 8 <= row["brute_tokens"] <= row["tokens"]
        assert row["product_us_per_query"] > 0 and row["brute_us_per_query"] > 0
        assert row["speedup"] == pytest.approx(row["brute_us_per_query"] / row["product_us_per_query"])
    table = pkm_search.format_table(quick_rows)
    assert table.count("\n| ") == len(quick_rows) + 2  # header, separator, one line per row


def test_the_exact_brute_force_equals_the_op_on_an_integer_grid_with_many_ties():
    """Integer sub-scores: the n² sums are exact floats and tie often; ties go to the smaller slot."""
    rng = np.random.default_rng(0)
    queries = rng.integers(-1, 2, (5, 2, 8)).astype(float)
    keys = rng.integers(-1, 2, (2, 2, 16, 4)).astype(float)
    _, want = ops.product_key_topk(queries, keys, 12, fused=False)
    np.testing.assert_array_equal(pkm_search.exact_brute_force_topk(queries, keys, 12), want)


def test_the_timed_brute_force_equals_the_op_when_sums_are_separated():
    """The plain baseline (matmul, np.argpartition) breaks ties arbitrarily, so it is checked where none exist."""
    queries, keys = ops.separated_product_keys(np.random.default_rng(1), 4, 3, 9, 5)
    _, want = ops.product_key_topk(queries, keys, 7)
    np.testing.assert_array_equal(pkm_search.brute_force_topk(queries, keys, 7), want)


def test_the_exact_brute_force_orders_sums_that_round_alike_by_their_real_value():
    queries = np.ones((1, 1, 2))
    keys = np.array([[[[0.0], [1e-20]], [[1.0], [-5.0]]]])  # fl(0 + 1) = fl(1e-20 + 1), the second is larger
    np.testing.assert_array_equal(pkm_search.exact_brute_force_topk(queries, keys, 2), [[[2, 0]]])


def test_brute_force_is_timed_on_fewer_tokens_at_large_n():
    assert pkm_search.brute_tokens_for(32, 512) == 512
    assert pkm_search.brute_tokens_for(1024, 512) == 16
    assert pkm_search.brute_tokens_for(4096, 512) == 8


def test_main_quick_writes_the_rows_as_json(tmp_path, capsys):
    out = tmp_path / "e8.json"
    rows = pkm_search.main(["--quick", "--quiet", "--sizes", "32", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["rows"] == json.loads(json.dumps(rows)) and [r["n"] for r in doc["rows"]] == [32]
    assert doc["command"].startswith("python -m refmann.experiments.pkm_search --quick")
    assert {"cores", "numpy"} <= set(doc["machine"])
    assert "| 32 | 1,024 | 1.0000 | 1.0000 |" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--bogus"], ["--sizes", "16"], ["--rounds", "0"], ["--dtype", "float16"]])
def test_a_bad_flag_exits_2_with_a_one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        pkm_search.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("python -m refmann.experiments.pkm_search: error: ")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"sizes": (16,)}, r"sizes: expected sub-key counts n >= k = 32"),
        ({"key_dim": 7}, r"key_dim: expected an even"),
        ({"dtype": "float16"}, r"dtype: expected float32 or float64"),
    ],
)
def test_run_refuses_a_bad_configuration_naming_it(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        pkm_search.run(**{**pkm_search.QUICK, **kwargs})
