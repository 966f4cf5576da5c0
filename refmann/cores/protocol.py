r"""The Core protocol: what one time step of a recurrent model offers the BPTT engine.

A core holds its sizes and options (and, for a memory written in place, that memory); the
parameters live outside it, in the model's ``params`` dict. The engine in
:mod:`refmann.models.recurrent` unrolls any core over time with exactly these calls::

    state = core.initial_state(params, B, dtype, memory0)          # memory0: (N, W) or None
    for t in range(T):
        y[t], state, cache[t], trace[t] = core.step_forward(params, x[t], state)
    core.end_forward(caches)                                       # forward only: undo in-place writes
    dstate = core.zero_dstate(state)
    for t in reversed(range(T)):
        dstate = core.step_backward(params, dy[t], dstate, cache[t], grads)
    core.end_backward(caches)                                      # after backward
    dmemory0 = core.initial_memory_grad(dstate)                    # for memory_init="learned"

and, for the public step API (``model.initial_state(B)``, ``model.step(x_t, state)``), which keeps
no caches, ``core.forget_steps()`` after each step.

Caches, states and traces are NamedTuples with a shape comment per field. ``grads`` is a
:class:`refmann.grads.Grads` sink. A core whose memory lives in the state (NTM, DAM) has nothing to
do at the ends of a pass; a core that writes one model-owned memory in place (SAM, rolled back
step by step during backward) sets ``in_place = True`` and implements the two hooks.
:class:`CoreBase` gives the defaults, so no engine ever probes a core with ``hasattr``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np


class Step(NamedTuple):
    """What :meth:`Core.step_forward` returns."""

    y: np.ndarray  # (B, Y) the step's logits
    state: Any  # the core's state NamedTuple after the step
    cache: Any  # what step_backward needs (a NamedTuple)
    trace: Any  # the step's discrete decisions (a NamedTuple), or None if it takes none


@runtime_checkable
class Core(Protocol):
    """One time step of a recurrent model, forward and backward (see the module docstring)."""

    #: (N, W) of the memory, or None for a core without one (the LSTM).
    memory_shape: tuple[int, int] | None
    #: True when the core writes a model-owned memory in place (then the end hooks undo or finish it).
    in_place: bool

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        """Fresh parameters by dotted name (``controller.weight``, ``heads.bias``, ...)."""

    def initial_state(self, params: dict, B: int, dtype, memory0: np.ndarray | None) -> Any:
        """The state before step 1 for a batch of B sequences, all starting from ``memory0`` (N, W)."""

    def step_forward(self, params: dict, x: np.ndarray, state: Any) -> Step:
        """One step on x (B, X): returns ``Step(y, state, cache, trace)``."""

    def step_backward(self, params: dict, dy: np.ndarray, dstate: Any, cache: Any, grads) -> Any:
        """VJP of one step: ∂L/∂state_{t-1} from dy (B, Y) and ∂L/∂state_t; adds into ``grads``."""

    def zero_dstate(self, state: Any) -> Any:
        """∂L/∂state_T = 0, shaped like the gradient ``step_backward`` takes for ``state``."""

    def end_forward(self, caches: list) -> None:
        """After a forward pass (or a failed one): undo the in-place writes of these steps, newest first."""

    def end_backward(self, caches: list) -> None:
        """After the backward pass (also after a failed one)."""

    def initial_memory_grad(self, dstate: Any) -> np.ndarray | None:
        """∂L/∂memory0 (N, W) summed over the batch, from ∂L/∂state_0 (for ``memory_init="learned"``)."""

    def dense_weights(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        """The state's (read, write) weights as (B, H, N) arrays (for pictures; sparse cores scatter)."""

    def forget_steps(self) -> None:
        """Steps were taken and their caches dropped (the public step API): an in-place core can no
        longer undo them, so its next ``initial_state`` must start again from ``memory0``."""


class CoreBase:
    """Defaults for the optional parts of :class:`Core`: no memory written in place, nothing at the ends."""

    memory_shape: tuple[int, int] | None = None
    in_place = False

    def zero_dstate(self, state):
        """Zeros for every floating-point array of the state; None for the rest (indices, usage, step)."""
        return type(state)(
            *[np.zeros_like(s) if isinstance(s, np.ndarray) and s.dtype.kind == "f" else None for s in state]
        )

    def end_forward(self, caches):
        """Nothing to undo: the memory lives in the state."""

    def end_backward(self, caches):
        """Nothing to finish."""

    def dense_weights(self, state):
        """``(state.read_weights, state.write_weights)``: a dense core's weights are (B, H, N) already."""
        return state.read_weights, state.write_weights

    def forget_steps(self):
        """Nothing to forget: the memory lives in the state."""

    def initial_memory_grad(self, dstate):
        """None: the core has no differentiable initial memory (dense cores return ``dstate.memory.sum(0)``)."""
        return None

    def state_nbytes(self, B: int, itemsize: int) -> dict[str, int]:
        """Bytes a step holds beyond its caches, by part, for the size guard before the first step: two
        (B, N, W) memories for a dense core (M_{t-1} and M_t), nothing more for an in-place one (its
        sparse memory is guarded when prepared)."""
        if self.memory_shape is None or self.in_place:
            return {}
        N, W = self.memory_shape
        return {"memory state": 2 * B * N * W * itemsize}
