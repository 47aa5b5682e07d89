"""The same exploration on a Dask LocalCluster (--scheduler) and on the local process pool gives the same points."""

from __future__ import annotations

import json
from pathlib import Path

import explore_fakes as fakes
import pytest
import yaml

from dse.api import run_exploration
from dse.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _same(rows):
    return [{k: v for k, v in r.items() if k not in ("cost_s", "accuracy_s")} for r in rows]


def test_dask_local_cluster_matches_the_local_pool(tmp_path):
    distributed = pytest.importorskip("distributed")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "base": [str(ROOT / "hardware" / "aimc_template.yaml"), str(ROOT / "hardware" / "dimc_template.yaml")],
        "workload": {"model": str(ROOT / "workloads" / "digits_cnn.onnx")},
        "parameters": {"macro.rows": [64, 128, 256], "macro.adc_bits": [4, 8]},
        "objectives": ["energy", "accuracy", "area"], "references": [],
    }))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, protocol="tcp",
                                  dashboard_address=None) as cluster:
        on_dask = run_exploration(space, output=tmp_path / "dask", scheduler=cluster.scheduler_address,
                                  accuracy_fn=fakes.accuracy, plots=False)
    local = run_exploration(space, output=tmp_path / "local", workers=1, accuracy_fn=fakes.accuracy, plots=False)
    assert len(local.rows) == 9 and {r["status"] for r in local.rows} == {"ok"}
    assert _same(on_dask.rows) == _same(local.rows)
    run = json.loads((tmp_path / "dask" / "run.json").read_text())["runs"][-1]
    assert run["executor"].startswith("dask tcp://") and run["computed"] == 9


def test_unreachable_scheduler_is_an_input_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("dse.explore.executors.CONNECT_TIMEOUT", "1s")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "base": str(ROOT / "hardware" / "aimc_template.yaml"), "workload": {"model": str(ROOT / "workloads" /
                                                                                       "digits_cnn.onnx")},
        "objectives": ["energy", "area"], "references": []}))
    with pytest.raises(InputError, match="--scheduler = tcp://127.0.0.1:9: cannot connect to a Dask scheduler"):
        run_exploration(space, output=tmp_path / "run", scheduler="tcp://127.0.0.1:9", plots=False)
