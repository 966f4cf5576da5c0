r"""The layer convention: the op convention lifted to objects that own parameters.

A layer is any object with

- ``params`` — a ``dict[str, ndarray]`` with dotted names (``"query.weight"``);
- ``y, cache = layer.forward(x, *, params=None, **options)`` — pure with respect to the
  parameters: it reads ``params`` (default: ``layer.params``) and writes nothing into them;
- ``dx, grads = layer.backward(dy, cache)`` — ``grads`` has exactly the keys of ``params``; a
  table's gradient may be a :class:`~refmann.ops.RowGrad` (indices + rows, never an N-sized array).
  ``dx`` is None when the input is not differentiable (an embedding's integer indices).

The ``params=`` keyword is what makes composition work: a host keeps one flat dict with scoped
names (``"block0.attn.query.weight"``) and hands each child its slice, with the prefix removed
(:func:`unscope`); the child's gradients come back prefixed (:func:`scope`). The host's dict is
the one source of truth — replace an array there (``model.params[key] = new``, as an optimizer
does) and the next forward uses it. A child's own ``params`` holds the arrays it was built with
(the same objects, so in-place updates are seen by both).

Non-differentiable state (BatchNorm's running statistics) lives in ``buffers``, never in
``params``, and changes only where a layer documents it (BatchNorm in training mode).

A layer can be gradient-checked as an op: :func:`as_op` turns it into a forward/backward pair over
``(x, *params)`` for :func:`refmann.gradcheck.check_op`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .. import _checks
from .._checks import check_dtype, check_seed  # noqa: F401  (re-exported for the layers)
from ..ops import RowGrad, densify_rows


@runtime_checkable
class Layer(Protocol):
    """What every layer offers (see the module docstring); :class:`LayerBase` is one way to get it."""

    params: dict[str, np.ndarray]

    def forward(self, x, *, params: Mapping[str, np.ndarray] | None = None) -> tuple[Any, Any]:
        """``(y, cache)``; reads ``params`` (default ``self.params``), writes nothing into them."""
        ...

    def backward(self, dy, cache) -> tuple[Any, dict[str, Any]]:
        """``(dx, grads)`` with ``grads`` keyed like ``params`` (ndarray or RowGrad values)."""
        ...


def scope(prefix: str, mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``{"prefix.key": value}`` for every entry (the names a host gives its child's params and grads)."""
    return {f"{prefix}.{key}": value for key, value in mapping.items()}


def unscope(prefix: str, mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries under ``prefix.``, with the prefix removed (the slice a host hands its child)."""
    head = prefix + "."
    return {key[len(head) :]: value for key, value in mapping.items() if key.startswith(head)}


def densify(grad):
    """A gradient as a dense ndarray (a :class:`~refmann.ops.RowGrad` is scatter-added; O(N))."""
    return densify_rows(grad) if isinstance(grad, RowGrad) else grad


def child_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent seeds derived from ``seed`` (one per child layer, reproducibly)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(count)]


def check_features(x, name: str, size: int, *, ndim: int | None = None, dtype=None) -> np.ndarray:
    """``x`` as a float array of shape (..., size) (exactly ``ndim``-d if given), cast to ``dtype``.

    Errors name ``name`` and give both shapes.
    """
    x = _checks.as_float_array(x, name)
    if (ndim is not None and x.ndim != ndim) or x.ndim < 1 or x.shape[-1] != size:
        want = f"(..., {size})" if ndim is None else "(" + ", ".join(["·"] * (ndim - 1) + [str(size)]) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {x.shape}")
    return x if dtype is None else x.astype(dtype, copy=False)


class LayerBase:
    """A convenient base for layers: ``params``, ``buffers``, children, train/eval, parameter lookup.

    Subclasses set ``self.params`` (leaf layers) or call :meth:`_set_children` (composites, whose
    ``params`` become the children's under scoped names), and implement ``forward``/``backward``.

    Attributes
    ----------
    params : dict[str, ndarray]
        Parameters by dotted name.
    children : dict[str, LayerBase]
        Sub-layers by name (empty for a leaf).
    training : bool
        Mode of layers that behave differently in training (BatchNorm); set with :meth:`train` / :meth:`eval`.
    """

    params: dict[str, np.ndarray]
    children: dict[str, LayerBase]
    training: bool = True

    def _set_children(self, children: Iterable[tuple[str, LayerBase]]) -> None:
        self.children = {}
        for name, child in children:
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"layers: expected names without dots, got {name!r}")
            if name in self.children:
                raise ValueError(f"layers: the name {name!r} is used twice")
            for method in ("forward", "backward"):
                if not callable(getattr(child, method, None)):
                    raise TypeError(
                        f"layers[{name!r}]: expected a layer with forward/backward, got {type(child).__name__}"
                    )
            if not isinstance(getattr(child, "params", None), Mapping):
                raise TypeError(f"layers[{name!r}]: expected a layer with a params dict, got {type(child).__name__}")
            self.children[name] = child
        self.params = {}
        for name, child in self.children.items():
            self.params.update(scope(name, child.params))

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """Non-parameter state (running statistics) by scoped name, read live from the children."""
        out = dict(getattr(self, "_buffers", {}))
        for name, child in getattr(self, "children", {}).items():
            out.update(scope(name, getattr(child, "buffers", {})))
        return out

    def load_buffers(self, buffers: Mapping[str, np.ndarray]) -> None:
        """Replace buffers by (scoped) name, e.g. from a checkpoint; each keeps its shape and dtype."""
        current = self.buffers
        unknown = sorted(set(buffers) - set(current))
        if unknown:
            raise ValueError(f"buffers: unknown names {unknown} (expected some of {sorted(current)})")
        own = getattr(self, "_buffers", {})
        for key, value in buffers.items():
            if key in own:
                value = _checks.as_float_array(value, f"buffers[{key!r}]")
                _checks.check_shape(value, f"buffers[{key!r}]", own[key].shape)
                own[key] = value.astype(own[key].dtype, copy=True)
        for name, child in getattr(self, "children", {}).items():
            mine = unscope(name, buffers)
            if mine:
                child.load_buffers(mine)

    def train(self, mode: bool = True):
        """Set training mode (``mode=True``) or evaluation mode on this layer and every sub-layer; returns self."""
        mode = _checks.check_bool(mode, "mode")
        self.training = mode
        for child in getattr(self, "children", {}).values():
            if hasattr(child, "train"):
                child.train(mode)
        return self

    def eval(self):
        """Evaluation mode (``train(False)``); returns self."""
        return self.train(False)

    def _params(self, params: Mapping[str, np.ndarray] | None) -> Mapping[str, np.ndarray]:
        """``params`` (default ``self.params``), checked to hold every key of ``self.params``."""
        if params is None:
            return self.params
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
        missing = sorted(set(self.params) - set(params))
        if missing:
            raise ValueError(f"params: missing {missing} (expected the keys {sorted(self.params)})")
        return params

    def _child_params(self, params: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
        return unscope(name, params)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in getattr(self, "_sizes", {}).items())
        return f"{type(self).__name__}({sizes})"

    def forward(self, x, *, params=None):  # pragma: no cover - the interface, overridden
        """``(y, cache)``; see the module docstring."""
        raise NotImplementedError

    def backward(self, dy, cache):  # pragma: no cover - the interface, overridden
        """``(dx, grads)``; see the module docstring."""
        raise NotImplementedError


class Sequential(LayerBase):
    r"""Layers applied one after the other, with parameters scoped by each layer's name.

    Parameters
    ----------
    layers : dict[str, Layer] or sequence of (name, Layer) pairs, keyword-only
        In order. ``Sequential(layers={"fc1": Linear(...), "act": GELU(), "fc2": Linear(...)})`` has
        params ``"fc1.weight"``, ``"fc1.bias"``, ``"fc2.weight"``, ``"fc2.bias"``.

    Notes
    -----
    .. math:: y = f_L(\cdots f_2(f_1(x))), \qquad dx = J_1^\top \cdots J_L^\top\, dy

    A child whose input gradient is None (an embedding's indices) must come first.
    """

    def __init__(self, *, layers):
        items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
        if not items:
            raise ValueError("layers: expected at least one layer, got none")
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(f"layers: expected (name, layer) pairs or a dict, got {item!r}")
        self._set_children(items)
        self._sizes = {"layers": list(self.children)}

    def forward(self, x, *, params=None):
        """Apply each layer in order; ``cache`` is a tuple of the children's caches."""
        params = self._params(params)
        caches = []
        for name, child in self.children.items():
            x, cache = child.forward(x, params=self._child_params(params, name))
            caches.append(cache)
        return x, tuple(caches)

    def backward(self, dy, cache):
        """Walk the layers backwards; ``grads`` has the scoped keys of ``params``."""
        grads: dict[str, Any] = {}
        for (name, child), c in zip(reversed(self.children.items()), reversed(cache)):
            if dy is None:
                raise ValueError(
                    f"layers[{name!r}]: a later layer returned no input gradient (an index input can only be first)"
                )
            dy, g = child.backward(dy, c)
            grads.update(scope(name, g))
        return dy, {key: grads[key] for key in self.params}


def as_op(layer, *, differentiate_input: bool = True, **options):
    """The layer as an op pair over ``(x, *params)``, for :func:`refmann.gradcheck.check_op`.

    Parameters
    ----------
    layer : Layer
    differentiate_input : bool, keyword-only
        True: the pair is ``forward(x, *params)``. False (integer inputs such as an embedding's):
        ``forward(*params, x=...)``, the input passed by keyword.
    **options
        Passed to ``layer.forward`` (``mask=``, ``causal=``, ...).

    The pair leaves the layer's ``buffers`` (BatchNorm's running statistics) as it found them: each
    forward restores them, so a gradient check does not move them.

    Returns
    -------
    forward, backward : callables
        ``forward(...) -> (y, cache)``, ``backward(dy, cache) -> (dx, *dparams)`` with the
        parameters in the order of ``layer.params`` (and no dx when the input is not differentiated).

    Examples
    --------
    >>> from refmann.gradcheck import check_op
    >>> layer = LayerNorm(dim=4)
    >>> fwd, bwd = as_op(layer)
    >>> report = check_op(fwd, bwd, x, *layer.params.values())   # doctest: +SKIP
    """
    keys = tuple(layer.params)

    def run(x, arrays):
        # A check calls forward many times; a layer in training mode (BatchNorm) would move its running
        # statistics at each call. They do not enter the output, so restore them: a check leaves the layer as it was.
        buffers = getattr(layer, "buffers", {})
        saved = {key: np.array(value, copy=True) for key, value in buffers.items()}
        try:
            return layer.forward(x, params=dict(zip(keys, arrays)), **options)
        finally:
            if saved:
                layer.load_buffers(saved)

    if differentiate_input:

        def layer_forward(x, *arrays):
            return run(x, arrays)

        def layer_backward(dy, cache):
            dx, grads = layer.backward(dy, cache)
            return (dx, *(grads[k] for k in keys))
    else:

        def layer_forward(*arrays, x):
            return run(x, arrays)

        def layer_backward(dy, cache):
            _, grads = layer.backward(dy, cache)
            return tuple(grads[k] for k in keys)

    names = (["x"] if differentiate_input else []) + [k.replace(".", "_") for k in keys]
    kind = inspect.Parameter.POSITIONAL_ONLY
    params = [inspect.Parameter(n, kind) for n in names]
    if not differentiate_input:
        params.append(inspect.Parameter("x", inspect.Parameter.KEYWORD_ONLY))
    layer_forward.__signature__ = inspect.Signature(params)
    layer_forward.__name__ = f"{type(layer).__name__}_forward"
    layer_backward.__name__ = f"{type(layer).__name__}_backward"
    return layer_forward, layer_backward
