"""The exponential curriculum of Rae et al. (2016), §4.3."""

from __future__ import annotations

import math
import numbers
from collections import deque

import numpy as np

from refmann.tasks._base import _check_int, _check_order, _check_rng


def _check_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a finite real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite real number, got {value}")
    return float(value)


class ExponentialCurriculum:
    r"""Double the maximum difficulty whenever the recent training loss is low.

    The curriculum keeps a current maximum level :math:`h`, starting at ``min_level``. Each
    minibatch's level is drawn uniformly from the integers ``min_level .. h`` (:meth:`draw`).
    After each minibatch, :meth:`update` records its average loss; once ``window`` losses have
    been recorded since the last change and their mean is below ``threshold``, :math:`h` doubles
    (capped at ``max_level``) and the record is cleared.

    Parameters
    ----------
    min_level : int
        Lowest level drawn, and the starting :math:`h` (>= 1; the paper's :math:`\mathcal{U}(0, h)`
        starts at 0, which is no sequence at all for these tasks).
    max_level : int
        Cap on :math:`h`; typically a task's ``level_range[1]``.
    threshold : float
        Loss below which (on average over the window) the task counts as learnt at this level.
    window : int
        Number of consecutive minibatch losses averaged ("a number of episodes").

    Notes
    -----
    Doubling rather than adding a constant keeps the total cost of the curriculum linear in the
    final sequence length T: a linear schedule could cost :math:`O(T^2)` when each level needs
    the same amount of training. The paper gives neither the threshold nor the window.

    References
    ----------
    Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
    arXiv:1610.09027, §4.3.

    Examples
    --------
    >>> import numpy as np
    >>> cur = ExponentialCurriculum(1, 64, threshold=0.1, window=2)
    >>> cur.update(0.05), cur.update(0.05), cur.current_max
    (False, True, 2)
    >>> 1 <= cur.draw(np.random.default_rng(0)) <= 2
    True
    """

    def __init__(self, min_level: int, max_level: int, threshold: float, window: int):
        self._min_level = _check_int(min_level, "min_level", minimum=1)
        self._max_level = _check_int(max_level, "max_level", minimum=1)
        _check_order(self._min_level, "min_level", self._max_level, "max_level")
        self._threshold = _check_real(threshold, "threshold")
        self._window = _check_int(window, "window", minimum=1)
        self._h = self._min_level
        self._losses: deque[float] = deque(maxlen=self._window)

    def __repr__(self) -> str:
        return (
            f"ExponentialCurriculum(min_level={self._min_level}, max_level={self._max_level}, "
            f"threshold={self._threshold}, window={self._window}; current_max={self._h})"
        )

    @property
    def min_level(self) -> int:
        return self._min_level

    @property
    def max_level(self) -> int:
        return self._max_level

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def window(self) -> int:
        return self._window

    @property
    def current_max(self) -> int:
        """:math:`h`, the highest level :meth:`draw` can currently return."""
        return self._h

    def draw(self, rng: np.random.Generator) -> int:
        """A level drawn uniformly from ``min_level .. current_max`` (inclusive)."""
        _check_rng(rng)
        return int(rng.integers(self._min_level, self._h + 1))

    def update(self, loss: float) -> bool:
        """Record one minibatch's average loss; return True if :math:`h` was doubled.

        Parameters
        ----------
        loss : float
            The minibatch's average training loss (finite).
        """
        loss = _check_real(loss, "loss")
        self._losses.append(loss)
        full = len(self._losses) == self._window
        if full and self._h < self._max_level and sum(self._losses) / self._window < self._threshold:
            self._h = min(2 * self._h, self._max_level)
            self._losses.clear()
            return True
        return False

    def state_dict(self) -> dict:
        """Everything needed to resume: the configuration, :math:`h` and the recorded losses.

        Values are ints and numpy arrays, so the dict can be saved with ``np.savez``
        (``allow_pickle=False``).
        """
        return {
            "min_level": self._min_level,
            "max_level": self._max_level,
            "threshold": np.float64(self._threshold),
            "window": self._window,
            "current_max": self._h,
            "losses": np.array(self._losses, dtype=np.float64),
        }

    def load_state_dict(self, state) -> None:
        """Restore :math:`h` and the recorded losses from :meth:`state_dict`'s output.

        The saved configuration must equal this curriculum's (``ValueError`` otherwise); values
        may be numpy 0-d arrays, as ``np.load`` returns them.
        """
        keys = ("min_level", "max_level", "threshold", "window", "current_max", "losses")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state: expected keys {list(keys)}, missing {missing}")
        for key, mine in (
            ("min_level", self._min_level),
            ("max_level", self._max_level),
            ("threshold", self._threshold),
            ("window", self._window),
        ):
            saved = np.asarray(state[key]).item()
            if saved != mine:
                raise ValueError(f"state['{key}']: expected {mine} (this curriculum's), got {saved}")
        h = np.asarray(state["current_max"]).item()
        if isinstance(h, bool) or not isinstance(h, numbers.Integral) or not (self._min_level <= h <= self._max_level):
            raise ValueError(
                f"state['current_max']: expected an integer in [{self._min_level}, {self._max_level}], got {h!r}"
            )
        losses = np.asarray(state["losses"], dtype=np.float64)
        if losses.ndim != 1 or losses.size > self._window or not np.all(np.isfinite(losses)):
            raise ValueError(
                f"state['losses']: expected at most {self._window} finite values in a 1-d array, "
                f"got shape {losses.shape}"
            )
        self._h = int(h)
        self._losses = deque(losses.tolist(), maxlen=self._window)
