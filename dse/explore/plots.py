"""Pareto plots of a run: ``pareto.html`` (plotly, self-contained) and ``pareto.png`` (matplotlib).

The HTML page holds a 2-D scatter of two objectives (a menu switches the pair; the first two
objectives first) with the front over all objectives highlighted, the 2-D front of the shown pair
drawn as a line and every parameter on hover; a 3-D view of the first three objectives; parallel
coordinates over the objectives and the numeric parameters; and the reference chips as labelled
markers wherever their results cover both axes. The PNG (on request: matplotlib takes seconds) shows
every pair of objectives, for a README. ``replot`` remakes them from a run folder (``cim-dse plot RUN_DIR``).
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dse.atomic import write_atomic
from dse.errors import InputError, display_path
from dse.explore.objectives import OBJECTIVES
from dse.explore.pareto import non_dominated
from dse.explore.paths import ACCELERATOR
from dse.explore.results import mark_front, read_csv

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
SYMBOLS_3D = ("circle", "square", "diamond", "cross", "x", "circle-open", "square-open", "diamond-open")


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v or abs(v) == math.inf:
        return None
    return float(v)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None or v == "" else str(v)


def _log_axis(values: Sequence[float | None]) -> bool:
    xs = [v for v in values if v is not None]
    return bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20


def _hover(row: dict[str, Any], params: Sequence[str], objectives: Sequence[str]) -> str:
    lines = [f"<b>{html.escape(str(row.get('reference') or row.get('id')))}</b> ({row.get('status')}"
             f"{', on the front' if row.get('on_front') else ''})"]
    lines += [f"{html.escape(p)} = {_fmt(row.get(p))}" for p in params if row.get(p) not in (None, "")]
    lines += [f"{OBJECTIVES[o].label}: {_fmt(row.get(OBJECTIVES[o].column))}" for o in objectives]
    if row.get("violated"):
        lines.append(f"violates {html.escape(str(row['violated']))}")
    return "<br>".join(lines)


def _groups(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r.get(ACCELERATOR)) for r in rows))


def _front_2d(rows: list[dict[str, Any]], a: str, b: str) -> tuple[list[float], list[float]]:
    """The ok points no other ok point dominates in (a, b), sorted along a: the 2-D front line."""
    oa, ob = OBJECTIVES[a], OBJECTIVES[b]
    pts = [(_num(r.get(oa.column)), _num(r.get(ob.column))) for r in rows if r["status"] == "ok"]
    pts = [(x, y) for x, y in pts if x is not None and y is not None]
    if not pts:
        return [], []
    flags = non_dominated(pts, [oa.direction, ob.direction])
    front = sorted({p for p, f in zip(pts, flags, strict=True) if f})
    return [p[0] for p in front], [p[1] for p in front]


def scatter_2d(rows, refs, objectives, params):
    import plotly.graph_objects as go

    pairs = list(itertools.combinations(objectives, 2))
    groups = _groups(rows)
    fig = go.Figure()
    # trace builders return (x, y) for a pair; the menu swaps the data of every trace
    builders = []

    def add(name, subset, **style):
        fig.add_trace(go.Scatter(name=name, mode=style.pop("mode", "markers"), hoverinfo="text",
                                 hovertext=[_hover(r, params, objectives) for r in subset], **style))
        builders.append(lambda a, b, subset=subset: ([_num(r.get(OBJECTIVES[a].column)) for r in subset],
                                                     [_num(r.get(OBJECTIVES[b].column)) for r in subset]))

    for i, g in enumerate(groups):
        colour = COLOURS[i % len(COLOURS)]
        mine = [r for r in rows if str(r.get(ACCELERATOR)) == g]
        add(f"{g}: dominated", [r for r in mine if r["status"] == "ok" and not r["on_front"]],
            marker={"color": colour, "size": 6, "opacity": 0.35})
        add(f"{g}: Pareto front", [r for r in mine if r["on_front"]],
            marker={"color": colour, "size": 10, "line": {"color": "black", "width": 1}})
    infeasible = [r for r in rows if r["status"] == "infeasible"]
    if infeasible:
        add("infeasible (misses a constraint)", infeasible,
            marker={"color": "#999999", "symbol": "x-thin", "size": 7, "line": {"width": 1, "color": "#999999"}})
    fig.add_trace(go.Scatter(name="2-D front of the shown pair", mode="lines", hoverinfo="skip",
                             line={"color": "black", "width": 1, "dash": "dot", "shape": "hv"}))
    builders.append(lambda a, b: _front_2d(rows, a, b))
    plotted = [r for r in refs if r.get("status") in ("ok", "infeasible")]
    if plotted:
        fig.add_trace(go.Scatter(name="reference chips", mode="markers+text", text=[r["reference"] for r in plotted],
                                 textposition="top center", hoverinfo="text",
                                 hovertext=[_hover(r, [], objectives) for r in plotted],
                                 marker={"symbol": "diamond", "size": 11, "color": "white",
                                         "line": {"color": "black", "width": 2}}))
        builders.append(lambda a, b: ([_num(r.get(OBJECTIVES[a].column)) for r in plotted],
                                      [_num(r.get(OBJECTIVES[b].column)) for r in plotted]))

    def layout_for(a, b):
        xs = [_num(r.get(OBJECTIVES[a].column)) for r in [*rows, *plotted]]
        ys = [_num(r.get(OBJECTIVES[b].column)) for r in [*rows, *plotted]]
        return {"xaxis.title.text": _axis_title(a), "yaxis.title.text": _axis_title(b),
                "xaxis.type": "log" if _log_axis(xs) else "linear", "yaxis.type": "log" if _log_axis(ys) else "linear"}

    def data_for(a, b):
        data = [build(a, b) for build in builders]
        return {"x": [d[0] for d in data], "y": [d[1] for d in data]}

    a, b = pairs[0]
    first = data_for(a, b)
    for trace, x, y in zip(fig.data, first["x"], first["y"], strict=True):
        trace.x, trace.y = x, y
    lay = layout_for(a, b)
    fig.update_xaxes(title_text=lay["xaxis.title.text"], type=lay["xaxis.type"])
    fig.update_yaxes(title_text=lay["yaxis.title.text"], type=lay["yaxis.type"])
    if len(pairs) > 1:
        buttons = [{"label": f"{OBJECTIVES[a].name} vs {OBJECTIVES[b].name}", "method": "update",
                    "args": [data_for(a, b), layout_for(a, b)]} for a, b in pairs]
        fig.update_layout(updatemenus=[{"buttons": buttons, "x": 0, "xanchor": "left", "y": 1.13, "yanchor": "top",
                                        "direction": "down", "showactive": True}])
    fig.update_layout(height=620, margin={"t": 70}, legend={"itemsizing": "constant"},
                      title={"text": "objectives, two at a time (menu: which pair)", "x": 0.5})
    return fig


def _axis_title(objective: str) -> str:
    o = OBJECTIVES[objective]
    return f"{o.label}, {'lower' if o.direction == 'min' else 'higher'} is better"


def scatter_3d(rows, refs, objectives, params):
    import plotly.graph_objects as go

    a, b, c = objectives[:3]
    cols = [OBJECTIVES[o].column for o in (a, b, c)]
    fig = go.Figure()
    for i, g in enumerate(_groups(rows)):
        for on_front in (False, True):
            subset = [r for r in rows if str(r.get(ACCELERATOR)) == g and r["status"] == "ok"
                      and bool(r["on_front"]) == on_front]
            fig.add_trace(go.Scatter3d(
                name=f"{g}: {'Pareto front' if on_front else 'dominated'}", mode="markers",
                x=[_num(r.get(cols[0])) for r in subset], y=[_num(r.get(cols[1])) for r in subset],
                z=[_num(r.get(cols[2])) for r in subset], hoverinfo="text",
                hovertext=[_hover(r, params, objectives) for r in subset],
                marker={"color": COLOURS[i % len(COLOURS)], "size": 5 if on_front else 3,
                        "opacity": 1.0 if on_front else 0.3, "symbol": SYMBOLS_3D[0]}))
    plotted = [r for r in refs if r.get("status") in ("ok", "infeasible")
               and all(_num(r.get(c_)) is not None for c_ in cols)]
    if plotted:
        fig.add_trace(go.Scatter3d(name="reference chips", mode="markers+text", text=[r["reference"] for r in plotted],
                                   x=[r[cols[0]] for r in plotted], y=[r[cols[1]] for r in plotted],
                                   z=[r[cols[2]] for r in plotted], hoverinfo="text",
                                   hovertext=[_hover(r, [], objectives) for r in plotted],
                                   marker={"symbol": "diamond", "size": 5, "color": "black"}))
    axes = {}
    for name, col, o in zip(("xaxis", "yaxis", "zaxis"), cols, (a, b, c), strict=True):
        axes[name] = {"title": {"text": OBJECTIVES[o].label},
                      "type": "log" if _log_axis([_num(r.get(col)) for r in [*rows, *plotted]]) else "linear"}
    fig.update_layout(scene=axes, height=640, title={"text": "the first three objectives in 3-D", "x": 0.5},
                      margin={"l": 0, "r": 0, "b": 0, "t": 50})
    return fig


def parallel(rows, objectives, params):
    import plotly.graph_objects as go

    ok = [r for r in rows if r["status"] == "ok"]
    dims = []
    for p in params:
        values = [r.get(p) for r in ok]
        present = [v for v in values if v not in (None, "")]
        if len(set(map(str, present))) < 2 and p != ACCELERATOR:
            continue
        if len(present) == len(values) and all(_num(v) is not None for v in present):
            dims.append({"label": p, "values": [_num(v) for v in values]})
        else:  # text, or a parameter some designs lack (shown as "-", e.g. ADC bits of a digital macro)
            numeric = all(_num(v) is not None for v in present)
            labels = sorted({str(v) for v in present}, key=lambda t: float(t) if numeric else t)
            labels = (["-"] if len(present) < len(values) else []) + labels
            codes = [labels.index("-" if v in (None, "") else str(v)) for v in values]
            dims.append({"label": p, "values": codes, "tickvals": list(range(len(labels))), "ticktext": labels})
    for o in objectives:
        obj = OBJECTIVES[o]
        values = [_num(r.get(obj.column)) for r in ok]
        arrow = "↓" if obj.direction == "min" else "↑"
        if _log_axis(values):
            dims.append({"label": f"log10 {obj.label} {arrow}", "values": [math.log10(v) for v in values]})
        else:
            dims.append({"label": f"{obj.label} {arrow}", "values": values})
    line = {"color": [1 if r["on_front"] else 0 for r in ok], "colorscale": [[0, "#c7c7c7"], [1, "#1f77b4"]],
            "cmin": 0, "cmax": 1}
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(height=520, margin={"l": 80, "r": 80, "t": 90},
                      title={"text": "parallel coordinates of the ok points (blue: on the Pareto front; drag along "
                                     "an axis to filter)", "x": 0.5})
    return fig


def page_html(rows, refs, objectives, params, notes, title) -> str:
    """The whole pareto.html page (plotly.js inlined once, so it opens offline)."""
    figs = [scatter_2d(rows, refs, objectives, params)]
    if len(objectives) >= 3:
        figs.append(scatter_3d(rows, refs, objectives, params))
    figs.append(parallel(rows, objectives, params))
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
             for i, f in enumerate(figs)]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "infeasible", "failed", "pending")}
    front = sum(1 for r in rows if r["on_front"])
    dirs = ", ".join(f"{o} ({'min' if OBJECTIVES[o].direction == 'min' else 'max'})" for o in objectives)
    summary = (f"{len(rows)} design points: {counts['ok']} ok, {counts['infeasible']} infeasible, "
               f"{counts['failed']} failed{', ' + str(counts['pending']) + ' pending' if counts['pending'] else ''}; "
               f"{front} on the Pareto front over {dirs}.")
    guide = ("A point is on the front when no other ok point is at least as good in every objective and better in "
             "one. Large outlined markers are on the front over all objectives; faint ones are dominated; the dotted "
             "line is the front of the two objectives shown. Hover a point for its parameters. Diamonds are the "
             "calibrated chips on the same workload.")
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;margin:20px;max-width:1300px} p,li{color:#333}</style></head><body>"
            f"<h2>{html.escape(title)}</h2><p>{html.escape(summary)}</p><p>{html.escape(guide)}</p>"
            + "".join(parts) + (f"<h3>Notes</h3><ul>{note_items}</ul>" if notes else "") + "</body></html>\n")


def png(path: Path, rows, refs, objectives, title) -> Path:
    """Every pair of objectives as a panel (front highlighted, chips labelled), for a README."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(itertools.combinations(objectives, 2))
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.3 * nrows), squeeze=False)
    groups = _groups(rows)
    for ax, (a, b) in zip(axes.flat, pairs, strict=False):
        ca, cb = OBJECTIVES[a].column, OBJECTIVES[b].column
        for i, g in enumerate(groups):
            colour = COLOURS[i % len(COLOURS)]
            mine = [r for r in rows if str(r.get(ACCELERATOR)) == g and r["status"] == "ok"]
            dom = [r for r in mine if not r["on_front"]]
            top = [r for r in mine if r["on_front"]]
            ax.scatter([r[ca] for r in dom], [r[cb] for r in dom], s=12, color=colour, alpha=0.3, linewidths=0)
            ax.scatter([r[ca] for r in top], [r[cb] for r in top], s=34, color=colour, edgecolors="black",
                       linewidths=0.6, label=f"{g} (front)")
        infeasible = [r for r in rows if r["status"] == "infeasible" and _num(r.get(ca)) is not None
                      and _num(r.get(cb)) is not None]
        if infeasible:
            ax.scatter([r[ca] for r in infeasible], [r[cb] for r in infeasible], s=14, marker="x", color="#999999",
                       linewidths=0.8, label="infeasible")
        fx, fy = _front_2d(rows, a, b)
        if fx:
            ax.step(fx, fy, where="post", color="black", linewidth=0.8, linestyle=":")
        for r in refs:
            x, y = _num(r.get(ca)), _num(r.get(cb))
            if r.get("status") in ("ok", "infeasible") and x is not None and y is not None:
                ax.scatter([x], [y], marker="D", s=30, facecolors="white", edgecolors="black", zorder=5)
                ax.annotate(r["reference"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for setter, col in ((ax.set_xscale, ca), (ax.set_yscale, cb)):
            if _log_axis([_num(r.get(col)) for r in [*rows, *refs]]):
                setter("log")
        ax.set_xlabel(_axis_title(a), fontsize=8)
        ax.set_ylabel(_axis_title(b), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(f"{title}\nlarge outlined: Pareto front over all objectives; dotted: front of the pair; "
                 "diamonds: calibrated chips", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.88 if len(pairs) > 1 else 0.8, 0.93))
    buf_path = path.with_suffix(".tmp.png")
    fig.savefig(buf_path, dpi=100)
    plt.close(fig)
    buf_path.replace(path)
    return path


def write_plots(run_dir: Path, rows, refs, objectives, params, notes, title, *, with_png: bool = False) -> list[Path]:
    """pareto.html (and pareto.png: a few seconds more) in ``run_dir``."""
    run_dir = Path(run_dir)
    out = run_dir / "pareto.html"
    write_atomic(out, page_html(rows, refs, objectives, params, notes, title))
    return [out, png(run_dir / "pareto.png", rows, refs, objectives, title)] if with_png else [out]


def replot(run_dir: str | Path, objectives: Sequence[str] | None = None, *, with_png: bool = False) -> list[Path]:
    """Remake the plots of a run folder from points.csv, references.csv and run.json (no evaluation)."""
    run_dir = Path(run_dir)
    shown = display_path(run_dir)
    try:
        meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        rows = read_csv((run_dir / "points.csv").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(shown, None, f"not a result store: {Path(exc.filename).name} is missing",
                         "give the folder `cim-dse explore` wrote (outputs/<run>/)") from None
    except ValueError as exc:
        raise InputError(shown, "run.json", f"unreadable: {exc}") from None
    refs_path = run_dir / "references.csv"
    refs = read_csv(refs_path.read_text(encoding="utf-8")) if refs_path.exists() else []
    chosen = list(objectives) if objectives else list(meta.get("objectives", {}))
    for o in chosen:
        if o not in OBJECTIVES:
            raise InputError(None, "--objectives", f"= {o!r}: expected some of {', '.join(OBJECTIVES)}")
    if not 2 <= len(chosen) <= 4:
        raise InputError(None, "--objectives", f"= {','.join(chosen)}: give 2 to 4 objectives")
    if objectives:
        missing = [o for o in chosen if rows and OBJECTIVES[o].column not in rows[0]]
        if missing:
            raise InputError(shown, "points.csv", f"has no {', '.join(missing)} column")
        mark_front(rows, chosen)
    params = meta.get("parameters") or [ACCELERATOR]
    space = meta.get("space", {})
    title = f"{space.get('name', run_dir.name)}: {len(rows)} design points"
    return write_plots(run_dir, rows, refs, tuple(chosen), params, meta.get("notes", []), title, with_png=with_png)
