"""Kernel-free interactive figures for the rendered book.

A Jupyter widget needs a running kernel; a reader of the static HTML book has none.  The
functions here turn a set of *precomputed* figures into a small block of plain HTML and
JavaScript -- a range slider that swaps between the images -- which works in any browser.
Chapters 2 and 5 use it for the flip-angle-schedule and undersampling-ratio explorers.

IPython is imported at module level (its ``HTML`` display object is what the functions return):
this module needs the ``book`` extra, like the rest of :mod:`mrfbook.report`.

Explained in chapter 2, book/02_simulation.md (first use) and chapter 5, book/05_undersampling.md.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence

from IPython.display import HTML

__all__ = ["figure_to_png", "static_slider", "static_slider_html"]

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def figure_to_png(figure, *, dpi: int = 90) -> bytes:
    """Render a Matplotlib figure to PNG bytes and close it.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        The figure to render.  It is closed afterwards so that notebooks do not also
        display it inline.
    dpi : int
        Resolution of the PNG in dots per inch (10 to 600).

    Returns
    -------
    bytes
        The PNG file's content.
    """
    import matplotlib.pyplot as plt

    if not 10 <= int(dpi) <= 600:
        raise ValueError(f"dpi must be in [10, 600], got {dpi!r}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _as_png(item, dpi: int) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        data = bytes(item)
        if not data.startswith(b"\x89PNG"):
            raise ValueError("figures: byte strings must be PNG files (they must start with the PNG signature)")
        return data
    if hasattr(item, "savefig"):
        return figure_to_png(item, dpi=dpi)
    raise TypeError(f"figures: each item must be a matplotlib Figure or PNG bytes, got {type(item).__name__}")


def static_slider_html(
    figures: Sequence,
    labels: Sequence[str],
    *,
    title: str,
    name: str,
    slider_label: str = "setting",
    dpi: int = 90,
) -> str:
    """HTML for a slider that switches between precomputed figures, without a kernel.

    Parameters
    ----------
    figures : sequence of matplotlib.figure.Figure or bytes
        One figure (or PNG file content) per slider position, at least one.  Figures are
        rendered to PNG and closed.
    labels : sequence of str
        A short caption for each position, same length as ``figures``.
    title : str
        Heading shown above the slider.
    name : str
        Identifier of this slider on the page (letters, digits, ``_`` and ``-``; must start
        with a letter).  Stored as ``data-name`` so tests can find it.
    slider_label : str
        What the slider changes, shown before the current label (e.g. ``"sampling ratio"``).
    dpi : int
        Resolution used when rendering figures.

    Returns
    -------
    str
        A self-contained ``<div class="mrf-static-slider full-width">`` with inline PNGs (base64)
        and a few lines of JavaScript.  The title is the caption of a ``<figure>``; the image
        spans the whole block (which the book's theme widens into the margin on wide screens)
        and is a link: a click shows it at full size (the book's ``readable_figures`` script).
    """
    if len(figures) == 0:
        raise ValueError("figures: at least one figure is required")
    if len(labels) != len(figures):
        raise ValueError(f"labels: need one label per figure ({len(figures)}), got {len(labels)}")
    if not _NAME_PATTERN.match(name):
        raise ValueError(f"name must match {_NAME_PATTERN.pattern!r} (letters, digits, '_' or '-'), got {name!r}")
    sources = ["data:image/png;base64," + base64.b64encode(_as_png(f, dpi)).decode("ascii") for f in figures]
    labels_text = [str(label) for label in labels]
    element_id = f"mrf-slider-{name}"
    payload = html.escape(json.dumps({"sources": sources, "labels": labels_text}), quote=True)
    return f"""
<div class="mrf-static-slider full-width" id="{element_id}" data-name="{html.escape(name)}" data-payload="{payload}"
     style="border:1px solid #ccc;border-radius:6px;padding:0.6em;margin:0.6em 0;box-sizing:border-box;">
<figure style="margin:0;">
  <figcaption class="mrf-slider-title" style="font-weight:600;margin-bottom:0.3em;">{html.escape(title)}</figcaption>
  <label style="display:flex;gap:0.8em;align-items:center;">
    <span>{html.escape(slider_label)}:</span>
    <input type="range" class="mrf-slider-input" min="0" max="{len(sources) - 1}" step="1" value="0"
           aria-label="{html.escape(slider_label)}" style="flex:1;max-width:420px;">
    <span class="mrf-slider-value" style="font-family:monospace;">{html.escape(labels_text[0])}</span>
  </label>
  <a class="mrf-zoom" href="#{element_id}" title="Open the figure at full size" style="display:block;">
  <img class="mrf-slider-image" src="{sources[0]}" alt="{html.escape(title)}: {html.escape(labels_text[0])}"
       style="width:100%;max-width:100%;height:auto;margin-top:0.4em;"></a>
  <div style="font-size:0.85em;color:#666;">Precomputed figures: this control works in the static page,
    without a Python kernel. Click the image to see it at full size.</div>
</figure>
</div>
<script>
(function () {{
  var root = document.getElementById("{element_id}");
  if (!root) {{ return; }}
  var data = JSON.parse(root.getAttribute("data-payload"));
  var input = root.querySelector(".mrf-slider-input");
  var image = root.querySelector(".mrf-slider-image");
  var value = root.querySelector(".mrf-slider-value");
  function show() {{
    var i = parseInt(input.value, 10);
    image.src = data.sources[i];
    image.alt = {json.dumps(title)} + ": " + data.labels[i];
    value.textContent = data.labels[i];
  }}
  input.addEventListener("input", show);
  input.addEventListener("change", show);
}})();
</script>
"""


def static_slider(
    figures: Sequence,
    labels: Sequence[str],
    *,
    title: str,
    name: str,
    slider_label: str = "setting",
    dpi: int = 90,
) -> HTML:
    """Display :func:`static_slider_html` in a notebook (see it for the parameters)."""
    return HTML(static_slider_html(figures, labels, title=title, name=name, slider_label=slider_label, dpi=dpi))
