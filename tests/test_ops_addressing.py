import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from refmann.gradcheck import check_op
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure, pair
from tests.strategies import f64, gates, memory_dims, simplex


@st.composite
def memory_and_keys(draw):
    B, H, N, W = draw(memory_dims())
    # W >= 2: in one dimension cosine similarity is a sign function (flat, so the gradient is ~eps and
    # below what finite differences can resolve)
    W = max(W, 2)
    return draw(f64((B, N, W))), draw(f64((B, H, W)).filter(lambda k: np.all(np.linalg.norm(k, axis=-1) > 0.1)))


@given(mk=memory_and_keys())
def test_cosine_similarity_gradients_match(mk):
    memory, keys = mk
    # rows of memory near zero norm are a kink of ‖m‖; keep them off it
    memory = memory + np.where(np.linalg.norm(memory, axis=-1, keepdims=True) < 0.1, 0.5, 0.0)
    assert_gradients_match("cosine_similarity", memory, keys)


@given(mk=memory_and_keys(), data=st.data())
def test_content_weights_gradients_match(mk, data):
    memory, keys = mk
    memory = memory + np.where(np.linalg.norm(memory, axis=-1, keepdims=True) < 0.1, 0.5, 0.0)
    strengths = data.draw(f64(keys.shape[:2], 0.5, 10.0))
    assert_gradients_match("content_weights", memory, keys, strengths)


def test_cosine_similarity_of_zero_vectors_is_finite_and_zero():
    memory = np.zeros((1, 3, 4))
    keys = np.zeros((1, 2, 4))
    sim, cache = ops.cosine_similarity_forward(memory, keys)
    np.testing.assert_array_equal(sim, 0.0)
    grads = ops.cosine_similarity_backward(np.ones_like(sim), cache)
    assert all(np.all(np.isfinite(g)) for g in grads)
    w, cache = ops.content_weights_forward(memory, keys, np.ones((1, 2)))
    np.testing.assert_allclose(w, 1 / 3)
    assert all(np.all(np.isfinite(g)) for g in ops.content_weights_backward(np.ones_like(w), cache))


@given(mk=memory_and_keys(), data=st.data())
def test_content_weights_are_on_the_simplex(mk, data):
    memory, keys = mk
    w, _ = ops.content_weights_forward(memory, keys, data.draw(f64(keys.shape[:2], 0, 50)))
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)


def test_cosine_similarity_of_parallel_vectors_is_one():
    m = np.array([[[1.0, 2.0, 2.0], [-1.0, -2.0, -2.0]]])
    sim, _ = ops.cosine_similarity_forward(m, 3 * m[:, :1], eps=0.0)
    np.testing.assert_allclose(sim, [[[1.0, -1.0]]])


BHN = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 7))


@given(data=st.data(), bhn=BHN)
def test_interpolate_gradients_match(data, bhn):
    assert_gradients_match("interpolate", data.draw(simplex(bhn)), data.draw(simplex(bhn)), data.draw(gates(bhn[:2])))


@given(data=st.data(), bhn=BHN, R=st.integers(0, 3))
def test_circular_shift_gradients_match(data, bhn, R):
    assert_gradients_match("circular_shift", data.draw(simplex(bhn)), data.draw(simplex(bhn[:2] + (2 * R + 1,))))


@given(data=st.data(), bhn=BHN)
def test_sharpen_gradients_match_for_positive_weights(data, bhn):
    gamma = data.draw(f64(bhn[:2], 1.01, 5.0))  # off the domain edge γ = 1
    assert_gradients_match("sharpen", data.draw(simplex(bhn)), gamma)


def _one_hot_shift(offset, R, shape):
    s = np.zeros(shape + (2 * R + 1,))
    s[..., offset + R] = 1.0
    return s


@given(data=st.data(), bhn=BHN)
def test_shift_by_zero_is_identity(data, bhn):
    w = data.draw(simplex(bhn))
    out, _ = ops.circular_shift_forward(w, _one_hot_shift(0, 1, bhn[:2]))
    np.testing.assert_array_equal(out, w)


@given(data=st.data(), bhn=BHN, a=st.integers(-2, 2), b=st.integers(-2, 2))
def test_shifts_compose(data, bhn, a, b):
    w = data.draw(simplex(bhn))
    once, _ = ops.circular_shift_forward(w, _one_hot_shift(a, 2, bhn[:2]))
    twice, _ = ops.circular_shift_forward(once, _one_hot_shift(b, 2, bhn[:2]))
    direct, _ = ops.circular_shift_forward(w, _one_hot_shift(a + b, 4, bhn[:2]))
    np.testing.assert_allclose(twice, direct, atol=1e-15)
    np.testing.assert_allclose(direct, np.roll(w, a + b, axis=-1), atol=1e-15)


def test_positive_offset_moves_weight_forward():
    w = np.zeros((1, 1, 5))
    w[0, 0, 1] = 1.0
    out, _ = ops.circular_shift_forward(w, _one_hot_shift(1, 1, (1, 1)))
    assert out[0, 0, 2] == 1.0


@given(data=st.data(), bhn=BHN)
def test_shift_and_sharpen_preserve_the_simplex(data, bhn):
    w = data.draw(simplex(bhn))
    shifted, _ = ops.circular_shift_forward(w, data.draw(simplex(bhn[:2] + (3,))))
    np.testing.assert_allclose(shifted.sum(-1), 1.0, rtol=1e-12)
    sharp, _ = ops.sharpen_forward(shifted, data.draw(f64(bhn[:2], 1.0, 20.0)))
    np.testing.assert_allclose(sharp.sum(-1), 1.0, rtol=1e-12)


def test_sharpen_with_gamma_one_is_the_identity_on_the_simplex():
    w = np.array([[[0.2, 0.3, 0.5]]])
    out, _ = ops.sharpen_forward(w, np.ones((1, 1)))
    np.testing.assert_allclose(out, w)


def test_sharpen_of_zero_weights_is_finite():
    w = np.array([[[0.0, 0.25, 0.75], [0.0, 0.0, 0.0]]])
    out, cache = ops.sharpen_forward(w, np.array([[2.0, 3.0]]))
    np.testing.assert_allclose(out[0, 0], [0, 0.1, 0.9])
    np.testing.assert_array_equal(out[0, 1], 0.0)
    assert all(np.all(np.isfinite(g)) for g in ops.sharpen_backward(np.ones_like(out), cache))


def test_addressing_ops_are_pure_and_linear_in_dout():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(5), size=(2, 3))
    cases = {
        "cosine_similarity": (rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 3, 4))),
        "content_weights": (rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 3, 4)), 1 + rng.random((2, 3))),
        "interpolate": (w, w[::-1].copy(), rng.random((2, 3))),
        "circular_shift": (w, rng.dirichlet(np.ones(3), size=(2, 3))),
        "sharpen": (w, 1 + rng.random((2, 3))),
    }
    for name, inputs in cases.items():
        assert_pure(name, *inputs)
        assert_linear_in_dout(name, *inputs)


# -- ε inside the norms (DeepMind's DNC: ‖x‖ = sqrt(Σx² + norm_eps)) ----------------------------------------------


@given(mk=memory_and_keys(), norm_eps=st.sampled_from([1e-6, 0.1, 1.0]), data=st.data())
def test_cosine_and_content_weights_gradients_match_with_norm_eps(mk, norm_eps, data):
    memory, keys = mk
    memory = memory + np.where(np.linalg.norm(memory, axis=-1, keepdims=True) < 0.1, 0.5, 0.0)
    assert_gradients_match("cosine_similarity", memory, keys, norm_eps=norm_eps)
    strengths = data.draw(f64(keys.shape[:2], 0.5, 10.0))
    assert_gradients_match("content_weights", memory, keys, strengths, norm_eps=norm_eps)
    assert_pure("content_weights", memory, keys, strengths, norm_eps=norm_eps)


@given(mk=memory_and_keys(), norm_eps=st.sampled_from([1e-6, 0.5]))
def test_norm_eps_puts_epsilon_under_the_square_root(mk, norm_eps):
    memory, keys = mk
    sim, _ = ops.cosine_similarity_forward(memory, keys, eps=1e-6, norm_eps=norm_eps)
    kn = np.sqrt(np.sum(keys**2, -1) + norm_eps)[:, :, None]
    mn = np.sqrt(np.sum(memory**2, -1) + norm_eps)[:, None, :]
    np.testing.assert_allclose(sim, np.einsum("bhw,bnw->bhn", keys, memory) / (kn * mn + 1e-6), rtol=1e-13, atol=1e-15)


@given(mk=memory_and_keys())
def test_norm_eps_zero_is_bit_for_bit_the_plain_norm(mk):
    memory, keys = mk
    default, _ = ops.cosine_similarity_forward(memory, keys)
    explicit, _ = ops.cosine_similarity_forward(memory, keys, norm_eps=0.0)
    plain = (keys @ memory.transpose(0, 2, 1)) / (
        np.sqrt(np.sum(keys * keys, axis=-1, keepdims=True)) * np.sqrt(np.sum(memory * memory, axis=-1))[:, None, :]
        + 1e-6
    )
    np.testing.assert_array_equal(default, explicit)
    np.testing.assert_array_equal(default, plain)


def test_norm_eps_keeps_all_zero_memory_and_zero_keys_finite_with_similarity_zero():
    """DeepMind's setting eps = norm_eps = 1e-6: all-zero memory (the DNC's start) and a zero key give 0, not 0/0,
    and their gradients are finite; with a zero key the content weights are uniform."""
    memory, keys = np.zeros((2, 3, 4)), np.zeros((2, 2, 4))
    keys[0, 0] = [1.0, -2.0, 0.5, 0.0]  # one non-zero key against zero memory
    sim, cache = ops.cosine_similarity_forward(memory, keys, norm_eps=1e-6)
    np.testing.assert_array_equal(sim, 0.0)
    grads = ops.cosine_similarity_backward(np.ones_like(sim), cache)
    assert all(np.all(np.isfinite(g)) for g in grads)
    w, cache = ops.content_weights_forward(memory, keys, np.full((2, 2), 3.0), norm_eps=1e-6)
    np.testing.assert_allclose(w, 1 / 3)
    assert all(np.all(np.isfinite(g)) for g in ops.content_weights_backward(np.ones_like(w), cache))
    # the norm bends on the scale sqrt(norm_eps) = 1e-3 around 0, so the stencil's step is taken well below it
    report = check_op(*pair("content_weights"), memory, keys, np.full((2, 2), 3.0), step=1e-6, norm_eps=1e-6)
    assert report.ok(), str(report)


def test_norm_eps_must_be_a_non_negative_number():
    with pytest.raises(ValueError, match="norm_eps"):
        ops.cosine_similarity_forward(np.ones((1, 2, 3)), np.ones((1, 1, 3)), norm_eps=-1.0)
