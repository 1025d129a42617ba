"""MkDocs hook: serve the result figures that the pages show from benchmarks/results/.

The pages link them as ``../benchmarks/results/<name>.png`` (right when the Markdown is read in
the repository); the site gets those files at ``benchmarks/results/`` and the links are pointed
there. A link to a figure that does not exist still fails the strict build.
"""

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
REPO_PREFIX = "](../benchmarks/results/"
SITE_PREFIX = "](benchmarks/results/"


def on_files(files, config):
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"benchmarks/results/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    if "/" in page.file.src_uri:  # the pages live at the top of docs/
        return markdown
    return markdown.replace(REPO_PREFIX, SITE_PREFIX)
