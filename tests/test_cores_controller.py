"""The sandwich written once: the interface layout's split is exact and its backward is its VJP."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.cores import Field, HeadGroup, InterfaceLayout
from refmann.cores.controller import ACTIVATIONS, scalar
from refmann.gradcheck import check_op
from refmann.testing import f64


def _layout(H, W):
    return InterfaceLayout(
        HeadGroup(
            "read", H, (Field("key", W, "identity"), scalar("strength", "softplus"), Field("mode", 3, "softmax"))
        ),
        HeadGroup("write", 1, (Field("erase", W, "sigmoid"), Field("add", W, "tanh"), scalar("gate", "oneplus"))),
    )


@given(H=st.integers(1, 3), W=st.integers(1, 4), B=st.integers(1, 3), data=st.data())
def test_fields_are_cut_head_after_head_field_after_field(H, W, B, data):
    layout = _layout(H, W)
    assert layout.width == H * (W + 1 + 3) + 2 * W + 1
    p = data.draw(f64((B, layout.width)))
    values, _ = layout.split_forward(p)
    read = p[:, : H * (W + 4)].reshape(B, H, W + 4)
    np.testing.assert_array_equal(values["read"]["key"], read[..., :W])
    assert values["read"]["strength"].shape == (B, H)  # a scalar field: one number per head
    np.testing.assert_allclose(values["read"]["mode"].sum(-1), 1.0)
    np.testing.assert_allclose(values["write"]["add"][:, 0], np.tanh(p[:, H * (W + 4) + W : H * (W + 4) + 2 * W]))


@given(H=st.integers(1, 3), W=st.integers(1, 3), B=st.integers(1, 2), data=st.data())
def test_split_backward_is_the_vjp_of_split_forward(H, W, B, data):
    layout = _layout(H, W)
    names = [(g.name, f.name) for g in layout.groups for f in g.fields]

    def forward(p):
        values, cache = layout.split_forward(p)
        return tuple(values[g][f] for g, f in names), cache

    def backward(douts, cache):
        dvalues = {}
        for (g, f), d in zip(names, douts):
            dvalues.setdefault(g, {})[f] = d
        return (layout.split_backward(dvalues, cache, B, np.float64),)

    report = check_op(forward, backward, data.draw(f64((B, layout.width))))
    assert report.ok(1e-7), str(report)


def test_a_missing_field_gradient_counts_as_zero():
    layout = _layout(2, 2)
    values, cache = layout.split_forward(np.zeros((1, layout.width)))
    dp = layout.split_backward({"write": {"gate": np.ones((1, 1))}}, cache, 1, np.float64)
    assert np.count_nonzero(dp) == 1


def test_layouts_refuse_unknown_activations_and_repeated_group_names():
    with pytest.raises(ValueError, match="activation: expected one of"):
        InterfaceLayout(HeadGroup("h", 1, (Field("x", 1, "swish"),)))
    with pytest.raises(ValueError, match="names must be distinct"):
        InterfaceLayout(HeadGroup("h", 1, ()), HeadGroup("h", 1, ()))
    assert set(ACTIVATIONS) >= {"identity", "sigmoid", "tanh", "softplus", "oneplus", "softmax"}
