"""The kernel-free slider: valid HTML with every precomputed image, and clear errors."""

from __future__ import annotations

import base64
import html
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from mrfbook.report.figures import pipeline_diagram
from mrfbook.report.gallery import figure_to_png, static_slider, static_slider_html


def _figures(n: int):
    figures = []
    for i in range(n):
        figure, axes = plt.subplots()
        axes.plot([0, 1], [0, i])
        figures.append(figure)
    return figures


def _payload(markup: str) -> dict:
    match = re.search(r'data-payload="([^"]*)"', markup)
    assert match, "the slider must carry its images in data-payload"
    return json.loads(html.unescape(match.group(1)))


def test_slider_embeds_one_png_per_position_and_closes_figures():
    figures = _figures(3)
    markup = static_slider_html(figures, ["a", "b", "c"], title="T", name="demo", slider_label="x")
    payload = _payload(markup)
    assert payload["labels"] == ["a", "b", "c"]
    assert len(payload["sources"]) == 3
    pngs = [base64.b64decode(s.split(",", 1)[1]) for s in payload["sources"]]
    assert all(p.startswith(b"\x89PNG") for p in pngs)
    assert len(set(pngs)) == 3, "different figures must give different images"
    assert 'max="2"' in markup and 'data-name="demo"' in markup
    assert not plt.get_fignums(), "figures must be closed after rendering"


def test_slider_accepts_png_bytes_and_returns_ipython_html():
    png = figure_to_png(pipeline_diagram())
    shown = static_slider([png], ["only"], title="Pipeline", name="pipe")
    assert "mrf-static-slider" in shown.data


@pytest.mark.parametrize(
    ("figures", "labels", "name", "message"),
    [
        ([], [], "ok", "figures"),
        ([b"\x89PNGxx"], ["a", "b"], "ok", "labels"),
        ([b"\x89PNGxx"], ["a"], "9bad name", "name"),
        ([b"GIF89a"], ["a"], "ok", "figures"),
    ],
)
def test_slider_rejects_bad_input_naming_the_parameter(figures, labels, name, message):
    with pytest.raises(ValueError, match=message):
        static_slider_html(figures, labels, title="t", name=name)


def test_pipeline_diagram_validates_size():
    with pytest.raises(ValueError, match="width"):
        pipeline_diagram(width=0)
