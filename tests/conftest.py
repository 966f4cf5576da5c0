"""Shared test configuration: one set of hypothesis profiles, selected by HYPOTHESIS_PROFILE.

- ``dev`` (default locally): 20 examples.
- ``ci`` (default when CI is set): 25 examples, derandomized so CI is reproducible.
- ``thorough``: 500 examples, for a manual or nightly run.

``deadline=None`` lives here, not on tests: the first call of a kernel compiles it.
"""

import os

# refmann's matrices are small: extra BLAS threads only spin against the other xdist worker
# (see refmann/_threads.py). Set before numpy loads OpenBLAS; xdist workers inherit it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=20, **_common)
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# A silent overflow or 0/0 is a bug: numpy floating-point warnings fail the test
# (setup.cfg also turns every warning into an error).
np.seterr(all="raise", under="ignore")
