"""Budgets of ``refmann bench scaling``: predict a point's cost, skip it if too dear, extrapolate its values.

Before each point its cost is predicted from the model's last measured points (pure functions of the
rows measured so far and the :class:`~refmann.bench.scaling.ScalingConfig`):

- the step time follows each model's time exponent (in the model table of :mod:`refmann.bench.scaling`,
  read from the registry): linear in N for the dense models of Figure 1 (NTM, DAM) and for the
  linear-index lines (SAM, SDNC: they scan N per query), quadratic for the DNC (N × N links), flat
  for the LSH lines;
- the process's peak RSS is linear in N for every model (the memory, its gradient and the index are
  O(N) at set-up; the dense models also cache a (B, N, W) memory per step), quadratic for the DNC.

A point whose prediction passes ``time_budget`` (seconds for the measured runs of the point) or
``memory_budget`` (GiB of peak RSS) is not run: :func:`skipped_row` records it with the reason and the
extrapolated values, which the plots draw dotted and the table marks "~". The caller (``run_scaling``)
then skips larger N for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ._proc import GIB, MIB

if TYPE_CHECKING:
    from .scaling import ScalingConfig


def _spec(model: str):
    # The per-model table lives in scaling.py, which imports this module: hence the late import.
    from .scaling import _model_spec

    return _model_spec(model)


class Prediction(NamedTuple):
    seconds_per_step: float | None  # at the point's batch; None without a measured point to go from
    point_seconds: float | None  # the point's measured runs (warm-up + repeats, or the memory calls)
    peak_gib: float  # peak RSS of the point's process
    reason: str  # why the point is skipped; "" to run it


def prior_peak_gib(model: str, kind: str, N: int, config: ScalingConfig) -> float:
    """Peak RSS before anything was measured: 0.25 GiB of Python and libraries, plus, for the
    dense models, a (B, N, W) memory cached per step (×4 for the intermediates of the heads), or,
    for SAM, the memory, its index and the row table, ≈ 3 (B, N, W) arrays; a model whose memory
    grows as N² (the DNC) also caches a (B, N, N) link matrix per step."""
    T, B = (config.steps, config.batch_size) if kind == "time" else (config.memory_steps, config.memory_batch_size)
    one = B * N * config.word_size * config.itemsize
    spec = _spec(model)
    per_model = 4 * (T + 1) * one if spec.dense else 3 * one
    if spec.memory_exponent >= 2:
        per_model += (T + 1) * B * N * N * config.itemsize
    return 0.25 + per_model / GIB


def _growth(exponent: float) -> str:
    """How a value is carried to larger N, in words."""
    return {0: "flat", 1: "linear in N", 2: "quadratic in N"}.get(exponent, f"as N^{exponent:g}")


def extrapolate(history, N: int, key: str, exponent: float):
    """``history[-1][key]`` carried to N, or None if there is nothing to carry.

    ``history`` holds the measured rows of one model and kind, in increasing N. With ``exponent`` 0
    the value is flat. Otherwise it is affine in N^exponent (linear in N for exponent 1): the line
    through the last two measured points (slope clamped at >= 0, so the value never falls), or, from
    a single point, proportional to N^exponent (which over-estimates when a fixed cost dominates that
    point: conservative).
    """
    pts = [(r["N"], r[key]) for r in history if r.get(key) is not None]
    if not pts:
        return None
    n1, v1 = pts[-1]
    if exponent == 0 or N == n1:
        return v1
    if len(pts) >= 2:
        n0, v0 = pts[-2]
        if exponent == 1:
            return v1 + max(0.0, (v1 - v0) / (n1 - n0)) * (N - n1)
        x0, x1, x = (float(n) ** exponent for n in (n0, n1, N))
        return v1 + max(0.0, (v1 - v0) / (x1 - x0)) * (x - x1)
    return v1 * (N / n1) ** exponent


def predict_point(model: str, kind: str, N: int, history, config: ScalingConfig) -> Prediction:
    """Predict a point's cost from the model's measured points of the same kind, and decide whether to run it.

    Parameters
    ----------
    model : str
    kind : {"time", "memory"}
    N : int
    history : list of dict
        The measured rows of this model and kind so far, in increasing N (empty: nothing measured).
    config : ScalingConfig

    The step time follows :func:`extrapolate` with the model's ``TIME_EXPONENT`` (linear in N for the dense
    models, flat for SAM-LSH, quadratic for the DNC); the process's peak RSS above its base (Python and
    the libraries, measured before the model is built) is linear in N for every model, quadratic for a
    model whose memory exponent is 2 (the DNC). Without a measured point the RSS comes from
    :func:`prior_peak_gib` and the time is not predicted.
    """
    history = list(history or [])
    exponent = _spec(model).time_exponent
    rss_exponent = max(1.0, _spec(model).memory_exponent)
    if not history:
        peak = prior_peak_gib(model, kind, N, config)
        sps = pts = None
        source = "the a-priori estimate"
    else:
        last = history[-1]
        sps = extrapolate(history, N, "seconds_per_step", exponent)
        if kind == "time":
            pts = sps * config.steps * (1 + config.repeats) * config.trials
        else:
            pts = extrapolate(history, N, "measured_seconds", exponent)
        rises = [
            {"N": r["N"], "rise": max(0.0, (r["process_peak_mib"] or 0.0) - (r["base_rss_mib"] or 0.0))}
            for r in history
        ]
        peak = ((last["base_rss_mib"] or 0.0) + extrapolate(rises, N, "rise", rss_exponent)) * MIB / GIB
        source = f"N = {last['N']:,}" if len(history) == 1 else f"N = {history[-2]['N']:,} and {last['N']:,}"
    reason = ""
    if peak > config.memory_budget:
        reason = (
            f"memory budget: predicted {peak:.3g} GiB > budget {config.memory_budget:g} GiB "
            f"({_growth(rss_exponent)} from {source})"
        )
    elif pts is not None and pts > config.time_budget:
        reason = (
            f"time budget: predicted {sps:.3g} s/step, {pts:.3g} s for the point > budget "
            f"{config.time_budget:g} s ({_growth(exponent)} from {source})"
        )
    return Prediction(sps, pts, peak, reason)


def skipped_row(
    model: str, kind: str, N: int, history, prediction: Prediction, reason: str, config: ScalingConfig
) -> dict:
    """The row of a point that was not run, with the extrapolated values the plots draw dotted."""
    memory = kind == "memory"
    exponent = _spec(model).memory_exponent
    return {
        "kind": kind,
        "model": model,
        "N": N,
        "batch": config.memory_batch_size if memory else config.batch_size,
        "steps": config.memory_steps if memory else config.steps,
        "repeats": 1 if memory else config.repeats,
        "seconds_per_step": None,
        "setup_seconds": None,
        "measured_seconds": None,
        "tracemalloc_peak_mib": extrapolate(history, N, "tracemalloc_peak_mib", exponent) if memory else None,
        "rss_peak_mib": extrapolate(history, N, "rss_peak_mib", exponent) if memory else None,
        "rss_method": "",
        "process_peak_mib": None,
        "base_rss_mib": None,
        "skipped": reason,
        "predicted_seconds_per_step": prediction.seconds_per_step,
        "predicted_peak_gib": prediction.peak_gib,
        "dtype": config.dtype,
    }
