"""Cache correctness at the command line: a changed param, stage code version or raw file reruns
exactly that stage (or scene) and its downstream stages, and `status` says why beforehand.

Runs the toy graph (scenes -> double -> shifted <- offset) through `hicl-pipeline` in this process.
The runner API is covered in test_runner.py (test_changed_param_invalidates_only_that_stage_and_downstream,
test_changed_raw_file_reruns_only_that_scene, test_code_version_bump_invalidates,
test_force_recomputes_stage_and_downstream_only, test_variant_replaces_stage_and_invalidates_downstream);
here: the explanation `status` prints for each cause, and that the next `run` does exactly that.
"""
from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from pipeline import store
from pipeline.cli import app


def cli(toy, command: str, *extra: str) -> str:
    """`hicl-pipeline COMMAND` on the toy dataset; returns the output (exit code 0, no exception)."""
    args = [command, "--dataset", "toy", "--data-root", str(toy["raw"]), "--store-root", toy["store"],
            "--stages-file", str(toy["stages"]), *extra]
    if command == "run":
        args += ["--workers", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and result.exception is None, result.output
    return result.output


def next_run(output: str) -> dict[str, list[str]]:
    """The `next run STAGE: why` lines of `status`, by stage."""
    out: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line.startswith("next run "):
            stage, _, why = line[len("next run "):].partition(": ")
            out.setdefault(stage, []).append(why)
    return out


def calls(toy) -> list[str]:
    """Stage calls logged since the last call of this function."""
    log = toy["log"]
    if not log.exists():
        return []
    entries = log.read_text().split()
    log.unlink()
    return sorted(entries)


def test_up_to_date_stores_need_nothing(toy):
    cli(toy, "run")
    calls(toy)
    status = cli(toy, "status")
    assert next_run(status) == {} and status.count("skip (up to date)") == 4
    cli(toy, "run")
    assert calls(toy) == []


def test_changed_param_reruns_its_stage_and_downstream(toy):
    cli(toy, "run")
    calls(toy)
    assert next_run(cli(toy, "status", "--set", "double.factor=3")) == {
        "double": ["rebuild: params changed: factor 2.0 -> 3.0"],
        "shifted": ["rebuild: upstream changed: double"]}
    cli(toy, "run", "--set", "double.factor=3")
    assert calls(toy) == ["double"] * 4 + ["shifted"] * 4
    np.testing.assert_allclose(store.read_scene(toy["store"], "shifted", "s1")["values"],
                               (np.arange(5) + 1) * 3.0 + 10.0)
    assert next_run(cli(toy, "status", "--set", "double.factor=3")) == {}
    assert next_run(cli(toy, "status")) == {
        "double": ["rebuild: params changed: factor 3.0 -> 2.0"],
        "shifted": ["rebuild: upstream changed: double"]}


def test_code_version_bump_reruns_its_stage_and_downstream(toy):
    cli(toy, "run")
    calls(toy)
    text = toy["stages"].read_text()
    old = 'double_stage"\n    kind: scene\n    needs: [scenes]\n    version: 1'
    assert text.count(old) == 1
    toy["stages"].write_text(text.replace(old, old[:-1] + "2"))
    assert next_run(cli(toy, "status")) == {
        "double": ["rebuild: code version 1 -> 2"],
        "shifted": ["rebuild: upstream changed: double"]}
    cli(toy, "run")
    assert calls(toy) == ["double"] * 4 + ["shifted"] * 4
    assert next_run(cli(toy, "status")) == {}


def test_changed_raw_file_reruns_its_scene_downstream(toy):
    cli(toy, "run")
    calls(toy)
    (toy["raw"] / "s2.txt").write_text("7 7 7")
    (toy["raw"] / "s4.txt").write_text("1 1")
    assert next_run(cli(toy, "status")) == {
        "scenes": [f"s2: raw file modified: {toy['raw'] / 's2.txt'}", "s4: not computed yet"],
        "double": ["s2: its inputs are recomputed (scenes)", "s4: not computed yet"],
        "shifted": ["s2: its inputs are recomputed (double)", "s4: not computed yet"]}
    cli(toy, "run")
    assert calls(toy) == ["double", "double", "scenes:s2", "scenes:s4", "shifted", "shifted"]
    np.testing.assert_allclose(store.read_scene(toy["store"], "shifted", "s2")["values"], [24.0] * 3)
    assert next_run(cli(toy, "status")) == {}


def test_interrupted_and_failed_scenes_are_explained(toy):
    (toy["raw"] / "s1.txt").write_text("bad data")
    result = CliRunner().invoke(app, ["run", "--dataset", "toy", "--data-root", str(toy["raw"]),
                                      "--store-root", toy["store"], "--stages-file", str(toy["stages"]),
                                      "--workers", "0"])
    assert result.exit_code == 1
    del store.open_stage(toy["store"], "double", mode="a")["s3"].attrs["done"]  # what a kill leaves
    status = cli(toy, "status")
    assert next_run(status) == {
        "scenes": ["s1: failed in the last run, retried"],
        "double": ["s1: not computed yet", "s3: half written by an interrupted run, recomputed"],
        "shifted": ["s1: not computed yet"]}
    assert f"failed scenes: scene s1: file {toy['raw'] / 's1.txt'}: not a list of numbers" in status.splitlines()
