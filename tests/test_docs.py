"""The docs site builds strictly: every page in the nav, every link and image resolves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (the dev extra installs it)")
    pytest.importorskip("material", reason="mkdocs-material is not installed (the dev extra installs it)")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    for page in ["index.html", "datasets/index.html", "results/index.html", "DESIGN/index.html"]:
        assert (site / page).is_file(), page
    # the result figures that the pages show from benchmarks/results/ are served with the site
    assert (site / "benchmarks" / "results" / "fig6-epochs.png").is_file()
    assert not (site / "_hooks").exists()
