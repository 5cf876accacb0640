"""Schematic diagrams drawn with Matplotlib (no external graph tools).

Explained in chapter 1 (book/01_introduction.md).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pipeline_diagram"]


def pipeline_diagram(
    stages: Sequence[tuple[str, str]] | None = None,
    *,
    width: float = 11.0,
    height: float = 2.6,
):
    """Draw a left-to-right flow chart of labelled boxes.

    Parameters
    ----------
    stages : sequence of (title, detail) pairs, optional
        The boxes from left to right.  Defaults to the paper's MRF reconstruction pipeline.
    width, height : float
        Figure size in inches (both in (0, 40]).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if stages is None:
        stages = [
            ("k-space Y", "L undersampled\nframes (15 %)"),
            ("signature restoration", "low-rank  $h(Y)$\n(nuclear norm)"),
            ("image stack X", "N pixels ×\nL time points"),
            ("parameter restoration", "residual 1-D CNN\n$g(X_{j,:})$"),
            ("maps", "T1, T2 (ms)\nper pixel"),
        ]
    if len(stages) == 0:
        raise ValueError("stages: at least one (title, detail) pair is required")
    for name, value in (("width", width), ("height", height)):
        if not 0 < value <= 40:
            raise ValueError(f"{name} must be in (0, 40] inches, got {value!r}")

    figure, axes = plt.subplots(figsize=(width, height))
    axes.set_xlim(0, len(stages))
    axes.set_ylim(0, 1)
    axes.axis("off")
    colours = ["#dbe9f6", "#fde2c8", "#e3f1dc", "#f6d5e5", "#ece3f7"]
    for i, (title, detail) in enumerate(stages):
        box = FancyBboxPatch(
            (i + 0.08, 0.15), 0.84, 0.7, boxstyle="round,pad=0.02",
            facecolor=colours[i % len(colours)], edgecolor="#444",
        )
        axes.add_patch(box)
        axes.text(i + 0.5, 0.68, title, ha="center", va="center", fontsize=10, weight="bold")
        axes.text(i + 0.5, 0.38, detail, ha="center", va="center", fontsize=9)
        if i < len(stages) - 1:
            axes.add_patch(FancyArrowPatch((i + 0.93, 0.5), (i + 1.07, 0.5), arrowstyle="-|>", mutation_scale=14))
    figure.tight_layout()
    return figure
