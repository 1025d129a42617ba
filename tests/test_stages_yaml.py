"""stages.yaml validation: every mistake is rejected with a message naming the culprit."""
from __future__ import annotations

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.stages import load_graph, parse_graph

BASE = """
stages:
  scenes: {function: "pipeline.datasets.base:scenes_stage", kind: source, version: 1}
  a:
    function: "numpy:copy"
    kind: scene
    needs: [scenes]
    version: 1
    params:
      k: {type: int, default: 3}
      mode: {type: str, default: x, choices: [x, y]}
datasets:
  d: {reader: "pipeline.datasets.scannet:ScanNetReader", classes: scannet20}
"""


def _parse(text: str):
    return parse_graph(yaml.safe_load(text))


def test_repository_stages_file_is_valid():
    graph = load_graph()
    assert graph.order[0] == "scenes"
    assert {"scannet", "synthetic-scannet"} <= set(graph.datasets)
    for name in graph.order:
        graph.stages[name].resolve()  # every declared function imports


@pytest.mark.parametrize("text, message", [
    (BASE.replace("needs: [scenes]", "needs: [nope]"), "stage 'a' needs unknown stage 'nope'"),
    (BASE.replace("kind: scene", "kind: sometimes"), "stage 'a': kind must be one of"),
    (BASE.replace("k: {type: int, default: 3}", "k: {type: int, default: 3.5}"), "param 'k' must be int"),
    (BASE.replace("k: {type: int, default: 3}", "k: {type: integer, default: 3}"), "param 'k': unknown type 'integer'"),
    (BASE.replace("mode: {type: str, default: x", "mode: {type: str, default: z"), "param 'mode' must be one of ['x', 'y']"),
    (BASE.replace("version: 1\n    params", "version: one\n    params"), "stage 'a': version must be an int"),
    (BASE.replace('function: "numpy:copy"', 'function: "numpy.copy"'), "function must be 'module:function'"),
    (BASE.replace("    version: 1\n    params", "    versoin: 1\n    params"), "stage 'a': unknown key 'versoin'"),
    (BASE + "  e: {reader: x:Y, classes: c, stages: {zz: {}}}\n", "dataset 'e': overrides unknown stage 'zz'"),
    (BASE + "  e: {reader: x:Y, classes: c, stages: {a: {kk: 1}}}\n", "unknown param 'kk' for stage 'a'"),
    (BASE + "  e: {reader: x:Y, classes: c, stages: {a: {k: fast}}}\n", "param 'k' must be int"),
])
def test_invalid_graphs_are_rejected_with_the_culprit_named(text, message):
    with pytest.raises(PipelineError, match=__import__("re").escape(message)):
        _parse(text)


def test_cycle_is_rejected():
    text = BASE.replace("needs: [scenes]", "needs: [scenes, b]") + ""
    text = text.replace("datasets:", """  b:
    function: "numpy:copy"
    kind: scene
    needs: [a]
    version: 1
datasets:""")
    with pytest.raises(PipelineError, match="cycle"):
        _parse(text)


def test_missing_function_is_reported_at_resolve():
    graph = _parse(BASE.replace('"numpy:copy"', '"numpy:no_such_function"'))
    with pytest.raises(PipelineError, match="stage 'a': function 'numpy:no_such_function' cannot be imported"):
        graph.stages["a"].resolve()


def test_unknown_dataset_lists_known():
    graph = _parse(BASE)
    with pytest.raises(PipelineError, match=r"unknown dataset 'scannet' \(known: d\)"):
        graph.dataset("scannet")


def test_wrong_type_override_names_stage_and_param():
    graph = _parse(BASE)
    with pytest.raises(PipelineError, match="stage 'a'.*param 'k' must be int"):
        graph.stages["a"].resolve_params({"k": "x"}, "stage 'a'")
