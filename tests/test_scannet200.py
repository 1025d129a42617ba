"""ScanNet200 from the same scenes store: raw per-vertex ids kept by the reader, the class-set
label maps and splits, the cache promise (20 <-> 200 reruns only text, pseudo and refine),
head/common/tail mIoU, and the one-line refusals (NYU40-only scene, class list too long for u8)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from rooms import copy_rooms

from pipeline import classes as classes_mod
from pipeline import store
from pipeline.classes import read_class_names
from pipeline.clip.model import TINY_CONFIG
from pipeline.datasets.base import LABELMAPS
from pipeline.datasets.scannet import RAW_LABELS_TSV, ScanNetReader
from pipeline.errors import PipelineError, SceneError
from pipeline.labels.maskclip3d import score_scenes, summary
from pipeline.labelsets import NYU40, RAW, class_groups, eval_labels
from pipeline.metrics import miou_by_group
from pipeline.plan import RunConfig, plan_run
from pipeline.runner import run
from pipeline.stages import load_graph

SCENE = "scene0000_00"
TINY = {"model_name": "tiny", "pretrained": "none", "model_config": TINY_CONFIG, "device": "cpu"}
PARAMS = {"frame_skip": 1, "image_size": [64, 80], "depth_scale": 1000.0, "frames_root": None}
# NYU40 ids of the synthetic rooms written as a ScanNet200 common / tail category (the others as
# the ScanNet200 category with the lowest raw id of their NYU40 id), so every split is present
RAW_NAME_OF_NYU40 = {24: "mini fridge", 40: "bowl"}


def _tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a labelmap TSV (comment lines left out) as dicts by header name."""
    lines = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [dict(zip(lines[0], row, strict=True)) for row in lines[1:]]


def annotate(root: Path, scene: str) -> dict[int, int]:
    """Give a synthetic scene ScanNet's aggregation and segments files, made from its labels PLY
    (segments: runs of 64 vertices within one NYU40 label; one labelled group per NYU40 id), and
    DATA_ROOT the raw label table; returns the raw category id chosen for each NYU40 id."""
    raw_rows = _tsv(LABELMAPS / "scannet_raw_nyu40.tsv")
    benchmark = {int(r["raw_id"]) for r in _tsv(LABELMAPS / "scannet200.tsv")}
    by_name = {r["category"]: int(r["raw_id"]) for r in raw_rows}
    (root / RAW_LABELS_TSV).write_text("id\traw_category\tnyu40id\n" + "".join(
        f"{r['raw_id']}\t{r['category']}\t{r['nyu40_id']}\n" for r in raw_rows))
    d = root / "scans" / scene
    nyu = np.asarray(PlyData.read(str(d / f"{scene}_vh_clean_2.labels.ply"))["vertex"]["label"], np.int64)
    _, seg = np.unique(nyu * len(nyu) + np.arange(len(nyu)) // 64, return_inverse=True)
    chosen, groups = {}, []
    for k in sorted(set(nyu.tolist()) - {0}):
        candidates = sorted(int(r["raw_id"]) for r in raw_rows if int(r["nyu40_id"]) == k)
        in_200 = [i for i in candidates if i in benchmark]
        chosen[k] = by_name[RAW_NAME_OF_NYU40[k]] if k in RAW_NAME_OF_NYU40 else (in_200 or candidates)[0]
        name = next(r["category"] for r in raw_rows if int(r["raw_id"]) == chosen[k])
        groups.append({"id": len(groups), "objectId": len(groups), "label": name,
                       "segments": sorted(set(seg[nyu == k].tolist()))})
    (d / f"{scene}.aggregation.json").write_text(json.dumps({"sceneId": scene, "segGroups": groups}))
    (d / f"{scene}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": seg.tolist()}))
    shutil.rmtree(d / "label-filt", ignore_errors=True)  # ScanNet's 2D labels would be raw ids too
    return chosen


@pytest.fixture(scope="module")
def raw(room_template: Path, tmp_path_factory) -> tuple[Path, dict[int, int]]:
    """One synthetic room (3 frames) with aggregation and segments files."""
    root = copy_rooms(room_template, tmp_path_factory.mktemp("scannet200"), 1, frames=3)
    return root, annotate(root, SCENE)


def _cfg(root: Path, stores: Path, classes: str) -> RunConfig:
    return RunConfig(dataset="synthetic-scannet", data_root=root, store_root=str(stores), workers=0,
                     variants={"features": "default", "pseudo": "default", "text": "default"},
                     overrides={"scenes": {"image_size": PARAMS["image_size"]}, "features": TINY,
                                "text": {**TINY, "classes": classes}})


@pytest.fixture(scope="module")
def preprocessed(raw: tuple[Path, dict[int, int]], tmp_path_factory) -> Path:
    """The room preprocessed with the 20 classes (every stage done)."""
    stores = tmp_path_factory.mktemp("stores") / "s"
    reports = run(load_graph(), _cfg(raw[0], stores, "scannet20"))
    assert all(r.done == 1 and not r.failed for r in reports), reports
    return stores


def test_class_files_agree():
    names = read_class_names("scannet200")
    rows = _tsv(LABELMAPS / "scannet200.tsv")
    assert len(names) == 200 and [r["name"] for r in rows] == names
    assert [int(r["label"]) for r in rows] == list(range(200))
    listed = {int(r["raw_id"]) for r in _tsv(LABELMAPS / "scannet_raw_nyu40.tsv")}
    assert {int(r["raw_id"]) for r in rows} <= listed
    groups = class_groups("scannet200")
    assert list(groups) == ["head", "common", "tail"] and [len(g) for g in groups.values()] == [66, 68, 66]
    assert sorted(sum(groups.values(), [])) == list(range(200))
    assert names[groups["tail"][0]] == "paper" and class_groups("scannet20") == {}


def test_reader_keeps_raw_category_ids(raw: tuple[Path, dict[int, int]]):
    root, chosen = raw
    rec = ScanNetReader(root, PARAMS).read(SCENE)
    nyu = np.asarray(PlyData.read(str(root / "scans" / SCENE / f"{SCENE}_vh_clean_2.labels.ply"))["vertex"]["label"],
                     np.int64)
    assert rec["raw_label_space"] == RAW and rec["raw_labels"].dtype == np.int32
    expected = np.array([chosen.get(int(k), 0) for k in range(max(nyu) + 1)])[nyu]
    np.testing.assert_array_equal(rec["raw_labels"], expected)
    # scannet20 from raw ids (through NYU40) is the record's own 20-class labels
    np.testing.assert_array_equal(eval_labels("scannet20", rec, SCENE), rec["labels"])
    s200 = eval_labels("scannet200", rec, SCENE)
    assert s200.dtype == np.int16 and s200.min() == -1 and s200.max() < 200
    names = read_class_names("scannet200")
    assert {names[c] for c in np.unique(s200[nyu == 24])} == {"mini fridge"}
    assert {names[c] for c in np.unique(s200[nyu == 1])} == {"wall"}
    assert (s200[nyu == 0] == -1).all()
    # the other class sets (and records without raw ids) evaluate against `labels`
    np.testing.assert_array_equal(eval_labels("nuscenes16", rec, SCENE), rec["labels"])


def test_nyu40_only_scene_is_refused_for_scannet200_in_one_line(raw: tuple[Path, dict[int, int]],
                                                                tmp_path: Path):
    root = Path(shutil.copytree(raw[0], tmp_path / "raw"))
    (root / "scans" / SCENE / f"{SCENE}.aggregation.json").unlink()
    rec = ScanNetReader(root, PARAMS).read(SCENE)
    assert rec["raw_label_space"] == NYU40
    np.testing.assert_array_equal(eval_labels("scannet20", rec, SCENE), rec["labels"])
    with pytest.raises(SceneError) as err:
        eval_labels("scannet200", rec, SCENE)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"scene {SCENE}: class set scannet200 needs ScanNet's raw "
                                                "category ids"), line
    assert f"{SCENE}.aggregation.json" in line and f"{SCENE}_vh_clean_2.0.010000.segs.json" in line
    # a record without raw ids (own scans) holds labels in the run's class set
    np.testing.assert_array_equal(eval_labels("scannet200", {"labels": rec["labels"]}, SCENE), rec["labels"])


def test_switching_to_scannet200_reruns_only_text_and_the_label_stages(raw, preprocessed: Path, tmp_path: Path):
    stores = Path(shutil.copytree(preprocessed, tmp_path / "stores"))
    graph, cfg = load_graph(), _cfg(raw[0], stores, "scannet200")
    plans = plan_run(graph, cfg).stages
    rerun = {p.stage.name for p in plans if p.computes}
    assert rerun == {"text", "pseudo", "refine", "vote"}, {p.stage.name: p.reason for p in plans}
    reports = {r.name: (r.done, r.skipped) for r in run(graph, cfg)}
    assert reports == {"scenes": (0, 1), "features": (0, 1), "pairs": (0, 1), "geosets": (0, 1),
                       "text": (1, 0), "pseudo": (1, 0), "refine": (1, 0), "vote": (1, 0)}
    label = store.read_scene(stores, "pseudo", SCENE)["label"]
    assert label.dtype == np.uint8 and label.max() < 200
    names = list(store.stage_attrs(stores, "text", store.GLOBAL)["class_names"])
    assert len(names) == 200
    result = summary(score_scenes(str(stores), "refine", [SCENE], len(names)), names, "scannet200")
    assert result["class_set"] == "scannet200" and len(result["iou"]) == 200
    assert all(np.isfinite(result[f"miou_{g}"]) for g in ("head", "common", "tail")), result
    assert "miou_head" not in summary(score_scenes(str(preprocessed), "refine", [SCENE], 20),
                                      read_class_names("scannet20"), "scannet20")
    # the trainer's evaluation items carry the same ScanNet200 ground truth
    from trainer.config import load_config
    from trainer.data import SceneDataset

    cfg = load_config("synthetic-scannet", [f"store_root={stores}"])
    item = SceneDataset(cfg, [SCENE], 200, train=False)[(1, 0, 0)]
    rec = {**store.stage_attrs(stores, "scenes", SCENE),
           **store.read_arrays(stores, "scenes", SCENE, ["raw_labels"])}
    np.testing.assert_array_equal(item["point_labels"], eval_labels("scannet200", rec, SCENE))


def test_class_list_longer_than_u8_labels_is_refused(raw, preprocessed: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(classes_mod, "CLASSES_DIR", tmp_path)
    (tmp_path / "huge.txt").write_text("".join(f"class {i}\n" for i in range(300)))
    with pytest.raises(PipelineError) as err:
        read_class_names("huge")
    line = str(err.value)
    assert "\n" not in line and line.startswith("class set 'huge'") and "256" in line and "u8" in line, line
    with pytest.raises(PipelineError, match="the inline class list has 300 classes, more than the 256"):
        read_class_names([f"c{i}" for i in range(300)])
    assert len(read_class_names([f"c{i}" for i in range(256)])) == 256
    # in a run: the pre-flight refuses it before any task starts; the stores stay as they were
    stores = Path(shutil.copytree(preprocessed, tmp_path / "stores"))
    text_before = store.stage_attrs(str(stores), "text")
    with pytest.raises(PipelineError) as err:
        run(load_graph(), _cfg(raw[0], stores, "huge"))
    line = str(err.value)
    assert "\n" not in line and line.startswith("stage 'text': class set 'huge'") and "256" in line, line
    assert store.stage_attrs(str(stores), "text") == text_before


def test_miou_by_group_skips_absent_classes():
    iou = np.array([0.5, np.nan, 0.25, np.nan, 1.0])
    got = miou_by_group(iou, {"head": [0, 1], "common": [2, 4], "tail": [3]})
    assert got["miou_head"] == 0.5 and got["miou_common"] == 0.625 and np.isnan(got["miou_tail"])


def test_trainer_eval_record_has_head_common_tail():
    from trainer.engine import iou_record

    cm = np.diag([5, 0, 3, 0]).astype(np.int64)  # classes 0 and 2 right, 1 and 3 absent
    cm[0, 3] = 5  # half of class 0 predicted as 3: IoU(0) = 0.5, IoU(3) = 0
    confusions = {"points": cm, "observed": cm, "unmarked": np.zeros(1, bool)}
    record = iou_record(confusions, list("abcd"), {"head": [0, 1], "common": [2], "tail": [1]})
    assert record["miou_head"] == pytest.approx(0.5) and record["miou_common"] == pytest.approx(1.0)
    assert record["miou_tail"] is None  # no class of the group present
    assert "miou_head" not in iou_record(confusions, list("abcd"))
