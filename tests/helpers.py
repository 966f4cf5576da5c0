"""The op assertions of the tests: they live in :mod:`refmann.testing` (public, for users too).

This module keeps the old import path (``from tests.helpers import assert_pure``) working.
"""

from refmann.testing import *  # noqa: F403
from refmann.testing import (  # noqa: F401  (the names the tests import, spelled out)
    _grads_as_arrays,
    assert_gradients_match,
    assert_linear_in_dout,
    assert_pure,
)
from refmann.testing import resolve_op as pair  # noqa: F401  (the old name of resolve_op)
