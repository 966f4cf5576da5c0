r"""Golden files: one model's inputs, parameters, logits, loss and every gradient in a plain ``.npz``.

A golden file lets another implementation (PyTorch, JAX, CUDA, ...) check itself against refmann
without importing refmann: load it with ``np.load(path, allow_pickle=False)``, copy the
parameters into your model, run it on ``inputs`` and compare your logits, loss and gradients with
the stored ones. The format (every key, shape and dtype, the ``meta`` fields, the layout of each
parameter) is documented in ``docs/golden.md``::

    paths = write_golden("all", out="golden", seed=0)     # lstm_seed0.npz, ntm_seed0.npz, ...
    golden = load_golden(paths[0])                        # {"meta": dict, "params": dict, ...}
    errors = check_golden(paths[0])                       # refmann against its own file: all 0.0

or from the shell: ``refmann golden --model sam --seed 0 --out golden``.

The loss is the models' own: sigmoid cross-entropy summed over time and outputs, counting the
entries where ``mask`` is non-zero, averaged over the batch, :math:`L = \frac1B \sum_{t,b,y} m\,
[\mathrm{softplus}(z) - t z]`. Everything is float64.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from . import __version__, _checks
from ._io import atomic_savez, load_npz
from .gradcheck import rel_error

#: Identifies the file type in ``meta["format"]``.
FORMAT = "refmann-golden"
#: Bumped whenever a key, shape or meaning changes; readers should check it.
FORMAT_VERSION = 1


def _model_names() -> tuple[str, ...]:
    """Models with golden files: every registered model, in registration order (``"all"``)."""
    from .models import MODELS

    return tuple(MODELS)


#: Models with golden files when refmann was imported, in the order ``"all"`` expands to (the model
#: registry's; a model registered later is found too).
MODEL_NAMES = _model_names()
#: The default sizes: small enough to read every number, large enough to exercise every code path
#: (two heads, K < N, a masked loss).
DEFAULT_SIZES = {
    "input_size": 4,
    "output_size": 3,
    "memory_size": 16,
    "word_size": 6,
    "num_heads": 2,
    "k": 3,
    "hidden_size": 10,
}
LOSS_CONVENTION = (
    "sigmoid cross-entropy from logits, L = (1/B) * sum over t, b, y of mask * (softplus(z) - "
    "target * z): summed over time and outputs, entries weighted by mask (0 ignores an entry), "
    "averaged over the batch B; grad/* are dL/dparam of this L"
)
#: Layout facts a port needs (also in docs/golden.md), copied into every file's meta.
CONVENTIONS = {
    "linear": "y = x @ weight + bias, weight stored (in, out)",
    "lstm": "controller.weight rows act on [x_t ; r_{t-1} ; h_{t-1}] (memory models) or [x_t ; h_{t-1}] (lstm), "
    "columns are the gates i, f, o, g in blocks of C; forget-gate bias initialised to 1; "
    "c_t = f*c_{t-1} + i*g, h_t = o*tanh(c_t); h_0 = c_0 = 0",
    "output": "logits_t = [h_t ; r_t flattened over heads] @ output.weight + output.bias (lstm: h_t only)",
    "cosine": "K(k, m) = k.m / (|k| |m| + 1e-6)",
    "dam_sam_heads": "heads.weight columns: per head h (blocks of 2W+3): q (W), a (W), alpha logit, gamma logit, "
    "beta logit; alpha, gamma = sigmoid, beta = 1 + softplus",
    "ntm_heads": "heads.weight columns: H read heads of W+S+3 (key W, beta = softplus, g = sigmoid, shift S=2R+1 "
    "softmax, gamma = 1 + softplus), then H write heads of W+S+3+2W (the same, then erase = sigmoid W, "
    "add = tanh W)",
    "memory0": "every batch element starts from memory0 (N, W); reads r_0 = 0; NTM weights start one-hot on slot 0; "
    "DAM/SAM read weights start at 0 (SAM's previous read slots are 0..K-1 with weight 0)",
    "trace": "trace/* are the discrete choices and access weights of each step t = 1..T, after the step",
}

_DATA_SEED_OFFSET = 7919  # inputs come from default_rng(seed + this), parameters from the model's default_rng(seed)
#: Trace fields stored as ``trace/<field>`` (T, ...) when a model's trace has them: the LRA slot per head
#: (DAM, SAM, SDNC), the rows each head read (SAM, SDNC: sorted), the slots the usage rule touched (SAM,
#: SDNC: −1 padded), the SDNC's forward and backward slots (each K sorted), the DNC's allocation order.
_TRACE_FIELDS = ("lra", "read_idx", "touched", "temporal_idx", "order")
_SHAPE_LETTERS = {"N": "memory_size", "W": "word_size", "H": "num_heads", "K": "k"}


def _expand_models(model) -> list[str]:
    if isinstance(model, str):
        names = [model]
    elif isinstance(model, Iterable) and not isinstance(model, (bytes, dict)):
        names = list(model)
    else:
        raise TypeError(f"model: expected a model name or a list of names, got {type(model).__name__}")
    if not names:
        raise ValueError(f"model: expected at least one of {_model_names()} or 'all', got none")
    out = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"model: expected names as str, got {type(name).__name__}")
        if name == "all":
            out.extend(_model_names())
        elif name in _model_names():
            out.append(name)
        else:
            raise ValueError(f"model: expected one of {_model_names()} or 'all', got {name!r}")
    return list(dict.fromkeys(out))  # keep order, drop repeats


def model_kwargs(name: str, *, seed: int = 0, **sizes) -> dict:
    """The constructor keyword arguments of a golden model (JSON-serialisable; ``dtype`` as a string).

    Memory models start from ``memory_init="random"`` (so that no two rows tie in a content
    lookup) and SAM uses the exact ``index="linear"`` (so its top-K choices are reproducible).
    """
    if name not in _model_names():
        raise ValueError(f"name: expected one of {_model_names()}, got {name!r}")
    unknown = sorted(set(sizes) - set(DEFAULT_SIZES))
    if unknown:
        raise TypeError(f"sizes: unexpected size(s) {unknown}; expected some of {sorted(DEFAULT_SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed: expected a non-negative int, got {seed!r}")
    from .models import MODELS

    spec = MODELS[name]
    merged = {**DEFAULT_SIZES, **sizes}
    kwargs = {key: _checks.check_positive_int(merged[key], key) for key in DEFAULT_SIZES if key in spec.fields()}
    kwargs.update(spec.golden)  # e.g. memory_init="random", SAM's exact index
    kwargs["seed"] = int(seed)
    kwargs["dtype"] = "float64"
    return kwargs


def build_model(name: str, kwargs: dict):
    """The refmann model ``name`` built from (stored) constructor kwargs; its params come from the seed."""
    from .models import MODELS

    if name not in _model_names():
        raise ValueError(f"name: expected one of {_model_names()}, got {name!r}")
    kwargs = dict(kwargs)
    kwargs["dtype"] = np.dtype(kwargs.get("dtype", "float64"))
    return MODELS[name].cls(**kwargs)


def golden_arrays(name: str, *, seed: int = 0, steps: int = 5, batch_size: int = 2, **sizes) -> dict:
    """Everything a golden file holds, as a dict of arrays (what :func:`write_golden` saves).

    Parameters
    ----------
    name : {"lstm", "ntm", "dam", "sam"}
    seed : int
        Seeds the parameters (``default_rng(seed)``, as the model's constructor) and the data
        (``default_rng(seed + 7919)``).
    steps, batch_size : int
        T and B.
    **sizes
        Overrides of :data:`DEFAULT_SIZES` (input_size, output_size, memory_size, word_size,
        num_heads, k, hidden_size).

    Returns
    -------
    dict[str, ndarray]
        Keys and shapes as documented in ``docs/golden.md``.
    """
    T = _checks.check_positive_int(steps, "steps")
    B = _checks.check_positive_int(batch_size, "batch_size")
    kwargs = model_kwargs(name, seed=seed, **sizes)
    model = build_model(name, kwargs)
    X, Y = kwargs["input_size"], kwargs["output_size"]
    rng = np.random.default_rng(int(seed) + _DATA_SEED_OFFSET)
    inputs = rng.standard_normal((T, B, X))  # (T, B, X)
    targets = rng.integers(0, 2, (T, B, Y)).astype(np.float64)  # (T, B, Y) bits
    mask = (rng.random((T, B, Y)) < 0.8).astype(np.float64)  # (T, B, Y) ~20% ignored
    logits = model.forward(inputs)  # (T, B, Y)
    loss, grads = model.loss_and_grads(inputs, targets, mask)
    arrays = {
        "inputs": inputs,
        "targets": targets,
        "mask": mask,
        "logits": logits,
        "loss": np.array(loss, dtype=np.float64),
    }
    trace_keys = []
    if model.has_memory:
        arrays["memory0"] = np.array(model.memory0)  # (N, W)
        access = model.access_weights(inputs)
        arrays["trace/read_weights"] = access["read"]  # (T, B, H, N)
        arrays["trace/write_weights"] = access["write"]  # (T, B, H, N)
        trace_keys += ["trace/read_weights", "trace/write_weights"]
        traces = model.unroll(inputs).traces  # a NamedTuple per step
        for field in _TRACE_FIELDS:  # the discrete decisions the model's trace names
            if traces[0] is not None and field in traces[0]._fields:
                arrays[f"trace/{field}"] = np.array([getattr(tr, field) for tr in traces], dtype=np.int64)
                trace_keys.append(f"trace/{field}")
    for key, value in model.params.items():
        arrays[f"param/{key}"] = np.array(value)
    for key, value in grads.items():
        arrays[f"grad/{key}"] = np.array(value)
    shapes = {"T": T, "B": B, "X": X, "Y": Y, "C": kwargs.get("hidden_size", kwargs.get("model_dim"))}
    for letter, key in _SHAPE_LETTERS.items():
        if key in kwargs:
            shapes[letter] = kwargs[key]
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": name,
        "model_class": type(model).__name__,
        "kwargs": kwargs,
        "seed": int(seed),
        "data_seed": int(seed) + _DATA_SEED_OFFSET,
        "dtype": "float64",
        "shapes": shapes,
        "param_names": list(model.params),
        "param_shapes": {key: list(value.shape) for key, value in model.params.items()},
        "trace_keys": trace_keys,
        "loss_convention": LOSS_CONVENTION,
        "conventions": CONVENTIONS,
        "refmann_version": __version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }
    arrays["meta"] = np.array(json.dumps(meta, indent=1, sort_keys=True))
    return arrays


def _check_out(out) -> Path:
    if not isinstance(out, (str, Path)):
        raise TypeError(f"out: expected a directory path (str or Path), got {type(out).__name__}")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out: expected a directory, but {str(path)!r} exists and is not one")
    return path


def write_golden(model="all", *, out, seed: int = 0, steps: int = 5, batch_size: int = 2, **sizes) -> list[Path]:
    """Write ``<out>/<model>_seed<seed>.npz`` for each model (atomically; existing files are replaced).

    Parameters
    ----------
    model : str or list of str
        ``"lstm"``, ``"ntm"``, ``"dam"``, ``"sam"``, or ``"all"``.
    out : str or Path
        A directory (created if missing).
    seed, steps, batch_size, **sizes
        As for :func:`golden_arrays`.

    Returns
    -------
    list of Path
        The files written, in model order.
    """
    names = _expand_models(model)
    directory = _check_out(out)
    for name in names:  # validate every argument (the constructors check sizes) before writing anything
        build_model(name, model_kwargs(name, seed=seed, **sizes))
    _checks.check_positive_int(steps, "steps")
    _checks.check_positive_int(batch_size, "batch_size")
    paths = []
    for name in names:
        arrays = golden_arrays(name, seed=seed, steps=steps, batch_size=batch_size, **sizes)
        paths.append(atomic_savez(directory / f"{name}_seed{int(seed)}.npz", **arrays))
    return paths


def load_golden(path) -> dict:
    """Read a golden file (never unpickling) into a nested dict.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`write_golden`.

    Returns
    -------
    golden : dict
        ``meta`` (dict, the decoded JSON), ``inputs``, ``targets``, ``mask``, ``logits`` (arrays),
        ``loss`` (float), ``params``, ``grads``, ``trace`` (dicts of arrays keyed by the name
        without its ``param/``, ``grad/`` or ``trace/`` prefix), ``memory0`` (array, or None for the LSTM).
    """
    arrays = load_npz(path)
    if "meta" not in arrays:
        raise ValueError(f"path: {str(path)!r} has no 'meta' entry; it is not a refmann golden file")
    meta = json.loads(str(arrays["meta"][()]))
    if meta.get("format") != FORMAT:
        raise ValueError(f"path: expected meta format {FORMAT!r}, got {meta.get('format')!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"path: expected format_version {FORMAT_VERSION}, got {meta.get('format_version')!r}")
    golden = {"meta": meta, "loss": float(arrays["loss"]), "memory0": arrays.get("memory0")}
    for key in ("inputs", "targets", "mask", "logits"):
        golden[key] = arrays[key]
    for group in ("param", "grad", "trace"):
        golden[f"{group}s" if group != "trace" else group] = {
            key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith(group + "/")
        }
    return golden


def model_from_golden(golden):
    """A refmann model built from a golden file's kwargs, with the file's parameters copied in.

    ``golden`` is a path or the dict of :func:`load_golden`. Raises ``ValueError`` if the rebuilt
    model's parameter names or shapes, or its initial memory, differ from the file's.
    """
    if not isinstance(golden, dict):
        golden = load_golden(golden)
    meta = golden["meta"]
    model = build_model(meta["model"], meta["kwargs"])
    if set(model.params) != set(golden["params"]):
        raise ValueError(
            f"golden: parameter names {sorted(golden['params'])} differ from the model's {sorted(model.params)}"
        )
    for key, value in golden["params"].items():
        if model.params[key].shape != value.shape:
            raise ValueError(
                f"golden: params[{key!r}] has shape {value.shape}, the model's is {model.params[key].shape}"
            )
        model.params[key][...] = value
    if golden["memory0"] is not None and not np.array_equal(model.memory0, golden["memory0"]):
        raise ValueError(
            "golden: the rebuilt model's initial memory differs from the file's memory0 "
            "(written by another refmann version?)"
        )
    return model


def max_rel_diff(actual, expected) -> float:
    """``max|a - e| / max(max|a|, max|e|)``: the error relative to the largest entry (0.0 if both are 0);
    :func:`refmann.gradcheck.rel_error` without its noise floor."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"actual: expected shape {e.shape}, got {a.shape}")
    return rel_error(a, e, floor=0.0)


def check_golden(golden) -> dict[str, float]:
    """Recompute a golden file with refmann and return :func:`max_rel_diff` per quantity.

    Keys: ``"logits"``, ``"loss"`` and ``"grad/<name>"`` for every parameter. In the process and
    on the machine that wrote the file every value is 0.0 (the computation is deterministic).
    """
    if not isinstance(golden, dict):
        golden = load_golden(golden)
    model = model_from_golden(golden)
    logits = model.forward(golden["inputs"])
    loss, grads = model.loss_and_grads(golden["inputs"], golden["targets"], golden["mask"])
    errors = {"logits": max_rel_diff(logits, golden["logits"]), "loss": max_rel_diff(loss, golden["loss"])}
    for key, value in golden["grads"].items():
        errors[f"grad/{key}"] = max_rel_diff(grads[key], value)
    return errors
