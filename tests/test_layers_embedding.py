import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import layers, ops
from refmann.gradcheck import TOLERANCES, check_op
from tests.strategies import indices


@given(
    N=st.integers(1, 6),
    D=st.integers(1, 4),
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
    data=st.data(),
)
def test_embedding_layer_gradient_matches_and_equals_add_at(N, D, shape, data):
    layer = layers.Embedding(num_embeddings=N, embedding_dim=D, seed=data.draw(st.integers(0, 99)))
    idx = data.draw(indices(N, shape, force_duplicates=True))
    fwd, bwd = layers.as_op(layer, differentiate_input=False)
    report = check_op(fwd, bwd, layer.params["weight"], x=idx, seed=2)
    assert report.ok(TOLERANCES["op"]), str(report)
    y, cache = layer.forward(idx)
    np.testing.assert_array_equal(y, layer.params["weight"][idx])
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache)
    assert dx is None and list(grads) == ["weight"]
    g = grads["weight"]
    assert isinstance(g, ops.RowGrad) and g.rows.shape == (idx.size, D)  # J rows, never N
    expected = np.zeros((N, D))
    np.add.at(expected, idx.reshape(-1), dy.reshape(-1, D))
    np.testing.assert_allclose(layers.densify(g), expected, rtol=1e-14, atol=1e-14)


def test_embedding_init_is_standard_normal_and_seeded():
    a = layers.Embedding(num_embeddings=200, embedding_dim=50, seed=1).params["weight"]
    b = layers.Embedding(num_embeddings=200, embedding_dim=50, seed=1).params["weight"]
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02


def test_embedding_layer_rejects_bad_input_naming_the_argument():
    layer = layers.Embedding(num_embeddings=4, embedding_dim=2)
    with pytest.raises(TypeError, match="indices: expected an integer array"):
        layer.forward(np.ones(3))
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 4\)"):
        layer.forward(np.array([4]))
    with pytest.raises(ValueError, match=r"params\['weight'\]: expected shape \(4, 2\)"):
        layer.forward(np.array([0]), params={"weight": np.ones((3, 2))})
    with pytest.raises(ValueError, match="num_embeddings: expected an int >= 1"):
        layers.Embedding(num_embeddings=0, embedding_dim=2)
