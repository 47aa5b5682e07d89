"""Modelled versus reported figures of the calibration chips, as rows, CSV and an HTML report."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import asdict, dataclass

from dse.cost.peak import PeakPerformance, peak_performance
from dse.hardware.schema import Accelerator

METRICS = ("clock_ns", "area_mm2", "tops_per_w", "tops_per_mm2")
METRIC_LABELS = {"clock_ns": "clock period (ns)", "area_mm2": "area (mm²)", "tops_per_w": "TOP/s/W",
                 "tops_per_mm2": "TOP/s/mm²"}


@dataclass(frozen=True)
class ChipRow:
    chip: str
    metric: str
    reported: float
    modelled: float
    ratio: float  # modelled / reported


def modelled_figures(peak: PeakPerformance) -> dict[str, float]:
    return {"clock_ns": peak.clock_ns, "area_mm2": peak.area_total_mm2, "tops_per_w": peak.tops_per_w,
            "tops_per_mm2": peak.tops_per_mm2}


def chip_rows(acc: Accelerator, *, zigzag_compat: bool = False) -> list[ChipRow]:
    """One row per metric the chip reports (clock, area, TOP/s/W, TOP/s/mm^2), modelled in the measurement's mode."""
    if acc.reported is None:
        return []
    peak = peak_performance(*acc.measured(), zigzag_compat=zigzag_compat)
    modelled = modelled_figures(peak)
    rows = []
    for metric in METRICS:
        reported = getattr(acc.reported, metric)
        if reported:
            rows.append(ChipRow(acc.name, metric, reported, modelled[metric], modelled[metric] / reported))
    return rows


def conditions_text(acc: Accelerator) -> str:
    """The reported measurement's macro settings, e.g. 'weight_bits 4, input_bits 4, columns 16' ('' if none)."""
    cond = acc.reported.conditions if acc.reported is not None else None
    if cond is None:
        return ""
    return ", ".join(f"{k} {v:g}" for k, v in asdict(cond).items() if v is not None)


def rows_to_csv(rows: list[ChipRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(ChipRow.__dataclass_fields__))
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buf.getvalue()


def report_html(chips: list[Accelerator], rows: list[ChipRow], *, zigzag_compat: bool = False) -> str:
    """Plotly report: per chip, modelled bars stacked by component beside the reported value."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    peaks = {acc.name: peak_performance(*acc.measured(), zigzag_compat=zigzag_compat) for acc in chips}
    names = [acc.name for acc in chips]
    panels = [
        ("clock period (ns)", "clock_ns", lambda p: p.clock.path_ns if not p.clock.pipelined else
         {"slowest stage": p.clock_ns}),
        ("area (mm²)", "area_mm2", lambda p: p.area_mm2),
        ("energy per MAC (fJ)", "tops_per_w", lambda p: {k: v * 1e3 / p.macs_per_cycle
                                                         for k, v in p.energy_per_cycle_pJ.items()}),
    ]
    titles = [f"{title}, relative to the reported value" for title, _, _ in panels]
    fig = make_subplots(rows=len(panels), cols=1, subplot_titles=titles, vertical_spacing=0.08)
    palette = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC"]
    colours: dict[str, str] = {}
    reported = {(r.chip, r.metric): r.reported for r in rows}
    for i, (_, metric, parts) in enumerate(panels, start=1):
        # each chip's bars are divided by its reported figure, so chips 20x apart share one axis
        scale = []
        for name in names:
            value = reported.get((name, metric))
            scale.append((2e3 / value if metric == "tops_per_w" else value) if value else None)
        x = [names, ["model"] * len(names)]
        components: dict[str, list[float]] = {}
        for n, name in enumerate(names):
            for comp, value in parts(peaks[name]).items():
                components.setdefault(comp, [0.0] * len(names))[n] = value / scale[n] if scale[n] else 0.0
        for comp, values in components.items():
            if not any(values):
                continue
            colour = colours.setdefault(comp, palette[len(colours) % len(palette)])
            fig.add_trace(go.Bar(x=x, y=values, name=comp, marker_color=colour, legendgroup=comp,
                                 showlegend=comp not in {t.name for t in fig.data}), row=i, col=1)
        fig.add_trace(go.Bar(x=[names, ["reported"] * len(names)], y=[1.0 if s else None for s in scale],
                             name="reported", marker_color="#333333", legendgroup="reported", showlegend=i == 1),
                      row=i, col=1)
        for bound in (0.8, 1.2):
            fig.add_hline(y=bound, line_dash="dot", line_color="#999999", row=i, col=1)
    fig.update_layout(barmode="stack", height=1100, title="cim-dse cost model vs. the 7 calibration chips"
                      + (" (zigzag_compat)" if zigzag_compat else ""), template="plotly_white")
    table = "".join(
        f"<tr><td>{r.chip}</td><td>{METRIC_LABELS[r.metric]}</td><td>{r.reported:.4g}</td><td>{r.modelled:.4g}</td>"
        f"<td style='color:{'#2a7' if 0.8 <= r.ratio <= 1.2 else '#c33'}'>{r.ratio:.2f}</td></tr>"
        for r in rows
    )
    body = fig.to_html(full_html=False, include_plotlyjs=True)
    missing = {r.chip for r in rows if r.metric != "tops_per_mm2" and not 0.8 <= r.ratio <= 1.2}
    reasons = "".join(f"<li><b>{acc.name}</b>: {html.escape(acc.reported.notes)}</li>"
                      for acc in chips if acc.name in missing and acc.reported is not None)
    modes = "".join(f"<li><b>{acc.name}</b>: {html.escape(conditions_text(acc))}</li>"
                    for acc in chips if conditions_text(acc))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>cim-dse chip validation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}</style></head><body>"
        "<h1>Cost model vs. reported chip figures</h1>"
        "<p>Ratio = modelled / reported; green within ±20%. Energy is shown per MAC (2000 / TOP/s/W).</p>"
        f"<table><tr><th>chip</th><th>metric</th><th>reported</th><th>modelled</th><th>ratio</th></tr>{table}</table>"
        + (f"<h2>Chips modelled in the mode of their measurement</h2><ul>{modes}</ul>" if modes else "")
        + (f"<h2>Chips outside ±20%, and why</h2><ul>{reasons}</ul>" if reasons else "")
        + f"{body}</body></html>"
    )
