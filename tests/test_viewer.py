"""`hicl-train view` served to a real browser (Debian's Chromium driven by Playwright, software
WebGL): the page loads, the scene's points reach the client, a layer switch and a text query
recolour the rendered points, a wrong scene name shows the error; the command's one-line errors.

Screenshots go to $HICL_VIEWER_SHOTS (default: the test's temporary folder).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rooms import copy_rooms
from typer.testing import CliRunner

from pipeline import store
from pipeline.datasets.synthetic.nuscenes import generate_nuscenes
from pipeline.runner import RunConfig, run
from pipeline.stages import load_graph
from trainer.cli import app
from trainer.plots import SCANNET20_COLORS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]
HICL_TRAIN = Path(sys.executable).with_name("hicl-train")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", "NO_COLOR": "1"}
FLOOR = 1  # scannet20's class id of the floor

needs_browser = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="Debian's chromium is not installed (make setup installs it)")


def prepare(dataset: str, raw: Path, out: Path) -> str:
    """Run the pipeline up to refine (and text) on one generated scene; its id."""
    reports = run(load_graph(), RunConfig(dataset=dataset, data_root=raw, store_root=str(out),
                                          workers=0, stages=("text", "refine")))
    assert all(not r.failed for r in reports)
    (scene,) = store.done_scenes(out, "scenes")
    return scene


@pytest.fixture(scope="module")
def room(room_template: Path, tmp_path_factory) -> dict:
    """One ScanNet-style room through the pipeline and a short training run on it."""
    root = tmp_path_factory.mktemp("viewer-room")
    raw = copy_rooms(room_template, root / "raw", 1)
    scene = prepare("synthetic-scannet", raw, root / "store")
    sets = [f"--set={kv}" for kv in (f"store_root={root / 'store'}", f"runs_root={root / 'runs'}",
                                     "name=view", "train_split=all", "val_split=all", "epochs=2",
                                     "loop=5", "batch_size=1", "num_workers=0", "progress=false",
                                     "eval_every=0")]
    fit = subprocess.run([str(HICL_TRAIN), "fit", "--config", "synthetic-scannet", *sets], env=ENV,
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert fit.returncode == 0, fit.stdout
    return {"store": root / "store", "scene": scene, "checkpoint": root / "runs" / "view" / "last.pt"}


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> dict:
    """One synthetic nuScenes keyframe (LiDAR sweep, six cameras) through the pipeline."""
    root = tmp_path_factory.mktemp("viewer-drive")
    generate_nuscenes(root / "raw", scenes=1, seed=2, keyframes=1, sweeps=0, val=0, image_hw=(72, 128))
    return {"store": root / "store", "scene": prepare("synthetic-nuscenes", root / "raw", root / "store")}


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("HICL_VIEWER_SHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def view(*args: str) -> Iterator[str]:
    """Run `hicl-train view` on a free port; yield the URL it prints, stop it afterwards."""
    proc = subprocess.Popen([str(HICL_TRAIN), "view", "--port", "0", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = proc.stdout.readline()
        if " http://127.0.0.1:" not in line:
            raise AssertionError(line + proc.stdout.read())
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser tab on the viewer, counting the bytes its websocket receives."""

    def __init__(self, browser, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1100, "height": 720})
        self.received = 0
        self.page.on("websocket", lambda ws: ws.on("framereceived", self._count))
        self.page.goto(url)
        self.page.get_by_text("hicl viewer ·").wait_for(timeout=60_000)
        close = self.page.locator(".mantine-Notification-closeButton")
        if close.count():
            close.first.click()  # the software-WebGL notice

    def _count(self, payload: bytes | str) -> None:
        self.received += len(payload)

    def text(self, pattern: str, timeout: float = 60_000) -> str:
        """Wait for `pattern` in the page; the element's text."""
        element = self.page.get_by_text(pattern).first
        element.wait_for(timeout=timeout)
        return element.inner_text()

    def field(self, label: str):
        """The input next to a control's label (viser links the label of a text box to no input)."""
        return self.page.locator(f"xpath=//label[text()='{label}']/ancestor::div[.//input][1]//input").first

    def pick(self, label: str, option: str) -> None:
        self.field(label).click()
        self.page.get_by_role("option", name=option, exact=True).click()

    def press(self, button: str) -> None:
        self.page.get_by_role("button", name=button, exact=True).click()

    def canvas(self, path: Path, changed_from: np.ndarray | None = None) -> np.ndarray:
        """Screenshot of the page (saved) and its 3D view as u8[H, W, 3]; with `changed_from`,
        waits until the view differs from it."""
        for _ in range(40):
            time.sleep(0.5)
            self.page.screenshot(path=str(path))
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))[:, :760]  # left of the side panel
            if changed_from is None or np.abs(pixels.astype(int) - changed_from).mean() > 2:
                return pixels
        raise AssertionError(f"the rendered view did not change ({path})")


def near(pixels: np.ndarray, rgb, tol: int = 12) -> float:
    """Share of pixels within `tol` of `rgb` in every channel."""
    return float((np.abs(pixels.astype(int) - np.asarray(rgb, int)) <= tol).all(-1).mean())


@needs_browser
def test_room_layers_query_and_wrong_scene_in_the_browser(browser, room, shots):
    points = store.open_scene(room["store"], "scenes", room["scene"])["points"].shape[0]
    with view("--checkpoint", str(room["checkpoint"])) as url:
        page = Page(browser, url)
        assert f"{points:,} points" in page.text(f"{room['scene']} ·")
        assert page.received > 9 * points  # xyz as f16 and rgb as u8 per point, at least
        assert "mIoU (this scene)" in page.text("mIoU (this scene)")  # the prediction layer's legend
        predicted = page.canvas(shots / "viewer-room-prediction.png")
        assert len(np.unique(predicted.reshape(-1, 3), axis=0)) > 50  # not a blank canvas

        page.pick("layer", "ground truth")
        page.text("points", timeout=10_000)
        truth = page.canvas(shots / "viewer-room-ground-truth.png", changed_from=predicted)
        assert near(truth, SCANNET20_COLORS[FLOOR]) > 0.01  # the floor in its class colour

        page.field("phrase").fill("floor")
        page.press("colour by similarity")
        assert "cosine similarity" in page.text("cosine similarity")
        page.canvas(shots / "viewer-room-query.png", changed_from=truth)

        page.field("other scene").fill("scene9999_00")
        page.press("open scene")
        error = page.text("is not in the store")
        assert "scene 'scene9999_00' is not in the store" in error and room["scene"] in error
        page.page.screenshot(path=str(shots / "viewer-room-wrong-scene.png"))


@needs_browser
def test_nuscenes_sweep_in_the_browser(browser, drive, shots):
    points = store.open_scene(drive["store"], "scenes", drive["scene"])["points"].shape[0]
    with view("--config", "synthetic-nuscenes", "--set", f"store_root={drive['store']}",
              "--scenes", drive["scene"]) as url:
        page = Page(browser, url)
        assert f"{points:,} LiDAR points · 6 frames" in page.text(f"{drive['scene']} ·")
        page.pick("layer", "refined labels (voted)")
        assert "mIoU (this scene)" in page.text("mIoU (this scene)")
        pixels = page.canvas(shots / "viewer-nuscenes-refined.png")
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def run_view(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["view", *args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def test_view_names_a_wrong_scene_store_or_checkpoint_in_one_line(room, tmp_path):
    code, out = run_view("--config", "synthetic-scannet", "--set", f"store_root={room['store']}",
                         "--scenes", "nope")
    assert code == 1 and out == (f"error: scene 'nope' is not in the store {room['store']} "
                                 f"(1 scenes: {room['scene']})")
    code, out = run_view("--config", "synthetic-scannet", "--set", f"store_root={tmp_path}")
    assert code == 1 and out.startswith(f"error: store {tmp_path} has no 'scenes' stage")
    code, out = run_view("--checkpoint", str(tmp_path / "best.pt"))
    assert code == 1 and out == f"error: no checkpoint at {tmp_path / 'best.pt'}"
    code, out = run_view()
    assert code == 2 and "give --checkpoint or --config" in out


def test_a_clicked_frame_shows_its_image_and_2d_pseudo_labels(room):
    from trainer.config import load_config
    from trainer.view import open_source, serve

    cfg = load_config("synthetic-scannet", [f"store_root={room['store']}"])
    server, page = serve(open_source(cfg, None), [room["scene"]], port=0)
    try:
        assert page.layer_pick.value == "RGB" and "prediction" not in page.layer_pick.options
        assert {"ground truth", "refined labels (voted)", "errors: pseudo-labels (voted)",
                "geometric sets"} <= set(page.layer_pick.options)
        assert page.query_run.disabled and "needs --checkpoint" in page.query_note.content
        page.show_frame(0)
        color, labels = page.frame_color.image, page.frame_labels.image
        frame = store.open_scene(room["store"], "scenes", room["scene"])["color"][0]
        np.testing.assert_array_equal(color, frame)
        assert labels.shape == frame.shape and page.frame_labels.visible
        painted = (labels != (0.4 * frame).astype(np.uint8)).any(-1)  # unpainted pixels are dimmed
        assert painted.mean() > 0.2
    finally:
        server.stop()
