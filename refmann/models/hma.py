r"""The HMA host: any encoder, a momentum copy of it that writes the queue, and the memory-tokens head.

Qiu et al. (2023) put their head (:class:`refmann.layers.hma.MemoryTokens`) on a backbone and fill its
queue, MoCo-style (He et al. 2020), with a momentum encoder's features of past training batches and their
labels. A training step with this host::

    loss, grads = model.loss_and_grads(x, y)          # batch-level loss: stage 2 couples the samples
    model.params = optimizer.step(model.params, grads)
    model.update_memory(x, y)                         # θ̃ ← m θ̃ + (1 − m) θ, then enqueue [f̃(x) ; E_y]

``predict(x, batch_size=...)`` evaluates in chunks: in the transductive mode (the paper's) each chunk is
one set for stage 2, so the predictions depend on the evaluation batch; ``mode="per_sample"`` (refmann's)
does not. Derivation and the released code's quirks: ``docs/derivations/hma.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _checks, ops
from ..layers.base import LayerBase, densify, scope, unscope
from ..layers.hma import MODES, MemoryTokens, MemoryTokensCache

__all__ = ["POOLS", "MemoryTokensClassifier", "MemoryTokensClassifierCache"]

POOLS = (None, "last", "mean")


def _check_mode(mode):
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    return mode


class MemoryTokensClassifierCache(NamedTuple):
    encoder: Any  # the encoder's cache
    head: MemoryTokensCache
    steps: int | None  # T of a pooled (T, B, d) encoder output; None without pooling


class MemoryTokensClassifier(LayerBase):
    r"""An encoder with HMA's memory-tokens head and a momentum encoder for the queue (Qiu et al. 2023).

    Parameters
    ----------
    encoder : Layer
        Maps the inputs to features (B, d) — an MLP backbone (:class:`refmann.layers.MLP`) — or, with
        ``pool``, a time-major sequence network with outputs (T, B, d)
        (:class:`refmann.models.feedforward.TransformerNetwork` with ``output_size = d``).
    num_classes : int, keyword-only
        C.
    feature_dim : int, keyword-only
        d, the width of the encoder's output.
    momentum : float in [0, 1], keyword-only
        m of the momentum encoder :math:`\tilde\theta \leftarrow m \tilde\theta + (1 - m)\theta`; 0 writes
        the current encoder's features.
    write_queue : bool, keyword-only
        False: :meth:`update_memory` does nothing, as the released ViT path, which never passes labels to
        the head (its queue stays the initial noise).
    pool : {None, "last", "mean"}, keyword-only
        How a (T, B, d) encoder output becomes (B, d): its last step or the mean over the T steps.
    seed : int, keyword-only
        Of the head (the encoder was built with its own).
    dtype : float32 or float64, keyword-only
    **memory_tokens_kwargs
        The other keywords of :class:`~refmann.layers.hma.MemoryTokens` (``label_dim``, ``queue_size``,
        ``tokens_per_class``, ``num_heads``, ``logits_from``, ``use_queue``, ``use_tokens``, ``quirks``, ...).

    Attributes
    ----------
    params : dict
        ``"encoder.*"`` (the encoder's) and ``"head.*"`` (the MemoryTokens'), one flat dict: the source
        of truth (replace an array there and the next forward uses it).
    buffers : dict
        ``"momentum.*"`` the momentum encoder's parameters (a copy of the encoder's at construction),
        ``"head.queue"``, ``"head.queue_labels"``, ``"head.queue_pointer"``, and the encoder's own
        buffers (``"encoder.*"``) if it has any.

    Notes
    -----
    The forward is pure: the queue and the momentum encoder change only in :meth:`update_memory`. The
    released code instead updates both inside its training forward, after stage 1 has read the queue,
    with the parameters from before the optimizer step; refmann updates them after the step (the
    momentum encoder then follows the encoder one step later than the code's, an O((1 − m)·lr) shift).

    References
    ----------
    Qiu, Liu, Yan, Zhang, Fu. Heterogenous Memory Augmented Neural Networks. arXiv:2310.10909, 2023.
    He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation Learning. CVPR 2020.
    """

    def __init__(
        self,
        encoder,
        *,
        num_classes,
        feature_dim,
        momentum=0.999,
        write_queue=True,
        pool=None,
        seed=0,
        dtype=np.float64,
        **memory_tokens_kwargs,
    ):
        if pool not in POOLS:
            raise ValueError(f"pool: expected one of {list(POOLS)}, got {pool!r}")
        self.pool = pool
        self.momentum = _checks.check_real(momentum, "momentum", 0.0, 1.0)
        self.write_queue = _checks.check_bool(write_queue, "write_queue")
        self.dtype = _checks.check_dtype(dtype)
        head = MemoryTokens(
            feature_dim=feature_dim, num_classes=num_classes, seed=seed, dtype=self.dtype, **memory_tokens_kwargs
        )
        self._set_children([("encoder", encoder), ("head", head)])
        self.encoder, self.head = encoder, head
        self.num_classes, self.feature_dim = head.num_classes, head.feature_dim
        self._buffers = {f"momentum.{key}": np.array(value, copy=True) for key, value in encoder.params.items()}
        self._sizes = {"encoder": type(encoder).__name__, "head": head, "momentum": self.momentum, "pool": pool}

    @property
    def batch_axis(self) -> int:
        """The axis of the inputs that counts samples: 0, or 1 for a pooled time-major (T, B, X) encoder."""
        return 0 if self.pool is None else 1

    def _encode(self, x, encoder_params):
        """``(f (B, d), encoder cache, T)``: the encoder's output, pooled over time if asked."""
        h, cache = self.encoder.forward(x, params=encoder_params)
        d, shape = self.feature_dim, np.shape(h)
        if self.pool is None:
            if len(shape) != 2 or shape[1] != d:
                raise ValueError(
                    f"encoder: expected outputs of shape (B, feature_dim = {d}) (or pass pool='last'/'mean' for "
                    f"a (T, B, d) sequence), got {shape}"
                )
            return h, cache, None
        if len(shape) != 3 or shape[2] != d:
            raise ValueError(
                f"encoder: expected outputs of shape (T, B, feature_dim = {d}) with pool={self.pool!r}, got {shape}"
            )
        f = h[-1] if self.pool == "last" else h.mean(axis=0)  # (B, d)
        return f, cache, shape[0]

    def forward(self, x, *, params=None, mode="transductive"):
        """Logits (B, num_classes) of a batch; ``mode`` as for :meth:`MemoryTokens.forward`."""
        p = self._params(params)
        mode = _check_mode(mode)
        f, c_enc, T = self._encode(x, unscope("encoder", p))  # (B, d)
        logits, c_head = self.head.forward(f, params=unscope("head", p), mode=mode)  # (B, C)
        return logits, MemoryTokensClassifierCache(c_enc, c_head, T)

    def backward(self, dlogits, cache):
        """``(dx, grads)``: dx as the encoder returns it (None for integer inputs), grads keyed like params."""
        df, g_head = self.head.backward(dlogits, cache.head)  # (B, d)
        if cache.steps is None:
            dh = df
        elif self.pool == "last":
            dh = np.zeros((cache.steps,) + df.shape, df.dtype)  # (T, B, d): only the last step was read
            dh[-1] = df
        else:
            dh = np.broadcast_to(df / cache.steps, (cache.steps,) + df.shape).copy()  # (T, B, d) the mean's VJP
        dx, g_enc = self.encoder.backward(dh, cache.encoder)
        grads = scope("encoder", g_enc) | scope("head", g_head)
        return dx, {key: grads[key] for key in self.params}

    def loss_and_grads(self, x, labels, *, mode="transductive", params=None):
        r"""The mean softmax cross-entropy over the batch and its gradient.

        .. math:: L = \frac1B \sum_i \Big[\log \sum_j e^{z_{ij}} - z_{i y_i}\Big]

        A batch-level loss: in the transductive mode each logit depends on every sample of the batch,
        so the loss of one sample is not a function of that sample alone.

        Parameters
        ----------
        x : ndarray
            The encoder's inputs.
        labels : int ndarray, shape (B,)
        mode : {"transductive", "per_sample"}, keyword-only
        params : dict, keyword-only, optional
            Default ``self.params``.

        Returns
        -------
        loss : float
        grads : dict[str, ndarray]
            Dense, keyed like ``params``.
        """
        logits, cache = self.forward(x, params=params, mode=mode)
        B = logits.shape[0]
        labels = _checks.as_index_array(labels, "labels", upper=self.num_classes, shape=(B,))
        loss, c_loss = ops.softmax_cross_entropy_forward(logits, targets=labels)
        (dlogits,) = ops.softmax_cross_entropy_backward(1.0 / B, c_loss)  # (B, C)
        _, grads = self.backward(dlogits, cache)
        return float(loss) / B, {key: densify(value) for key, value in grads.items()}

    def update_memory(self, x, labels, *, params=None):
        r"""After the optimizer step: move the momentum encoder, then enqueue its features with the labels.

        ``params`` (default ``self.params``) are the trained parameters θ, as the optimizer left them (a
        training loop that keeps its own dict passes it, like every forward's ``params=``).

        :math:`\tilde\theta \leftarrow m\,\tilde\theta + (1 - m)\,\theta`, then
        ``head.enqueue(f̃(x), labels)`` with :math:`\tilde f` the encoder run with :math:`\tilde\theta`
        (no gradient: the rows are constants). With ``write_queue=False`` nothing changes. Nothing
        changes either if an argument is refused. The encoder's own buffers (BatchNorm statistics)
        are left as they were by the momentum encoder's forward.
        """
        labels = _checks.as_index_array(labels, "labels", upper=self.num_classes)
        if labels.ndim != 1:
            raise ValueError(f"labels: expected a 1-d array (one class per sample), got shape {labels.shape}")
        if not self.write_queue:
            return
        m = self.momentum
        p = self._params(params)
        theta = unscope("encoder", p)
        moved = {key: m * self._buffers[f"momentum.{key}"] + (1.0 - m) * theta[key] for key in self.encoder.params}
        saved = {key: np.array(value, copy=True) for key, value in getattr(self.encoder, "buffers", {}).items()}
        try:
            f, _, _ = self._encode(x, moved)  # (B, d) the momentum encoder's features
        finally:
            if saved:
                self.encoder.load_buffers(saved)
        self.head.enqueue(f, labels, params=unscope("head", p))  # validates before writing
        self._buffers = {f"momentum.{key}": value for key, value in moved.items()}

    def predict(self, x, *, mode="transductive", batch_size=None):
        """Logits (N, num_classes) for all of x, evaluated in chunks of ``batch_size`` samples (None: one batch).

        In the transductive mode each chunk is one set for stage 2: the logits of a sample depend on
        the chunk it falls in. Pure: the queue and the momentum encoder are not touched.
        """
        mode = _check_mode(mode)
        if batch_size is None:
            return self.forward(x, mode=mode)[0]
        size = _checks.check_positive_int(batch_size, "batch_size")
        x = np.asarray(x)
        n = x.shape[self.batch_axis]
        chunks = []
        for start in range(0, n, size):
            part = x[start : start + size] if self.batch_axis == 0 else x[:, start : start + size]
            chunks.append(self.forward(part, mode=mode)[0])
        return np.concatenate(chunks, axis=0)
