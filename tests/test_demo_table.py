"""scripts/demo_table.py: the demo's table and Fig. 6 curves, written from one run into one JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "demo_table.py"


def test_the_record_holds_each_methods_table_column_and_its_runs_curve(tmp_path):
    for i, (name, run) in enumerate((("maskclip3d", None), ("baseline", "baseline"), ("full", "full"),
                                     ("plus", "plus"))):
        (tmp_path / f"{name}.json").write_text(json.dumps({"miou": 0.1 * (i + 1), "iou": {"wall": 0.5, "sofa": None}}))
        if run:
            (tmp_path / run).mkdir()
            records = [{"kind": "epoch", "epoch": e, "miou": 0.01 * e * (i + 1)} for e in (1, 2)]
            records.insert(1, {"kind": "train", "epoch": 1, "step": 1, "loss": 1.0})
            (tmp_path / run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "demo.json"
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--json", str(out)], capture_output=True,
                          text=True, env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert [m["miou"] for m in record["methods"].values()] == [10.0, 20.0, 30.0, 40.0]
    assert record["methods"]["full"]["curve"] == {"epochs": [1, 2], "miou": [3.0, 6.0]}
    assert "curve" not in record["methods"]["maskclip3d"]
    assert record["methods"]["plus"]["iou"] == {"wall": 50.0, "sofa": None}
    assert "40.0" in done.stdout and record["code"]["commit"]
