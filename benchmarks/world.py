"""The benchmark world: the synthetic ScanNet rooms and stage stores both quality benchmarks read.

A world is fixed by its seed, its room counts and the simulated VLM's noise level. Its rooms are
generated once per (seed, rooms) into `data/raw/world-s<seed>-<train>+<val>` (scene i depends
only on (seed, i); the last `val` scenes are the validation split) and preprocessed once per noise
level into `data/stores/world-s<seed>-<train>+<val>-n<noise>`, so that benchmarks over several
noise levels share the rooms and never share stores or runs. The pipeline skips stages that are
up to date, so preparing a prepared world costs seconds. `raw/world.json`, written when the rooms
are complete, records the generator command and a digest of the generator's source, so that
rooms made by an older generator are reported instead of silently reused.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GENERATOR = REPO / "pipeline" / "datasets" / "synthetic"
MARKER = "world.json"  # in the raw folder, written after the last room


def run(cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
    """Run a command with output appended to `log`; raise with the log's tail if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.run(list(cmd), cwd=REPO, env={**os.environ, **(env or {})}, stdout=out,
                              stderr=subprocess.STDOUT).returncode
    if code:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise RuntimeError(f"{cmd[0]} failed with exit code {code}; see {log}:\n{tail}")


def format_noise(noise: float) -> str:
    """A noise level as a name part without trailing zeros: 1.0 -> '1', 1.50 -> '1.5'."""
    text = repr(float(noise))
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def generator_digest() -> str:
    """SHA-256 (first 16 hex digits) of the synthetic generator's Python sources."""
    digest = hashlib.sha256()
    for path in sorted(GENERATOR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def split_complete(raw: Path, split: str, count: int) -> bool:
    """True when `scannetv2_<split>.txt` lists `count` scenes and each has its folder."""
    path = raw / f"scannetv2_{split}.txt"
    if not path.is_file():
        return False
    scenes = path.read_text().split()
    return len(scenes) == count and all((raw / "scans" / s).is_dir() for s in scenes)


@dataclass(frozen=True)
class World:
    """Synthetic rooms (train + validation) and the simulated VLM's noise scale."""

    seed: int = 0
    vlm_noise: float = 1.0
    train_rooms: int = 96
    val_rooms: int = 32

    @property
    def raw_name(self) -> str:
        """Name of the rooms' folder: seed and room counts."""
        return f"world-s{self.seed}-{self.train_rooms}+{self.val_rooms}"

    @property
    def name(self) -> str:
        """Name of the stores (and of the benchmark runs): the rooms and the noise level."""
        return f"{self.raw_name}-n{format_noise(self.vlm_noise)}"

    @property
    def raw(self) -> Path:
        """Generated rooms in ScanNet's exported layout."""
        return REPO / "data" / "raw" / self.raw_name

    @property
    def stores(self) -> Path:
        """Stage stores of the rooms at this noise level."""
        return REPO / "data" / "stores" / self.name

    @property
    def suffix(self) -> str:
        """'' for the default world, else '-s<seed>-n<noise>' (and '-r<train>+<val>' for other
        room counts): what output file names get so that worlds never overwrite each other."""
        default = World()
        if self == default:
            return ""
        rooms = (self.train_rooms, self.val_rooms) != (default.train_rooms, default.val_rooms)
        return f"-s{self.seed}-n{format_noise(self.vlm_noise)}" + (
            f"-r{self.train_rooms}+{self.val_rooms}" if rooms else "")

    @staticmethod
    def _rel(path: Path) -> str:
        """A path under the repository as commands (run from the repository root) name it."""
        return str(path.relative_to(REPO))

    def generator_args(self) -> list[str]:
        """Arguments of the Python call that writes the rooms (the generator CLI)."""
        return ["-m", "pipeline.datasets.synthetic", "scannet", "--out", self._rel(self.raw),
                "--scenes", str(self.train_rooms + self.val_rooms), "--val", str(self.val_rooms),
                "--seed", str(self.seed), "--jobs", "2"]

    def pipeline_overrides(self) -> list[str]:
        """`--set` arguments of the noise level (none at the declared default 1.0)."""
        if self.vlm_noise == 1.0:
            return []
        return ["--set", f"features.noise_scale={format_noise(self.vlm_noise)}"]

    def pipeline_command(self) -> list[str]:
        """The preprocessing call: every stage up to `refine` and `vote`, and `text`."""
        return [str(BIN / "hicl-pipeline"), "run", "--dataset", "synthetic-scannet", "--data-root",
                self._rel(self.raw), "--store-root", self._rel(self.stores), "--stages", "text,refine,vote",
                "--workers", "2", *self.pipeline_overrides()]

    def rooms_complete(self) -> bool:
        """True when both split lists name the expected number of generated rooms."""
        return (split_complete(self.raw, "train", self.train_rooms)
                and split_complete(self.raw, "val", self.val_rooms))

    def recorded_generator(self) -> dict[str, Any] | None:
        """What `raw/world.json` says about the generator run that made the rooms (None: no record)."""
        path = self.raw / MARKER
        return json.loads(path.read_text()) if path.is_file() else None

    def prepare(self, log: Path, say: Callable[[str], None] = print) -> None:
        """Generate the rooms unless complete, then run the pipeline (up-to-date stages are skipped)."""
        if not self.rooms_complete():
            say(f"generating {self.train_rooms}+{self.val_rooms} rooms into {self.raw} (log: {log})")
            run([sys.executable, *self.generator_args()], log)
            if not self.rooms_complete():
                raise RuntimeError(f"the generator finished but {self.raw} lacks rooms; see {log}")
            record = {"command": ["python", *self.generator_args()], "code_digest": generator_digest()}
            (self.raw / MARKER).write_text(json.dumps(record, indent=1) + "\n")
        recorded = (self.recorded_generator() or {}).get("code_digest")
        if recorded != generator_digest():
            say(f"warning: the rooms in {self.raw} were made by generator code {recorded}, the code is now "
                f"{generator_digest()}; delete the folder to regenerate them")
        say(f"preprocessing {self.raw} -> {self.stores} (log: {log})")
        run(self.pipeline_command(), log)

    def split(self, name: str) -> list[str]:
        """Scene ids of the `train` or `val` split of the generated rooms."""
        return (self.raw / f"scannetv2_{name}.txt").read_text().split()

    def describe(self) -> dict[str, Any]:
        """The world as plain JSON: parameters, folders and the generator."""
        return {
            "seed": self.seed, "train_rooms": self.train_rooms, "val_rooms": self.val_rooms,
            "vlm_noise": self.vlm_noise, "raw": self._rel(self.raw), "stores": self._rel(self.stores),
            "generator": {"command": ["python", *self.generator_args()],
                          "function": "pipeline.datasets.synthetic:generate_scannet",
                          "code_digest": generator_digest(),
                          "rooms_code_digest": (self.recorded_generator() or {}).get("code_digest")},
            "pipeline_overrides": self.pipeline_overrides(),
        }
