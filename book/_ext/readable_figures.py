"""Sphinx extension: make every figure of the book readable at full size.

* Every image (cell outputs, ``{figure}`` blocks, Markdown images) is wrapped in a link to its own
  file, so a click opens it at its natural size.  Sphinx does this by itself only for images
  given an explicit width or scale (``html_scaled_image_link``); here it is done for all of them,
  right after Sphinx has copied the images and knows their final paths.
* ``readable_figures.js`` turns those links (and the images of the kernel-free sliders of
  :mod:`mrfbook.report.gallery`, which are data URIs that a browser refuses to open as a page)
  into a full-size overlay: click to open, click or Escape to close.  Without JavaScript the links
  still open the image file.
* ``readable_figures.css`` lets printed outputs scroll horizontally instead of being cut off,
  lets figures of cells tagged ``full-width`` use the whole width, and styles the overlay.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from docutils import nodes

HERE = Path(__file__).resolve().parent
ZOOM_CLASS = "mrf-zoom"


def link_images(builder, doctree) -> int:
    """Wrap every image of ``doctree`` that is not already a link in a link to its file."""
    n = 0
    for image in list(doctree.findall(nodes.image)):
        if isinstance(image.parent, nodes.reference) or "no-scaled-link" in image.get("classes", []):
            continue
        uri = image["uri"]
        if uri.startswith("data:"):
            refuri = uri
        elif uri in builder.images:
            refuri = posixpath.join(builder.imgpath, builder.images[uri])
        else:
            refuri = uri
        reference = nodes.reference("", "", internal=True, refuri=refuri, classes=[ZOOM_CLASS])
        reference["reftitle"] = "Open the figure at full size"
        image.replace_self(reference)
        reference.append(image)
        n += 1
    return n


def _patch_builder(app) -> None:
    builder = app.builder
    if builder.format != "html" or getattr(builder, "_mrf_links_images", False):
        return
    original = builder.post_process_images

    def post_process_images(doctree):
        original(doctree)  # fills builder.images with the final file names
        link_images(builder, doctree)

    builder.post_process_images = post_process_images
    builder._mrf_links_images = True


def _add_static(app) -> None:
    if app.builder.format != "html":
        return
    static = str(HERE / "static")
    if static not in app.config.html_static_path:
        app.config.html_static_path.append(static)
    app.add_css_file("readable_figures.css")
    app.add_js_file("readable_figures.js", loading_method="defer")


def setup(app):
    app.connect("builder-inited", _patch_builder)
    app.connect("builder-inited", _add_static)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
