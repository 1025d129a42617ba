"""stages.yaml validation: every mistake is rejected with a message naming the culprit."""
from __future__ import annotations

import re

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
    (BASE.replace("default: 3}", "default: 3, min: 5}"), "stage 'a' (default): param 'k' must be >= 5, got 3"),
    (BASE.replace("default: 3}", "default: 3, max: 2}"), "stage 'a' (default): param 'k' must be <= 2, got 3"),
    (BASE.replace("default: 3}", "default: 3, min: one}"), "param 'k': min must be a number, got 'one'"),
    (BASE.replace("default: 3}", "default: 3, min: 0, exclusive_min: 0}"),
     "param 'k': give min or exclusive_min, not both"),
    (BASE.replace("default: 3}", "default: 3, min: 5, max: 1}"), "param 'k': no value fits min: 5, max: 1"),
    (BASE.replace("default: 3}", "default: 3, exclusive_min: 1, max: 1}"),
     "param 'k': no value fits max: 1, exclusive_min: 1"),
    (BASE.replace("choices: [x, y]}", "choices: [x, y], min: 0}"),
     "param 'mode': bounds (min) apply to int and float params only"),
    (BASE.replace("default: 3}", "default: 3, min: 1}") + "  e: {reader: x:Y, classes: c, stages: {a: {k: 0}}}\n",
     "dataset 'e': param 'k' must be >= 1, got 0"),
])
def test_invalid_graphs_are_rejected_with_the_culprit_named(text, message):
    with pytest.raises(PipelineError, match=__import__("re").escape(message)):
        _parse(text)


RECORDS = """
records:
  r:
    required:
      points: {dtype: float32, rank: 2}
"""


@pytest.mark.parametrize("text, message", [
    (BASE.replace("    version: 1\n    params", "    version: 1\n    outputs: {x: {dtype: float33, rank: 1}}\n    params"),
     "stage 'a': outputs: key 'x': unknown dtype 'float33'"),
    (BASE.replace("    version: 1\n    params", "    version: 1\n    outputs: {x: {dtype: int32, rank: -1}}\n    params"),
     "stage 'a': outputs: key 'x': rank must be an int >= 0, got -1"),
    (BASE.replace("    version: 1\n    params", "    version: 1\n    outputs: {x: {dtype: int32}}\n    params"),
     "stage 'a': outputs: key 'x' needs dtype and rank (an array) or type (a value)"),
    (BASE.replace("    version: 1\n    params", "    version: 1\n    outputs: {x: {type: int, rank: 1}}\n    params"),
     "stage 'a': outputs: key 'x': give dtype and rank (an array) or type (a value), not both"),
    (BASE.replace("    version: 1\n    params", "    version: 1\n    outputs: {x: {type: integer}}\n    params"),
     "stage 'a': outputs: key 'x': unknown type 'integer'"),
    (BASE.replace("    version: 1\n    params", "    version: 1\n    outputs: {x: {dtype: int32, rank: 1, shape: 3}}\n    params"),
     "stage 'a': outputs: key 'x': unknown key 'shape'"),
    (BASE.replace("    version: 1\n    params", "    version: 1\n    outputs: {}\n    params"),
     "stage 'a': outputs must declare at least one key"),
    (BASE + "  e: {reader: x:Y, classes: c, record: mesh}\n", "dataset 'e': unknown record kind 'mesh' (known: none)"),
    (RECORDS + BASE + "  e: {reader: x:Y, classes: c, record: mesh}\n", "dataset 'e': unknown record kind 'mesh' (known: r)"),
    (RECORDS.replace("required:", "requird:") + BASE, "record 'r': unknown key 'requird'"),
    (RECORDS + "    optional:\n      points: {dtype: float32, rank: 2}\n" + BASE,
     "record 'r': key 'points' is both required and optional"),
    (RECORDS + BASE.replace("kind: source,", "kind: source, outputs: {points: {type: list}},"),
     "record 'r' declares 'points', which source stage 'scenes' already writes"),
    (RECORDS + BASE + "  e: {reader: x:Y, classes: c, record: r, channels: [colors]}\n",
     "dataset 'e': channel 'colors' is not a per-point array of record 'r' (known: points)"),
    (BASE + "  e: {reader: x:Y, classes: c, channels: colors}\n",
     "dataset 'e': channels must be a non-empty list of record array names, got 'colors'"),
], ids=["dtype", "rank", "no rank", "both", "type", "unknown key", "empty outputs", "no records", "unknown record",
        "record key", "required and optional", "record repeats a stage output", "channel", "channels not a list"])
def test_invalid_contract_declarations_are_rejected(text, message):
    with pytest.raises(PipelineError, match=re.escape(message)):
        _parse(text)


def test_variants_write_their_stage_outputs():
    text = BASE.replace("    version: 1\n    params", "    version: 1\n    outputs: {x: {dtype: int32, rank: 1}}\n    params")
    graph = _parse(text.replace("      mode: {type: str, default: x, choices: [x, y]}\n",
                                "      mode: {type: str, default: x, choices: [x, y]}\n"
                                "    variants:\n      v: {function: \"numpy:zeros\"}\n"))
    assert graph.stages["a"].variants["v"].outputs == graph.stages["a"].outputs
    with pytest.raises(PipelineError, match="variant 'v' cannot declare outputs"):
        _parse(text.replace("      mode: {type: str, default: x, choices: [x, y]}\n",
                            "      mode: {type: str, default: x, choices: [x, y]}\n"
                            "    variants:\n      v: {function: \"numpy:zeros\", outputs: {y: {type: int}}}\n"))


def test_stage_params_fill_every_declared_default():
    from pipeline.stages import stage_params

    assert stage_params("pairs") == {"min_depth": 0.0, "border": 0, "depth_abs_tol": 0.05,
                                     "depth_rel_tol": None, "occlusion": False}
    assert stage_params("pairs", {"occlusion": True}, dataset="nuscenes")["min_depth"] == 1.0
    assert stage_params("pseudo", dataset="synthetic-nuscenes")["num_classes"] == 16  # its variant
    assert stage_params("pseudo", variant="simulated-points")["num_classes"] == 20
    assert stage_params("scenes", dataset="scannet")["frame_skip"] == 20
    with pytest.raises(PipelineError, match="stage 'scenes' reads a dataset: name it"):
        stage_params("scenes")
    with pytest.raises(PipelineError, match="stage 'pairs': unknown param 'bordr' for stage 'pairs'"):
        stage_params("pairs", {"bordr": 1})


@pytest.mark.parametrize("dataset, voxel, seed", [
    ("scannet", 0.05, 0.3), ("synthetic-scannet", 0.05, 0.3), ("nuscenes", 0.2, 2.0), ("synthetic-nuscenes", 0.2, 2.0)])
def test_vccs_sizes_are_declared_per_dataset(dataset, voxel, seed):
    from pipeline.stages import stage_params

    params = stage_params("geosets", dataset=dataset)
    assert (params["voxel_resolution"], params["seed_resolution"]) == (voxel, seed)


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


@pytest.mark.parametrize("bounds, inside, outside, text", [
    ("min: 1", [1, 7], [0, -3], ">= 1"),
    ("exclusive_min: 0", [1e-9, 5.0], [0.0, -1.0], "> 0"),
    ("min: 0, max: 1", [0.0, 0.5, 1.0], [-0.1, 1.01], "in [0, 1]"),
    ("exclusive_min: 0, max: 1", [0.2, 1.0], [0.0, 1.5], "in (0, 1]"),
    ("max: 4", [4.0, -9.0], [4.5], "<= 4"),
], ids=["min", "exclusive_min", "min and max", "exclusive_min and max", "max"])
def test_param_ranges_are_inclusive_unless_exclusive(bounds, inside, outside, text):
    graph = _parse(BASE.replace("k: {type: int, default: 3}", f"k: {{type: float, default: null, nullable: true, {bounds}}}"))
    stage = graph.stages["a"]
    assert stage.resolve_params({"k": None}, "stage 'a'")["k"] is None  # null is not a number: no range
    for value in inside:
        assert stage.resolve_params({"k": value}, "stage 'a'")["k"] == value
    for value in outside:
        with pytest.raises(PipelineError, match=rf"^stage 'a': param 'k' must be {re.escape(text)}, got "):
            stage.resolve_params({"k": value}, "stage 'a'")


@pytest.mark.parametrize("stage, variant, param, text", [
    ("geosets", None, "k_thresh", "> 0"),
    ("geosets", None, "seg_min_verts", ">= 1"),
    ("geosets", None, "voxel_resolution", "> 0"),
    ("geosets", None, "seed_resolution", "> 0"),
    ("geosets", None, "normal_importance", ">= 0"),
    ("pairs", None, "min_depth", ">= 0"),
    ("pairs", None, "border", ">= 0"),
    ("pairs", None, "depth_abs_tol", "> 0"),
    ("pairs", None, "depth_rel_tol", "> 0"),
    ("pseudo", None, "temperature", "> 0"),
    ("pseudo", None, "denoise_threshold", "in [0, 1]"),
    ("features", None, "batch_size", ">= 1"),
    ("features", "simulated", "scene_confusion_prob", "in [0, 1]"),
    ("features", "simulated", "view_confusion_strength", "in [0, 1]"),
    ("features", "simulated", "noise_std", ">= 0"),
    ("features", "simulated", "bleed_px", ">= 0"),
    ("pseudo", "simulated-points", "pixel_error", "in [0, 1]"),
    ("pseudo", "simulated-points", "region_size", "> 0"),
])
def test_repository_params_carry_their_ranges(stage, variant, param, text):
    graph = load_graph()
    declared = graph.stages[stage] if variant is None else graph.stages[stage].variants[variant]
    assert declared.params[param].range_text() == text


@pytest.mark.parametrize("dataset, param, text", [
    ("scannet", "frame_skip", ">= 1"),
    ("synthetic-scannet", "depth_scale", "> 0"),
    ("nuscenes", "sweeps", ">= 1"),
])
def test_repository_dataset_params_carry_their_ranges(dataset, param, text):
    assert load_graph().datasets[dataset].reader_params[param].range_text() == text


def test_nuscenes_cameras_are_declared_once_and_checked_per_item():
    """The camera list is one YAML anchor: the default of both nuScenes datasets and the channels
    a run may name."""
    graph = load_graph()
    cameras = graph.datasets["nuscenes"].reader_params["cameras"]
    assert list(cameras.choices) == cameras.default == graph.datasets["synthetic-nuscenes"].reader_params["cameras"].default
    assert graph.params("scenes", "nuscenes", {"cameras": ["CAM_BACK", "CAM_FRONT"]})["cameras"] == ["CAM_BACK", "CAM_FRONT"]
    with pytest.raises(PipelineError, match="^dataset 'nuscenes': param 'cameras' must be items from \\['CAM_FRONT', "
                                            ".*\\], got 'CAM_TOP'$"):
        graph.params("scenes", "nuscenes", {"cameras": ["CAM_FRONT", "CAM_TOP"]})
