"""The evaluation loop: each point's cost, then (when wanted) its accuracy, results written as they finish.

Cost runs first (fast): a point that fails (unmappable, precision mismatch) or already misses a cost
constraint (area budget, ...) never waits for the simulator. Accuracy is looked up by its key in the
run's accuracy cache; a key not there is simulated once, however many points share it. Every result
goes into the store the moment it arrives, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait
from dataclasses import dataclass
from typing import Any, Protocol

from dse.code_sha import accuracy_code_sha
from dse.errors import InputError
from dse.explore import activity as act
from dse.explore.accuracy import AccuracySettings, evaluator_name, key_of
from dse.explore.activity import ActivitySettings
from dse.explore.executors import Pool
from dse.explore.objectives import COST_METRICS, violations
from dse.explore.points import Point, build_accelerator, reason
from dse.explore.space import Space, content_sha
from dse.explore.store import ResultStore
from dse.explore.tasks import accuracy_task, cost_task
from dse.hardware import Accelerator, Macro, accelerator_to_dict
from dse.yamlio import dump


@dataclass
class Job:
    """A design point or a reference accelerator to evaluate."""

    id: str
    accelerator: Accelerator | None
    params: dict[str, Any] | None = None  # a design point's parameters
    reference: str | None = None  # a reference chip's name
    error: str | None = None  # the point's accelerator is invalid
    key: str | None = None  # accuracy key hash (when accuracy is wanted)

    def ident(self) -> dict[str, Any]:
        return {"params": self.params} if self.params is not None else {"reference": self.reference}


@dataclass
class Stats:
    """What a run did (run.json)."""

    reused: int = 0
    computed: int = 0
    cost_runs: int = 0
    cost_s: float = 0.0
    accuracy_runs: int = 0
    accuracy_s: float = 0.0
    accuracy_cache_hits: int = 0
    accuracy_skipped: int = 0
    activity_runs: int = 0
    activity_s: float = 0.0


class Progress(Protocol):
    def expect(self, n: int, reused: int = 0) -> None: ...  # n more points to compute, `reused` found done

    def advance(self, status: str) -> None: ...


class NoProgress:
    def expect(self, n: int, reused: int = 0) -> None:
        pass

    def advance(self, status: str) -> None:
        pass


class Evaluator:
    """Evaluates jobs on a pool, reusing and filling the store."""

    def __init__(self, space: Space, store: ResultStore, pool: Pool, *, cost_fn: Callable, accuracy_fn: Any,
                 settings: AccuracySettings | None, workload: Any, mapping: Any,
                 progress: Progress | None = None, on_record: Callable[[], None] | None = None,
                 retry_failed: bool = False, activity: ActivitySettings | None = None):
        self.space, self.store, self.pool = space, store, pool
        self.cost_fn, self.accuracy_fn, self.settings = cost_fn, accuracy_fn, settings
        self.workload, self.mapping = workload, mapping
        self.progress = progress or NoProgress()
        self.on_record = on_record
        self.retry_failed = retry_failed
        self.stats = Stats()
        self.keys: dict[str, dict] = {}  # key hash -> key
        self._key_memo: dict[Macro, str] = {}
        self._key_index = store.key_index()  # what earlier runs computed: no simulator import to reopen a run
        self._key_index_size = len(self._key_index)
        self._accuracy_errors: dict[str, str] = {}
        self._handled: set[str] = set()  # ids finished or found done in this run
        self.activity = activity
        self._activity: dict[str, dict | str] = {}  # key hash -> per-layer activity, or why it failed (this run)

    # -- jobs ----------------------------------------------------------------------------------
    def key_hash(self, macro: Macro) -> str | None:
        """The accuracy cache key of a macro under this run's settings (None when accuracy is not wanted)."""
        if not self.space.needs_accuracy or self.settings is None:
            return None
        if macro in self._key_memo:
            return self._key_memo[macro]
        s = self.settings
        shared = {"model": s.model_sha, "dataset": s.dataset, "data_path": s.data_path, "samples": s.samples,
                  "repeats": s.repeats, "seed": s.seed, "evaluator": evaluator_name(self.accuracy_fn),
                  "code": accuracy_code_sha()}
        if s.finetune_epochs:  # only when set: without fine-tuning a key holds what it always held
            shared["finetune"] = {"epochs": s.finetune_epochs, "lr": s.finetune_lr}
        index = content_sha({"macro": dump(Macro, macro), **shared})[:16]
        h = self._key_index.get(index)
        if h is None:
            try:
                key = {"macro": key_of(self.accuracy_fn, macro), **shared}
            except ImportError as exc:
                where = "objectives" if "accuracy" in self.space.objectives else "constraints.min_accuracy"
                raise InputError(self.space.source, where, f"needs accuracy, but the simulator cannot be imported "
                                 f"({exc})", "leave accuracy out of the objectives and constraints for now") from None
            h = content_sha(key)[:16]
            self.keys[h] = key
            self._key_index[index] = h
        self._key_memo[macro] = h
        return h

    def activity_of(self, macro: Macro) -> dict | str:
        """The measured per-layer activity for this macro's precisions (measured once, kept in the run
        folder), or the reason it could not be measured."""
        assert self.activity is not None
        h = act.key_hash(self.activity, macro)
        if h not in self._activity:
            entry = self.store.activity(h)
            if entry is None:
                start = time.perf_counter()
                try:
                    layers = act.measure(self.activity, self.workload, self.mapping, macro)
                except Exception as exc:  # every point that needs it is failed with the reason
                    self._activity[h] = act.failure(exc)
                    return self._activity[h]
                finally:
                    self.stats.activity_runs += 1
                    self.stats.activity_s += time.perf_counter() - start
                entry = {"key": act.activity_key(self.activity, macro), "layers": layers}
                self.store.put_activity(h, entry)
            self._activity[h] = entry["layers"]
        return self._activity[h]

    def save_key_index(self) -> None:
        if len(self._key_index) != self._key_index_size:
            self.store.save_key_index(self._key_index)
            self._key_index_size = len(self._key_index)

    def job_for_point(self, point: Point) -> Job:
        try:
            acc = build_accelerator(self.space, point)
        except InputError as err:
            return Job(point.id, None, params=point.params, error=f"invalid design: {reason(err)}")
        return Job(point.id, acc, params=point.params, key=self.key_hash(acc.macro))

    def job_for_reference(self, name: str, acc: Accelerator) -> Job:
        return Job(f"ref-{content_sha({'name': name, 'acc': accelerator_to_dict(acc)})[:12]}", acc, reference=name,
                   key=self.key_hash(acc.macro))

    def is_done(self, job: Job, rec: dict | None) -> bool:
        """Whether a stored record holds everything this run wants of the job."""
        if rec is None:
            return False
        if rec.get("error"):
            return not self.retry_failed
        if "cost" not in rec:
            return False
        if not self.space.needs_accuracy:
            return True
        if (rec.get("accuracy") or {}).get("key") == job.key:
            return True
        return job.params is not None and bool(self.cost_violations(rec))

    def cost_violations(self, rec: dict) -> list[tuple[str, float]]:
        return violations(rec.get("cost") or {}, self.space.spec.constraints, only=COST_METRICS)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, jobs: Iterable[Job]) -> dict[str, dict]:
        """Evaluate every job not already done; returns each job's record by id."""
        self._results: dict[str, dict] = {}
        self._inflight: dict[Future, tuple[str, Any]] = {}
        self._waiting: dict[str, list[Job]] = {}
        todo: list[Job] = []
        reused = 0
        for job in {j.id: j for j in jobs}.values():
            rec = self.store.get(job.id)
            if self.is_done(job, rec):
                assert rec is not None
                self._results[job.id] = rec
                reused += job.id not in self._handled  # a repeat within this run is no reuse
                self._handled.add(job.id)
            else:
                todo.append(job)
        self.stats.reused += reused
        self.progress.expect(len(todo), reused)
        for job in todo:
            rec = self.store.get(job.id)
            if rec is not None and rec.get("error"):  # a retried failure starts afresh
                rec = self.store.put({"id": job.id, **job.ident(), "reset": True})
            if job.error:
                self._finish(job, self._put(job, error=job.error))
            elif rec is not None and "cost" in rec and not rec.get("error"):
                self._after_cost(job, rec)
            else:
                activity = self.activity_of(job.accelerator.macro) if self.activity is not None else None
                if isinstance(activity, str):
                    self._finish(job, self._put(job, error=activity))
                    continue
                fut = self.pool.executor.submit(cost_task, self.cost_fn, self.workload, self.mapping,
                                                job.accelerator, self.space.spec.workload.opt,
                                                None if activity is None else act.priced(activity))
                self._inflight[fut] = ("cost", job)
        while self._inflight:
            done, _ = wait(list(self._inflight), return_when=FIRST_COMPLETED)
            for fut in done:
                kind, what = self._inflight.pop(fut)
                try:
                    out = fut.result()  # a task never raises: this is the pool failing, and it stops the run
                except Exception as exc:
                    what_failed = "a worker died" if isinstance(exc, BrokenExecutor) else "a task could not run"
                    raise InputError(None, self.pool.description, f"{what_failed} ({type(exc).__name__}: {exc})",
                                     "every finished point is stored: rerun the same command to resume") from None
                if kind == "cost":
                    self.stats.cost_runs += 1
                    self.stats.cost_s += out.get("cost_s", 0.0)
                    rec = self._put(what, **out)
                    if "error" in out:
                        self._finish(what, rec)
                    else:
                        self._after_cost(what, rec)
                else:
                    self._accuracy_done(what, out)
        return self._results

    def _put(self, job: Job, **fields: Any) -> dict:
        return self.store.put({"id": job.id, **job.ident(), **fields, "t": round(time.time(), 3)})

    def _finish(self, job: Job, rec: dict) -> None:
        self._results[job.id] = rec
        self._handled.add(job.id)
        self.stats.computed += 1
        status = "failed" if rec.get("error") else "done"
        self.progress.advance(status)
        if self.on_record is not None:
            self.on_record()

    def _after_cost(self, job: Job, rec: dict) -> None:
        if not self.space.needs_accuracy:
            self._finish(job, rec)
            return
        missed = self.cost_violations(rec) if job.params is not None else []
        if missed:  # infeasible whatever its accuracy: no simulation
            self.stats.accuracy_skipped += 1
            self._finish(job, self._put(job, accuracy_skipped="; ".join(m for m, _ in missed)))
            return
        key = job.key
        assert key is not None
        entry = self.store.accuracy(key)
        if entry is not None or key in self._accuracy_errors:
            self.stats.accuracy_cache_hits += 1
            self._finish(job, self._accuracy_record(job, entry, self._accuracy_errors.get(key)))
        elif key in self._waiting:  # simulated once for all the points that share the key
            self.stats.accuracy_cache_hits += 1
            self._waiting[key].append(job)
        else:
            self._waiting[key] = [job]
            fut = self.pool.executor.submit(accuracy_task, self.accuracy_fn, job.accelerator, self.settings)
            self._inflight[fut] = ("accuracy", key)

    def _accuracy_done(self, key: str, out: dict) -> None:
        self.stats.accuracy_runs += 1
        self.stats.accuracy_s += out.get("accuracy_s", 0.0)
        entry = None
        if "error" in out:
            self._accuracy_errors[key] = out["error"]  # for this run only: --retry-failed tries it again
        else:
            entry = {"key": self.keys.get(key), "result": out["accuracy"], "seconds": out["accuracy_s"]}
            self.store.put_accuracy(key, entry)
        for job in self._waiting.pop(key):
            self._finish(job, self._accuracy_record(job, entry, out.get("error")))

    def _accuracy_record(self, job: Job, entry: dict | None, error: str | None) -> dict:
        if error is not None:
            return self._put(job, error=error)
        assert entry is not None
        return self._put(job, accuracy={**entry["result"], "key": job.key}, accuracy_s=entry.get("seconds"))
