"""Markdown tables for chapter output (rendered as MyST by the book, readable as text in Jupyter).

Explained in chapter 6, book/06_network.md (first use).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["markdown_table"]


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                   headers: Sequence[str] | None = None) -> str:
    """A GitHub/MyST pipe table.

    Parameters
    ----------
    rows : sequence of mappings
        One mapping per row; ``row[c]`` is shown with ``str`` for each ``c`` in ``columns``
        (format numbers before passing them in).
    columns : sequence of str
        Keys to show, in order.
    headers : sequence of str, optional
        Column titles (default: the keys); same length as ``columns``.

    Returns
    -------
    str
        The table, one line per row, ``|`` inside cells escaped.
    """
    columns = list(columns)
    if not columns:
        raise ValueError("columns must name at least one key")
    headers = list(headers) if headers is not None else columns
    if len(headers) != len(columns):
        raise ValueError(f"headers has {len(headers)} entries but columns has {len(columns)}")
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise ValueError(f"row {i} lacks the column(s) {missing}")

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
