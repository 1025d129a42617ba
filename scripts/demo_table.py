"""Prints the demo's comparison table from the JSON results the demo wrote (one per method)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main(run_dir: Path) -> None:
    """Per-class IoU and mIoU of each method found in `run_dir`, in percent."""
    rows = [("MaskCLIP-3D (pseudo-labels voted onto points)", "maskclip3d.json"),
            ("CLIP2Scene-style baseline (Table 2 row I)", "baseline.json"),
            ("Full method (Table 2 row V)", "full.json"),
            ("hicl-plus (beyond the paper)", "plus.json")]
    results = [(title, json.loads((run_dir / name).read_text())) for title, name in rows]
    classes = [c for c in results[0][1]["iou"] if any(r["iou"].get(c) is not None for _, r in results)]
    table = Table(title=f"synthetic ScanNet, validation scenes (IoU %); results in {run_dir}")
    table.add_column("class")
    for title, _ in results:
        table.add_column(title, justify="right")
    for c in classes:
        table.add_row(c, *("-" if r["iou"].get(c) is None else f"{100 * r['iou'][c]:.1f}" for _, r in results))
    table.add_section()
    table.add_row("[bold]mIoU[/bold]", *(f"[bold]{100 * r['miou']:.1f}[/bold]" for _, r in results))
    Console().print(table)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
