"""Selective write-verify sweep (SWIM): accuracy under NVM device variation versus the fraction verified.

``write_verify_sweep`` converts a model for a macro (every layer on the NVM array by default), estimates
the curvature once, and for each selection method and fraction scores ``instances`` seeded chips, next to
the two baselines: no weight verified (``dev_var`` everywhere) and every weight verified (``write_var``
everywhere). ``csv_text`` and ``page_html`` turn the rows (points plus programming cost, added by the
caller from :mod:`dse.cost.programming`) into ``write_verify.csv`` and ``write_verify.html``.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dse.accuracy.convert import convert
from dse.accuracy.datasets import load_split
from dse.accuracy.layers import set_mode
from dse.accuracy.simulate import batches_of, calibrate, evaluate, sample_indices
from dse.accuracy.variation import (
    CURVATURE_METHODS,
    ESTIMATORS,
    METHODS,
    MonteCarloResult,
    monte_carlo_accuracy,
    select,
    sensitivity,
    uniform_masks,
    verified_count,
    weight_count,
)
from dse.errors import InputError
from dse.hardware import Accelerator, DeviceVariation, Macro, macro_of

DEFAULT_FRACTIONS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
DEFAULT_METHODS: tuple[str, ...] = ("sm", "magnitude", "random")
BASELINES = {"none": 0.0, "all": 1.0}
"""The baseline rows: no weight write-verified, every weight write-verified."""
CSV_COLUMNS: tuple[str, ...] = ("method", "fraction", "verified", "weights", "accuracy", "accuracy_std",
                                "program_energy_pJ", "program_time_s")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SweepPoint:
    """One (method, fraction): weights verified and accuracy over the chip instances."""

    method: str
    fraction: float
    verified: int
    weights: int
    accuracy: float
    accuracy_std: float
    per_instance: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_instance"] = list(self.per_instance)
        return d


@dataclass(frozen=True)
class WriteVerifySweep:
    """All points of a sweep (baselines first) and how they were measured."""

    points: tuple[SweepPoint, ...]
    weights: int
    float_accuracy: float
    quantized_accuracy: float
    variation: DeviceVariation
    settings: dict = field(default_factory=dict)

    def baseline(self, method: str) -> SweepPoint:
        return next(p for p in self.points if p.method == method)


def device_variation(hardware: Macro | Accelerator | str | Path, dev_var: float | None = None,
                     write_var: float | None = None) -> DeviceVariation:
    """The macro's device-variation figures (the schema defaults when it has none), with optional overrides."""
    variation = macro_of(hardware).accuracy.device_variation or DeviceVariation()
    changes = {k: v for k, v in (("dev_var", dev_var), ("write_var", write_var)) if v is not None}
    for key, value in changes.items():
        if value < 0:
            raise InputError(None, key, f"= {value}: must be >= 0")
    return replace(variation, **changes) if changes else variation


MATERIALISE_BYTES = 256 * 2**20
"""Test sets up to this size are held in memory across the chip instances; larger ones are re-read."""


@dataclass(frozen=True)
class _Batches:
    """Batches of a data set that can be iterated again and again (each pass re-reads the data)."""

    dataset: torch.utils.data.Dataset
    batch_size: int
    indices: Sequence[int] | None

    def __iter__(self):
        return iter(batches_of(self.dataset, self.batch_size, self.indices))


def _reusable_batches(dataset: torch.utils.data.Dataset, batch_size: int,
                      indices: Sequence[int] | None) -> Sequence[tuple[torch.Tensor, torch.Tensor]] | _Batches:
    """The test batches in memory when small (every instance re-reads them), else a re-iterable reader."""
    n = len(dataset) if indices is None else len(indices)
    sample_bytes = dataset[0][0].numel() * 4 if n else 0
    if n * sample_bytes <= MATERIALISE_BYTES:
        return list(batches_of(dataset, batch_size, indices))
    return _Batches(dataset, batch_size, indices)


def _check(fractions: Sequence[float], methods: Sequence[str], estimator: str, instances: int) -> None:
    for f in fractions:
        if not 0.0 <= f <= 1.0:
            raise InputError(None, "fractions", f"= {f}: each fraction must be between 0 and 1")
    for m in methods:
        if m not in METHODS:
            raise InputError(None, "methods", f"= {m!r}: expected one of {', '.join(METHODS)}")
    if estimator not in ESTIMATORS:
        raise InputError(None, "estimator", f"= {estimator!r}: expected one of {', '.join(ESTIMATORS)}")
    if instances < 1:
        raise InputError(None, "instances", f"= {instances}: must be at least 1")


def write_verify_sweep(model: nn.Module | str | Path, hardware: Macro | Accelerator | str | Path, *,
                       dataset: str = "digits", data_path: str | Path | None = None,
                       fractions: Sequence[float] = DEFAULT_FRACTIONS, methods: Sequence[str] = DEFAULT_METHODS,
                       instances: int = 20, seed: int = 0, dev_var: float | None = None,
                       write_var: float | None = None, digital: Sequence[str] = (),
                       overrides: Mapping[str, Mapping[str, object]] | None = None, samples: int | None = None,
                       sensitivity_samples: int | None = 2048, sensitivity_batch: int = 16,
                       estimator: str = "fisher", simulate: bool = False, per_channel: bool = False,
                       batch_size: int = 256, calibration_samples: int = 512, device: str = "cpu",
                       progress: Progress | None = None) -> WriteVerifySweep:
    """Accuracy (mean, std over ``instances`` seeded chips) per selection method and fraction verified.

    Runs the exact integer arithmetic with device variation (``simulate=True``: the bit-wise macro,
    ADC and its noise included). ``digital`` layers (none by default: all weights live in NVM) and
    ``overrides`` are as in :func:`~dse.accuracy.convert.convert`. The curvature comes from
    ``sensitivity_samples`` training images in batches of ``sensitivity_batch``; ``samples`` limits the
    test set to a seeded subset. Every point uses the same chip seeds (seed .. seed + instances - 1),
    so the points differ only by the selection.
    """
    _check(fractions, methods, estimator, instances)
    macro = macro_of(hardware)
    variation = device_variation(macro, dev_var, write_var)
    cim = convert(model, macro, overrides, digital=digital, per_channel=per_channel).to(device)
    weights = weight_count(cim)
    if weights == 0:
        raise InputError(None, "digital", "every compute layer is digital: no weights on the NVM array to vary")
    data_seed = seed if dataset == "digits" else 0
    test = load_split(dataset, "test", data_path, seed=data_seed)
    train = load_split(dataset, "train", data_path, seed=data_seed)
    test_idx = sample_indices(len(test), samples, seed)
    test_batches = _reusable_batches(test, batch_size, test_idx)
    set_mode(cim, "float")
    float_acc = evaluate(cim, test_batches, device)
    calibrate(cim, batches_of(train, batch_size, sample_indices(len(train), calibration_samples, seed)), device)
    set_mode(cim, "inference")
    quantized_acc = evaluate(cim, test_batches, device)
    set_mode(cim, "simulate" if simulate else "inference")

    scores = None
    if any(m in CURVATURE_METHODS for m in methods):
        sens_idx = sample_indices(len(train), sensitivity_samples, seed + 1)
        scores = sensitivity(cim, batches_of(train, sensitivity_batch, sens_idx), estimator=estimator, seed=seed,
                             device=device)

    interior = sorted({f for f in fractions if 0 < verified_count(weights, f) < weights})
    total = instances * (len(BASELINES) + len(methods) * len(interior))
    done = [0]

    def run(masks: Mapping[str, torch.Tensor]) -> MonteCarloResult:
        start = done[0]
        report = (lambda i, _n: progress(start + i, total)) if progress else None
        result = monte_carlo_accuracy(cim, test_batches, masks, variation, instances, seed, device, report)
        done[0] += instances
        return result

    baselines = {}
    for name, fraction in BASELINES.items():
        r = run(uniform_masks(cim, fraction == 1.0))
        baselines[name] = SweepPoint(name, fraction, weights if fraction else 0, weights, r.mean, r.std,
                                     r.per_instance)
    points = list(baselines.values())
    for method in methods:
        for fraction in sorted(set(fractions)):
            k = verified_count(weights, fraction)
            if k in (0, weights):
                base = baselines["none" if k == 0 else "all"]
                points.append(replace(base, method=method, fraction=fraction))
                continue
            masks = select(cim, scores, fraction, method, seed=seed)
            r = run(masks)
            points.append(SweepPoint(method, fraction, k, weights, r.mean, r.std, r.per_instance))
    settings = {"dataset": dataset, "instances": instances, "seed": seed, "digital": list(digital),
                "mode": "simulate" if simulate else "inference", "estimator": estimator,
                "sensitivity_samples": sensitivity_samples, "sensitivity_batch": sensitivity_batch,
                "samples": len(test) if test_idx is None else len(test_idx), "per_channel": per_channel,
                "calibration_samples": calibration_samples, "variation": asdict(variation)}
    return WriteVerifySweep(points=tuple(points), weights=weights, float_accuracy=float_acc,
                            quantized_accuracy=quantized_acc, variation=variation, settings=settings)


# ---------------------------------------------------------------------------------------------- outputs
def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV with :data:`CSV_COLUMNS` (other keys are left out)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def figure(rows: Sequence[Mapping[str, Any]], title: str = ""):
    """Plotly figure: accuracy (error bars: std over chips) versus fraction verified, and versus programming time.

    Each method is one line in both panels; the no-verify and all-verify baselines are dashed horizontal
    lines. Fraction 0 is the no-verify baseline, so the fraction axis is logarithmic over the rest when
    the fractions span a decade or more.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("accuracy vs fraction of weights write-verified",
                                        "accuracy vs write-verify programming time"))
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] not in BASELINES))
    positive = [r["fraction"] for r in rows if r["method"] in methods and r["fraction"] > 0]
    log_x = bool(positive) and max(positive) / min(positive) >= 10
    for i, method in enumerate(methods):
        pts = sorted((r for r in rows if r["method"] == method and (r["fraction"] > 0 or not log_x)),
                     key=lambda r: r["fraction"])
        hover = [f"{method}: {r['fraction']:.4g} verified ({r['verified']:,} of {r['weights']:,} weights)<br>"
                 f"accuracy {r['accuracy']:.2%} ± {r['accuracy_std']:.2%}<br>"
                 f"programming {r['program_energy_pJ'] * 1e-6:.4g} µJ, {r['program_time_s']:.4g} s" for r in pts]
        style = {"mode": "lines+markers", "line": {"color": COLOURS[i % len(COLOURS)]}, "hovertext": hover,
                 "hoverinfo": "text", "error_y": {"type": "data", "array": [r["accuracy_std"] for r in pts]}}
        y = [r["accuracy"] for r in pts]
        fig.add_trace(go.Scatter(x=[r["fraction"] for r in pts], y=y, name=method, legendgroup=method, **style),
                      row=1, col=1)
        timed = [r for r in pts if r["program_time_s"] > 0 or not log_x]
        fig.add_trace(go.Scatter(x=[r["program_time_s"] for r in timed], y=[r["accuracy"] for r in timed],
                                 name=method, legendgroup=method, showlegend=False,
                                 **{**style, "hovertext": [hover[pts.index(r)] for r in timed],
                                    "error_y": {"type": "data", "array": [r["accuracy_std"] for r in timed]}}),
                      row=1, col=2)
    for name, label, dash, where in (("none", "no write-verify", "dash", "bottom right"),
                                     ("all", "all write-verified", "dot", "top left")):
        base = next((r for r in rows if r["method"] == name), None)
        if base is None:
            continue
        line = {"y": base["accuracy"], "line_dash": dash, "line_color": "#555", "row": 1}
        fig.add_hline(**line, col=1, annotation_position=where,
                      annotation_text=f"{label}: {base['accuracy']:.2%} ± {base['accuracy_std']:.2%}")
        fig.add_hline(**line, col=2)
    x_type = "log" if log_x else "linear"
    times = [r["program_time_s"] for r in rows if r["program_time_s"] > 0]
    time_log = bool(times) and max(times) / min(times) >= 10
    fig.update_xaxes(title_text="fraction of weights write-verified", type=x_type, row=1, col=1)
    fig.update_xaxes(title_text="write-verify programming time (s; energy on hover)",
                     type="log" if time_log else "linear",
                     row=1, col=2)
    fig.update_yaxes(title_text="top-1 accuracy (mean ± std over chips)", tickformat=".0%", row=1, col=1)
    fig.update_layout(title={"text": title, "x": 0.5}, height=520, hovermode="closest",
                      legend={"title": {"text": "selection"}})
    return fig


def page_html(rows: Sequence[Mapping[str, Any]], title: str, notes: Sequence[str] = ()) -> str:
    """The whole write_verify.html page (plotly.js inlined, so it opens offline)."""
    body = figure(rows, title).to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;margin:20px;max-width:1300px} li{color:#333}</style></head><body>"
            + body + (f"<ul>{items}</ul>" if items else "") + "</body></html>\n")
