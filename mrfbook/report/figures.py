"""The book's drawings: T1/T2 maps side by side, the pipeline diagram, the network's architecture.

- :class:`MapScales` and :func:`map_comparison`: maps and their errors, one shared colour scale per
  column (chapter 8).
- :func:`pipeline_diagram`: a left-to-right flow chart of labelled boxes (chapter 1).
- :func:`draw_architecture`: the residual 1-D CNN as a block diagram (chapter 6).

matplotlib is imported inside the functions that draw, so importing this module stays cheap.

Explained in chapter 8, book/08_evaluation.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mrfbook.nn.network import NetworkConfig

__all__ = ["MapScales", "map_comparison", "pipeline_diagram", "draw_architecture"]


class MapScales:
    """Colour-scale limits in ms for maps and absolute-error maps.

    Parameters
    ----------
    t1_max, t2_max : float
        Upper limits of the T1 and T2 maps (lower limit 0), ms, > 0.
    t1_err_max, t2_err_max : float
        Upper limits of the |error| maps, ms, > 0.
    """

    def __init__(self, t1_max: float = 4500.0, t2_max: float = 300.0, t1_err_max: float = 300.0,
                 t2_err_max: float = 100.0) -> None:
        for name, v in (("t1_max", t1_max), ("t2_max", t2_max), ("t1_err_max", t1_err_max),
                        ("t2_err_max", t2_err_max)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number of ms > 0, got {v!r}")
        self.t1_max, self.t2_max = float(t1_max), float(t2_max)
        self.t1_err_max, self.t2_err_max = float(t1_err_max), float(t2_err_max)


def _show(fig, ax, image, mask, *, title, label, cmap, vmax):
    import matplotlib.pyplot as plt

    cm = plt.get_cmap(cmap).with_extremes(bad="black")  # a copy; set_bad is deprecated
    im = ax.imshow(np.ma.masked_where(~mask, image), cmap=cm, vmin=0, vmax=vmax)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).set_label(label, fontsize=8)


def map_comparison(truth: tuple[np.ndarray, np.ndarray], estimates: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   mask: np.ndarray, *, scales: MapScales | None = None, title: str | None = None):
    """A grid of maps: one row per method, columns T1, |T1 error|, T2, |T2 error|.

    The first row is the ground truth (its error columns are left empty). Every panel of a column
    shares one colour scale (``scales``), so methods compare by eye; each panel title carries the
    RMSE over ``mask``. Pixels outside ``mask`` are black.

    Parameters
    ----------
    truth : (numpy.ndarray, numpy.ndarray)
        (H, W) reference T1 and T2 maps, ms.
    estimates : mapping
        ``{method name: (t1_ms, t2_ms)}``, each (H, W), ms.
    mask : numpy.ndarray
        (H, W) bool, the tissue pixels.
    scales : MapScales, optional
        Colour limits (defaults of :class:`MapScales`).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Explained in chapter 8, book/08_evaluation.md.
    """
    import matplotlib.pyplot as plt

    scales = scales or MapScales()
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D bool array, got {mask.dtype} {mask.shape}")
    rows = [("truth", truth)] + list(estimates.items())
    for name, (t1, t2) in rows:
        if np.shape(t1) != mask.shape or np.shape(t2) != mask.shape:
            raise ValueError(f"maps of {name!r} must have the mask's shape {mask.shape}")
    fig, axes = plt.subplots(len(rows), 4, figsize=(14, 3.2 * len(rows)), squeeze=False)
    for i, (name, (t1, t2)) in enumerate(rows):
        for j, (est, ref, p, vmax, emax) in enumerate(((t1, truth[0], "$T_1$", scales.t1_max, scales.t1_err_max),
                                                       (t2, truth[1], "$T_2$", scales.t2_max, scales.t2_err_max))):
            _show(fig, axes[i, 2 * j], est, mask, title=f"{p}, {name}", label=f"{p} (ms)", cmap="viridis", vmax=vmax)
            if i == 0:
                axes[i, 2 * j + 1].set_axis_off()
                continue
            err = np.abs(np.asarray(est, dtype=np.float64) - ref)
            rmse = float(np.sqrt(np.mean(err[mask] ** 2)))
            _show(fig, axes[i, 2 * j + 1], err, mask, title=f"|{p} error|, {name}\nRMSE {rmse:.1f} ms",
                  label=f"|{p} error| (ms)", cmap="magma", vmax=emax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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


def draw_architecture(config: NetworkConfig, ax=None, *, title: str | None = None):
    """Block diagram of the network (matplotlib boxes), left to right.

    Every box names its layer and gives its output shape (time points x
    channels); residual blocks are framed, with their shortcut drawn over the
    two convolutions to the addition. Returns the matplotlib Axes.

    Explained in chapter 6, book/06_network.md.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from mrfbook.nn.network import block_channels

    if ax is None:
        _, ax = plt.subplots(figsize=(2.0 + 2.1 * (config.n_blocks + 4), 4.2))
    k = config.kernel_size
    length, c0 = config.n_timepoints, config.stem_channels
    colours = {"io": "#e8e8e8", "conv": "#9ecae1", "pool": "#fdd0a2", "short": "#c7e9c0", "dense": "#dadaeb"}

    def box(x, y, w, h, text, kind):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    fc=colours[kind], ec="0.3", lw=1))
        ax.text(x, y, text, ha="center", va="center", fontsize=8)

    def arrow(x0, y0, x1, y1, **kw):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9, color="0.25",
                                     lw=1, shrinkA=0, shrinkB=0, **kw))

    w, h, gap = 1.4, 0.55, 0.5
    x = 0.0
    box(x, 0, w, h, f"input\n{length} x 1", "io")
    for _ in range(2):
        arrow(x + w / 2, 0, x + w / 2 + gap, 0)
        x += w + gap
        box(x, 0, w, h + 0.15, f"Conv1D k={k}\n{c0} ch, ReLU\n{length} x {c0}", "conv")
    src = (x + w / 2, 0.0)
    right = x + w / 2
    ch_in = c0
    for b, ch in enumerate(block_channels(config), start=1):
        length //= 2
        left = right + gap
        frame_w = w + 0.95
        xb = left + 0.1 + w / 2
        ax.add_patch(FancyBboxPatch((left, -1.75), frame_w, 3.35, boxstyle="round,pad=0.02,rounding_size=0.1",
                                    fc="none", ec="0.5", ls="--", lw=1))
        ax.text(left + frame_w / 2, 1.45, f"residual block {b}", ha="center", va="center", fontsize=8,
                style="italic")
        arrow(*src, xb - w / 2, 0.95)
        box(xb, 0.95, w, 0.42, f"MaxPool /2\n{length} x {ch_in}", "pool")
        box(xb, 0.25, w, 0.5, f"Conv1D k={k}, ReLU\n{length} x {ch}", "conv")
        box(xb, -0.5, w, 0.5, f"Conv1D k={k}\n{length} x {ch}", "conv")
        arrow(xb, 0.95 - 0.21, xb, 0.5)
        arrow(xb, 0.0, xb, -0.25)
        ax.text(xb, -1.2, "+", ha="center", va="center", fontsize=12,
                bbox=dict(boxstyle="circle,pad=0.1", fc="white", ec="0.3"))
        arrow(xb, -0.75, xb, -1.06)
        ax.add_patch(FancyArrowPatch((xb + w / 2, 0.95), (xb + 0.17, -1.2), connectionstyle="arc3,rad=-0.5",
                                     arrowstyle="-|>", mutation_scale=9, color="#31a354", lw=1.2))
        short = "identity" if ch == ch_in else f"1x1 conv\n{ch_in}->{ch}"
        ax.text(xb + w / 2 + 0.36, -0.25, short, ha="left", va="center", fontsize=6.5, color="#31a354")
        ax.text(xb, -1.55, f"ReLU: {length} x {ch}", ha="center", va="center", fontsize=7)
        src = (xb + w / 2 - 0.05, -1.55)
        right = left + frame_w
        ch_in = ch
    x = right + gap + w / 2
    arrow(*src, x - w / 2, 0)
    box(x, 0, w, h, f"global avg pool\n{ch_in}", "pool")
    arrow(x + w / 2, 0, x + w / 2 + gap, 0)
    x += w + gap
    box(x, 0, w, h, f"Dense\n{config.n_outputs} (T1, T2)", "dense")
    ax.set_xlim(-w, x + w)
    ax.set_ylim(-2.0, 1.8)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
