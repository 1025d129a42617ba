"""ScanNet's raw ``.sens`` stream read in place of exported frames, the shared colour decoding
(JPEG draft mode), and the vectorised PLY reads.

A synthetic room's exported frames are packed into a ``.sens`` (the same JPEG bytes, the depth
PNGs as zlib uint16, the poses and depth intrinsics), and a copy of the room without its exported
folders must give the same ``scenes`` record array for array. The exported poses and intrinsics
are first rewritten with every digit of their float32 values, so that the float32 ``.sens`` and
the text files hold the same numbers.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData, PlyElement, PlyElementParseError

from pipeline.datasets import sens as sens_mod
from pipeline.datasets.scannet import TRIANGLES, ScanNetReader, read_mesh, read_vertex_element
from pipeline.datasets.sens import (
    SensFile,
    SensFrame,
    SensHeader,
    color_image,
    encode_depth,
    write_sens,
)
from pipeline.errors import SceneError
from pipeline.runner import RunConfig, run
from pipeline.stages import load_graph

SCENE = "scene0000_00"
PARAMS = {"frame_skip": 1, "image_size": [120, 160], "depth_scale": 1000.0, "frames_root": None}
EXPORTED = ("color", "depth", "pose", "intrinsic")


def _f32_exact(path: Path) -> np.ndarray:
    """Rewrite a matrix text file with its float32 values written in full; return them."""
    m = np.loadtxt(path).astype(np.float32)
    np.savetxt(path, m.astype(np.float64), fmt="%.17g")
    return m


def sens_of(scene_dir: Path, out: Path, frames: list[SensFrame] | None = None) -> Path:
    """Pack a scene's exported frames into ``out`` (a .sens); ``frames`` replaces them if given."""
    intr = scene_dir / "intrinsic"
    ids = sorted(int(p.stem) for p in (scene_dir / "color").glob("*.jpg"))
    depth0 = np.asarray(Image.open(scene_dir / "depth" / f"{ids[0]}.png"))
    with Image.open(scene_dir / "color" / f"{ids[0]}.jpg") as im:
        color_hw = (im.height, im.width)
    header = SensHeader(intrinsic_color=np.loadtxt(intr / "intrinsic_color.txt"),
                        intrinsic_depth=np.loadtxt(intr / "intrinsic_depth.txt"),
                        extrinsic_color=np.loadtxt(intr / "extrinsic_color.txt"),
                        extrinsic_depth=np.loadtxt(intr / "extrinsic_depth.txt"),
                        color_hw=color_hw, depth_hw=depth0.shape)
    if frames is None:
        frames = [SensFrame(np.loadtxt(scene_dir / "pose" / f"{i}.txt"),
                            (scene_dir / "color" / f"{i}.jpg").read_bytes(),
                            encode_depth(np.asarray(Image.open(scene_dir / "depth" / f"{i}.png"))),
                            timestamp_color=1000 * i, timestamp_depth=1000 * i)
                  for i in ids]
    write_sens(out, header, frames)
    return out


def two_layouts(template: Path, tmp: Path, inf_pose: int | None = None) -> tuple[Path, Path, Path]:
    """(exported root, .sens root, the .sens) of the template room, optionally one pose -inf."""
    exported = Path(shutil.copytree(template, tmp / "exported"))
    scene_dir = exported / "scans" / SCENE
    for pose in (scene_dir / "pose").glob("*.txt"):
        _f32_exact(pose)
    _f32_exact(scene_dir / "intrinsic" / "intrinsic_depth.txt")
    if inf_pose is not None:
        (scene_dir / "pose" / f"{inf_pose}.txt").write_text("\n".join(["-inf -inf -inf -inf"] * 4) + "\n")
    raw = Path(shutil.copytree(exported, tmp / "sens"))
    sens = sens_of(scene_dir, raw / "scans" / SCENE / f"{SCENE}.sens")
    for sub in EXPORTED:
        shutil.rmtree(raw / "scans" / SCENE / sub)
    return exported, raw, sens


def assert_same_records(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            assert got[key].dtype == value.dtype, key
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        elif key == "skipped_frames":  # same reasons and counts; the places differ (files vs frames)
            assert {r: len(p) for r, p in got[key].items()} == {r: len(p) for r, p in value.items()}
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("frame_skip", [1, 2])
def test_sens_record_equals_exported_record(room_template: Path, tmp_path: Path, frame_skip: int):
    exported, raw, sens = two_layouts(room_template, tmp_path)
    params = {**PARAMS, "frame_skip": frame_skip}
    reader = ScanNetReader(raw, params)
    assert reader.sens_path(SCENE) == sens
    got, expected = reader.read(SCENE), ScanNetReader(exported, params).read(SCENE)
    assert_same_records(got, expected)
    assert list(got["frame_ids"]) == list(range(0, 6, frame_skip))
    assert "frame_labels" in got and got["skipped_frames"] == {}


def test_inf_pose_is_skipped_like_an_exported_one(room_template: Path, tmp_path: Path):
    exported, raw, sens = two_layouts(room_template, tmp_path, inf_pose=1)
    got, expected = ScanNetReader(raw, PARAMS).read(SCENE), ScanNetReader(exported, PARAMS).read(SCENE)
    assert_same_records(got, expected)
    assert list(got["frame_ids"]) == [0, 2, 3, 4, 5]
    assert got["skipped_frames"] == {"pose not finite (-inf/nan)": [f"{sens} frame 1"]}


def test_frames_dropped_by_frame_skip_are_never_decoded(room_template: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    _, raw, _ = two_layouts(room_template, tmp_path, inf_pose=2)
    decoded: list[int] = []
    color, depth = sens_mod.decode_color, sens_mod.decode_depth
    monkeypatch.setattr(sens_mod, "decode_color",
                        lambda data, path, i, size=None: decoded.append(i) or color(data, path, i, size))
    monkeypatch.setattr(sens_mod, "decode_depth", lambda data, hw, path, i: decoded.append(i) or depth(data, hw, path, i))
    rec = ScanNetReader(raw, {**PARAMS, "frame_skip": 2}).read(SCENE)
    assert list(rec["frame_ids"]) == [0, 4]
    assert decoded == [0, 0, 4, 4]  # frame 2 (-inf pose) and the odd frames: not decoded


def test_manifest_lists_the_sens_file(room_template: Path, tmp_path: Path):
    _, raw, sens = two_layouts(room_template, tmp_path)
    reader = ScanNetReader(raw, {**PARAMS, "frame_skip": 2})
    before = reader.manifest(SCENE)
    paths = [p for p, _, _ in before]
    assert (str(sens), sens.stat().st_size, sens.stat().st_mtime_ns) in before
    assert not any("/color" in p or "intrinsic" in p for p in paths)
    labels = raw / "scans" / SCENE / "label-filt"
    assert [p for p in paths if "label-filt" in p] == [str(labels / f"{i}.png") for i in (0, 2, 4)]
    with open(sens, "ab") as f:
        f.write(b"\0")
    assert reader.manifest(SCENE) != before


def test_undecodable_frame_is_skipped_with_one_reason(room_template: Path, tmp_path: Path):
    _, raw, sens = two_layouts(room_template, tmp_path)
    scene_dir = room_template / "scans" / SCENE
    good = [SensFrame(np.loadtxt(scene_dir / "pose" / f"{i}.txt"), (scene_dir / "color" / f"{i}.jpg").read_bytes(),
                      encode_depth(np.asarray(Image.open(scene_dir / "depth" / f"{i}.png")))) for i in range(6)]
    frames = [good[0], SensFrame(good[1].camera_to_world, good[1].color, b"not zlib"),
              SensFrame(good[2].camera_to_world, b"not a jpeg", good[2].depth), *good[3:]]
    sens_of(scene_dir, sens, frames)
    rec = ScanNetReader(raw, PARAMS).read(SCENE)
    assert list(rec["frame_ids"]) == [0, 3, 4, 5]
    [(reason, where)] = rec["skipped_frames"].items()
    assert reason == "frame does not decode (.sens)" and len(where) == 2
    assert where[0].startswith(f"{sens} frame 1: depth of frame 1 does not decode (zlib")
    assert where[1].startswith(f"{sens} frame 2: colour of frame 2 does not decode")


def test_truncated_sens_fails_its_scene_with_one_line(room_template: Path, tmp_path: Path):
    _, raw, sens = two_layouts(room_template, tmp_path)
    size = sens.stat().st_size
    sens.write_bytes(sens.read_bytes()[: size // 2])
    with pytest.raises(SceneError) as err:
        ScanNetReader(raw, PARAMS).read(SCENE)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"file {sens}: truncated .sens: frame "), line
    cfg = RunConfig(dataset="synthetic-scannet", data_root=raw, store_root=str(tmp_path / "stores"),
                    stages=("scenes",), workers=0, overrides={"scenes": {"image_size": [60, 80]}})
    report = {r.name: r for r in run(load_graph(), cfg)}["scenes"]
    assert report.failed == {SCENE: f"scene {SCENE}: {line}"}


def test_sens_header_defects_are_named(room_template: Path, tmp_path: Path):
    _, _, sens = two_layouts(room_template, tmp_path)
    data = bytearray(sens.read_bytes())
    with SensFile(sens) as f:
        header, n = f.header, len(f.frames)
    assert header.num_frames == n == 6 and header.depth_shift == 1000.0 and header.depth_hw == (240, 320)
    codes_at = 12 + len(header.sensor_name) + 4 * 64
    for offset, value, message in [(0, 3, ".sens version 3 is not supported (expected 4)"),
                                   (codes_at, 0, ".sens colour compression type 0 is not supported"),
                                   (codes_at + 4, 2, ".sens depth compression type 2 is not supported")]:
        bad = bytearray(data)
        bad[offset: offset + 4] = int(value).to_bytes(4, "little")
        sens.write_bytes(bytes(bad))
        with pytest.raises(SceneError) as err:
            SensFile(sens)
        assert str(err.value).startswith(f"file {sens}: {message}"), str(err.value)
    sens.write_bytes(bytes(data[:20]))
    with pytest.raises(SceneError, match="truncated .sens: file ends inside the header"):
        SensFile(sens)


def test_vectorised_faces_equal_the_per_face_parse(room_template: Path, tmp_path: Path):
    ply = room_template / "scans" / SCENE / f"{SCENE}_vh_clean_2.ply"
    assert PlyData.read(str(ply), known_list_len=TRIANGLES)["face"].data["vertex_indices"].dtype != object
    plain = np.vstack(PlyData.read(str(ply), mmap=False)["face"].data["vertex_indices"]).astype(np.int32)
    faces = read_mesh(ply)["faces"]
    assert faces.dtype == np.int32 and not isinstance(faces, np.memmap)
    np.testing.assert_array_equal(faces, plain)
    # a quad among the triangles: the vectorised read refuses it, the per-face parse names it
    vert = PlyData.read(str(ply))["vertex"].data[:5]
    face = np.empty(2, [("vertex_indices", "O")])
    face["vertex_indices"] = [np.array([0, 1, 2], np.int32), np.array([1, 2, 3, 4], np.int32)]
    mixed = tmp_path / "mixed.ply"
    PlyData([PlyElement.describe(np.array(vert), "vertex"), PlyElement.describe(face, "face")]).write(str(mixed))
    with pytest.raises(SceneError, match="faces must be triangles, got 3, 4 vertices per face"):
        read_mesh(mixed)


def test_labels_ply_is_read_without_its_faces(room_template: Path, tmp_path: Path):
    labels = room_template / "scans" / SCENE / f"{SCENE}_vh_clean_2.labels.ply"
    full = PlyData.read(str(labels))
    vertices = read_vertex_element(labels)
    np.testing.assert_array_equal(vertices, np.array(full["vertex"].data))
    # without its faces (cut after the vertex data) the file still gives the same vertices
    cut = tmp_path / "cut.labels.ply"
    data = labels.read_bytes()
    cut.write_bytes(data[: data.index(b"end_header\n") + 11 + vertices.nbytes])
    with pytest.raises(PlyElementParseError):
        PlyData.read(str(cut))
    np.testing.assert_array_equal(read_vertex_element(cut), vertices)
    # a PLY that ends inside its vertices is reported
    cut.write_bytes(data[: data.index(b"end_header\n") + 11 + vertices.nbytes // 2])
    with pytest.raises(SceneError, match="truncated or corrupt PLY"):
        read_vertex_element(cut)


def test_frames_at_the_stored_size_decode_as_before(room_template: Path):
    """The synthetic rooms' 320x240 JPEGs stored at 320x240: draft mode changes nothing."""
    for i in range(3):
        path = room_template / "scans" / SCENE / "color" / f"{i}.jpg"
        with Image.open(path) as im:
            plain = np.asarray(im.convert("RGB"))
        assert plain.shape == (240, 320, 3)
        np.testing.assert_array_equal(np.asarray(color_image(path, (320, 240))), plain)
        np.testing.assert_array_equal(np.asarray(color_image(path.read_bytes(), (320, 240))), plain)


def test_large_frames_are_draft_decoded_then_resized(room_template: Path, tmp_path: Path):
    """A ScanNet-sized 1296x968 JPEG stored at 320x240 is decoded at 1/4 scale (324x242, the
    smallest DCT scale still at least 320x240), then resized; it stays close to a full decode."""
    with Image.open(room_template / "scans" / SCENE / "color" / "0.jpg") as im:
        big = im.convert("RGB").resize((1296, 968), Image.BICUBIC)
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    with Image.open(path) as im:
        im.draft("RGB", (320, 240))
        assert im.size == (324, 242)
        expected = np.asarray(im.convert("RGB").resize((320, 240), Image.BILINEAR))
    got = np.asarray(color_image(path, (320, 240)))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.asarray(color_image(path.read_bytes(), (320, 240))), got)
    with Image.open(path) as im:
        full = np.asarray(im.convert("RGB").resize((320, 240), Image.BILINEAR))
    assert np.abs(got.astype(int) - full).mean() < 3.0
    assert color_image(path).size == (1296, 968)  # no size: decoded in full
