"""refmann: memory-augmented neural networks in NumPy, every gradient derived by hand.

Layers (imports only point down)::

    cli            refmann train | gradcheck | demo
    train/         optimizers, trainer, curriculum
    ops/           pure differentiable primitives: <op>_forward / <op>_backward
    kernels/       Numba kernels, each with a plain-Python twin (see refmann._jit)
    gradcheck      finite-difference checks that also work on your own functions
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
