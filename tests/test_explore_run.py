"""Exploration runs on the digits CNN with fake accuracy evaluators: tables, statuses, caching, resume,
NSGA-II, plots, the CLI. Runs in this process (workers=0) unless the pool is the point."""

from __future__ import annotations

import json
from pathlib import Path

import explore_fakes as fakes
import pandas as pd
import pytest
import yaml

from dse.api import explore, plot_run, run_exploration
from dse.cli import main
from dse.errors import InputError
from dse.explore import OBJECTIVES, non_dominated
from dse.explore.results import read_csv
from dse.explore.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
AIMC = str(ROOT / "hardware" / "aimc_template.yaml")
DIMC = str(ROOT / "hardware" / "dimc_template.yaml")
MODEL = str(ROOT / "workloads" / "digits_cnn.onnx")


def write_space(tmp_path: Path, name: str = "space", **fields) -> Path:
    data = {"base": [AIMC], "workload": {"model": MODEL}, "references": [],
            "objectives": ["energy", "accuracy", "area"], **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def log(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "calls.log"
    monkeypatch.setenv("EXPLORE_FAKE_LOG", str(path))
    return path


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_grid_of_3x2_points_gives_6_rows(tmp_path):
    space = write_space(tmp_path, parameters={"macro.rows": [32, 64, 128], "macro.adc_bits": [4, 8]})
    frame = explore(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.accuracy)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 6
    assert frame.attrs["run_dir"] == str(tmp_path / "run")
    assert list(frame["macro.rows"]) == [32, 32, 64, 64, 128, 128]
    assert set(frame["status"]) == {"ok"} and frame["energy_pJ"].gt(0).all()
    assert frame["accuracy"].between(0, 1).all()
    # tops_per_w is on the workload: 2 x MACs / energy; EDP in J*s
    row = frame.iloc[0]
    assert row["tops_per_w"] == pytest.approx(2 * 456704 / row["energy_pJ"])
    assert row["edp_Js"] == pytest.approx(row["energy_pJ"] * 1e-12 * row["latency_s"])
    # the front is what brute force says, and pareto.csv holds exactly it
    cols = [OBJECTIVES[o].column for o in ("energy", "accuracy", "area")]
    flags = non_dominated(frame[cols].to_numpy().tolist(), ["min", "max", "min"])
    assert list(frame["on_front"]) == flags
    out = tmp_path / "run"
    pareto = read_csv((out / "pareto.csv").read_text())
    assert [r["id"] for r in pareto] == list(frame[frame["on_front"]]["id"])
    points = read_csv((out / "points.csv").read_text())
    assert [r["id"] for r in points] == list(frame["id"]) and points[0]["macro.rows"] == 32
    meta = json.loads((out / "run.json").read_text())
    assert meta["objectives"] == {"energy": "min", "accuracy": "max", "area": "min"}
    assert meta["totals"]["points"] == 6 and meta["runs"][-1]["status"] == "finished"
    assert {"python", "cim-dse", "optuna"} <= set(meta["versions"]) and meta["seeds"]["accuracy"] == 0
    assert (out / "pareto.html").exists()


def test_failed_and_infeasible_points_are_recorded_and_the_run_goes_on(tmp_path, log):
    space = write_space(tmp_path, base=[AIMC, DIMC], parameters={
        "macro.weight_bits": [4, 8], "macro.rows": [100, 128]}, constraints={"max_area_mm2": 2.0})
    ex = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False)
    rows = {(r["accelerator"], r["macro.weight_bits"], r["macro.rows"]): r for r in ex.rows}
    assert len(rows) == 8
    # precision mismatch: the cost model refuses the layer
    bad = rows[("aimc_template", 4, 128)]
    assert bad["status"] == "failed"
    assert bad["error"].startswith("cost: layer '/conv1/Conv': W precision 8 bits exceeds the macro's weight_bits = 4")
    # an invalid macro: refused before any evaluation
    invalid = rows[("dimc_template", 8, 100)]
    assert invalid["status"] == "failed" and "invalid design: macro.rows = 100: a digital macro's adder tree needs a " \
        "power of two" in invalid["error"]
    # the analog template at 8 bits is over the area budget: infeasible, never simulated, not on the front
    big = rows[("aimc_template", 8, 128)]
    assert big["status"] == "infeasible" and big["violated"].startswith("area_mm2 2.4") and "> 2" in big["violated"]
    assert big["accuracy"] is None and not big["on_front"]
    ok = [r for r in ex.rows if r["status"] == "ok"]
    assert ok and all(r["accuracy"] is not None for r in ok)
    assert len(calls(log)) == len({(r["accelerator"], r["macro.weight_bits"], r["macro.rows"]) for r in ok})
    assert ex.stats["accuracy_skipped"] >= 1


def test_accuracy_is_simulated_once_per_key_and_reused_on_rerun(tmp_path, log):
    space = write_space(tmp_path, parameters={"macro.rows": [64, 128], "macro.count": [1, 2, 4],
                                              "memories.sram.size_bits": [131072, 262144]})
    ex = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert len(ex.rows) == 12 and ex.stats["computed"] == 12
    assert sorted(calls(log)) == ["analog,128,8,2", "analog,64,8,2"]  # count and memories cannot change accuracy
    assert len(list((tmp_path / "run" / "accuracy").glob("*.json"))) == 2
    again = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert again.stats["computed"] == 0 and again.stats["reused"] == 12 and len(calls(log)) == 2
    assert again.rows == ex.rows
    # more values: only the new points run; the accuracy of rows=64/128 comes from the cache
    more = write_space(tmp_path, parameters={"macro.rows": [64, 128, 256], "macro.count": [1, 2, 4],
                                             "memories.sram.size_bits": [131072, 262144]})
    bigger = run_exploration(more, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert len(bigger.rows) == 18 and bigger.stats["computed"] == 6 and bigger.stats["reused"] == 12
    assert len(calls(log)) == 3
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [r["computed"] for r in meta["runs"]] == [12, 0, 6]


def test_incompatible_store_and_concurrent_runs_are_refused(tmp_path):
    space = write_space(tmp_path, parameters={"macro.rows": [64]}, objectives=["energy", "area"])
    run_exploration(space, output=tmp_path / "run", workers=0, plots=False)
    other = write_space(tmp_path, name="other", parameters={"macro.rows": [64]}, objectives=["energy", "area"],
                        workload={"model": MODEL, "opt": "energy"})
    with pytest.raises(InputError, match=r"run: holds results of a different exploration \(opt changed\); use another "
                                         "--output"):
        run_exploration(other, output=tmp_path / "run", workers=0, plots=False)
    fingerprint = json.loads((tmp_path / "run" / "run.json").read_text())["fingerprint"]
    with ResultStore(tmp_path / "run", fingerprint), \
            pytest.raises(InputError, match="another cim-dse explore is writing to this folder"):
        run_exploration(space, output=tmp_path / "run", workers=0, plots=False)


def test_a_line_cut_short_is_dropped_and_its_point_recomputed(tmp_path):
    space = write_space(tmp_path, parameters={"macro.rows": [64, 128]}, objectives=["energy", "area"])
    first = run_exploration(space, output=tmp_path / "run", workers=0, plots=False)
    store = tmp_path / "run" / "points.jsonl"
    lines = store.read_text().splitlines()
    store.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # as a kill -9 mid-write leaves it
    again = run_exploration(space, output=tmp_path / "run", workers=0, plots=False)
    assert again.stats["computed"] == 1 and again.stats["reused"] == 1
    assert [r["energy_pJ"] for r in again.rows] == [r["energy_pJ"] for r in first.rows]
    assert any("cut short" in n for n in again.notes)
    assert all(json.loads(line) for line in store.read_text().splitlines())


def test_failed_accuracy_is_recorded_and_can_be_retried(tmp_path, log):
    space = write_space(tmp_path, parameters={"macro.rows": [64, 128]})
    ex = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.failing, plots=False)
    assert [r["status"] for r in ex.rows] == ["failed", "failed"]
    assert ex.rows[0]["error"] == "accuracy: RuntimeError: simulator exploded"
    kept = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert kept.stats["computed"] == 0 and calls(log) == []
    retried = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False,
                              retry_failed=True)
    assert [r["status"] for r in retried.rows] == ["ok", "ok"] and len(calls(log)) == 2


def test_nsga2_under_a_budget_is_seeded_and_resumes(tmp_path, log):
    params = {"macro.rows": [32, 64, 128, 256], "macro.adc_bits": [3, 4, 6, 8], "macro.count": [1, 2, 4]}
    space = write_space(tmp_path, parameters=params, strategy={"kind": "nsga2", "budget": 10, "population": 4})
    ex = run_exploration(space, output=tmp_path / "a", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert ex.strategy == "nsga2" and len(ex.rows) == 10 and len({r["id"] for r in ex.rows}) == 10
    assert ex.stats["computed"] == 10
    again = run_exploration(space, output=tmp_path / "a", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert again.stats["computed"] == 0 and [r["id"] for r in again.rows] == [r["id"] for r in ex.rows]
    fresh = run_exploration(space, output=tmp_path / "b", workers=0, accuracy_fn=fakes.accuracy, plots=False)
    assert [r["id"] for r in fresh.rows] == [r["id"] for r in ex.rows]  # same seed, same search
    other = run_exploration(space, output=tmp_path / "c", workers=0, accuracy_fn=fakes.accuracy, plots=False, seed=1)
    assert [r["id"] for r in other.rows] != [r["id"] for r in ex.rows]
    # a larger budget continues from the stored points
    more = run_exploration(space, output=tmp_path / "a", workers=0, accuracy_fn=fakes.logged, plots=False, budget=14)
    assert len(more.rows) == 14 and more.stats["computed"] <= 14 - 10 + 4
    # auto: the grid when it fits the budget
    auto = write_space(tmp_path, name="auto", parameters=params, strategy={"budget": 100})
    assert run_exploration(auto, output=tmp_path / "d", workers=0, accuracy_fn=fakes.accuracy,
                           plots=False).strategy == "grid"
    with pytest.raises(InputError, match="strategy.kind = 'grid': the grid has more than 5 points"):
        run_exploration(write_space(tmp_path, name="grid", parameters=params, strategy={"kind": "grid"}),
                        output=tmp_path / "e", workers=0, plots=False, budget=5)


def test_plots_references_and_replot(tmp_path, capsys):
    space = write_space(tmp_path, base=[AIMC, DIMC], parameters={"macro.rows": [64, 128], "macro.count": [1, 2]},
                        objectives=["energy", "accuracy", "latency", "area"])
    data = yaml.safe_load(space.read_text())
    del data["references"]  # default: the 7 calibrated chips
    space.write_text(yaml.safe_dump(data, sort_keys=False))
    ex = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.accuracy)
    refs = {r["reference"]: r for r in ex.references}
    assert list(refs) == ["aimc1", "aimc2", "aimc3", "dimc1", "dimc2", "dimc3", "dimc4"]
    assert refs["aimc1"]["status"] == "failed" and "weight_bits = 2" in refs["aimc1"]["error"]
    assert refs["dimc4"]["status"] == "ok" and refs["dimc4"]["accuracy"] == 0.97
    assert any(n.startswith("reference aimc1 not plotted") for n in ex.notes)
    page = (tmp_path / "run" / "pareto.html").read_text()
    for text in ("plotly", "dimc4", "macro.rows", "Pareto front", "parcoords", "scatter3d", "energy vs accuracy"):
        assert text in page, text
    assert "reference aimc1 not plotted" in page
    refs_csv = read_csv((tmp_path / "run" / "references.csv").read_text())
    assert [r["reference"] for r in refs_csv][:2] == ["aimc1", "aimc2"]
    (tmp_path / "run" / "pareto.html").unlink()
    paths = plot_run(tmp_path / "run", png=True)
    assert [p.name for p in paths] == ["pareto.html", "pareto.png"] and all(p.exists() for p in paths)
    assert main(["plot", str(tmp_path / "run"), "--objectives", "energy,area"]) == 0
    assert "pareto.html" in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "run"), "--objectives", "energy,speed"]) == 2
    assert "--objectives = 'speed'" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "not a result store: run.json is missing" in capsys.readouterr().err


def test_cli_explore(tmp_path, capsys):
    space = write_space(tmp_path, parameters={"macro.rows": [64, 128], "macro.adc_bits": [4, 8]},
                        objectives=["energy", "latency"], constraints={"max_area_mm2": 2.0})
    assert main(["explore", str(space), "--output", str(tmp_path / "run"), "--workers", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["points"] == 4 and out["totals"] == {"ok": 2, "infeasible": 2} and out["strategy"] == "grid"
    assert {r["macro.adc_bits"] for r in out["pareto"]} == {4}
    assert main(["explore", str(space), "--output", str(tmp_path / "run"), "--workers", "0"]) == 0
    text = capsys.readouterr().out
    assert "Pareto front" in text and "0 computed, 4 from the store" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": AIMC, "workload": {"model": MODEL}, "parameters": {"macro.adc_bitz": [4]}}))
    assert main(["explore", str(bad), "--output", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "parameters.macro.adc_bitz: no field 'adc_bitz' in macro" in err


def test_accuracy_needs_an_evaluator(tmp_path, monkeypatch):
    from dse.explore.accuracy import SimulatorAccuracy

    def missing(self, macro):
        raise ImportError("no module named dse.accuracy.simulate")

    monkeypatch.setattr(SimulatorAccuracy, "accuracy_key", missing)
    space = write_space(tmp_path, parameters={"macro.rows": [64]})
    with pytest.raises(InputError, match=r"space.yaml: objectives: needs accuracy, but the simulator cannot be "
                                         r"imported \(no module named dse.accuracy.simulate\)"):
        run_exploration(space, output=tmp_path / "run", workers=0, plots=False)


def test_a_code_change_recomputes_the_stored_results(tmp_path, log, monkeypatch):
    """Results of other cim-dse code are never reused: cost code -> every point, simulator code -> accuracies."""
    space = write_space(tmp_path, parameters={"macro.rows": [64, 128]})
    first = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert first.stats["computed"] == 2 and len(calls(log)) == 2
    monkeypatch.setattr("dse.explore.engine.accuracy_code_sha", lambda: "a-new-simulator")
    sim = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert len(calls(log)) == 4  # both accuracies again; the cost results are still this code's
    assert sim.stats["cost_runs"] == 0
    monkeypatch.setattr("dse.explore.run.cost_code_sha", lambda: "a-new-cost-model")
    cost = run_exploration(space, output=tmp_path / "run", workers=0, accuracy_fn=fakes.logged, plots=False)
    assert cost.stats["computed"] == 2 and cost.stats["cost_runs"] == 2 and cost.stats["reused"] == 0
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["fingerprint"]["code"] == "a-new-cost-model"
    assert any("cost code changed" in note for note in meta["notes"])
    assert [r["energy_pJ"] for r in cost.rows] == [r["energy_pJ"] for r in first.rows]  # same code underneath


def test_code_hash_ignores_docstrings_and_comments_but_not_code(tmp_path):
    from dse.code_sha import code_sha, module_digest

    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Doc."""\n\ndef f(x):\n    """What f does."""\n    return 2 * x  # twice\n')
    b.write_text('"""Another doc."""\n\n\ndef f(x):\n    return 2 * x\n')
    c.write_text('"""Doc."""\n\ndef f(x):\n    return 3 * x\n')
    assert module_digest(a) == module_digest(b) != module_digest(c)
    assert code_sha(include=("accuracy",)) != code_sha(include=("cost",))
    assert code_sha(include=("cost",)) == code_sha(include=("cost/",))


def test_measured_activity_prices_each_design_at_its_own_bits(tmp_path):
    """workload.activity: measured -> one measurement per (weight, input, input-per-cycle) bits, kept in the folder,
    and each point priced as evaluate(..., activity='measured') prices its accelerator."""
    from dse.api import evaluate
    from dse.explore import grid, load_space
    from dse.explore.points import build_accelerator

    params = {"macro.rows": [64, 128], "macro.input_bits_per_cycle": [1, 2]}
    path = write_space(tmp_path, parameters=params, objectives=["energy", "area"],
                       workload={"model": MODEL, "activity": "measured", "activity_samples": 32})
    ex = run_exploration(path, output=tmp_path / "run", workers=0, plots=False)
    assert ex.stats["activity_runs"] == 2 and ex.stats["computed"] == 4
    assert len(list((tmp_path / "run" / "activity").glob("*.json"))) == 2
    plain = run_exploration(write_space(tmp_path, name="plain", parameters=params, objectives=["energy", "area"]),
                            output=tmp_path / "plain", workers=0, plots=False)
    space = load_space(path)
    for point, row in zip(grid(space), ex.rows, strict=True):
        acc = build_accelerator(space, point)
        want = evaluate(MODEL, acc, str(space.mapping), activity="measured", activity_samples=32)
        assert row["energy_pJ"] == pytest.approx(want.energy_pJ, rel=1e-12)
    # the data changed the macro's price, not the memories'
    assert ex.rows[0]["macro_energy_pJ"] != pytest.approx(plain.rows[0]["macro_energy_pJ"], rel=0.01)
    assert ex.rows[0]["memory_energy_pJ"] == pytest.approx(plain.rows[0]["memory_energy_pJ"], rel=1e-9)
    again = run_exploration(path, output=tmp_path / "run", workers=0, plots=False)
    assert again.stats["activity_runs"] == 0 and again.stats["reused"] == 4
    # switching the activity source is another exploration
    with pytest.raises(InputError, match=r"different exploration \(activity changed\)"):
        run_exploration(write_space(tmp_path, parameters=params, objectives=["energy", "area"]),
                        output=tmp_path / "run", workers=0, plots=False)


def test_activity_that_cannot_be_measured_fails_the_points_with_the_reason(tmp_path):
    path = write_space(tmp_path, parameters={"macro.rows": [64]}, objectives=["energy", "area"],
                       workload={"model": MODEL, "activity": "measured", "dataset": "cifar10",
                                 "data_path": str(tmp_path / "nowhere")})
    ex = run_exploration(path, output=tmp_path / "run", workers=0, plots=False)
    assert [r["status"] for r in ex.rows] == ["failed"]
    assert ex.rows[0]["error"].startswith("activity: ") and "nowhere" in ex.rows[0]["error"]
    assert ex.stats["activity_runs"] == 1 and ex.stats["cost_runs"] == 0


def test_code_digests_are_remembered_and_a_broken_cache_is_ignored(tmp_path, monkeypatch):
    from dse.code_sha import PACKAGE, _digests, cache_file, module_digest

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    files = sorted(PACKAGE.glob("explore/*.py"))
    want = {f: module_digest(f) for f in files}
    cache_file().parent.mkdir(parents=True)
    cache_file().write_text("{not json")
    assert _digests(files) == want
    remembered = json.loads(cache_file().read_text())
    assert sorted(remembered.values()) == sorted(want.values())
    # a remembered digest is used as is: the cache is keyed by the file's bytes
    raw = next(k for k, v in remembered.items() if v == want[files[0]])
    cache_file().write_text(json.dumps({**remembered, raw: "from-the-cache"}))
    assert _digests(files[:1]) == {files[0]: "from-the-cache"}


def test_finetuning_each_design_through_its_macro_recovers_noisy_accuracy(tmp_path):
    """workload.finetune_epochs trains the model through each design's own macro before simulating it; the
    setting is part of the accuracy key, so changing it recomputes the accuracies and reuses the costs."""
    params = {"macro.accuracy.noise_sigma_pct": [1.0]}
    plain = write_space(tmp_path, parameters=params, workload={"model": MODEL, "samples": 120})
    first = run_exploration(plain, output=tmp_path / "run", workers=0, plots=False)
    tuned = write_space(tmp_path, parameters=params, workload={"model": MODEL, "samples": 120, "finetune_epochs": 2})
    second = run_exploration(tuned, output=tmp_path / "run", workers=0, plots=False)
    assert second.stats["accuracy_runs"] == 1 and second.stats["cost_runs"] == 0
    assert second.rows[0]["accuracy"] > first.rows[0]["accuracy"] + 0.1  # 0.58 -> 0.81 when written
    assert len(list((tmp_path / "run" / "accuracy").glob("*.json"))) == 2
    key = json.loads(next(p for p in (tmp_path / "run" / "accuracy").glob("*.json")
                          if "finetune" in p.read_text()).read_text())["key"]
    assert key["finetune"] == {"epochs": 2, "lr": 1e-3}


def test_code_hash_covers_the_native_kernel_source(tmp_path, monkeypatch):
    """The simulator's C kernel is part of its code: editing it invalidates stored accuracies."""
    import shutil

    import dse.code_sha as cs

    copy = tmp_path / "dse"
    shutil.copytree(cs.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cs, "PACKAGE", copy)
    cs.code_sha.cache_clear()
    try:
        before = cs.code_sha(include=("accuracy",))
        source = copy / "accuracy" / "core_bitsliced.c"
        source.write_text(source.read_text().replace("#define UNROLL 4", "#define UNROLL 2"))
        cs.code_sha.cache_clear()
        assert cs.code_sha(include=("accuracy",)) != before
    finally:
        cs.code_sha.cache_clear()
