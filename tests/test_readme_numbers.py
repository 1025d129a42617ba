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
    runs = {r["row"]: r for r in report["runs"]}
    quoted = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and (m := re.match(r"(I|II|V): |`hicl-plus`", cells[0])):
            quoted[m.group(1) or "plus"] = cells
    assert set(quoted) == set(report["rows"])
    for row, cells in quoted.items():
        summary = report["rows"][row]
        assert cells[3] == f"{summary['mean']:.2f}", row
        teacher = "pseudo" if summary["teacher"] == "pseudo" else "refined"
        assert cells[4] == f"{summary['over_teacher']:.2f}x ({teacher})", row
        passes = runs[row]["passes"][summary["teacher"]]
        assert cells[5].startswith(str(passes["first_epoch"])), row
        if passes["stays_above_from"] != passes["first_epoch"]:
            assert f"stays above from {passes['stays_above_from']}" in cells[5], row
    delta = report["deltas"]["V-I"]["mean"]
    assert f"V - I is {delta:+.2f}" in text
    assert f"ends {-report['deltas']['plus-V']['mean']:.2f} below row V" in text
