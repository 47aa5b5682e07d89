"""One exploration run: resolve the space, open the store, evaluate the strategy's points and the
reference chips, then write points.csv, pareto.csv, references.csv, run.json and the plots.

The cost model enters as ``cost_fn(workload, accelerator, mapping, opt=...) -> NetworkCost``
(``dse.api.evaluate``, passed down by the API so imports keep pointing one way), the accuracy as an
evaluator (``dse.explore.accuracy``; default: the bit-wise simulator).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from dse.code_sha import cost_code_sha
from dse.errors import InputError
from dse.explore.accuracy import AccuracySettings, SimulatorAccuracy, evaluator_name
from dse.explore.activity import ActivitySettings
from dse.explore.engine import Evaluator, Job
from dse.explore.executors import open_pool
from dse.explore.objectives import OBJECTIVES
from dse.explore.points import Point, grid_size
from dse.explore.results import columns, make_row, mark_front, to_csv
from dse.explore.space import Space, file_sha, load_space
from dse.explore.store import RUN_JSON, ResultStore
from dse.explore.strategies import grid_points, nsga2_points
from dse.hardware import load_accelerator
from dse.mapping import check_mapping, load_mapping
from dse.workload import load_onnx

TABLE_EVERY_S = 5.0  # points.csv is rewritten at most this often while a run goes on


@dataclass
class Exploration:
    """A finished (or interrupted) run: every point's row in the strategy's order, and where it is stored."""

    run_dir: Path
    rows: list[dict[str, Any]]
    columns: list[str]
    references: list[dict[str, Any]]
    objectives: tuple[str, ...]
    strategy: str
    stats: dict[str, Any]
    notes: list[str]
    files: list[Path] = field(default_factory=list)
    interrupted: bool = False

    @property
    def front(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["on_front"]]

    def to_frame(self):
        """The rows as a pandas DataFrame (``attrs``: run_dir, objectives, strategy)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=self.columns)
        frame.attrs.update(run_dir=str(self.run_dir), objectives=list(self.objectives), strategy=self.strategy)
        return frame


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("cim-dse", "torch", "numpy", "onnx", "pydantic", "optuna", "dask", "distributed", "plotly"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    from dse.accuracy.core_fused import simulator_kernel

    out["simulator_kernel"] = simulator_kernel()  # noisy accuracies draw another stream on another kernel
    return out


def _strategy(space: Space, budget: int | None, seed: int | None) -> tuple[str, int, int, int]:
    s = space.spec.strategy
    kind, budget_, seed_ = s.kind, budget if budget is not None else s.budget, seed if seed is not None else s.seed
    if budget_ <= 0:
        raise InputError(None, "--budget", f"= {budget_}: must be > 0")
    size = grid_size(space, limit=budget_)
    if kind == "auto":
        kind = "grid" if size <= budget_ else "nsga2"
    elif kind == "grid" and budget is not None and size > budget_:
        raise InputError(space.source, "strategy.kind", f"= 'grid': the grid has more than {budget_} points "
                         "(--budget)", "set strategy.kind: nsga2 (or auto) to search under the budget")
    return kind, budget_, s.population, seed_


def _accuracy_setup(space: Space, accuracy_fn: Any) -> tuple[Any, AccuracySettings | None]:
    if not space.needs_accuracy:
        return None, None
    if accuracy_fn is None:
        accuracy_fn = SimulatorAccuracy()  # imported when a key or a simulation is first needed
    w = space.spec.workload
    return accuracy_fn, AccuracySettings(model=str(space.model), model_sha=file_sha(space.model), dataset=w.dataset,
                                         data_path=_data_path(space), finetune_epochs=w.finetune_epochs,
                                         finetune_lr=w.finetune_lr, samples=w.samples, repeats=w.repeats, seed=w.seed)


def _data_path(space: Space) -> str | None:
    data_path = space.spec.workload.data_path
    if data_path and not Path(data_path).is_absolute():
        data_path = str(space.root / data_path)
    return data_path


def _activity_setup(space: Space) -> ActivitySettings | None:
    w = space.spec.workload
    if w.activity != "measured":
        return None
    return ActivitySettings(model=str(space.model), model_sha=file_sha(space.model), dataset=w.dataset,
                            data_path=_data_path(space), samples=w.activity_samples, seed=w.seed)


class _Tables:
    """Builds the rows of the points proposed so far and writes the tables (throttled while running)."""

    def __init__(self, space: Space, store: ResultStore, evaluator: Evaluator):
        self.space, self.store, self.evaluator = space, store, evaluator
        self.order: list[Point] = []
        self.jobs: dict[str, Job] = {}
        self.references: list[tuple[str, Job | None, str | None]] = []
        self._last = 0.0
        self.cols = columns(space.param_names, space.needs_accuracy)

    def add(self, points: list[Point]) -> list[Job]:
        jobs = []
        for p in points:
            if p.id not in self.jobs:
                self.jobs[p.id] = self.evaluator.job_for_point(p)
                self.order.append(p)
            jobs.append(self.jobs[p.id])
        return jobs

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for p in self.order:
            job, rec = self.jobs[p.id], self.store.get(p.id)
            row = make_row(p.id, p.params, rec, done=self.evaluator.is_done(job, rec), accuracy_key=job.key,
                           constraints=self.space.spec.constraints)
            out.append({c: row.get(c) for c in self.cols})
        mark_front(out, self.space.objectives)
        return out

    def reference_rows(self) -> list[dict[str, Any]]:
        out = []
        for name, job, error in self.references:
            if job is None:
                out.append({"reference": name, "status": "failed", "error": error})
                continue
            rec = self.store.get(job.id)
            row = make_row(job.id, {}, rec, done=self.evaluator.is_done(job, rec), accuracy_key=job.key,
                           constraints=self.space.spec.constraints)
            row.pop("on_front")
            out.append({"reference": name, **row})
        return out

    def write(self, *, force: bool = False) -> list[dict[str, Any]] | None:
        now = time.monotonic()
        if not force and now - self._last < TABLE_EVERY_S:
            return None
        self._last = now
        rows = self.rows()
        self.store.write("points.csv", to_csv(rows, self.cols))
        self.store.write("pareto.csv", to_csv([r for r in rows if r["on_front"]], self.cols))
        if self.references:
            skip = {"on_front", *self.space.param_names}
            ref_cols = ["reference", *[c for c in self.cols if c not in skip]]
            self.store.write("references.csv", to_csv(self.reference_rows(), ref_cols))
        return rows


class _RichBar:
    """A progress bar with an ETA on stderr; counts only the points computed in this run."""

    def __init__(self, label: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=Console(stderr=True))
        self.task = self.progress.add_task(label, total=0, info="")
        self.reused = self.failed = 0

    def __enter__(self) -> _RichBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def expect(self, n: int, reused: int = 0) -> None:
        self.reused += reused
        total = (self.progress.tasks[0].total or 0) + n
        self.progress.update(self.task, total=total, info=self._info())

    def advance(self, status: str) -> None:
        self.failed += status == "failed"
        self.progress.update(self.task, advance=1, info=self._info())

    def _info(self) -> str:
        parts = [f"{self.reused} from the store"] if self.reused else []
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)


class _NullBar:
    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def expect(self, n: int, reused: int = 0) -> None:
        pass

    def advance(self, status: str) -> None:
        pass


def run_exploration(space: Space | str | Path, *, cost_fn: Callable, accuracy_fn: Any = None,
                    output: str | Path | None = None, workers: int | None = None, scheduler: str | None = None,
                    budget: int | None = None, seed: int | None = None, retry_failed: bool = False,
                    progress: bool = False, plots: bool = True) -> Exploration:
    """Explore ``space`` into ``output`` (default outputs/<space name>/), resuming what is stored there."""
    if not isinstance(space, Space):
        space = load_space(space)
    kind, budget, population, seed = _strategy(space, budget, seed)
    accuracy_fn, settings = _accuracy_setup(space, accuracy_fn)
    workload = load_onnx(space.model)
    mapping = load_mapping(space.mapping)
    check_mapping(mapping, workload)
    activity = _activity_setup(space)
    fingerprint = {"workload": file_sha(space.model), "mapping": file_sha(space.mapping),
                   "opt": space.spec.workload.opt, "cost_fn": evaluator_name(cost_fn), "code": cost_code_sha()}
    if activity is not None:  # only when measured: the macro's defaults are already in the bases' contents
        fingerprint["activity"] = activity.fingerprint()
    run_dir = Path(output) if output is not None else Path("outputs") / space.name
    started = time.time()
    with ResultStore(run_dir, fingerprint) as store:
        notes = list(space.notes)
        if store.torn:
            notes.append("a line cut short by an interrupted run was dropped from points.jsonl")
        if store.foreign and store.code_changed:
            notes.append(f"cim-dse's cost code changed since the stored results: {store.foreign} stored lines "
                         "set aside, their points computed again")
        elif store.foreign:
            notes.append(f"{store.foreign} stored lines of another exploration were ignored")
        previous_runs = store.run_json().get("runs", [])
        pool = open_pool(workers, scheduler)
        if settings is not None and scheduler is None:
            settings = replace(settings, threads=max(1, (os.cpu_count() or 1) // pool.workers))
        bar = _RichBar(f"explore {space.name}") if progress else _NullBar()
        evaluator = Evaluator(space, store, pool, cost_fn=cost_fn, accuracy_fn=accuracy_fn, settings=settings,
                              workload=workload, mapping=mapping, progress=bar, retry_failed=retry_failed,
                              activity=activity)
        tables = _Tables(space, store, evaluator)
        evaluator.on_record = tables.write
        info = {"strategy": kind, "budget": budget if kind == "nsga2" else None,
                "population": population if kind == "nsga2" else None, "seed": seed,
                "workers": pool.workers, "executor": pool.description, "started": _iso(started)}

        def write_run_json(status: str, rows: list[dict] | None = None) -> None:
            this = {**info, "status": status, "wall_s": round(time.time() - started, 3),
                    **{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(evaluator.stats).items()}}
            counts: dict[str, int] = {}
            for r in rows or []:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            doc = {
                "cim_dse": "exploration result store (docs/explore.md)",
                "fingerprint": fingerprint,
                "space": space.summary(),
                "space_file_sha256": file_sha(Path(space.source)) if Path(space.source).is_file() else None,
                "objectives": {o: OBJECTIVES[o].direction for o in space.objectives},
                "parameters": list(space.param_names),
                "seeds": {"strategy": seed, "accuracy": space.spec.workload.seed},
                "accuracy": {"evaluator": evaluator_name(accuracy_fn) if accuracy_fn is not None else None,
                             "keys": len(evaluator.keys)},
                "versions": _versions(),
                "command": sys.argv,
                "totals": {"points": len(rows or []), **counts,
                           "pareto": sum(1 for r in rows or [] if r["on_front"])},
                "notes": notes,
                "runs": [*previous_runs, this],
            }
            store.write(RUN_JSON, json.dumps(doc, indent=1, default=str) + "\n")

        status = "interrupted"  # or stopped by an error
        rows: list[dict] = []
        try:
            write_run_json("running")
            with bar:
                if kind == "grid":
                    evaluator.run(tables.add(grid_points(space)))
                else:
                    _, more = nsga2_points(
                        space, budget=budget, population=population, seed=seed,
                        evaluate=lambda pts: evaluator.run(tables.add(pts)),
                        metrics_of=lambda p, rec: _metrics(tables, p, rec))
                    notes.extend(more)
                _evaluate_references(space, evaluator, tables, notes)
            status = "finished"
        finally:
            pool.close(cancel=status != "finished")
            rows = tables.write(force=True) or []
            write_run_json(status, rows)
            evaluator.save_key_index()
        files = [run_dir / n for n in ("points.csv", "pareto.csv", RUN_JSON)]
        refs = tables.reference_rows()
        if plots:
            from dse.explore.plots import write_plots

            files += write_plots(run_dir, rows, refs, space.objectives, list(space.param_names), notes,
                                 title=f"{space.name}: {len(rows)} design points on {space.model.name}")
        stats = {**asdict(evaluator.stats), "wall_s": time.time() - started}
        return Exploration(run_dir=run_dir, rows=rows, columns=tables.cols, references=refs,
                           objectives=space.objectives, strategy=kind, stats=stats, notes=notes, files=files)


def _metrics(tables: _Tables, point: Point, rec: dict) -> dict | None:
    if rec.get("error"):
        return None
    job = tables.jobs[point.id]
    metrics = dict(rec.get("cost") or {})
    acc = rec.get("accuracy") or {}
    if acc.get("key") == job.key:
        metrics.update(acc)
    return metrics


def _evaluate_references(space: Space, evaluator: Evaluator, tables: _Tables, notes: list[str]) -> None:
    jobs = []
    for path in space.references:
        try:
            acc = load_accelerator(path)
        except InputError as err:
            tables.references.append((path.stem, None, str(err)))
            continue
        job = evaluator.job_for_reference(acc.name, acc)
        tables.references.append((acc.name, job, None))
        jobs.append(job)
    records = evaluator.run(jobs)
    for name, job, error in tables.references:
        why = error if job is None else (records.get(job.id) or {}).get("error")
        if why:
            notes.append(f"reference {name} not plotted: {why}")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))

