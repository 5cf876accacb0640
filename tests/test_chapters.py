"""Every chapter of the book executed without error in the last build.

``scripts/test.sh`` builds the book first (Jupyter Book executes each chapter and fails the build
on any error); these tests then check, chapter by chapter, that the jupyter-cache holds a
successful execution of the chapter's *current* source and that its HTML page was written
without error output.  Chapters end with hidden assertion cells, so a regression in the library
that changes a chapter's figures fails here too.

Without a build the tests are skipped, unless ``MRFBOOK_REQUIRE_BUILD=1`` (set by the test
script) makes a missing build a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


def _is_notebook(source: Path) -> bool:
    return "```{code-cell}" in source.read_text()


def _require_build() -> None:
    if not HTML.exists():
        message = f"the book has not been built ({HTML} missing): run scripts/build_book.sh"
        if os.environ.get("MRFBOOK_REQUIRE_BUILD") == "1":
            pytest.fail(message)
        pytest.skip(message)


CHAPTERS = _toc_files()


def test_toc_lists_every_chapter_file():
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "book").glob("*.md")}
    assert on_disk == set(CHAPTERS), (
        f"not in _toc.yml: {sorted(on_disk - set(CHAPTERS))}; missing files: {sorted(set(CHAPTERS) - on_disk)}"
    )


@pytest.mark.chapters
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_built_without_errors(chapter: str):
    _require_build()
    page = HTML / f"{chapter}.html"
    assert page.exists(), f"{page} was not written"
    text = page.read_text(errors="replace")
    assert "Traceback (most recent call last)" not in text, f"{chapter}: an executed cell shows a traceback"
    assert "output traceback" not in text and "output error" not in text, f"{chapter}: error output in the page"
    report = HTML / "reports" / f"{chapter}.err.log"
    assert not report.exists(), f"{chapter}: execution failed, see {report}"


@pytest.mark.chapters
@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if _is_notebook(ROOT / f"{c}.md")])
def test_chapter_executed_from_current_source(chapter: str):
    _require_build()
    from jupyter_cache import get_cache

    cache = get_cache(BUILD / ".jupyter_cache")
    source = (ROOT / f"{chapter}.md").resolve()
    records = [r for r in cache.list_project_records() if Path(r.uri).resolve() == source]
    assert records, f"{chapter}: no execution record in {BUILD / '.jupyter_cache'}"
    record = records[0]
    assert not record.traceback, f"{chapter}: execution failed:\n{record.traceback}"
    cached = cache.get_cached_project_nb(record.pk)
    assert cached is not None, f"{chapter}: the cached execution does not match the chapter's current source"
    seconds = cached.data.get("execution_seconds")
    print(f"{chapter}: executed in {seconds:.1f} s" if seconds is not None else f"{chapter}: executed")


@pytest.mark.chapters
@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if "plt.show()" in (ROOT / f"{c}.md").read_text()])
def test_chapter_figures_rendered(chapter: str):
    """A chapter that draws figures shows them as images in its page (none lost to a backend)."""
    _require_build()
    text = (HTML / f"{chapter}.html").read_text(errors="replace")
    n_shows = (ROOT / f"{chapter}.md").read_text().count("plt.show()")
    n_images = text.count("<img")
    assert n_images >= min(n_shows, 1) and n_images > 0, f"{chapter}: {n_shows} plt.show() calls but {n_images} images"
