"""Runner: skip, resume, force, invalidation of exactly the downstream stages, per-scene failures."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import store
from pipeline.plan import RunConfig, Status, plan_run, plan_stages
from pipeline.runner import run
from pipeline.stages import load_graph


def _run(toy, **kw):
    graph = load_graph(toy["stages"])
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"], workers=0, **kw)
    return {r.name: r for r in run(graph, cfg)}


def _calls(toy) -> list[str]:
    return toy["log"].read_text().split() if toy["log"].exists() else []


def _values(toy, stage: str = "shifted") -> dict[str, np.ndarray]:
    return {s: store.read_scene(toy["store"], stage, s)["values"] for s in store.done_scenes(toy["store"], stage)}


def test_first_run_computes_everything_and_values_are_right(toy):
    reports = _run(toy)
    assert [reports[s].done for s in ("scenes", "double", "offset", "shifted")] == [4, 4, 1, 4]
    np.testing.assert_allclose(_values(toy)["s1"], (np.arange(5) + 1) * 2.0 + 10.0)
    assert store.stage_attrs(toy["store"], "scenes", "s0")["note"] == "ok"


def test_rerun_skips_everything(toy):
    _run(toy)
    toy["log"].unlink()
    reports = _run(toy)
    assert all(r.done == 0 for r in reports.values())
    assert reports["scenes"].skipped == 4 and reports["offset"].skipped == 1
    assert _calls(toy) == []


def test_force_recomputes_stage_and_downstream_only(toy):
    _run(toy)
    toy["log"].unlink()
    reports = _run(toy, force=("double",))
    assert reports["scenes"].skipped == 4 and reports["offset"].skipped == 1
    assert reports["double"].done == 4 and reports["shifted"].done == 4
    assert sorted(set(_calls(toy))) == ["double", "shifted"]


def test_changed_param_invalidates_only_that_stage_and_downstream(toy):
    _run(toy)
    toy["log"].unlink()
    reports = _run(toy, overrides={"offset": {"offset": 1.0}})
    assert reports["scenes"].skipped == 4 and reports["double"].skipped == 4
    assert reports["offset"].done == 1 and reports["shifted"].done == 4
    np.testing.assert_allclose(_values(toy)["s0"], np.arange(5) * 2.0 + 1.0)
    graph = load_graph(toy["stages"])
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"], overrides={"offset": {"offset": 3.0}})
    reasons = {p.stage.name: p.reason for p in plan_stages(graph, cfg)}
    assert reasons["offset"] == "params changed: offset 1.0 -> 3.0"
    assert reasons["shifted"] == "upstream changed: offset" and reasons["double"] == "up to date"


def test_changed_raw_file_reruns_only_that_scene(toy):
    _run(toy)
    toy["log"].unlink()
    time.sleep(0.01)
    (toy["raw"] / "s2.txt").write_text("7 7 7")
    reports = _run(toy)
    assert reports["scenes"].done == 1 and reports["scenes"].skipped == 3
    assert reports["shifted"].done == 1
    np.testing.assert_allclose(_values(toy)["s2"], [24.0, 24.0, 24.0])


def test_code_version_bump_invalidates(toy):
    _run(toy)
    toy["stages"].write_text(toy["stages"].read_text().replace(
        'double_stage"\n    kind: scene\n    needs: [scenes]\n    version: 1', 'double_stage"\n    kind: scene\n    needs: [scenes]\n    version: 2'))
    graph = load_graph(toy["stages"])
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"])
    reasons = {p.stage.name: p.reason for p in plan_stages(graph, cfg)}
    assert reasons["double"] == "code version 1 -> 2"
    assert reasons["scenes"] == "up to date" and reasons["shifted"].startswith("upstream changed")


def test_broken_scene_fails_alone_and_is_reported(toy):
    (toy["raw"] / "s1.txt").write_text("bad data")
    reports = _run(toy)
    assert reports["scenes"].done == 3
    line = reports["scenes"].failed["s1"]
    assert line.startswith("scene s1: file ") and "s1.txt" in line and line.endswith("not a list of numbers")
    assert reports["double"].blocked == 1 and reports["double"].done == 3
    assert store.stage_attrs(toy["store"], "scenes")["failed"] == {"s1": line}
    (toy["raw"] / "s1.txt").write_text("1 2 3")
    reports = _run(toy)
    assert reports["scenes"].done == 1 and reports["scenes"].failed == {}
    assert sorted(_values(toy)) == ["s0", "s1", "s2", "s3"]


def test_unexpected_error_is_one_line_with_traceback_logged(toy, tmp_path):
    text = toy["stages"].read_text().replace("toy_pipeline:shifted_stage", "toy_pipeline:boom_stage")
    toy["stages"].write_text(text)
    reports = _run(toy)
    line = reports["shifted"].failed["s0"]
    assert "unexpected ZeroDivisionError: deliberate" in line
    log = Path(line.split("traceback: ")[1].rstrip(")"))
    assert "boom_stage" in log.read_text()


def test_half_written_scene_is_not_done_and_is_recomputed(toy):
    _run(toy)
    group = store.open_stage(toy["store"], "double", mode="a")["s3"]
    del group.attrs["done"]  # what a kill between the arrays and the marker leaves
    assert "s3" not in store.done_scenes(toy["store"], "double")
    toy["log"].unlink()
    reports = _run(toy)
    assert reports["double"].done == 1 and reports["shifted"].skipped == 4


def test_dask_local_cluster_gives_same_values(toy, tmp_path):
    serial = _run(toy)
    expected = _values(toy)
    graph = load_graph(toy["stages"])
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=str(tmp_path / "dask"), workers=2)
    reports = {r.name: r for r in run(graph, cfg)}
    assert reports["shifted"].done == serial["shifted"].done == 4
    got = {s: store.read_scene(cfg.store_root, "shifted", s)["values"] for s in expected}
    for s in expected:
        np.testing.assert_array_equal(got[s], expected[s])


def test_kill_mid_stage_then_rerun_equals_clean_run(toy, tmp_path):
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--dataset", "toy", "--data-root", str(toy["raw"]),
           "--store-root", toy["store"], "--stages-file", str(toy["stages"]), "--workers", "0",
           "--set", "double.sleep=0.4"]
    env = {**os.environ}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(store.done_scenes(toy["store"], "double")) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(store.done_scenes(toy["store"], "double")) < 4
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    resumed = _values(toy)
    clean = tmp_path / "clean"
    subprocess.run([*cmd[:9], str(clean), *cmd[10:]], env=env, check=True, capture_output=True)
    for s, v in _values({**toy, "store": str(clean)}).items():
        np.testing.assert_array_equal(resumed[s], v)
    assert len(resumed) == 4


def test_second_concurrent_run_is_refused(toy):
    from pipeline.errors import PipelineError
    from pipeline.lock import StoreLock

    with StoreLock(toy["store"]):
        with pytest.raises(PipelineError, match="in use by another run"):
            with StoreLock(toy["store"]):
                pass
    with StoreLock(toy["store"]):  # released after the first run
        pass


def test_variant_replaces_stage_and_invalidates_downstream(toy):
    _run(toy)
    toy["log"].unlink()
    reports = _run(toy, variants={"double": "negate"})
    assert reports["double"].done == 4 and reports["shifted"].done == 4 and reports["scenes"].skipped == 4
    np.testing.assert_allclose(_values(toy)["s1"], -(np.arange(5) + 1.0) + 10.0)
    graph = load_graph(toy["stages"])
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"])
    assert {p.stage.name: p.reason for p in plan_stages(graph, cfg)}["double"] == "variant negate -> default"
    with pytest.raises(Exception, match="stage 'double' has no variant 'halve' \\(known: default, negate\\)"):
        _run(toy, variants={"double": "halve"})


def test_stages_file_from_the_environment(toy, monkeypatch):
    """$HICL_STAGES_FILE points every command that names no stages file at another graph."""
    monkeypatch.setenv("HICL_STAGES_FILE", str(toy["stages"]))
    graph = load_graph()
    assert set(graph.datasets) == {"toy"} and "double" in graph.stages
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"], workers=0)
    assert {r.name: r.done for r in run(graph, cfg)}["shifted"] == 4


def test_plan_gives_every_stage_and_scene_a_status_and_a_reason(toy):
    """One planner: a fresh store rebuilds everything; a run makes it all up to date; a lost done
    marker resumes exactly that scene, with the reason, and the stages it feeds."""
    graph = load_graph(toy["stages"])
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"])
    fresh = plan_run(graph, cfg)
    assert {p.status for p in fresh.stages} == {Status.REBUILD} and fresh.scenes == ["s0", "s1", "s2", "s3"]
    assert fresh.stage("double").todo()["s1"].reason == "never run"
    _run(toy)
    done = plan_run(graph, cfg)
    assert all(p.status is Status.UP_TO_DATE and not p.todo() for p in done.stages)
    del store.open_stage(toy["store"], "double", mode="a")["s2"].attrs["done"]
    resumed = plan_run(graph, cfg)
    assert {p.stage.name: p.status for p in resumed.stages} == {
        "scenes": Status.UP_TO_DATE, "double": Status.RESUME, "offset": Status.UP_TO_DATE, "shifted": Status.UP_TO_DATE}
    assert {s: p.reason for s, p in resumed.stage("double").todo().items()} == {
        "s2": "half written by an interrupted run, recomputed"}
    assert resumed.stage("shifted").scenes["s2"].status is Status.UP_TO_DATE  # same inputs, same fingerprint
    assert {r.name: r.done for r in _run(toy).values()} == {"scenes": 0, "double": 1, "offset": 0, "shifted": 0}


def test_plan_without_a_scene_list_keeps_the_reason(toy, tmp_path):
    """A data root that does not exist: stage statuses still, no scene plans, the problem kept."""
    graph = load_graph(toy["stages"])
    cfg = RunConfig(dataset="toy", data_root=tmp_path / "nowhere", store_root=toy["store"])
    plan = plan_run(graph, cfg)
    assert plan.scene_problem == (f"data root {tmp_path / 'nowhere'} does not exist; --data-root takes the "
                                  "folder of the raw dataset 'toy'")
    assert all(p.scenes is None and p.status is Status.REBUILD for p in plan.stages)


def _module_imports(body: list) -> list:
    """The import statements of a module's top level, those under `if TYPE_CHECKING:` included."""
    import ast

    found = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            found += _module_imports(node.body + node.orelse)
    return found


def test_pipeline_modules_import_no_cycle():
    """The modules of pipeline/ import each other one way (module-level imports, type-checking
    ones too; a function may import lazily): the planner, the runner and the pre-flight included."""
    import ast
    from graphlib import TopologicalSorter

    root = Path(__file__).resolve().parents[1]
    modules = {".".join(p.relative_to(root).with_suffix("").parts): p for p in (root / "pipeline").rglob("*.py")}
    modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in _module_imports(ast.parse(path.read_text()).body):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in modules and d != name}
    TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle
