"""Kill -9 an exploration mid-run, rerun the same command: nothing finished is recomputed or lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import explore_fakes as fakes
import yaml

from dse.api import run_exploration

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

SCRIPT = """
import sys
import explore_fakes
from dse.api import run_exploration

if __name__ == "__main__":
    run_exploration(sys.argv[1], output=sys.argv[2], workers=1, accuracy_fn=explore_fakes.logged, plots=False)
"""


def stored(path: Path) -> dict[str, dict]:
    """Finished points in points.jsonl (complete lines only), merged by id."""
    out: dict[str, dict] = {}
    if not path.exists():
        return out
    for line in path.read_bytes().split(b"\n")[:-1]:
        rec = json.loads(line)
        out.setdefault(rec["id"], {}).update({k: v for k, v in rec.items() if v is not None})
    return {k: v for k, v in out.items() if "accuracy" in v or "error" in v}


def test_resume_after_kill_recomputes_nothing_and_loses_nothing(tmp_path, monkeypatch):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "base": str(ROOT / "hardware" / "aimc_template.yaml"), "workload": {"model": str(ROOT / "workloads" /
                                                                                       "digits_cnn.onnx")},
        "parameters": {"macro.rows": [32, 64, 128, 256], "macro.adc_bits": [3, 4, 6]},
        "objectives": ["energy", "accuracy"], "references": [],
    }))
    script = tmp_path / "run_it.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), "EXPLORE_FAKE_LOG": str(log),
           "EXPLORE_FAKE_SLEEP": "0.4"}
    proc = subprocess.Popen([sys.executable, str(script), str(space), str(out)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while len(stored(out / "points.jsonl")) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its pool worker, as kill -9 would
        proc.wait()
    before = stored(out / "points.jsonl")
    assert 4 <= len(before) < 12, "killed too late to test a resume"
    simulated_before = len(log.read_text().splitlines())

    monkeypatch.setenv("EXPLORE_FAKE_LOG", str(log))
    ex = run_exploration(space, output=out, workers=0, accuracy_fn=fakes.logged, plots=False)
    assert len(ex.rows) == 12 and {r["status"] for r in ex.rows} == {"ok"}
    assert ex.stats["reused"] == len(before)
    assert ex.stats["computed"] == 12 - len(before)
    # every key is simulated at most twice (once more only if it was in flight at the kill), the finished never again
    simulated_after = log.read_text().splitlines()[simulated_before:]
    finished_keys = {(r["params"]["macro.rows"], r["params"]["macro.adc_bits"]) for r in before.values()}
    assert not {(int(c.split(",")[1]), int(c.split(",")[2])) for c in simulated_after} & finished_keys
    assert len(simulated_after) == 12 - len(before)
    # nothing lost: the stored results are the ones the final table shows
    by_id = {r["id"]: r for r in ex.rows}
    for pid, rec in before.items():
        assert by_id[pid]["energy_pJ"] == rec["cost"]["energy_pJ"]
        assert by_id[pid]["accuracy"] == rec["accuracy"]["accuracy"]
    # each finished point's accuracy was written once
    lines = [json.loads(x) for x in (out / "points.jsonl").read_text().splitlines()]
    assert all(sum(1 for x in lines if x["id"] == pid and "accuracy" in x) == 1 for pid in by_id)
    assert json.loads((out / "run.json").read_text())["runs"][-1]["status"] == "finished"
