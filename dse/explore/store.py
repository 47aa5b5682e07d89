"""The result store of a run (``outputs/<run>/``): every finished point is kept at once, and a rerun resumes.

* ``points.jsonl``: one JSON line per finished point (or per completed part of one), appended, flushed
  and fsync'ed before the run moves on. A line cut short by a kill has no newline: it is ignored and
  cut off when the store is next opened, so a killed run loses at most the points still in flight.
* ``accuracy/<key>.json``: one file per simulated accuracy key, written atomically (temp file + rename);
  ``accuracy_keys.json`` remembers each macro's key, so reopening a finished run needs no simulator.
* ``points.csv``, ``pareto.csv``, ``references.csv``, ``run.json``, ``pareto.html``: regenerated
  atomically from the above; they are views, never read back to resume.
* ``.lock``: held (flock) while a run writes, so two runs never interleave in one folder.

A run records a fingerprint of what every result depends on besides the point's own parameters
(workload and mapping contents, mapper objective, evaluator, and a hash of cim-dse's cost code,
``dse.code_sha``). Reopening the folder with another fingerprint is refused, naming what changed,
instead of mixing results; when only the code changed, the stored lines are set aside (never reused)
and their points computed again. Accuracy keys carry the simulator's code hash the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dse.atomic import write_atomic
from dse.errors import InputError, display_path
from dse.explore.space import content_sha

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]

POINTS = "points.jsonl"
RUN_JSON = "run.json"


class ResultStore:
    """The records of one run folder, keyed by point id (later lines complete earlier ones; a line with
    ``"reset": true`` starts the point afresh, e.g. to retry a failed one)."""

    def __init__(self, run_dir: str | Path, fingerprint: dict):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.fp = content_sha(fingerprint)[:16]
        self.code_changed = False  # the stored results were made by other cim-dse code
        self._lock = self._take_lock()
        try:
            self._check_fingerprint()
            self.records: dict[str, dict] = {}
            self.foreign = 0  # lines of another fingerprint (never reused)
            self.torn = 0
            self._load()
            self._fh = open(self.dir / POINTS, "a", encoding="utf-8")  # noqa: SIM115 - open for the run
        except BaseException:
            self._release()
            raise
        self._accuracy: dict[str, dict | None] = {}

    # -- opening -----------------------------------------------------------------------------
    def _take_lock(self):
        fh = open(self.dir / ".lock", "a+")  # noqa: SIM115 - held for the run
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                raise InputError(display_path(self.dir), None, "another cim-dse explore is writing to this folder",
                                 "wait for it to finish, or use another --output") from None
        return fh

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None

    def _check_fingerprint(self) -> None:
        path = self.dir / RUN_JSON
        if not path.exists():
            return
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            return  # unreadable view: the records' own fingerprints still decide
        if old and old != self.fingerprint:
            changed = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
            if changed == ["code"]:  # a new cim-dse: same exploration, its results are computed again
                self.code_changed = True
                return
            raise InputError(display_path(self.dir), None,
                             f"holds results of a different exploration ({', '.join(changed)} changed)",
                             "use another --output for the new space, or delete the folder to start over")

    def _load(self) -> None:
        path = self.dir / POINTS
        if not path.exists():
            return
        raw = path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):  # a line cut short by a kill: drop it
            self.torn = 1
            with open(path, "r+b") as fh:
                fh.truncate(end)
        for line in raw[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                self.torn += 1
                continue
            if not isinstance(rec, dict) or "id" not in rec:
                continue
            if rec.get("fp") != self.fp:
                self.foreign += 1
                continue
            self._merge(rec)

    def _merge(self, rec: dict) -> dict:
        old = {} if rec.get("reset") else self.records.get(rec["id"], {})
        rec = {k: v for k, v in rec.items() if k != "reset"}
        merged = {**old, **{k: v for k, v in rec.items() if v is not None}}
        self.records[rec["id"]] = merged
        return merged

    # -- points --------------------------------------------------------------------------------
    def get(self, point_id: str) -> dict | None:
        return self.records.get(point_id)

    def put(self, record: dict[str, Any]) -> dict:
        """Append a record (durably) and return the point's merged record."""
        rec = {**record, "fp": self.fp}
        self._fh.write(json.dumps(rec, separators=(",", ":"), default=_jsonable) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return self._merge(rec)

    # -- accuracy cache ------------------------------------------------------------------------
    def accuracy(self, key_hash: str) -> dict | None:
        if key_hash not in self._accuracy:
            path = self.dir / "accuracy" / f"{key_hash}.json"
            try:
                self._accuracy[key_hash] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._accuracy[key_hash] = None
        return self._accuracy[key_hash]

    def put_accuracy(self, key_hash: str, entry: dict) -> None:
        write_atomic(self.dir / "accuracy" / f"{key_hash}.json", json.dumps(entry, indent=1, default=_jsonable) + "\n")
        self._accuracy[key_hash] = entry

    # -- measured activity cache ---------------------------------------------------------------
    def activity(self, key_hash: str) -> dict | None:
        try:
            return json.loads((self.dir / "activity" / f"{key_hash}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put_activity(self, key_hash: str, entry: dict) -> None:
        write_atomic(self.dir / "activity" / f"{key_hash}.json", json.dumps(entry, indent=1, default=_jsonable) + "\n")

    def key_index(self) -> dict[str, str]:
        """Accuracy key hash by macro (and settings), so a stored run reopens without loading the simulator."""
        try:
            return json.loads((self.dir / "accuracy_keys.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def save_key_index(self, index: dict[str, str]) -> None:
        write_atomic(self.dir / "accuracy_keys.json", json.dumps(index, indent=0, sort_keys=True) + "\n")

    # -- views ---------------------------------------------------------------------------------
    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        write_atomic(path, text)
        return path

    def run_json(self) -> dict:
        try:
            return json.loads((self.dir / RUN_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def close(self) -> None:
        if getattr(self, "_fh", None) is not None:
            self._fh.close()
            self._fh = None
        self._release()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")
