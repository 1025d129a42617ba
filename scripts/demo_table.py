"""Prints the demo's comparison table from the JSON results the demo wrote (one per method) and,
with `--json`, writes the table, each run's validation curve (Fig. 6) and the code that made them
into one file, so that every number quoted from a demo run comes from that run."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainer import provenance  # noqa: E402
from trainer.runlog import epoch_records  # noqa: E402

# (key, column title, result file, run folder or None)
METHODS = (("maskclip3d", "MaskCLIP-3D (pseudo-labels voted onto points)", "maskclip3d.json", None),
           ("baseline", "CLIP2Scene-style baseline (Table 2 row I)", "baseline.json", "baseline"),
           ("full", "Full method (Table 2 row V)", "full.json", "full"),
           ("plus", "hicl-plus (beyond the paper)", "plus.json", "plus"))


def curve(run: Path) -> dict[str, list[float]]:
    """Validation mIoU (%) per scored epoch of a run folder."""
    records = epoch_records(run)
    scored = sorted(e for e, r in records.items() if "miou" in r)
    return {"epochs": scored, "miou": [round(100 * records[e]["miou"], 2) for e in scored]}


def summary(run_dir: Path, started: float | None) -> dict[str, Any]:
    """The demo's results as one JSON-able record."""
    methods = {}
    for key, title, name, run in METHODS:
        result = json.loads((run_dir / name).read_text())
        methods[key] = {"title": title, "miou": round(100 * result["miou"], 2),
                        "iou": {c: None if v is None else round(100 * v, 2) for c, v in result["iou"].items()},
                        **({"curve": curve(run_dir / run), "run": provenance.read(run_dir / run)} if run else {})}
    return {"benchmark": "make demo: per-class IoU (%) on the demo's validation rooms, and Fig. 6's curves",
            "command": "make demo", "run_dir": str(run_dir), "code": provenance.code_state(),
            "methods": methods,
            "wall_s_to_table": None if started is None else round(time.time() - started, 1),
            "python": sys.version.split()[0], "machine": platform.processor() or platform.machine()}


def print_table(record: dict[str, Any], run_dir: Path) -> None:
    """Per-class IoU and mIoU of each method, in percent."""
    results = list(record["methods"].values())
    classes = [c for c in results[0]["iou"] if any(r["iou"].get(c) is not None for r in results)]
    table = Table(title=f"synthetic ScanNet, validation scenes (IoU %); results in {run_dir}")
    table.add_column("class")
    for r in results:
        table.add_column(r["title"], justify="right")
    for c in classes:
        table.add_row(c, *("-" if r["iou"].get(c) is None else f"{r['iou'][c]:.1f}" for r in results))
    table.add_section()
    table.add_row("[bold]mIoU[/bold]", *(f"[bold]{r['miou']:.1f}[/bold]" for r in results))
    Console().print(table)


def main() -> None:
    """Print the table; with --json also write the run's record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the table and the curves here")
    parser.add_argument("--started", type=float, help="the demo's start (seconds since the epoch)")
    args = parser.parse_args()
    record = summary(args.run_dir, args.started)
    print_table(record, args.run_dir)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
