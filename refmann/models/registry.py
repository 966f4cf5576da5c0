"""The model registry: one entry per model, read by the CLI, golden files, benchmarks and the trainer.

Adding a model means writing its core, its ops, its config and class, and one :func:`register_model`
call beside the class; nothing else names models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .configs import ModelConfig


@dataclass(frozen=True)
class BenchVariant:
    """One line of a scaling benchmark (Figure 1 or Figure 7 of Rae et al. 2016): a model with some options fixed."""

    name: str  # e.g. "sam-lsh"
    label: str  # legend text, e.g. "SAM LSH"
    color: str  # matplotlib colour
    options: dict  # config fields fixed for this line, e.g. {"index": "lsh"}
    time_exponent: float  # exponent of N in the per-step time (extrapolation past the budget)
    memory_exponent: float  # exponent of N in the 100-step memory
    dense: bool = False  # addresses every slot (the table compares dense lines with the reference)
    figure: int = 1  # the figure of Rae et al. 2016 the line belongs to: 1 (NTM, DAM, SAM) or 7 (DNC, SDNC)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the tools need to know about one model."""

    name: str  # "sam": the CLI's --model, golden file names
    cls: type  # the model class (built as cls(**kwargs))
    label: str  # "SAM"
    color: str  # plots
    golden: dict = field(default_factory=dict)  # config fields fixed in golden files (beyond the sizes)
    bench: tuple[BenchVariant, ...] = ()  # Figure 1 and Figure 7 lines (none: not in the scaling benchmark)
    train: dict = field(default_factory=dict)  # config fields `refmann train/curves` set unless --set overrides

    @property
    def config(self) -> type[ModelConfig]:
        """The model's frozen config dataclass."""
        return self.cls.Config

    def fields(self) -> dict:
        """Config field name -> default (``dataclasses.MISSING`` for the required ones)."""
        return {f.name: f.default for f in fields(self.config)}

    @property
    def has_memory(self) -> bool:
        return "memory_size" in self.fields()


#: Every model by name, in registration order.
MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to :data:`MODELS`."""
    if spec.name in MODELS:
        raise ValueError(f"name: model {spec.name!r} is registered twice")
    MODELS[spec.name] = spec
    return spec


def make_model(name: str, **kwargs):
    """Build a registered model by name, e.g. ``make_model("sam", input_size=9, output_size=8, k=4)``."""
    if name not in MODELS:
        raise ValueError(f"name: expected one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name].cls(**kwargs)


#: The figures of Rae et al. 2016 the scaling benchmark draws.
BENCH_FIGURES = (1, 7)


def bench_variants(figure: int | None = 1) -> dict[str, tuple[ModelSpec, BenchVariant]]:
    """Every line of one figure (default Figure 1; ``None``: every figure) by name, with its model."""
    if figure is not None and (isinstance(figure, bool) or figure not in BENCH_FIGURES):
        raise ValueError(f"figure: expected one of {BENCH_FIGURES} or None, got {figure!r}")
    return {v.name: (spec, v) for spec in MODELS.values() for v in spec.bench if figure is None or v.figure == figure}
