import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann import ops
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import f64


@st.composite
def attention_case(draw, causal=False, masked=True):
    """q, k, v of small sizes and a bool mask that keeps at least one key per query."""
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    Tk = draw(st.integers(1, 5))
    Tq = Tk if causal else draw(st.integers(1, 5))
    D, Dv = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    q, k, v = draw(f64((B, H, Tq, D))), draw(f64((B, H, Tk, D))), draw(f64((B, H, Tk, Dv)))
    mask = None
    if masked:
        shape = draw(st.sampled_from([(B, H, Tq, Tk), (B, 1, 1, Tk), (1, 1, Tq, Tk), (Tq, Tk)]))
        mask = draw(arrays(np.bool_, shape))
        keep = draw(st.integers(0, Tk - 1))  # one column always kept (the diagonal's
        mask = mask.copy()  # first entry, key 0, under causal)
        mask[..., 0 if causal else keep] = True
    return q, k, v, mask


def naive_attention(q, k, v, keep, scale):
    """Loops over every (b, h, i): softmax over the kept keys, weighted sum of their values."""
    B, H, Tq, _ = q.shape
    out = np.zeros((B, H, Tq, v.shape[-1]))
    for b in range(B):
        for h in range(H):
            for i in range(Tq):
                js = np.flatnonzero(keep[b, h, i])
                s = np.array([scale * q[b, h, i] @ k[b, h, j] for j in js])
                w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                out[b, h, i] = sum(wj * v[b, h, j] for wj, j in zip(w, js))
    return out


@given(case=attention_case(masked=False), scale=st.one_of(st.none(), st.floats(0.1, 2.0)))
def test_attention_gradients_match_without_a_mask(case, scale):
    q, k, v, _ = case
    assert_gradients_match("attention", q, k, v, scale=scale)


@given(case=attention_case())
def test_attention_gradients_match_with_a_mask(case):
    q, k, v, mask = case
    assert_gradients_match("attention", q, k, v, mask=mask)


@given(case=attention_case(causal=True))
def test_causal_attention_gradients_match_with_a_padding_mask(case):
    q, k, v, mask = case
    assert_gradients_match("attention", q, k, v, mask=mask, causal=True)


@given(case=attention_case())
def test_attention_equals_a_loop_over_the_kept_keys(case):
    q, k, v, mask = case
    out, cache = ops.attention_forward(q, k, v, mask=mask)
    keep = np.broadcast_to(mask, cache.weights.shape)
    np.testing.assert_allclose(out, naive_attention(q, k, v, keep, 1 / np.sqrt(q.shape[-1])), rtol=1e-12, atol=1e-12)
    assert np.all(cache.weights[~keep] == 0.0), "masked weights are exact zeros"
    np.testing.assert_allclose(cache.weights.sum(-1), 1.0, rtol=1e-12)


@given(case=attention_case(causal=True, masked=False))
def test_causal_equals_an_explicit_lower_triangular_mask(case):
    q, k, v, _ = case
    T = q.shape[2]
    a, _ = ops.attention_forward(q, k, v, causal=True)
    b, _ = ops.attention_forward(q, k, v, mask=np.tril(np.ones((T, T), bool)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ops.causal_mask(T), np.tril(np.ones((T, T), bool)))


def test_causal_output_at_i_ignores_later_positions():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 2, 5, 3)) for _ in range(3))
    out, _ = ops.attention_forward(q, k, v, causal=True)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, 3:] += 10.0
    v2[:, :, 3:] -= 7.0
    out2, _ = ops.attention_forward(q, k2, v2, causal=True)
    np.testing.assert_array_equal(out[:, :, :3], out2[:, :, :3])
    assert not np.allclose(out[:, :, 3:], out2[:, :, 3:])


@given(case=attention_case(masked=False), data=st.data())
def test_all_but_one_key_masked_copies_that_value_and_has_no_score_gradient(case, data):
    q, k, v, _ = case
    B, H, Tq, _ = q.shape
    Tk = k.shape[2]
    only = data.draw(arrays(np.int64, (B, H, Tq), elements=st.integers(0, Tk - 1)))
    mask = np.arange(Tk) == only[..., None]  # (B, H, Tq, Tk), one True per row
    out, cache = ops.attention_forward(q, k, v, mask=mask)
    np.testing.assert_array_equal(cache.weights, mask.astype(float))
    np.testing.assert_array_equal(out, np.take_along_axis(v, only.reshape(B, H, Tq, 1), axis=2))
    dq, dk, dv = ops.attention_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dq, 0.0)  # a one-entry softmax is constant
    np.testing.assert_array_equal(dk, 0.0)
    assert_gradients_match("attention", q, k, v, mask=mask)


def test_masked_keys_receive_no_gradient():
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((2, 1, 4, 3)), rng.standard_normal((2, 1, 6, 3)), rng.standard_normal((2, 1, 6, 2))
    mask = np.ones((2, 1, 1, 6), bool)
    mask[..., 4:] = False  # keys 4, 5 are padding
    out, cache = ops.attention_forward(q, k, v, mask=mask)
    _, dk, dv = ops.attention_backward(rng.standard_normal(out.shape), cache)
    np.testing.assert_array_equal(dk[:, :, 4:], 0.0)
    np.testing.assert_array_equal(dv[:, :, 4:], 0.0)
    k2 = k.copy()
    k2[:, :, 4:] = 1e3  # what a padded key holds does not matter
    np.testing.assert_array_equal(ops.attention_forward(q, k2, v, mask=mask)[0], out)


@given(data=st.data())
def test_keys_and_values_shared_by_the_batch_get_the_summed_gradient(data):
    """k, v of shape (1, 1, Tk, ·) broadcast over (B, H): the gradient is the sum of the tiled case's."""
    B, H, Tq, Tk, D = data.draw(st.tuples(*[st.integers(1, 3)] * 5))
    q = data.draw(f64((B, H, Tq, D)))
    k, v = data.draw(f64((1, 1, Tk, D))), data.draw(f64((1, 1, Tk, 2)))
    out, cache = ops.attention_forward(q, k, v)
    kt, vt = np.broadcast_to(k, (B, H, Tk, D)).copy(), np.broadcast_to(v, (B, H, Tk, 2)).copy()
    out_t, cache_t = ops.attention_forward(q, kt, vt)
    np.testing.assert_allclose(out, out_t, rtol=1e-13, atol=1e-13)
    dout = np.random.default_rng(0).standard_normal(out.shape)
    dq, dk, dv = ops.attention_backward(dout, cache)
    dq_t, dk_t, dv_t = ops.attention_backward(dout, cache_t)
    assert dk.shape == k.shape and dv.shape == v.shape
    np.testing.assert_allclose(dq, dq_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dk, dk_t.sum(axis=(0, 1), keepdims=True), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dv, dv_t.sum(axis=(0, 1), keepdims=True), rtol=1e-12, atol=1e-12)
    assert_gradients_match("attention", q, k, v)


def test_attention_survives_huge_scores():
    q = np.full((1, 1, 2, 2), 100.0)
    k = np.array([[[[100.0, 100.0], [-100.0, -100.0], [100.0, 99.0]]]])
    v = np.eye(3)[None, None]
    out, cache = ops.attention_forward(q, k, v, mask=np.array([True, True, False]))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 0.0, 0.0])
    assert all(np.all(np.isfinite(g)) for g in ops.attention_backward(np.ones_like(out), cache))


def test_default_scale_is_one_over_sqrt_d():
    rng = np.random.default_rng(2)
    q, k, v = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((1, 2, 5, 3))
    a, cache = ops.attention_forward(q, k, v)
    b, _ = ops.attention_forward(q, k, v, scale=0.5)
    assert cache.scale == 0.5
    np.testing.assert_array_equal(a, b)


def test_attention_is_pure_and_linear_in_dout():
    rng = np.random.default_rng(3)
    q, k, v = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 3, 2))
    mask = np.array([True, False, True])
    assert_pure("attention", q, k, v, mask=mask, causal=True)
    assert_linear_in_dout("attention", q, k, v, mask=mask, causal=True)


def test_attention_rejects_bad_input_naming_the_argument():
    rng = np.random.default_rng(4)
    q, k, v = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 5, 3))
    empty_row = np.ones((3, 5), bool)
    empty_row[1] = False
    with pytest.raises(
        ValueError,
        match=r"mask: every query must keep at least one key; query \(b, h, i\) = "
        r"\(0, 0, 1\)",
    ):
        ops.attention_forward(q, k, v, mask=empty_row)
    with pytest.raises(ValueError, match="mask: every query"):  # causal and a mask that drops key 0
        ops.attention_forward(q, q, q, mask=np.array([False, True, True]), causal=True)
    with pytest.raises(TypeError, match="mask: expected a bool ndarray"):
        ops.attention_forward(q, k, v, mask=np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"mask: expected a shape that broadcasts to \(2, 2, 3, 5\)"):
        ops.attention_forward(q, k, v, mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="causal: expected as many queries as keys"):
        ops.attention_forward(q, k, v, causal=True)
    with pytest.raises(TypeError, match="causal: expected True or False"):
        ops.attention_forward(q, k, v, causal=1)
    with pytest.raises(ValueError, match=r"k: expected shape \(B, H, Tk, 4\)"):
        ops.attention_forward(q, k[..., :3], v)
    with pytest.raises(ValueError, match=r"v: expected shape \(B, H, 5, Dv\)"):
        ops.attention_forward(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match="k: expected leading axes"):
        ops.attention_forward(q, k[:, :1].repeat(3, axis=1), v)
    with pytest.raises(ValueError, match="q: expected a 4-d array"):
        ops.attention_forward(q[0], k, v)
    with pytest.raises(ValueError, match="scale: expected a finite number"):
        ops.attention_forward(q, k, v, scale=np.inf)
    bad = q.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="q: expected finite values"):
        ops.attention_forward(bad, k, v)
