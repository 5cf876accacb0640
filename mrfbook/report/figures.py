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


def _show(fig, ax, image, mask, *, title, label, cmap, vmax, fontsize=9):
    import matplotlib.pyplot as plt

    cm = plt.get_cmap(cmap).with_extremes(bad="black")  # a copy; set_bad is deprecated
    im = ax.imshow(np.ma.masked_where(~mask, image), cmap=cm, vmin=0, vmax=vmax)
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(label, fontsize=fontsize - 1)
    cb.ax.tick_params(labelsize=fontsize - 2)


def _row_label(name: str) -> str:
    """Method names on two lines at " + " (they label a row, rotated, beside a 3-inch panel)."""
    return name.replace(" + ", " +\n", 1) if len(name) > 22 else name


def map_comparison(truth: tuple[np.ndarray, np.ndarray], estimates: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   mask: np.ndarray, *, scales: MapScales | None = None, title: str | None = None,
                   fontsize: float = 15.0):
    """A grid of maps: one row per method, columns T1, |T1 error|, T2, |T2 error|.

    The first row is the ground truth (its error columns are left empty). Every panel of a column
    shares one colour scale (``scales``), so methods compare by eye. The columns are named once at
    the top, each row by its method on the left, and each error panel's title is its RMSE over
    ``mask``. Pixels outside ``mask`` are black. The text is large (``fontsize`` points) because the
    14-inch-wide figure is shown at about half its size in a book's text column.

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
        Figure title (above the column names, never over them).
    fontsize : float
        Size in points of titles and labels (> 0).

    Returns
    -------
    matplotlib.figure.Figure

    Explained in chapter 8, book/08_evaluation.md.
    """
    import matplotlib.pyplot as plt

    scales = scales or MapScales()
    if not (np.isfinite(fontsize) and fontsize > 0):
        raise ValueError(f"fontsize must be a finite number > 0, got {fontsize!r}")
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D bool array, got {mask.dtype} {mask.shape}")
    rows = [("truth", truth)] + list(estimates.items())
    for name, (t1, t2) in rows:
        if np.shape(t1) != mask.shape or np.shape(t2) != mask.shape:
            raise ValueError(f"maps of {name!r} must have the mask's shape {mask.shape}")
    fig, axes = plt.subplots(len(rows), 4, figsize=(14, 3.3 * len(rows) + (0.6 if title else 0)), squeeze=False)
    for i, (name, (t1, t2)) in enumerate(rows):
        for j, (est, ref, p, vmax, emax) in enumerate(((t1, truth[0], "$T_1$", scales.t1_max, scales.t1_err_max),
                                                       (t2, truth[1], "$T_2$", scales.t2_max, scales.t2_err_max))):
            _show(fig, axes[i, 2 * j], est, mask, title=p if i == 0 else "", label=f"{p} (ms)", cmap="viridis",
                  vmax=vmax, fontsize=fontsize)
            if i == 0:
                axes[i, 2 * j + 1].set_axis_off()
                axes[i, 2 * j + 1].text(0.5, 0.5, f"|{p} error|\nof each method\nbelow (RMSE over\nthe tissue pixels)",
                                        ha="center", va="center", fontsize=fontsize,
                                        transform=axes[i, 2 * j + 1].transAxes)
                continue
            err = np.abs(np.asarray(est, dtype=np.float64) - ref)
            rmse = float(np.sqrt(np.mean(err[mask] ** 2)))
            _show(fig, axes[i, 2 * j + 1], err, mask, title=f"RMSE {rmse:.1f} ms",
                  label=f"|{p} error| (ms)", cmap="magma", vmax=emax, fontsize=fontsize)
        axes[i, 0].set_ylabel(_row_label(name), fontsize=fontsize)
    if title:
        fig.suptitle(title, fontsize=fontsize + 1)
    fig.tight_layout()
    return fig


def pipeline_diagram(
    stages: Sequence[tuple[str, str]] | None = None,
    *,
    width: float = 7.2,
    height: float = 2.2,
):
    """Draw a left-to-right flow chart of labelled boxes.

    The default size suits a book's text column (about 7 inches at the page's scale): its
    labels are 9-10 pt, at least 9 px high where the page shows the figure at 688 px.

    Parameters
    ----------
    stages : sequence of (title, detail) pairs, optional
        The boxes from left to right.  Defaults to the paper's MRF reconstruction pipeline.
        Titles and details may contain line breaks.
    width, height : float
        Figure size in inches (both in (0, 40]).

    Returns
    -------
    matplotlib.figure.Figure

    Explained in chapter 1, book/01_introduction.md.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if stages is None:
        stages = [
            ("k-space $Y$", "$L$ undersampled\nframes (15 %)"),
            ("signature\nrestoration", "low rank, $h(Y)$\n(nuclear norm)"),
            ("image\nstack $X$", "$N$ pixels ×\n$L$ time points"),
            ("parameter\nrestoration", "residual 1-D\nCNN, $g(X_{j,:})$"),
            ("maps", "$T_1$, $T_2$ (ms)\nper pixel"),
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
            (i + 0.07, 0.06), 0.86, 0.88, boxstyle="round,pad=0.02",
            facecolor=colours[i % len(colours)], edgecolor="#444",
        )
        axes.add_patch(box)
        axes.text(i + 0.5, 0.70, title, ha="center", va="center", fontsize=10, weight="bold", linespacing=1.1)
        axes.text(i + 0.5, 0.30, detail, ha="center", va="center", fontsize=9, linespacing=1.2)
        if i < len(stages) - 1:
            axes.add_patch(FancyArrowPatch((i + 0.93, 0.5), (i + 1.07, 0.5), arrowstyle="-|>", mutation_scale=12))
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.98)
    return figure


def draw_architecture(config: NetworkConfig, ax=None, *, title: str | None = None,
                      compare: NetworkConfig | None = None, compare_label: str = "compact"):
    """Block diagram of the network (matplotlib boxes), top to bottom, one row per stage.

    The first row is the stem (input and the two plain convolutions), then one row per residual
    block (max-pool, two convolutions, the addition, with the shortcut drawn above the
    convolutions), then the global average and the dense output. Every box names its layer and
    gives its output shape (time points x channels); with ``compare`` (a second configuration of
    the same depth) each box adds, in grey, that network's shape too. The drawing is laid out
    in inches for a figure about 7 inches wide, so that its text stays legible in a book's
    text column. Returns the matplotlib Axes.

    Parameters
    ----------
    config : NetworkConfig
        The network drawn.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure of the drawing's size (7 x about 6.5 inches).
    title : str, optional
        Title of the Axes.
    compare : NetworkConfig, optional
        A second configuration with the same ``n_blocks``, ``n_timepoints`` and ``kernel_size``
        whose shapes are printed under the first's.
    compare_label : str
        How the second configuration is named in the boxes.

    Explained in chapter 6, book/06_network.md.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from mrfbook.nn.network import block_channels

    if compare is not None and (compare.n_blocks, compare.n_timepoints, compare.kernel_size) != (
            config.n_blocks, config.n_timepoints, config.kernel_size):
        raise ValueError("compare must have the same n_blocks, n_timepoints and kernel_size as config")
    row_h = 1.1 if compare is None else 1.25  # inches per row
    n_rows = config.n_blocks + 2
    height = n_rows * row_h + 0.2
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, height + (0.3 if title else 0.0)))
    k = config.kernel_size
    colours = {"io": "#e8e8e8", "conv": "#9ecae1", "pool": "#fdd0a2", "short": "#c7e9c0", "dense": "#dadaeb"}
    w, h = 1.42, 0.62 if compare is None else 0.78  # box size (inches)
    x_label, xs = 0.5, [1.66, 3.22, 4.78, 6.4]  # row labels' centre; box centres

    def box(x, y, name, length, ch, ch2, kind, width=w):
        ax.add_patch(FancyBboxPatch((x - width / 2, y - h / 2), width, h,
                                    boxstyle="round,pad=0.02,rounding_size=0.06", fc=colours[kind], ec="0.3", lw=1))
        ax.text(x, y + (0.17 if compare is None else 0.2), name, ha="center", va="center", fontsize=8)
        main = f"{length} x {ch}"
        ax.text(x, y - (0.1 if compare is None else 0.02), main, ha="center", va="center", fontsize=8.5,
                fontweight="bold")
        if ch2 is not None:
            ax.text(x, y - 0.24, f"{compare_label}: {length} x {ch2}", ha="center", va="center", fontsize=7.5,
                    color="0.35")

    def arrow(p0, p1, **kw):
        kw = {"arrowstyle": "-|>", "mutation_scale": 9, "color": "0.25", "lw": 1, "shrinkA": 0, "shrinkB": 0,
              **kw}
        ax.add_patch(FancyArrowPatch(p0, p1, **kw))

    def turn(p0, y_next):
        """From the end of one row down to the first box of the next (top at y_next + h / 2)."""
        y_mid = (p0[1] + y_next + h / 2) / 2 if p0[0] != xs[0] else p0[1]
        ax.plot([p0[0], p0[0], xs[0]], [p0[1], y_mid, y_mid], color="0.25", lw=1)
        arrow((xs[0], y_mid), (xs[0], y_next + h / 2))

    def row_label(y, text):
        ax.text(x_label, y, text, ha="center", va="center", fontsize=8.5, style="italic")

    length = config.n_timepoints
    c0 = config.stem_channels
    c0b = None if compare is None else compare.stem_channels
    y = height - 0.1 - row_h / 2
    row_label(y, "stem")
    box(xs[0], y, "input", length, 1, None if compare is None else 1, "io")
    for i in (1, 2):
        arrow((xs[i - 1] + w / 2, y), (xs[i] - w / 2, y))
        box(xs[i], y, f"Conv1D k={k}, ReLU", length, c0, c0b, "conv")
    ax.plot([xs[2] + w / 2, xs[3] + 0.15], [y, y], color="0.25", lw=1)
    prev = (xs[3] + 0.15, y)  # where the line to the next row starts
    ch_in, ch_in_b = c0, c0b
    chans = block_channels(config)
    chans_b = [None] * len(chans) if compare is None else block_channels(compare)
    for b, (ch, chb) in enumerate(zip(chans, chans_b), start=1):
        y -= row_h
        length //= 2
        row_label(y, f"residual\nblock {b}")
        turn(prev, y)
        box(xs[0], y, "MaxPool /2", length, ch_in, ch_in_b, "pool")
        arrow((xs[0] + w / 2, y), (xs[1] - w / 2, y))
        box(xs[1], y, f"Conv1D k={k}, ReLU", length, ch, chb, "conv")
        arrow((xs[1] + w / 2, y), (xs[2] - w / 2, y))
        box(xs[2], y, f"Conv1D k={k}", length, ch, chb, "conv")
        # the addition and the ReLU after it
        r = 0.16
        xa = xs[3] - 0.45
        ax.text(xa, y, "+", ha="center", va="center", fontsize=12,
                bbox=dict(boxstyle="circle,pad=0.12", fc="white", ec="0.3"))
        arrow((xs[2] + w / 2, y), (xa - r, y))
        ax.text(xs[3] + 0.15, y, "ReLU", ha="center", va="center", fontsize=8.5)
        arrow((xa + r, y), (xs[3] - 0.12, y))
        # the shortcut: from the pool's output, over the two convolutions, into the addition
        y_top = y + h / 2 + 0.1
        ax.plot([xs[0] + w / 2 - 0.1, xs[0] + w / 2 - 0.1, xa], [y + h / 2, y_top, y_top], color="#31a354", lw=1.3)
        arrow((xa, y_top), (xa, y + r), color="#31a354", lw=1.3)
        if ch == ch_in and (chb is None or chb == ch_in_b):
            short = "shortcut: identity"
        else:
            short = f"shortcut: 1x1 conv {ch_in}->{ch}" + ("" if chb is None else f" ({ch_in_b}->{chb})")
        ax.text((xs[1] + xs[2]) / 2, y_top + 0.04, short, ha="center", va="bottom", fontsize=7.5, color="#1b7a37")
        prev = (xs[3] + 0.15, y - 0.12)
        ch_in, ch_in_b = ch, chb
    y -= row_h
    row_label(y, "output")
    turn(prev, y)
    box(xs[0], y, "global avg pool", 1, ch_in, ch_in_b, "pool")
    arrow((xs[0] + w / 2, y), (xs[1] - w / 2, y))
    box(xs[1], y, "Dense (T1, T2)", 1, config.n_outputs, None if compare is None else compare.n_outputs, "dense")
    ax.set_xlim(0, 7.0)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
