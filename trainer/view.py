"""`hicl-train view`: a web page (viser) showing a store's scenes coloured by a chosen layer (RGB
or intensity, ground truth, voted pseudo- and refined labels, a checkpoint's prediction,
geometric sets, errors against ground truth, an open-vocabulary query), with a per-class IoU
legend and the kept frames as camera frusta whose image and 2D pseudo-labels open on click."""
from __future__ import annotations

import contextlib
import html
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import viser
import viser.transforms as vtf
from scipy.spatial import cKDTree

from pipeline import store
from pipeline.errors import PipelineError
from pipeline.labelsets import text_class_set
from trainer.config import TrainConfig
from trainer.data import check_scenes, read_text
from trainer.view_colors import (
    error_colors,
    errors_legend,
    label_colors,
    labels_legend,
    note_legend,
    score_colors,
    score_legend,
    set_colors,
)
from trainer.view_model import CheckpointModel, ScenePrediction
from trainer.view_scene import Scene, frame_image, frame_label_image, load_scene
from trainer.view_text import QueryError, TextEncoder, store_text_encoder

GROUND_TRUTH, PREDICTION, SETS, QUERY = "ground truth", "prediction", "geometric sets", "open-vocabulary query"
THUMBNAIL_WIDTH = 160  # pixels of the image drawn on a frustum


@dataclass
class ViewSource:
    """What the viewer reads: a store, the class set its text stage embedded, the text encoder of
    that stage, and optionally a checkpoint's 3D model."""

    store_root: str
    class_names: list[str]
    class_set: str | None
    encoder: TextEncoder
    model: CheckpointModel | None
    title: str


def open_source(cfg: TrainConfig, checkpoint: Path | None) -> ViewSource:
    """The store of `cfg` and the checkpoint's model; one-line errors for a missing store or stage."""
    root = cfg.store_root
    for stage in ("scenes", cfg.text_stage):
        if not store.stage_exists(root, stage):
            raise PipelineError(f"store {root} has no '{stage}' stage ({store.stage_url(root, stage)}); "
                                "run hicl-pipeline on it first, or point --set store_root= at another")
    _, names = read_text(root, cfg.text_stage)
    model = CheckpointModel(cfg, checkpoint) if checkpoint is not None else None
    title = f"{root}" + (f" · {checkpoint}" if checkpoint is not None else "")
    return ViewSource(root, names, text_class_set(root, cfg.text_stage), store_text_encoder(root, cfg.text_stage),
                      model, title)


def reach(points: np.ndarray) -> float:
    """Median horizontal distance of the points from their median: the scene's scale."""
    centre = np.median(points[:, :2], axis=0)
    return float(np.median(np.linalg.norm(points[:, :2] - centre, axis=1))) + 1e-3


def camera_view(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An oblique camera position and its look-at point framing most of the points (z up)."""
    centre = np.median(points, axis=0)
    return centre + np.array([-1.3, -2.0, 2.2]) * reach(points), centre


def point_spacing(points: np.ndarray) -> float:
    """Median distance of a point to its nearest neighbour, over a sample of the points."""
    sample = points[:: max(1, len(points) // 4000)]
    distance, _ = cKDTree(points).query(sample, k=2)
    return float(np.median(distance[:, 1])) if len(points) > 1 else 0.05


class ViewerPage:
    """The page: scene picker, layer picker, legend, query box and clicked frame, over one server
    (every open tab shows the same scene)."""

    def __init__(self, server: viser.ViserServer, source: ViewSource, scenes: list[str]) -> None:
        self.server, self.source = server, source
        self.lock = threading.RLock()  # a picker set by the page calls back in the same thread
        self.scene: Scene | None = None
        self.prediction: ScenePrediction | None = None
        self.phrase: tuple[str, np.ndarray] | None = None
        self.cloud: viser.PointCloudHandle | None = None
        self.frusta: list[viser.CameraFrustumHandle] = []
        gui = server.gui
        gui.add_markdown(f"**hicl viewer** · {html.escape(source.title)}")
        self.scene_pick = gui.add_dropdown("scene", scenes, initial_value=scenes[0])
        self.scene_name = gui.add_text("other scene", "", hint="Any scene id of the store.")
        self.scene_open = gui.add_button("open scene")
        self.message = gui.add_html("")
        self.info = gui.add_markdown("")
        self.layer_pick = gui.add_dropdown("layer", ["-"])
        self.point_size = gui.add_slider("point size", 0.001, 0.5, 0.001, 0.02)
        self.legend = gui.add_html("")
        with gui.add_folder("open-vocabulary query"):
            self.query_note = gui.add_markdown(
                f"encoder: {html.escape(source.encoder.name)}"
                + ("" if source.model else " · needs --checkpoint (the 3D model's features)"))
            self.query_text = gui.add_text("phrase", "", disabled=source.model is None)
            self.query_run = gui.add_button("colour by similarity", disabled=source.model is None)
        with gui.add_folder("frame (click a frustum)"):
            self.frame_info = gui.add_markdown("no frame chosen")
            self.frame_color = gui.add_image(np.zeros((2, 2, 3), np.uint8), label="image", visible=False)
            self.frame_labels = gui.add_image(np.zeros((2, 2, 3), np.uint8), label="2D pseudo-labels",
                                              visible=False)
        self.scene_pick.on_update(lambda _: self._guarded(lambda: self.show_scene(self.scene_pick.value)))
        self.scene_open.on_click(lambda _: self._guarded(self._open_typed_scene))
        self.layer_pick.on_update(lambda _: self._guarded(self.show_layer))
        self.point_size.on_update(lambda _: self._set_point_size())
        self.query_run.on_click(lambda _: self._guarded(self._query))
        self._guarded(lambda: self.show_scene(scenes[0]))

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run a page action under the lock; an input problem becomes the page's error line."""
        with self.lock:
            try:
                action()
                self.message.content = ""
            except (PipelineError, QueryError, ValueError, KeyError) as exc:
                self.message.content = (f"<div style='color:#d33;font-size:0.85em'><b>error:</b> "
                                        f"{html.escape(str(exc))}</div>")

    def _open_typed_scene(self) -> None:
        self.show_scene(check_scenes(self.source.store_root, [self.scene_name.value.strip()])[0])

    def show_scene(self, name: str) -> None:
        """Load `name`, draw its points and frusta, keep the layer if the scene has it."""
        src = self.source
        scene = load_scene(src.store_root, name, len(src.class_names), src.class_set)
        first = self.scene is None
        self.scene = scene
        self.prediction = src.model.predict(name) if src.model else None
        size = max(1.5 * point_spacing(scene.points), 0.01 * reach(scene.points))
        self.point_size.value = round(min(max(size, 0.001), 0.5), 3)
        self.cloud = self.server.scene.add_point_cloud(
            "/scene/points", scene.points, scene.base, point_size=self.point_size.value,
            point_shading="flat")
        self._draw_frusta(scene)
        position, look_at = camera_view(scene.points)
        self.server.initial_camera.position, self.server.initial_camera.look_at = position, look_at
        for client in self.server.get_clients().values():
            client.camera.position, client.camera.look_at = position, look_at
        kind = "LiDAR points" if scene.base_name == "intensity" else "points"
        mesh = f" · mesh of {len(scene.faces):,} faces" if len(scene.faces) else ""
        self.info.content = (f"**{name}** · {len(scene.points):,} {kind} · "
                             f"{len(scene.frames)} frames{mesh}")
        kept = self.layer_pick.value
        options = self.layer_names()
        self.layer_pick.options = options
        self._pick_layer(kept if kept in options and not first else
                         PREDICTION if self.prediction else options[0])

    def layer_names(self) -> list[str]:
        """The layers the current scene has, in the picker's order."""
        scene = self.scene
        assert scene is not None
        labelled = [*([PREDICTION] if self.prediction else []), *scene.labels]
        return [scene.base_name, GROUND_TRUTH, *labelled, *([SETS] if scene.set_id is not None else []),
                *(f"errors: {name}" for name in labelled), *([QUERY] if self.prediction else [])]

    def _labels(self, name: str) -> np.ndarray:
        assert self.scene is not None
        if name == PREDICTION and self.prediction is not None:
            return self.prediction.labels
        return self.scene.labels[name]

    def layer(self, name: str) -> tuple[np.ndarray, str]:
        """u8[N, 3] colours and legend HTML of layer `name` on the current scene."""
        scene, names = self.scene, self.source.class_names
        assert scene is not None
        if name == scene.base_name:
            return scene.base, note_legend(f"the scene's {name}")
        if name == GROUND_TRUTH:
            return label_colors(scene.gt, len(names)), labels_legend(scene.gt, None, names)
        if name == SETS:
            assert scene.set_id is not None
            count = len(np.unique(scene.set_id))
            return set_colors(scene.set_id), note_legend(f"{count:,} geometric sets, one colour each")
        if name == QUERY:
            if self.phrase is None or self.prediction is None:
                return scene.base, note_legend("type a phrase in the query box below")
            scores = self.prediction.similarity(self.phrase[1])
            return score_colors(scores), score_legend(f"“{self.phrase[0]}” ({self.source.encoder.name})", scores)
        if name.startswith("errors: "):
            labels = self._labels(name.removeprefix("errors: "))
            return error_colors(labels, scene.gt), errors_legend(labels, scene.gt)
        labels = self._labels(name)
        return label_colors(labels, len(names)), labels_legend(labels, scene.gt, names)

    def show_layer(self) -> None:
        """Colour the points by the picked layer and show its legend."""
        if self.scene is None or self.cloud is None:
            return
        colors, legend = self.layer(self.layer_pick.value)
        self.cloud.colors = colors
        self.legend.content = legend

    def _set_point_size(self) -> None:
        if self.cloud is not None:
            self.cloud.point_size = self.point_size.value

    def _query(self) -> None:
        phrase = self.query_text.value.strip()
        if not phrase:
            raise QueryError("type a phrase to query")
        self.phrase = (phrase, self.source.encoder.embed(phrase))
        self._pick_layer(QUERY)

    def _pick_layer(self, name: str) -> None:
        """Show layer `name` and set the picker to it (a changed picker shows it through its update)."""
        if self.layer_pick.value == name:
            self.show_layer()
        else:
            self.layer_pick.value = name

    def _draw_frusta(self, scene: Scene) -> None:
        """One frustum per kept frame, its image drawn on it; a click opens the frame."""
        for handle in self.frusta:
            handle.remove()
        self.frusta = []
        scale = max(0.05 * reach(scene.points), 0.1)
        for i, frame in enumerate(scene.frames):
            scene_from_camera = np.linalg.inv(frame.camera_from_scene)
            image = frame_image(self.source.store_root, scene.name, i)
            step = max(1, image.shape[1] // THUMBNAIL_WIDTH)
            handle = self.server.scene.add_camera_frustum(
                f"/scene/frames/{i}", frame.vertical_fov, frame.hw[1] / frame.hw[0], scale=scale,
                image=np.ascontiguousarray(image[::step, ::step]), color=(240, 150, 30),
                wxyz=vtf.SO3.from_matrix(scene_from_camera[:3, :3]).wxyz,
                position=scene_from_camera[:3, 3])
            handle.on_click(lambda _, index=i: self._guarded(lambda: self.show_frame(index)))
            self.frusta.append(handle)

    def show_frame(self, index: int) -> None:
        """Show frame `index`'s image and its 2D pseudo-label image in the side panel."""
        scene = self.scene
        assert scene is not None
        root = self.source.store_root
        self.frame_info.content = f"**{html.escape(scene.frames[index].name)}** of {scene.name}"
        self.frame_color.image = frame_image(root, scene.name, index)
        self.frame_color.visible = True
        labels = frame_label_image(root, scene.name, index, len(self.source.class_names))
        if labels is not None:
            self.frame_labels.image = labels
        self.frame_labels.visible = labels is not None


def serve(source: ViewSource, scenes: list[str], host: str = "127.0.0.1", port: int = 8080
          ) -> tuple[viser.ViserServer, ViewerPage]:
    """Start the page's server (in its own threads) on `host`; the next free port from `port`."""
    with contextlib.redirect_stdout(io.StringIO()):  # viser's own banner: the command prints the URL
        server = viser.ViserServer(host=host, port=port, label="hicl viewer", verbose=False)
    server.scene.set_up_direction("+z")
    try:
        return server, ViewerPage(server, source, scenes)
    except BaseException:
        server.stop()
        raise
