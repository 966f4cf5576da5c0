"""The BPTT engine every recurrent model shares: validation, forward over time, backward through time.

A model is a config (:mod:`refmann.models.configs`) and a core (:class:`refmann.cores.Core`). The
engine unrolls the core exactly as the Core protocol says — ``initial_state``, ``step_forward`` per
step, ``zero_dstate``, ``step_backward`` per step in reverse, ``end_forward`` / ``end_backward`` —
and asks the loss (named by the task: ``"sigmoid_ce"`` or ``"softmax_ce"``, :mod:`refmann.models.losses`)
for the gradient of the logits. Parameter gradients go into a :class:`refmann.grads.DeferredGrads`
sink (``grads="plain"`` selects the reference :class:`refmann.grads.Grads`; the same sums).

**Size guards.** Before it allocates, the engine estimates what a call will hold and refuses a plan
past the memory budget (``REFMANN_MEMORY_BUDGET``, default 8 GiB, :func:`refmann._checks.memory_budget`)
with a :class:`~refmann._checks.FootprintError` (a MemoryError and a ValueError) that names the
argument and the bytes needed; past a quarter of the budget it logs a warning. Three checks:

- the memory state, B·N·W·itemsize (twice for a dense model, whose step makes a new one), before
  :meth:`~RecurrentModel.initial_state` — names ``memory_size`` (a sparse memory adds its index and
  ring: :meth:`refmann.memory.SparseMemory.prepare`);
- the per-step caches of a T-step ``loss_and_grads`` (or ``unroll``) of a dense model, at least
  T·B·N·W·itemsize (each step keeps its memory), before the first step — names ``inputs``;
- the same, measured: after the second step the bytes its cache and state hold are known, and
  T times them is checked before the other T − 2 steps run — names ``inputs``.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import numpy as np

from .. import _checks
from ..cores.protocol import Core
from ..grads import DeferredGrads, Grads
from .configs import ModelConfig
from .losses import get_loss

GRAD_SINKS = {"deferred": DeferredGrads, "plain": Grads}
_SHORTER = "use shorter inputs (fewer time steps T), a smaller batch or memory_size"


def held_bytes(*objects) -> int:
    """Bytes of the distinct array buffers reachable from ``objects`` (NamedTuples, tuples, lists, dicts).

    Views count once, at the size of the buffer they look into, so a broadcast constant counts as one
    value and the same memory in two fields counts once.
    """
    seen, total, stack = set(), 0, list(objects)
    while stack:
        obj = stack.pop()
        if isinstance(obj, np.ndarray):
            root = obj
            while isinstance(root.base, np.ndarray):
                root = root.base
            if id(root) not in seen:
                seen.add(id(root))
                total += root.nbytes
        elif isinstance(obj, (tuple, list)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
    return total


def init_memory(rng, init, N: int, W: int, dtype):
    """The (N, W) initial memory (DESIGN decision 9): a constant 1e-6 by default, or a given array."""
    if isinstance(init, np.ndarray):
        return init
    if init in ("constant", "zeros"):  # a read-only broadcast of one value: no N-sized array until written
        return np.broadcast_to(np.asarray(1e-6 if init == "constant" else 0.0, dtype), (N, W))
    bound = 1.0 / np.sqrt(N + W)  # the "random" (and "learned") scheme of Collier & Beel (2018)
    return rng.uniform(-bound, bound, (N, W)).astype(dtype)


class Unroll(NamedTuple):
    """What :meth:`RecurrentModel.unroll` returns: one forward pass, every step kept."""

    logits: np.ndarray  # (T, B, Y)
    states: list  # T state NamedTuples (after each step)
    traces: list  # T trace NamedTuples (or None)
    caches: list  # T cache NamedTuples (an in-place memory's journals are already reverted)


class RecurrentModel:
    """A core unrolled over time. Subclasses set ``Config`` and ``make_core(config)``.

    Attributes
    ----------
    config : ModelConfig
        Every option, validated (a frozen dataclass).
    params : dict[str, ndarray]
        Parameters by dotted name; ``loss_and_grads`` returns gradients with the same keys.
    core : Core
        One time step, forward and backward.
    last_trace : list
        The discrete decisions of the last forward (a NamedTuple per step, or None for cores that take
        none); finite-difference checks use it to detect that a perturbation crossed a kink.
    """

    Config: type[ModelConfig] = ModelConfig

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__signature__ = inspect.signature(cls.Config)  # help() and the CLI see the config's fields

    def __init__(self, **kwargs):
        config = kwargs.pop("config", None)
        if config is None:
            config = self.Config(**kwargs)
        elif kwargs or not isinstance(config, self.Config):
            raise TypeError(f"config: expected a {self.Config.__name__} and no other keywords")
        self.config = config
        self.core: Core = self.make_core(config)
        self.dtype = config.dtype
        self.input_size, self.output_size, self.seed = config.input_size, config.output_size, config.seed
        rng = np.random.default_rng(config.seed)
        self.params = self.core.init_params(rng, self.dtype)
        self.memory_init = getattr(config, "memory_init", None)
        self._memory0 = None
        if self.core.memory_shape is not None:
            if isinstance(self.memory_init, str) and self.memory_init in ("random", "learned"):
                N, W = self.core.memory_shape
                _checks.check_footprint(
                    {"initial memory": N * W * np.dtype(self.dtype).itemsize},
                    "memory_size",
                    what=f"the {self.memory_init!r} initial memory of {N:,} slots of {W}",
                )
            m0 = init_memory(rng, self.memory_init, *self.core.memory_shape, self.dtype)
            if isinstance(self.memory_init, str) and self.memory_init == "learned":
                self.params["memory.init"] = m0
            else:
                self._memory0 = m0
        self.last_trace = []

    def make_core(self, config) -> Core:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def has_memory(self) -> bool:
        """True for the memory models (every model but the LSTM)."""
        return self.core.memory_shape is not None

    @property
    def memory0(self) -> np.ndarray | None:
        """The (N, W) memory every sequence starts from (None for the LSTM)."""
        if not self.has_memory:
            return None
        return self.params["memory.init"] if "memory.init" in self.params else self._memory0

    # -- the step API ----------------------------------------------------------------------------------
    def initial_state(self, batch_size: int):
        """The state before the first step of ``batch_size`` fresh sequences (for :meth:`step`).

        The step API keeps no caches (forward only). A model that writes its memory in place (SAM)
        starts it again from ``memory0`` here; after steps, the next ``forward``/``loss_and_grads``
        starts from ``memory0`` too.
        """
        B = _checks.check_positive_int(batch_size, "batch_size")
        self._check_footprint(1, B, keep_caches=False)
        self.core.forget_steps()
        return self._initial_state(B)

    def step(self, x_t, state):
        """One time step, forward only: ``x_t`` (B, X) -> ``(logits_t (B, Y), state)``."""
        x = _checks.as_float_array(x_t, "x_t", ndim=2)
        _checks.check_shape(x, "x_t", (None, self.input_size))
        x = x.astype(self.dtype, copy=False)
        with _checks.unchecked():
            y, state, _, _ = self.core.step_forward(self.params, x, state)
        self.core.forget_steps()
        return y, state

    # -- helpers ---------------------------------------------------------------------------------------
    def _initial_state(self, B):
        return self.core.initial_state(self.params, B, self.dtype, self.memory0)

    def _check_inputs(self, inputs, name="inputs"):
        x = _checks.as_float_array(inputs, name, ndim=3)
        _checks.check_shape(x, name, (None, None, self.input_size))
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"{name}: expected at least one time step and one sequence, got shape {x.shape}")
        return x.astype(self.dtype, copy=False)

    def _check_footprint(self, T: int, B: int, *, keep_caches: bool) -> None:
        """Refuse, before allocating, a call whose memory (or, kept for backward, T steps of it) is past the
        budget; see the module docstring."""
        if not self.has_memory:
            return
        N, W = self.core.memory_shape
        name = type(self).__name__
        memory = B * N * W * np.dtype(self.dtype).itemsize
        if not self.core.in_place:  # a dense step makes M_t from M_{t-1}: two memories live at once
            parts = self.core.state_nbytes(B, np.dtype(self.dtype).itemsize)
            _checks.check_footprint(
                parts,
                "memory_size",
                what=f"{name} with {N:,} slots of {W} at batch size {B} ({', '.join(parts)})",
            )
            if keep_caches and T > 1:
                _checks.check_footprint(
                    {"per-step caches": T * memory},
                    "inputs",
                    what=f"a {T}-step pass of {name} ({N:,} slots of {W}, batch size {B}) keeping every step's "
                    "memory for backward (T·B·N·W·itemsize at least)",
                    hint=_SHORTER,
                    warn=False,
                )

    def _check_step_footprint(self, T: int, B: int, step, before=()) -> None:
        """After a step whose cache and state are ``step``: T times what they add to ``before`` (the previous
        step's), before the other steps. Arrays two steps share (the DNC's L_t sits in step t's cache and
        in step t+1's) count once."""
        per_step = held_bytes(*before, *step) - held_bytes(*before)
        size = _checks.format_bytes(per_step, exact=False)
        _checks.check_footprint(
            {"per-step caches": T * per_step},
            "inputs",
            what=f"a {T}-step pass of {type(self).__name__} at batch size {B} ({size} kept per step, measured)",
            hint=_SHORTER,
        )

    def _check_params(self):
        for key, value in self.params.items():
            _checks.check_finite(value, f"params[{key!r}]")

    def unroll(self, inputs) -> Unroll:
        """Run the core over time, forward only, keeping every step's state, trace and cache.

        For pictures and teaching: what the memory holds at each step (O(T·N·W) for the dense models),
        the discrete decisions, what each backward would read. An in-place memory is undone afterwards.
        """
        x = self._check_inputs(inputs)
        self._check_params()
        with _checks.unchecked():
            logits, _, states, traces, caches = self._run(x, keep_caches=True, keep_states=True)
            self.core.end_forward(caches if self.core.in_place else [])
        return Unroll(logits, states, traces, caches)

    def _run(self, x, keep_caches, keep_states=False):
        """The forward loop: ``(logits, last state, states, traces, caches)``. An in-place core always
        keeps its caches, which hold the journal; if anything fails midway the steps taken are undone."""
        T, B, _ = x.shape
        self._check_footprint(T, B, keep_caches=keep_caches or keep_states)
        state = self._initial_state(B)
        logits = np.empty((T, B, self.output_size), self.dtype)
        caches, states, self.last_trace = [], [], []
        keep = keep_caches or self.core.in_place
        try:
            for t in range(T):
                logits[t], state, cache, trace = self.core.step_forward(self.params, x[t], state)
                self.last_trace.append(trace)
                if keep:
                    caches.append(cache)
                if keep_states:
                    states.append(state)
                if t == 1 and T > 2 and (keep_caches or keep_states):  # now the size of one step is known
                    self._check_step_footprint(
                        T,
                        B,
                        (cache if keep else None, state if keep_states else None),
                        (caches[0] if keep else None, states[0] if keep_states else None),
                    )
        except BaseException:
            self.core.end_forward(caches)
            raise
        return logits, state, states, self.last_trace, caches

    # -- public API ------------------------------------------------------------------------------------
    def forward(self, inputs):
        """Logits for a batch of sequences.

        Parameters
        ----------
        inputs : ndarray of shape (T, B, X)

        Returns
        -------
        logits : ndarray of shape (T, B, Y)
        """
        x = self._check_inputs(inputs)
        self._check_params()
        with _checks.unchecked():
            logits, _, _, _, caches = self._run(x, keep_caches=False)
            self.core.end_forward(caches)
        return logits

    def access_weights(self, inputs):
        """Read and write weights at every step, for pictures of what the memory does.

        Returns
        -------
        dict with "read" and "write" : ndarrays of shape (T, B, H, N) (empty for the LSTM)
        """
        if not self.has_memory:
            return {"read": np.array([]), "write": np.array([])}
        states = self.unroll(inputs).states
        dense = [self.core.dense_weights(s) for s in states]
        return {"read": np.array([r for r, _ in dense]), "write": np.array([w for _, w in dense])}

    def loss(self, inputs, targets, mask=None, *, loss="sigmoid_ce"):
        """The loss of :meth:`loss_and_grads` without the backward pass (what finite differences evaluate)."""
        x = self._check_inputs(inputs)
        lossfn = get_loss(loss)
        targets, mask = lossfn.check_targets(targets, mask, x.shape[:2] + (self.output_size,), self.dtype)
        self._check_params()
        with _checks.unchecked():
            logits, _, _, _, caches = self._run(x, keep_caches=False)
            self.core.end_forward(caches)
            value, _ = lossfn.forward(logits, targets=targets, mask=mask)
        return float(value) / x.shape[1]

    def loss_and_grads(self, inputs, targets, mask=None, *, loss="sigmoid_ce", grads="deferred"):
        """Loss and the gradient of every parameter by backpropagation through time.

        The loss is summed over time and outputs, averaged over the batch, counting only entries
        where ``mask`` is non-zero (:mod:`refmann.models.losses`).

        Parameters
        ----------
        inputs : ndarray of shape (T, B, X)
        targets : ndarray of shape (T, B, Y) in [0, 1] (``"sigmoid_ce"``), or int (T, B) (``"softmax_ce"``)
        mask : ndarray broadcastable to the targets' shape, optional
        loss : {"sigmoid_ce", "softmax_ce"}, keyword-only
            Default ``"sigmoid_ce"`` (the algorithmic tasks); a task names its own (``task.loss``).
        grads : {"deferred", "plain"}, keyword-only
            The gradient sink: weight outer products batched over time (default), or applied at each
            step (the reference). The same sums.

        Returns
        -------
        loss : float
        grads : dict[str, ndarray]
            Same keys and shapes as ``params``.
        """
        x = self._check_inputs(inputs)
        T, B, _ = x.shape
        lossfn = get_loss(loss)
        targets, mask = lossfn.check_targets(targets, mask, (T, B, self.output_size), self.dtype)
        if grads not in GRAD_SINKS:
            raise ValueError(f"grads: expected one of {sorted(GRAD_SINKS)}, got {grads!r}")
        self._check_params()
        core = self.core
        with _checks.unchecked():
            logits, last, _, _, caches = self._run(x, keep_caches=True)
            value, loss_cache = lossfn.forward(logits, targets=targets, mask=mask)
            (dlogits,) = lossfn.backward(1.0 / B, loss_cache)
            sink = GRAD_SINKS[grads](self.params)
            dstate = core.zero_dstate(last)
            t = T - 1
            # end_backward runs even after a failure (it empties the gradient table); the steps not
            # yet rolled back (0..t) are undone first, so the memory is M_0 again
            try:
                while t >= 0:
                    dstate = core.step_backward(self.params, dlogits[t], dstate, caches[t], sink)
                    t -= 1
            except BaseException:
                core.end_forward(caches[: t + 1])
                raise
            finally:
                core.end_backward(caches)
            dmemory0 = core.initial_memory_grad(dstate)
            if "memory.init" in self.params:
                sink.add("memory.init", dmemory0)
            result = sink.result()
        value = float(value) / B
        if not np.isfinite(value):
            raise FloatingPointError(f"loss is {value}: the parameters or inputs produce non-finite values")
        return value, result
