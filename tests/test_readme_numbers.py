"""The README's long-schedule table quotes the study report it names, number for number."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "### Table 2 at the paper's 120 epochs"


def section(text: str, heading: str) -> str:
    """The text from `heading` to the next heading of the same or a higher level."""
    start = text.index(heading)
    following = re.search(r"^#{1,3} ", text[start + len(heading):], flags=re.M)
    return text[start:start + len(heading) + (following.start() if following else len(text))]


def test_the_readme_quotes_the_long_schedule_report_it_names():
    text = section((ROOT / "README.md").read_text(), SECTION)
    (path,) = re.findall(r"`(benchmarks/results/[\w.-]+-report\.json)`", text)
    report = json.loads((ROOT / path).read_text())
    labels = report["labels_val"]
    assert f"{labels['pseudo']:.2f} (pseudo)" in text and f"{labels['refine']:.2f} (refined)" in text
    runs: dict[str, list[dict]] = {}
    for run in sorted(report["runs"], key=lambda r: r["seed"]):
        runs.setdefault(run["row"], []).append(run)
    quoted = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and (m := re.match(r"(I|II|V): |`hicl-plus`", cells[0])):
            quoted[m.group(1) or "plus"] = cells
    assert set(quoted) == set(report["rows"])
    for row, cells in quoted.items():
        summary = report["rows"][row]
        spread = f" ± {summary['std']:.2f}" if summary["n"] > 1 else ""
        assert cells[3] == f"{summary['mean']:.2f}{spread} ({summary['n']})", row
        teacher = "pseudo" if summary["teacher"] == "pseudo" else "refined"
        assert cells[4] == f"{summary['over_teacher']:.2f}x ({teacher})", row
        passes = [run["passes"][summary["teacher"]] for run in runs[row]]
        first = ", ".join(str(p["first_epoch"]) for p in passes)
        stays = ", ".join(str(p["stays_above_from"] or "never") for p in passes)
        assert cells[5] == (first if first == stays else f"{first} (stays above from {stays})"), row
    for key, words in (("V-I", "V - I is"), ("II-I", "II - I is"), ("plus-V", "`hicl-plus` - V is")):
        delta = report["deltas"][key]
        spread = f" ± {delta['std']:.2f}" if delta["n"] > 1 else ""
        assert f"{words} {delta['mean']:+.2f}{spread}" in text, key
