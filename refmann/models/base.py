"""The unrolling engine every model shares: validation, forward over time, BPTT with full caching."""

from __future__ import annotations

import numpy as np
from scipy.linalg import get_blas_funcs

from .. import _checks, ops
from ..cores._common import init_memory_param


class DeferredGrads(dict):
    """The gradient dict of one BPTT pass, which also batches weight outer products over time.

    A step's ``grads[key] += xᵀ dy`` for a (B, in) input and a (B, out) upstream gradient is kept
    (:meth:`defer`) and summed ``every`` steps at a time as one ``[x_1; …; x_n]ᵀ [dy_1; …; dy_n]`` —
    the same sum, one large matrix product instead of n small ones and n (in, out) additions. At most
    ``every`` pairs per key are held, so the extra memory does not grow with T.
    """

    every = 16

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending: dict[str, tuple[list, list]] = {}

    def defer(self, key, x, dy):
        xs, dys = self._pending.setdefault(key, ([], []))
        xs.append(x)
        dys.append(dy)
        if len(xs) >= self.every:
            self._flush_key(key)

    def _flush_key(self, key):
        xs, dys = self._pending.pop(key)
        x, dy, target = np.concatenate(xs), np.concatenate(dys), self[key]
        if x.dtype == dy.dtype == target.dtype and target.flags.c_contiguous:
            # BLAS adds into the gradient in place (target.T is the Fortran-ordered (out, in) array:
            # target.T += dyᵀ x), so no (in, out) temporary is made — 755 KB for SAM's controller
            gemm = get_blas_funcs("gemm", (dy, x, target))
            out = gemm(1.0, dy, x, beta=1.0, c=target.T, trans_a=True, overwrite_c=True)
            if np.shares_memory(out, target):
                return
            target[...] = out.T                                            # pragma: no cover (BLAS copied)
        else:
            target += x.T @ dy

    def flush(self):
        """Add every pending outer product (call once after the last step's backward)."""
        for key in list(self._pending):
            self._flush_key(key)


class RecurrentModel:
    """A core unrolled over time. Subclasses set ``self.core`` and call :meth:`_setup`.

    Attributes
    ----------
    params : dict[str, ndarray]
        Parameters by dotted name; ``loss_and_grads`` returns gradients with the same keys.
    last_trace : list
        The discrete decisions of the last forward (least-used slots, accessed slots, ...), one
        entry per step; finite-difference checks use it to detect that a perturbation crossed a kink.
    """

    has_memory = True

    def _setup(self, *, input_size, output_size, seed, dtype, memory_init="constant"):
        for name, value in (("input_size", input_size), ("output_size", output_size)):
            _checks.check_positive_int(value, name)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise TypeError(f"seed: expected a non-negative int, got {seed!r}")
        self.input_size, self.output_size, self.seed = input_size, output_size, seed
        rng = np.random.default_rng(seed)
        self.params = self.core.init_params(rng, self.dtype)
        self.memory_init = memory_init
        if self.has_memory:
            m0 = init_memory_param(rng, memory_init, self.core.N, self.core.W, self.dtype)
            if memory_init == "learned":
                self.params["memory.init"] = m0
            else:
                self._memory0 = m0
        self.last_trace = []

    # -- helpers ---------------------------------------------------------------------------------
    def _initial_state(self, B):
        if not self.has_memory:
            return self.core.initial_state(self.params, B, self.dtype)
        m0 = self.params["memory.init"] if self.memory_init == "learned" else self._memory0
        return self.core.initial_state(self.params, B, self.dtype, m0)

    def _check_inputs(self, inputs, name="inputs"):
        x = _checks.as_float_array(inputs, name, ndim=3)
        _checks.check_shape(x, name, (None, None, self.input_size))
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"{name}: expected at least one time step and one sequence, got shape {x.shape}")
        return x.astype(self.dtype, copy=False)

    def _check_params(self):
        for key, value in self.params.items():
            _checks.check_finite(value, f"params[{key!r}]")

    def _unroll(self, x, keep_caches):
        """Run the core over time. A core that writes its memory in place (SAM) always keeps its
        caches, which hold the journal; if anything fails midway the steps taken are undone."""
        T, B, _ = x.shape
        state = self._initial_state(B)
        logits = np.empty((T, B, self.output_size), self.dtype)
        caches, self.last_trace = [], []
        in_place = hasattr(self.core, "end_forward")
        try:
            for t in range(T):
                logits[t], state, cache = self.core.step_forward(self.params, x[t], state)
                self.last_trace.append(getattr(self.core, "trace", None))
                if keep_caches or in_place:
                    caches.append(cache)
        except BaseException:
            if in_place:
                self.core.end_forward(caches)
            raise
        return logits, state, caches

    def _end_forward(self, caches):
        if hasattr(self.core, "end_forward"):
            self.core.end_forward(caches)

    # -- public API --------------------------------------------------------------------------------
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
            logits, _, caches = self._unroll(x, keep_caches=False)
            self._end_forward(caches)
        return logits

    def access_weights(self, inputs):
        """Read and write weights at every step, for pictures of what the memory does.

        Returns
        -------
        dict with "read" and "write" : ndarrays of shape (T, B, H, N) (empty for the LSTM)
        """
        x = self._check_inputs(inputs)
        reads, writes = [], []
        with _checks.unchecked():
            state = self._initial_state(x.shape[1])
            caches = []
            try:
                for t in range(x.shape[0]):
                    _, state, cache = self.core.step_forward(self.params, x[t], state)
                    caches.append(cache)
                    if self.has_memory:
                        reads.append(self._dense_weights(state, "read"))
                        writes.append(self._dense_weights(state, "write"))
            finally:
                self._end_forward(caches)
        return {"read": np.array(reads), "write": np.array(writes)}

    def _dense_weights(self, state, which):
        """(B, H, N) weights of a state (sparse models scatter their K entries; for pictures)."""
        w = getattr(state, f"{which}_weights")
        idx = getattr(state, f"{which}_idx", None)
        if idx is None:
            return w
        dense = np.zeros(w.shape[:2] + (self.core.N,), w.dtype)
        for b in range(w.shape[0]):
            for h in range(w.shape[1]):
                np.add.at(dense[b, h], idx[b, h], w[b, h])
        return dense

    def loss(self, inputs, targets, mask=None):
        """The loss of :meth:`loss_and_grads` without the backward pass (what finite differences evaluate)."""
        x = self._check_inputs(inputs)
        targets, mask = self._check_targets(targets, mask, x.shape)
        self._check_params()
        with _checks.unchecked():
            logits, _, caches = self._unroll(x, keep_caches=False)
            self._end_forward(caches)
            loss, _ = ops.sigmoid_cross_entropy_forward(logits, targets=targets, mask=mask)
        return float(loss) / x.shape[1]

    def _check_targets(self, targets, mask, shape):
        T, B, _ = shape
        targets = _checks.as_float_array(targets, "targets", ndim=3)
        _checks.check_shape(targets, "targets", (T, B, self.output_size))
        _checks.check_range(targets, "targets", 0.0, 1.0)
        if mask is not None:
            if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
                mask = mask.astype(self.dtype)                 # a 0/1 mask is the natural thing to pass
            mask = _checks.as_float_array(mask, "mask")
            _checks.check_range(mask, "mask", 0.0)
            try:
                mask = np.broadcast_to(mask, (T, B, self.output_size))
            except ValueError:
                raise ValueError(f"mask: expected a shape that broadcasts to {(T, B, self.output_size)}, "
                                 f"got {mask.shape}") from None
        return targets.astype(self.dtype, copy=False), mask

    def loss_and_grads(self, inputs, targets, mask=None):
        """Loss and the gradient of every parameter by backpropagation through time.

        The loss is sigmoid cross-entropy summed over time and outputs, averaged over the batch,
        counting only entries where ``mask`` is non-zero.

        Parameters
        ----------
        inputs : ndarray of shape (T, B, X)
        targets : ndarray of shape (T, B, Y), values in [0, 1]
        mask : ndarray broadcastable to (T, B, Y), optional

        Returns
        -------
        loss : float
        grads : dict[str, ndarray]
            Same keys and shapes as ``params``.
        """
        x = self._check_inputs(inputs)
        T, B, _ = x.shape
        targets, mask = self._check_targets(targets, mask, x.shape)
        self._check_params()
        with _checks.unchecked():
            logits, _, caches = self._unroll(x, keep_caches=True)
            loss, loss_cache = ops.sigmoid_cross_entropy_forward(logits, targets=targets, mask=mask)
            (dlogits,) = ops.sigmoid_cross_entropy_backward(1.0 / B, loss_cache)
            grads = DeferredGrads({key: np.zeros_like(value) for key, value in self.params.items()})
            dstate = self._zero_dstate(B)
            t = T - 1
            try:
                while t >= 0:
                    dstate = self.core.step_backward(self.params, dlogits[t], dstate, caches[t], grads)
                    t -= 1
            except BaseException:
                self._end_forward(caches[:t + 1])   # undo the steps not yet rolled back
                raise
            finally:
                if hasattr(self.core, "end_backward"):
                    self.core.end_backward(caches)
            if self.memory_init == "learned":
                grads["memory.init"] += dstate.memory.sum(axis=0)
            grads.flush()
            grads = dict(grads)
        loss = float(loss) / B
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss is {loss}: the parameters or inputs produce non-finite values")
        return loss, grads

    def _zero_dstate(self, B):
        if hasattr(self.core, "zero_dstate"):
            return self.core.zero_dstate(B, self.dtype)
        state = self._initial_state(B)
        return type(state)(*[np.zeros_like(s) if isinstance(s, np.ndarray) and s.dtype.kind == "f" else None
                             for s in state])
