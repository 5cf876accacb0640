"""Side-by-side figures of T1/T2 maps and their errors, one shared colour scale per column.

Explained in chapter 8, book/08_evaluation.md.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["MapScales", "map_comparison"]


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
