"""Every module of the library says where the book explains it, in one format, and the page exists.

The back-link format (one of two):

- ``Explained in chapter N, book/NN_name.md.`` for a numbered chapter (``N`` equals ``NN``), and
- ``Explained in book/name.md.`` for a page without a number (``book/cli.md`` for the command line).

A sentence may go on after the file name ("... book/05_undersampling.md (images) and chapter
10, ..."); the file name is never in backticks, so readers and this test find it the same way.
Every module docstring (subpackages' ``__init__`` included) carries one such line, the named file
exists, and a numbered chapter names the module (``mrfbook.x.y``) somewhere, so the link goes both
ways (not required of the small helpers in ``mrfbook.utils``).
Every other "Explained in" of the package, in class, function and method docstrings, uses the
same format and names an existing page.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mrfbook"
BOOK = ROOT / "book"

LINK = re.compile(
    r"Explained in (?:chapter (?P<n>\d+), (?P<numbered>book/(?P<nn>\d\d)_[a-z0-9_]+\.md)|(?P<page>book/[a-z_]+\.md))"
)


def module_name(path: Path) -> str:
    """Dotted name of a file of the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def back_link_errors(text: str, book: Path = BOOK) -> tuple[list[str], list[str]]:
    """(pages named by well-formed back-links, problems) of one docstring.

    Every "Explained in" must start a well-formed link; whitespace (line breaks) counts as one space.
    """
    flat = " ".join(text.split())
    pages, problems = [], []
    for start in [m.start() for m in re.finditer("Explained in", flat)]:
        m = LINK.match(flat, start)
        if m is None:
            problems.append(f"not in the back-link format: {flat[start:start + 70]!r}")
            continue
        page = m.group("numbered") or m.group("page")
        if m.group("n") is not None and int(m.group("n")) != int(m.group("nn")):
            problems.append(f"chapter {m.group('n')} does not match {page}")
        if not (book.parent / page).is_file():
            problems.append(f"{page} does not exist")
        pages.append(page)
    return pages, problems


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if not any(part.startswith("_") and part not in
                                                               ("__init__.py", "__main__.py") for part in p.parts))


def test_back_link_format_checker_can_fail():
    good = "Summary.\n\nExplained in chapter 5, book/05_undersampling.md (images) and chapter 10,\nbook/10_beyond.md."
    assert back_link_errors(good) == (["book/05_undersampling.md"], [])
    assert back_link_errors("Explained in book/cli.md.") == (["book/cli.md"], [])
    for bad in ("Explained in chapter 2, ``book/02_simulation.md``.", "Explained in chapter 3, book/02_simulation.md.",
                "Explained in chapter 11, book/11_missing.md.", "Explained in the chapter on training."):
        assert back_link_errors(bad)[1], bad


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_module_docstring_links_to_the_book(path):
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    name = module_name(path)
    assert doc, f"{name} has no module docstring"
    pages, problems = back_link_errors(doc)
    assert not problems, f"{name}: " + "; ".join(problems)
    assert pages, f"{name}: module docstring lacks 'Explained in chapter N, book/NN_name.md.'"
    # A numbered chapter names the module it explains (book/cli.md documents commands, not modules;
    # a subpackage is named through its modules; mrfbook.utils holds helpers every chapter relies on).
    if path.name != "__init__.py" and re.match(r"book/\d\d_", pages[0]) and not name.startswith("mrfbook.utils."):
        names_it = name in (BOOK.parent / pages[0]).read_text(encoding="utf-8")
        assert names_it, f"{pages[0]} never names {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_every_back_link_in_the_module_is_well_formed(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node) or ""
            problems += [f"{module_name(path)}:{node.lineno} {node.name}: {p}" for p in back_link_errors(doc)[1]]
    assert not problems, "\n".join(problems)
