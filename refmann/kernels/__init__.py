"""Numba kernels, each a plain-Python loop function (``_*_loops``) compiled by :mod:`refmann._jit`.

Kernels take arrays and scalars, never objects; validation happens in the Python layer above.
"""

from .scatter import gather_rows_kernel, scatter_add_rows_kernel
from .topk import top_k_kernel

__all__ = ["gather_rows_kernel", "scatter_add_rows_kernel", "top_k_kernel"]
