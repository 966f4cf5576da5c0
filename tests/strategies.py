"""The hypothesis strategies of the tests: they live in :mod:`refmann.testing` (public, for users too).

This module keeps the old import path (``from tests.strategies import f64``) working.
"""

from refmann.testing import *  # noqa: F403
from refmann.testing import (  # noqa: F401  (the names the tests import, spelled out)
    SMALL,
    away_from_zero,
    distinct_indices,
    f64,
    floats,
    gates,
    indices,
    memory_dims,
    separated_scores,
    simplex,
)
