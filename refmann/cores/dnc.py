r"""One step of the Differentiable Neural Computer (Graves et al. 2016), as DeepMind's code computes it.

R read heads and ``Wh`` write heads (default 1) over a dense (B, N, W) memory. Per step (DESIGN
decision 10; ``docs/dnc.md``; the equations of google-deepmind/dnc, whose order and defaults people port):

1. controller: :math:`(h_t, c_t) = \mathrm{LSTM}([x_t ; r_{t-1}], h_{t-1}, c_{t-1})`; a linear map of
   :math:`h_t` gives per read head a key, a strength (softplus; ``variant="nature"``: oneplus), a free
   gate :math:`f` (σ) and read modes π (a softmax over [backward × Wh, forward × Wh, content]); per
   write head a key, a strength, an erase vector e (σ), a write vector v, an allocation gate
   :math:`g^a` and a write gate :math:`g^w` (σ);
2. usage: :math:`u_t = (u_{t-1} + \bar w - u_{t-1}\circ\bar w)\circ\psi_t` with
   :math:`\bar w = 1 - \prod_j (1 - w^{w,j}_{t-1})` under stop-gradient and
   :math:`\psi_t = \prod_i (1 - f_i w^{r,i}_{t-1})` (:func:`~refmann.ops.dnc_usage_forward`);
3. write weights: allocation :math:`a` by a stable sort of the usage (:func:`~refmann.ops.dnc_allocation_forward`),
   content :math:`c^w = C(M_{t-1}, k^w, \beta^w)`, :math:`w^w = g^w [g^a a + (1 - g^a) c^w]`;
4. write: :math:`M_t = M_{t-1} \circ \prod_j (1 - w^{w,j} e_j^\top) + \sum_j w^{w,j} v_j^\top`;
5. links: :math:`L_t = (1 - w_i - w_j) L_{t-1} + w_i p_{t-1,j}` (zero diagonal),
   :math:`p_t = (1 - \sum w) p_{t-1} + w` (:func:`~refmann.ops.dnc_links_forward`);
6. read weights: :math:`f = L_t w^r_{t-1}`, :math:`b = L_t^\top w^r_{t-1}`, content
   :math:`c^r = C(M_t, k^r, \beta^r)`, :math:`w^r = \pi_b b + \pi_f f + \pi_c c^r`;
7. read :math:`r_t = M_t^\top w^r`, output :math:`y_t = \mathrm{linear}([h_t ; r_t])` (optionally clipped).

Content weights put ε inside the norms, :math:`\lVert x\rVert = \sqrt{\sum x^2 + \epsilon}`, so an all-zero
memory gives similarity 0, never 0/0.

**Links in backward.** The link matrices (B, Wh, N, N) are the only O(N²) part of a step. With
``links="cache"`` (default) every step keeps :math:`L_{t-1}` in its cache (the state's own array,
no copy). With ``links="recompute"`` only every ``link_checkpoint``-th step keeps it; backward
recomputes the links of one segment at a time from its checkpoint and the cached write weights and
precedences (the link recursion needs nothing else), so a pass holds about T/s + s link matrices
instead of T, for one more link update per step. The links are never reverted:
:math:`L_{t-1} = (L_t - w p^\top)/(1 - w_i - w_j)` divides by numbers near 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import ops
from .controller import Controller, Field, HeadGroup, Interface, InterfaceLayout, Output, scalar
from .protocol import CoreBase, Step

EPS = 1e-6  # DeepMind's ε: inside the norms, in the cosine's denominator, and in the allocation
VARIANTS = {"deepmind": "softplus", "nature": "oneplus"}  # the strengths' activation
LINK_MODES = ("cache", "recompute")


class DNCState(NamedTuple):
    h: np.ndarray  # (B, C)
    c: np.ndarray  # (B, C)
    memory: np.ndarray  # (B, N, W)
    read_weights: np.ndarray  # (B, R, N)
    write_weights: np.ndarray  # (B, Wh, N)   used by the next step's usage only, under stop-gradient
    link: np.ndarray  # (B, Wh, N, N) temporal link matrices
    precedence: np.ndarray  # (B, Wh, N)
    usage: np.ndarray  # (B, N)
    reads: np.ndarray  # (B, R, W)
    step: int  # t of the last step taken


class DNCCache(NamedTuple):
    controller: object  # ops.lstm_step's cache
    interface: object  # InterfaceCache
    usage: object  # ops.dnc_usage's cache
    allocation: object  # ops.dnc_allocation's cache
    write_content: object  # ops.content_weights' cache (on M_{t-1})
    write_weights: object  # ops.dnc_write_weights' cache
    write: object  # ops.dense_write's cache
    links: object  # ops.dnc_links' cache (link_prev dropped between checkpoints under links="recompute")
    directional: object  # ops.dnc_directional's cache (its link dropped under links="recompute")
    read_content: object  # ops.content_weights' cache (on M_t)
    read_weights: object  # ops.dnc_read_weights' cache
    read: object  # ops.dense_read's cache
    output: object  # ops.linear's cache
    write_weights_prev: np.ndarray | None  # (B, Wh, N) w^w_{t-1} (usage_stop_gradient=False only)
    gates: tuple  # (g^a, g^w), each (B, Wh): the allocation's write gates are their product
    clipped: np.ndarray | None  # bool (B, Y): logits clipped to ±clip_value (no gradient there)
    tape: object  # LinkTape (links="recompute") or None
    step: int  # t


class DNCTrace(NamedTuple):
    """The step's discrete decisions (finite-difference checks watch them for kinks)."""

    order: np.ndarray  # int (B, N) the allocation order: slots by usage ascending, ties to the lower index
    clipped: np.ndarray | None  # bool (B, Y) logits at the clip


class LinkTape:
    """The link matrices of one pass under ``links="recompute"``: checkpoints, and one segment at a time.

    Step t (1-based) records its write weights and the precedence before it; every ``every``-th step
    also keeps :math:`L_{t-1}`. Backward asks for :math:`L_t` and :math:`L_{t-1}` from the last step
    down; a request below the live segment recomputes the segment from its checkpoint with
    :func:`~refmann.ops.dnc_links_forward` (the same op on the same inputs: the same bits).
    """

    def __init__(self, every: int, link0: np.ndarray):
        self.every = every
        self.checkpoints = {0: link0}  # t -> L_t
        self.inputs = {}  # t -> (p_{t-1}, w_t)
        self.segment = {}  # t -> L_t for the segment being walked back
        self.last = None  # (t, L_t) of the newest step: the state holds it, so it costs nothing

    def record(self, t, link_prev, precedence_prev, write_weights, link):
        self.inputs[t] = (precedence_prev, write_weights)
        if (t - 1) % self.every == 0:
            self.checkpoints[t - 1] = link_prev
        self.last = (t, link)

    def link(self, t):
        """:math:`L_t` (t ≥ 0)."""
        if self.last is not None and self.last[0] == t:
            return self.last[1]
        if t in self.checkpoints:
            return self.checkpoints[t]
        if t not in self.segment:
            start = ((t - 1) // self.every) * self.every  # the checkpoint below t
            self.segment = {start: self.checkpoints[start]}
            end = min(start + self.every, max(self.inputs))
            for s in range(start + 1, end + 1):
                p, w = self.inputs[s]
                (self.segment[s], _), _ = ops.dnc_links_forward(self.segment[s - 1], p, w)
        return self.segment[t]

    def release(self, t):
        """Step t's backward is done: its L_t is no longer needed."""
        self.segment.pop(t, None)
        if self.last is not None and self.last[0] == t:
            self.last = None


def usage_write_weights_vjp(dusage_t, cache, write_weights_prev):
    r"""∂L/∂w^{w}_{t-1} through the usage, for ``usage_stop_gradient=False`` (DeepMind stops it):
    :math:`\partial u_t/\partial w^{w,j} = (1 - u_{t-1}) \circ \psi \circ \prod_{k \ne j} (1 - w^{w,k})`
    (the product over the other write heads by prefix and suffix products, no division).

    ``cache`` is :func:`~refmann.ops.dnc_usage_forward`'s (u_{t-1}, ψ); returns (B, Wh, N)."""
    keep = 1.0 - write_weights_prev  # (B, Wh, N)
    Wh = keep.shape[1]
    others = np.ones_like(keep)
    for j in range(Wh):  # Wh is small (1 by default): Π_{k≠j} as prefix × suffix
        prefix = np.prod(keep[:, :j], axis=1)
        suffix = np.prod(keep[:, j + 1 :], axis=1)
        others[:, j] = prefix * suffix
    return (dusage_t * (1.0 - cache.usage) * cache.retention)[:, None, :] * others


def dnc_layout(R: int, Wh: int, W: int, strength: str) -> InterfaceLayout:
    """The DNC's interface: per read head key, strength, free gate, modes; per write head key, strength,
    erase, write vector, allocation and write gates (the fields of DeepMind's ``_read_inputs``)."""
    read = HeadGroup(
        "read",
        R,
        (
            Field("key", W, "identity"),
            scalar("strength", strength),
            scalar("free_gate", "sigmoid"),
            Field("mode", 1 + 2 * Wh, "softmax"),
        ),
    )
    write = HeadGroup(
        "write",
        Wh,
        (
            Field("key", W, "identity"),
            scalar("strength", strength),
            Field("erase", W, "sigmoid"),
            Field("add", W, "identity"),
            scalar("allocation_gate", "sigmoid"),
            scalar("write_gate", "sigmoid"),
        ),
    )
    return InterfaceLayout(read, write)


class DNCCore(CoreBase):
    """Sizes, options and the step of the DNC; see the module docstring for the equations."""

    def __init__(
        self,
        *,
        input_size,
        output_size,
        memory_size,
        word_size,
        num_heads,
        hidden_size,
        num_write_heads=1,
        variant="deepmind",
        links="cache",
        link_checkpoint=16,
        clip_value=None,
        usage_stop_gradient=True,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {tuple(VARIANTS)}, got {variant!r}")
        if links not in LINK_MODES:
            raise ValueError(f"links: expected one of {LINK_MODES}, got {links!r}")
        self.X, self.Y, self.N, self.W = input_size, output_size, memory_size, word_size
        self.R, self.Wh, self.C = num_heads, num_write_heads, hidden_size
        self.memory_shape = (memory_size, word_size)
        self.variant, self.links, self.link_checkpoint, self.clip_value = variant, links, link_checkpoint, clip_value
        self.usage_stop_gradient = usage_stop_gradient
        self.controller = Controller(input_size, num_heads * word_size, hidden_size)
        self.interface = Interface(hidden_size, dnc_layout(num_heads, num_write_heads, word_size, VARIANTS[variant]))
        self.output = Output(hidden_size, num_heads * word_size, output_size)
        self._tape = None

    def init_params(self, rng, dtype):
        """``controller.*``, ``heads.*``, ``output.*`` (drawn in that order from ``rng``)."""
        return {
            **self.controller.init_params(rng, dtype),
            **self.interface.init_params(rng, dtype),
            **self.output.init_params(rng, dtype),
        }

    def initial_state(self, params, B, dtype, memory0):
        """Zero controller state, weights, links, precedence, usage and reads (DeepMind's initial state)."""
        R, Wh, N, W, C = self.R, self.Wh, self.N, self.W, self.C
        z = np.zeros
        link0 = z((B, Wh, N, N), dtype)
        self._tape = LinkTape(self.link_checkpoint, link0) if self.links == "recompute" else None
        return DNCState(
            z((B, C), dtype),
            z((B, C), dtype),
            np.broadcast_to(memory0, (B, N, W)).astype(dtype),
            z((B, R, N), dtype),
            z((B, Wh, N), dtype),
            link0,
            z((B, Wh, N), dtype),
            z((B, N), dtype),
            z((B, R, W), dtype),
            0,
        )

    def step_forward(self, params, x, state):
        """Controller; usage; allocation and content write weights; write; links; read modes; read; output."""
        (h, c), ctrl_cache = self.controller.forward(params, x, state.reads, state.h, state.c)
        values, iface_cache = self.interface.forward(params, h)
        rv, wv = values["read"], values["write"]
        # usage from the previous step's weights (the write weights under stop-gradient)
        usage, usage_cache = ops.dnc_usage_forward(
            state.usage, rv["free_gate"], state.read_weights, write_weights=state.write_weights
        )
        # write weights: allocation by the sorted usage, or content on M_{t-1}
        write_gates = wv["allocation_gate"] * wv["write_gate"]  # (B, Wh)
        allocation, alloc_cache = ops.dnc_allocation_forward(usage, write_gates, eps=EPS)
        wcontent, wcontent_cache = ops.content_weights_forward(
            state.memory, wv["key"], wv["strength"], eps=EPS, norm_eps=EPS
        )
        write_weights, ww_cache = ops.dnc_write_weights_forward(
            allocation, wcontent, wv["allocation_gate"], wv["write_gate"]
        )
        memory, write_cache = ops.dense_write_forward(state.memory, write_weights, wv["erase"], wv["add"])
        # temporal links and the read weights
        (link, precedence), link_cache = ops.dnc_links_forward(state.link, state.precedence, write_weights)
        (fwd, bwd), dir_cache = ops.dnc_directional_forward(link, state.read_weights)
        rcontent, rcontent_cache = ops.content_weights_forward(memory, rv["key"], rv["strength"], eps=EPS, norm_eps=EPS)
        read_weights, rw_cache = ops.dnc_read_weights_forward(rv["mode"], rcontent, fwd, bwd)
        reads, read_cache = ops.dense_read_forward(memory, read_weights)
        y, out_cache = self.output.forward(params, h, reads)
        clipped = None
        if self.clip_value is not None:
            clipped = np.abs(y) > self.clip_value
            y = np.clip(y, -self.clip_value, self.clip_value)
        t = state.step + 1
        tape = self._tape
        if tape is not None:  # keep L_{t-1} only at checkpoints; backward recomputes the rest
            tape.record(t, state.link, state.precedence, write_weights, link)
            link_cache = link_cache._replace(link_prev=None)
            dir_cache = dir_cache._replace(link=None)
        cache = DNCCache(
            ctrl_cache,
            iface_cache,
            usage_cache,
            alloc_cache,
            wcontent_cache,
            ww_cache,
            write_cache,
            link_cache,
            dir_cache,
            rcontent_cache,
            rw_cache,
            read_cache,
            out_cache,
            None if self.usage_stop_gradient else state.write_weights,
            (wv["allocation_gate"], wv["write_gate"]),
            clipped,
            tape,
            t,
        )
        state = DNCState(h, c, memory, read_weights, write_weights, link, precedence, usage, reads, t)
        order = np.argsort(usage, axis=-1, kind="stable")
        return Step(y, state, cache, DNCTrace(order, clipped))

    def step_backward(self, params, dy, dstate, cache, grads):
        """VJP of :meth:`step_forward` (the usage's write weights and the allocation order carry no gradient)."""
        R, W = self.R, self.W
        B = dy.shape[0]
        if cache.clipped is not None:
            dy = np.where(cache.clipped, 0.0, dy)
        link_cache, dir_cache = cache.links, cache.directional
        if cache.tape is not None:
            t = cache.step
            dir_cache = dir_cache._replace(link=cache.tape.link(t))
            link_cache = link_cache._replace(link_prev=cache.tape.link(t - 1))
        dh, dreads = self.output.backward(params, dy, cache.output, grads)
        dreads = dreads.reshape(B, R, W) + dstate.reads
        dmemory, dread_weights = ops.dense_read_backward(dreads, cache.read)
        dmemory = dmemory + dstate.memory
        dmodes, drcontent, dfwd, dbwd = ops.dnc_read_weights_backward(
            dread_weights + dstate.read_weights, cache.read_weights
        )
        dmem_read, drkey, drstrength = ops.content_weights_backward(drcontent, cache.read_content)
        dlink, dread_weights_prev = ops.dnc_directional_backward((dfwd, dbwd), dir_cache)
        dlink_prev, dprecedence_prev, dwrite_weights = ops.dnc_links_backward(
            (dlink + dstate.link, dstate.precedence), link_cache
        )
        if cache.tape is not None:
            cache.tape.release(cache.step)
        dmemory_prev, dww, derase, dadd = ops.dense_write_backward(dmemory + dmem_read, cache.write)
        dwrite_weights = dwrite_weights + dww
        if dstate.write_weights is not None:  # usage_stop_gradient=False: the next step's usage used w^w_t
            dwrite_weights = dwrite_weights + dstate.write_weights
        dalloc, dwcontent, dag, dwg = ops.dnc_write_weights_backward(dwrite_weights, cache.write_weights)
        dmem_wc, dwkey, dwstrength = ops.content_weights_backward(dwcontent, cache.write_content)
        dusage, dwrite_gates = ops.dnc_allocation_backward(dalloc, cache.allocation)
        allocation_gate, write_gate = cache.gates
        dag = dag + dwrite_gates * write_gate
        dwg = dwg + dwrite_gates * allocation_gate
        dusage_prev, dfree, drw_usage = ops.dnc_usage_backward(dusage + dstate.usage, cache.usage)
        dwrite_weights_prev = (
            None
            if self.usage_stop_gradient
            else usage_write_weights_vjp(dusage + dstate.usage, cache.usage, cache.write_weights_prev)
        )
        dvalues = {
            "read": {"key": drkey, "strength": drstrength, "free_gate": dfree, "mode": dmodes},
            "write": {
                "key": dwkey,
                "strength": dwstrength,
                "erase": derase,
                "add": dadd,
                "allocation_gate": dag,
                "write_gate": dwg,
            },
        }
        dh_heads = self.interface.backward(params, dvalues, cache.interface, grads)
        dreads_prev, dh_prev, dc_prev = self.controller.backward(
            params, dh + dh_heads + dstate.h, dstate.c, cache.controller, grads
        )
        return DNCState(
            dh_prev,
            dc_prev,
            dmemory_prev + dmem_wc,
            dread_weights_prev + drw_usage,
            dwrite_weights_prev,
            dlink_prev,
            dprecedence_prev,
            dusage_prev,
            dreads_prev.reshape(B, R, W),
            0,
        )

    def zero_dstate(self, state):
        """Zero gradients for every array of the state (the write weights' only with ``usage_stop_gradient=False``)."""
        z = np.zeros_like
        return DNCState(
            z(state.h),
            z(state.c),
            z(state.memory),
            z(state.read_weights),
            None if self.usage_stop_gradient else z(state.write_weights),
            z(state.link),
            z(state.precedence),
            z(state.usage),
            z(state.reads),
            0,
        )

    def state_nbytes(self, B, itemsize):
        """Two memories (M_{t-1}, M_t) and two sets of link matrices (L_{t-1}, L_t), B·Wh·N² each."""
        N, W = self.memory_shape
        return {"memory state": 2 * B * N * W * itemsize, "link matrices": 2 * B * self.Wh * N * N * itemsize}

    def initial_memory_grad(self, dstate):
        """∂L/∂memory0: the memory lives in the state, so the batch's gradients add up."""
        return dstate.memory.sum(axis=0)

    def end_backward(self, caches):
        """Drop the recompute tape of the pass."""
        self._tape = None

    def forget_steps(self):
        """The step API keeps no caches: nothing will ask the tape for links."""
        self._tape = None
