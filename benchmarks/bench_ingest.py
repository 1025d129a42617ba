"""Benchmark: ingest of a ScanNet-sized scene (the ``scenes`` stage's reader), from ``.sens`` vs
from exported frames.

The scene: a synthetic room fused at a 2.3 cm voxel (about 157k vertices, 298k faces, like a
``_vh_clean_2.ply``) and a stream of 2,000 frames at ScanNet's native sizes (colour 1296x968
JPEG, depth 640x480 uint16). The generator renders 23 distinct frames at 320x240; they are
upsampled (colour bicubic plus sensor-like noise, JPEG quality 90, about 135 kB a frame; depth
nearest) and repeated over the 2,000 frames (23 is prime to the frame skip, so every kept frame
is a different image). The same frames are written twice: ``scans/<scene>/<scene>.sens``, and
the exported layout of SensReader (``color/<i>.jpg``, ``depth/<i>.png``, ``pose/<i>.txt``,
``intrinsic/``; its files hard-linked to the 23 originals). No 2D labels.

Measured: ``ScanNetReader.read`` at the default params (frame_skip 20: 100 frames kept,
image_size 240x320), split into mesh (both PLYs, normals) and frames; CPU seconds
(``time.process_time``, median of REPEATS runs, the two layouts interleaved) and bytes read:
``rchar`` of /proc/self/io (bytes returned by read() calls) plus the bytes of the files that
plyfile memory-maps (counted by a wrapper of its numpy.memmap calls; every mapped byte is
touched). The page cache is warm (inputs written or read just before). Also measured once: the
reads before the vectorised PLY reads (faces parsed one by one by plyfile, the labels PLY parsed
whole), and the colour decode of the kept frames as the reader does it (``color_image``: JPEG
draft mode, decoding at 1/4 scale, then the resize) against the full-size decode it replaced.

Inputs are generated under data/bench/ingest/ (about 0.4 GB) once and reused.

Run: .venv/bin/python benchmarks/bench_ingest.py  -> benchmarks/results/ingest.json
"""
from __future__ import annotations

import io
import json
import os
import platform
import shutil
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import plyfile
from PIL import Image
from plyfile import PlyData

from pipeline.datasets.scannet import ScanNetReader, read_mesh, scale_intrinsics
from pipeline.datasets.sens import (
    SensFile,
    SensFrame,
    SensHeader,
    color_image,
    encode_depth,
    write_sens,
)
from pipeline.datasets.synthetic import generate_scannet
from pipeline.datasets.synthetic.fusion import FusionParams

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "bench" / "ingest"
OUT = Path(__file__).parent / "results" / "ingest.json"
SCENE = "scene0000_00"
FRAMES, POOL, SKIP, REPEATS = 2000, 23, 20, 3
COLOR_HW, DEPTH_HW, SOURCE_HW = (968, 1296), (480, 640), (240, 320)
FUSION = FusionParams(voxel=0.023, truncation=0.046, min_weight=1.0)
PARAMS = {"frame_skip": SKIP, "image_size": [240, 320], "depth_scale": 1000.0, "frames_root": None}
MB = 1e6


def rchar() -> int:
    """Bytes this process has had returned by read() calls so far."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


class MappedBytes:
    """Counts the bytes plyfile memory-maps for element data (its probe of the whole file,
    a map without a shape, touches nothing and is not counted)."""

    def __init__(self) -> None:
        self.total = 0
        count = self

        def memmap(filename, dtype=np.uint8, mode="r+", offset=0, shape=None, order="C"):
            if shape is not None:
                count.total += np.dtype(dtype).itemsize * int(np.prod(shape))
            return np.memmap(filename, dtype, mode, offset, shape, order)

        proxy = types.ModuleType("numpy_counting_memmaps")
        proxy.__getattr__ = lambda name: getattr(np, name)  # type: ignore[method-assign]
        proxy.memmap = memmap
        plyfile._np = proxy  # plyfile's module-level numpy


def _exact(m: np.ndarray) -> np.ndarray:
    """float32 values, as the .sens stores them (the text files then hold the same numbers)."""
    return np.asarray(m, np.float32).astype(np.float64)


def prepare() -> tuple[Path, Path]:
    """(exported root, .sens root), generated once under DATA."""
    exported, sens_root, done = DATA / "exported", DATA / "sens", DATA / "READY"
    if done.is_file():
        return exported, sens_root
    shutil.rmtree(DATA, ignore_errors=True)
    room = DATA / "room"
    start = time.perf_counter()
    generate_scannet(room, scenes=1, seed=0, frames=POOL, val=0, spacing=0.08, fusion=FUSION)
    src = room / "scans" / SCENE
    k = np.loadtxt(src / "intrinsic" / "intrinsic_depth.txt")[:3, :3]
    k_depth, k_color = np.eye(4), np.eye(4)
    k_depth[:3, :3] = _exact(scale_intrinsics(k, SOURCE_HW, DEPTH_HW))
    k_color[:3, :3] = _exact(scale_intrinsics(k, SOURCE_HW, COLOR_HW))
    pool = DATA / "pool"
    pool.mkdir()
    rng = np.random.default_rng(0)
    frames = []
    for i in range(POOL):
        small = Image.open(src / "color" / f"{i}.jpg").convert("RGB")
        big = np.asarray(small.resize(COLOR_HW[::-1], Image.BICUBIC), np.float32)
        big = np.clip(big + rng.normal(0.0, 2.0, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(big).save(pool / f"{i}.jpg", quality=90)
        depth = np.asarray(Image.open(src / "depth" / f"{i}.png").resize(DEPTH_HW[::-1], Image.NEAREST))
        Image.fromarray(depth).save(pool / f"{i}.png")
        pose = _exact(np.loadtxt(src / "pose" / f"{i}.txt"))
        np.savetxt(pool / f"{i}.txt", pose, fmt="%.17g")
        frames.append(SensFrame(pose, (pool / f"{i}.jpg").read_bytes(), encode_depth(depth)))
    meta = (src / f"{SCENE}.txt").read_text()
    for key, value in (("colorHeight", COLOR_HW[0]), ("colorWidth", COLOR_HW[1]),
                       ("depthHeight", DEPTH_HW[0]), ("depthWidth", DEPTH_HW[1]),
                       ("numColorFrames", FRAMES), ("numDepthFrames", FRAMES)):
        meta = "".join(f"{key} = {value}\n" if line.startswith(f"{key} =") else line + "\n"
                       for line in meta.splitlines())
    for root in (exported, sens_root):
        scene = root / "scans" / SCENE
        scene.mkdir(parents=True)
        for name in (f"{SCENE}_vh_clean_2.ply", f"{SCENE}_vh_clean_2.labels.ply"):
            os.link(src / name, scene / name)
        (scene / f"{SCENE}.txt").write_text(meta)
    scene = exported / "scans" / SCENE
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scene / sub).mkdir()
    for name, m in (("intrinsic_depth", k_depth), ("intrinsic_color", k_color),
                    ("extrinsic_depth", np.eye(4)), ("extrinsic_color", np.eye(4))):
        np.savetxt(scene / "intrinsic" / f"{name}.txt", m, fmt="%.17g")
    for i in range(FRAMES):
        for sub, ext in (("color", "jpg"), ("depth", "png"), ("pose", "txt")):
            os.link(pool / f"{i % POOL}.{ext}", scene / sub / f"{i}.{ext}")
    header = SensHeader(intrinsic_color=k_color, intrinsic_depth=k_depth, color_hw=COLOR_HW,
                        depth_hw=DEPTH_HW)
    write_sens(sens_root / "scans" / SCENE / f"{SCENE}.sens", header,
               (frames[i % POOL] for i in range(FRAMES)))
    shutil.rmtree(room)
    done.write_text(f"generated in {time.perf_counter() - start:.1f} s\n")
    return exported, sens_root


def measure(reader: ScanNetReader, mapped: MappedBytes) -> dict:
    """CPU seconds and bytes read of one ``read``, split into mesh and frames."""
    frames = {}
    read_frames = reader._read_frames

    def timed(scene: str) -> dict:
        cpu, got, maps = time.process_time(), rchar(), mapped.total
        out = read_frames(scene)
        frames.update(cpu=time.process_time() - cpu, bytes=rchar() - got + mapped.total - maps)
        return out

    reader._read_frames = timed  # type: ignore[method-assign]
    cpu, got, maps = time.process_time(), rchar(), mapped.total
    record = reader.read(SCENE)
    total_cpu, total_bytes = time.process_time() - cpu, rchar() - got + mapped.total - maps
    return {"record": record, "mesh_cpu": total_cpu - frames["cpu"], "mesh_bytes": total_bytes - frames["bytes"],
            "frames_cpu": frames["cpu"], "frames_bytes": frames["bytes"]}


def once(fn, mapped: MappedBytes) -> tuple[float, int]:
    cpu, got, maps = time.process_time(), rchar(), mapped.total
    fn()
    return time.process_time() - cpu, rchar() - got + mapped.total - maps


def main() -> None:
    start = time.perf_counter()
    exported, sens_root = prepare()
    mapped = MappedBytes()
    sens = sens_root / "scans" / SCENE / f"{SCENE}.sens"
    readers = {"exported": ScanNetReader(exported, PARAMS), "sens": ScanNetReader(sens_root, PARAMS)}
    assert readers["sens"].sens_path(SCENE) == sens and readers["exported"].sens_path(SCENE) is None
    runs: dict[str, list[dict]] = {name: [] for name in readers}
    for _ in range(REPEATS):
        for name, reader in readers.items():
            runs[name].append(measure(reader, mapped))
    a, b = runs["exported"][0]["record"], runs["sens"][0]["record"]
    for key in ("points", "colors", "faces", "labels", "raw_labels", "normals", "color", "depth", "world_to_camera",
                "intrinsics", "frame_ids"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    kept = len(b["frame_ids"])
    result: dict = {
        "benchmark": "ingest of a ScanNet-sized scene: .sens vs exported frames",
        "command": "python benchmarks/bench_ingest.py",
        "vertices": int(len(b["points"])), "faces": int(len(b["faces"])),
        "frames_in_stream": FRAMES, "frame_skip": SKIP, "frames_kept": kept,
        "color_hw": list(COLOR_HW), "depth_hw": list(DEPTH_HW), "image_size": PARAMS["image_size"],
        "sens_bytes": sens.stat().st_size,
        "mesh_ply_bytes": (sens_root / "scans" / SCENE / f"{SCENE}_vh_clean_2.ply").stat().st_size,
        "labels_ply_bytes": (sens_root / "scans" / SCENE / f"{SCENE}_vh_clean_2.labels.ply").stat().st_size,
        "repeats": REPEATS, "records_equal": True,
    }
    for name, rs in runs.items():
        for part in ("mesh", "frames"):
            result[f"{name}_{part}_cpu_s"] = round(statistics.median(r[f"{part}_cpu"] for r in rs), 4)
            result[f"{name}_{part}_bytes"] = int(statistics.median(r[f"{part}_bytes"] for r in rs))
        result[f"{name}_total_cpu_s"] = round(result[f"{name}_mesh_cpu_s"] + result[f"{name}_frames_cpu_s"], 4)
        result[f"{name}_runs_cpu_s"] = [round(r["mesh_cpu"] + r["frames_cpu"], 4) for r in rs]

    # parts, once each
    scene_dir = sens_root / "scans" / SCENE
    ply, labels = scene_dir / f"{SCENE}_vh_clean_2.ply", scene_dir / f"{SCENE}_vh_clean_2.labels.ply"
    result["index_cpu_s"], result["index_bytes"] = once(lambda: SensFile(sens).close(), mapped)
    result["mesh_ply_cpu_s"], result["mesh_ply_read_bytes"] = once(lambda: read_mesh(ply), mapped)
    result["before_mesh_ply_cpu_s"], result["before_mesh_ply_read_bytes"] = once(
        lambda: np.vstack(PlyData.read(str(ply))["face"].data["vertex_indices"]), mapped)
    result["before_labels_ply_cpu_s"], result["before_labels_ply_read_bytes"] = once(
        lambda: np.asarray(PlyData.read(str(labels))["vertex"].data["label"]), mapped)
    with SensFile(sens) as f:
        payloads = []
        for i in range(0, FRAMES, SKIP):
            e = f.frames[i]
            with open(sens, "rb") as g:
                g.seek(e.color_offset)
                payloads.append(g.read(e.color_size))

    def decode_full() -> None:
        for data in payloads:
            np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((320, 240), Image.BILINEAR))

    result["before_colour_decode_cpu_s"] = once(decode_full, mapped)[0]
    result["colour_decode_draft_cpu_s"] = once(lambda: [np.asarray(color_image(d, (320, 240))) for d in payloads],
                                               mapped)[0]
    for key in list(result):
        if key.endswith("_cpu_s") and isinstance(result[key], float):
            result[key] = round(result[key], 4)
    result.update({"wall_s": round(time.perf_counter() - start, 1),
                   "load_average_1m": round(os.getloadavg()[0], 2), "cpu_cores": os.cpu_count(),
                   "machine": platform.processor() or platform.machine(),
                   "python": sys.version.split()[0], "numpy": np.__version__,
                   "pillow": Image.__version__})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, OUT)
    print_table(result)


def print_table(r: dict) -> None:
    print(f"ingest of {SCENE}: {r['vertices']:,} vertices, {r['faces']:,} faces; {r['frames_in_stream']:,} frames "
          f"(colour {r['color_hw'][1]}x{r['color_hw'][0]} JPEG, depth {r['depth_hw'][1]}x{r['depth_hw'][0]}), "
          f"every {r['frame_skip']}th kept: {r['frames_kept']}; CPU s median of {r['repeats']}")
    print(f"{'':28}{'CPU s':>8}{'MB read':>10}")
    rows = [("exported: mesh", "exported_mesh"), ("exported: frames", "exported_frames"),
            (".sens: mesh", "sens_mesh"), (".sens: frames", "sens_frames")]
    for label, key in rows:
        print(f"{label:28}{r[key + '_cpu_s']:8.3f}{r[key + '_bytes'] / MB:10.1f}")
    for label, key in (("exported: total", "exported"), (".sens: total", "sens")):
        print(f"{label:28}{r[key + '_total_cpu_s']:8.3f}"
              f"{(r[key + '_mesh_bytes'] + r[key + '_frames_bytes']) / MB:10.1f}")
    print(f"{'.sens index (2,000 frames)':28}{r['index_cpu_s']:8.3f}{r['index_bytes'] / MB:10.2f}")
    print(f"{'mesh PLY, vectorised':28}{r['mesh_ply_cpu_s']:8.3f}{r['mesh_ply_read_bytes'] / MB:10.1f}")
    print(f"{'mesh PLY, per face (before)':28}{r['before_mesh_ply_cpu_s']:8.3f}{r['before_mesh_ply_read_bytes'] / MB:10.1f}")
    print(f"{'labels PLY, whole (before)':28}{r['before_labels_ply_cpu_s']:8.3f}{r['before_labels_ply_read_bytes'] / MB:10.1f}")
    print(f"{'colour decode+resize, kept':28}{r['colour_decode_draft_cpu_s']:8.3f}")
    print(f"{'  same, full decode (before)':28}{r['before_colour_decode_cpu_s']:8.3f}")
    print(f"goal: mesh + kept frames under 1 s CPU: .sens {r['sens_total_cpu_s']:.3f} s, "
          f"exported {r['exported_total_cpu_s']:.3f} s")


if __name__ == "__main__":
    main()
