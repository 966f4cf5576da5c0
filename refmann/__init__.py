"""refmann: memory-augmented neural networks in NumPy, every gradient derived by hand.

Floors (imports only point down; ``docs/api.md`` documents each)::

    cli                  refmann demo | train | curves | gradcheck | golden | bench | info
    bench/ train/ viz    benchmarks; trainer, optimizers (dense and row-sparse), curves; plots
    tasks/               copy, repeat copy, recall, priority sort, curriculum; each owns its loss and metric
    models/              LSTM, NTM, DAM, SAM on one BPTT engine; configs; the model registry;
                         a feed-forward engine for layer stacks
    layers/              feed-forward components with parameters (linear, norms, attention, MLP, ...)
    cores/               one time step of each recurrent model over the Core protocol; the
                         controller -> interface -> output sandwich, written once
    memory/              non-differentiable state: usage ring, ANN indexes, the sparse memory and its journal
    grads                the gradient sink every backward adds into
    ops/                 pure differentiable primitives: <op>_forward / <op>_backward, one registry
    kernels/             Numba kernels, each with a plain-Python twin (numba is imported only in refmann._jit)
    gradcheck golden testing   tools for users: finite differences, golden files, test strategies
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
