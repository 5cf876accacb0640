"""Where a network's errors come from on a (T1, T2) test grid.

An RMSE over the whole shifted test grid mixes tissues whose fingerprints
are easy to tell apart with tissues the sequence barely separates. These
helpers split the error by region of the (T1, T2) plane and lay it out on the
grid, so a reader sees which tissues dominate the figure.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mrfbook.metrics import parameter_scores

__all__ = ["RegionError", "default_regions", "errors_by_region", "error_grid", "geometric_edges", "RowErrors",
           "errors_by_t2_row"]


@dataclass(frozen=True)
class RegionError:
    """RMSE of T1 and T2 over one region of the test grid.

    Attributes
    ----------
    name : str
        What the region is (e.g. ``"T2 < 20 ms"``).
    n : int
        Tissues in the region.
    share : float
        ``n`` over all tissues, in [0, 1].
    t1_rmse_ms, t2_rmse_ms : float
        RMSE over the region (ms).
    t1_mse_share, t2_mse_share : float
        The region's part of the whole grid's squared error, in [0, 1]:
        ``sum over region of e**2 / sum over all of e**2``.
    """

    name: str
    n: int
    share: float
    t1_rmse_ms: float
    t2_rmse_ms: float
    t1_mse_share: float
    t2_mse_share: float


def _check(pred_ms: np.ndarray, t1_ms: np.ndarray, t2_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred_ms, dtype=np.float64)
    t1 = np.asarray(t1_ms, dtype=np.float64)
    t2 = np.asarray(t2_ms, dtype=np.float64)
    if t1.ndim != 1 or t1.shape != t2.shape:
        raise ValueError(f"t1_ms and t2_ms must be 1-D arrays of the same length, got shapes {t1.shape} and {t2.shape}")
    if pred.shape != (t1.size, 2):
        raise ValueError(f"pred_ms must have shape (N, 2) = ({t1.size}, 2) (T1, T2 in ms), got {pred.shape}")
    if t1.size == 0:
        raise ValueError("t1_ms must hold at least one tissue")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(t1)) and np.all(np.isfinite(t2))):
        raise ValueError("pred_ms, t1_ms and t2_ms must be finite")
    return pred, t1, t2


def default_regions(t1_ms: np.ndarray, t2_ms: np.ndarray, *, short_t2_ms: float = 20.0,
                    long_t1_ms: float = 3000.0) -> dict[str, np.ndarray]:
    """Masks for the regions chapter 7 discusses.

    Parameters
    ----------
    t1_ms, t2_ms : (N,) float arrays
        The tissues (ms).
    short_t2_ms : float
        T2 below this (ms, > 0) is "short": there the fingerprint changes fastest with T2 and
        the paper grid's 10 ms steps are coarsest relative to T2.
    long_t1_ms : float
        T1 above this (ms, > 0) is "long": little of it recovers within the 200 repetitions
        (about 2.6 s) of the paper's sequence.

    Returns
    -------
    dict of str -> (N,) bool
        ``"all"``, ``"T2 < {short}"``, ``"T1 > {long}, T2 >= {short}"`` and ``"the rest"``
        (the last three partition the grid).
    """
    t1 = np.asarray(t1_ms, dtype=np.float64)
    t2 = np.asarray(t2_ms, dtype=np.float64)
    for name, value in (("short_t2_ms", short_t2_ms), ("long_t1_ms", long_t1_ms)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite value > 0 ms, got {value!r}")
    short = t2 < short_t2_ms
    long_ = (t1 > long_t1_ms) & ~short
    return {
        "all": np.ones(t1.shape, dtype=bool),
        f"T2 < {short_t2_ms:g} ms": short,
        f"T1 > {long_t1_ms:g} ms, T2 ≥ {short_t2_ms:g} ms": long_,
        "the rest": ~short & ~long_,
    }


def errors_by_region(pred_ms: np.ndarray, t1_ms: np.ndarray, t2_ms: np.ndarray,
                     regions: Mapping[str, np.ndarray] | None = None) -> list[RegionError]:
    """RMSE of T1 and T2 in each region, and each region's part of the total squared error.

    Parameters
    ----------
    pred_ms : (N, 2) array
        Predicted (T1, T2) in ms.
    t1_ms, t2_ms : (N,) arrays
        True values in ms.
    regions : mapping of str -> (N,) bool, optional
        Default :func:`default_regions`. Empty regions are left out.

    Returns
    -------
    list of RegionError, in the order of ``regions``.
    """
    pred, t1, t2 = _check(pred_ms, t1_ms, t2_ms)
    if regions is None:
        regions = default_regions(t1, t2)
    sq1, sq2 = (pred[:, 0] - t1) ** 2, (pred[:, 1] - t2) ** 2
    tot1, tot2 = max(sq1.sum(), np.finfo(float).tiny), max(sq2.sum(), np.finfo(float).tiny)
    rows = []
    for name, mask in regions.items():
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != t1.shape:
            raise ValueError(f"regions[{name!r}] must be a bool array of shape {t1.shape}, got {m.dtype} {m.shape}")
        n = int(m.sum())
        if n == 0:
            continue
        rmse = parameter_scores(pred, t1, t2, m, scores=("rmse",))
        rows.append(RegionError(name, n, n / t1.size, rmse["t1_rmse_ms"], rmse["t2_rmse_ms"],
                                float(sq1[m].sum() / tot1), float(sq2[m].sum() / tot2)))
    return rows


def error_grid(
    pred_ms: np.ndarray, t1_ms: np.ndarray, t2_ms: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Absolute errors laid out on the (T1, T2) grid, for an image.

    Parameters
    ----------
    pred_ms : (N, 2) array
        Predicted (T1, T2) in ms.
    t1_ms, t2_ms : (N,) arrays
        True values in ms; every (T1, T2) pair at most once.

    Returns
    -------
    t1_values : (A,) float array
        The distinct T1 values (ms), ascending.
    t2_values : (B,) float array
        The distinct T2 values (ms), ascending.
    t1_abs_error, t2_abs_error : (B, A) float arrays
        ``|error|`` in ms at (T2 row, T1 column); NaN where the grid has no tissue (T2 > T1).
    """
    pred, t1, t2 = _check(pred_ms, t1_ms, t2_ms)
    t1_values, col = np.unique(t1, return_inverse=True)
    t2_values, row = np.unique(t2, return_inverse=True)
    if len(set(zip(row.tolist(), col.tolist()))) != t1.size:
        raise ValueError("t1_ms, t2_ms must not repeat a (T1, T2) pair")
    out = [np.full((t2_values.size, t1_values.size), np.nan) for _ in range(2)]
    out[0][row, col] = np.abs(pred[:, 0] - t1)
    out[1][row, col] = np.abs(pred[:, 1] - t2)
    return t1_values, t2_values, out[0], out[1]


def geometric_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges for ascending positive grid values drawn on a log axis.

    Parameters
    ----------
    values : (M,) float array
        Ascending, > 0 (e.g. T2 in ms), M >= 2.

    Returns
    -------
    (M + 1,) float array
        Geometric means of neighbours inside, the end cells mirrored about their values on a
        log scale, so every value lies inside its own cell on a log axis (for ``pcolormesh``).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)) or np.any(v <= 0) or np.any(np.diff(v) <= 0):
        raise ValueError("values must be a 1-D array of at least 2 finite, positive, strictly ascending numbers")
    inner = np.sqrt(v[1:] * v[:-1])
    return np.concatenate([[v[0] ** 2 / inner[0]], inner, [v[-1] ** 2 / inner[-1]]])


@dataclass(frozen=True)
class RowErrors:
    """RMSE of a network along T2 rows.

    Attributes
    ----------
    t2_ms : np.ndarray
        (R,) float64 the T2 of each row, ms.
    on_training_row : np.ndarray
        (R,) bool: the row's T2 is one of the training grid's T2 values.
    n : np.ndarray
        (R,) int tissues per row (the T1 values with T1 >= T2).
    t1_rmse_ms, t2_rmse_ms : np.ndarray
        (R,) float64 RMSE of T1 and T2 over each row, ms.
    """

    t2_ms: np.ndarray
    on_training_row: np.ndarray
    n: np.ndarray
    t1_rmse_ms: np.ndarray
    t2_rmse_ms: np.ndarray

    def pooled(self, on_row: bool, t2_min_ms: float = 0.0, t2_max_ms: float = np.inf) -> tuple[float, float]:
        """RMSE of (T1, T2) in ms pooled over the rows on (``on_row``) or off the training grid
        with ``t2_min_ms < T2 <= t2_max_ms``, each row weighted by its tissue count.
        """
        sel = (self.on_training_row == on_row) & (self.t2_ms > t2_min_ms) & (self.t2_ms <= t2_max_ms)
        if not sel.any():
            raise ValueError(f"no {'on' if on_row else 'off'}-grid row with {t2_min_ms} < T2 <= {t2_max_ms} ms")
        w = self.n[sel]
        return (float(np.sqrt(np.sum(w * self.t1_rmse_ms[sel] ** 2) / w.sum())),
                float(np.sqrt(np.sum(w * self.t2_rmse_ms[sel] ** 2) / w.sum())))


def errors_by_t2_row(
    model: Any,
    sequence: Any,
    t2_ms: np.ndarray,
    t1_ms: np.ndarray,
    *,
    training_t2_ms: np.ndarray,
    batch_size: int = 4096,
) -> RowErrors:
    """Simulate tissues row by row (fixed T2, the given T1 values) and measure a network's RMSE.

    Parameters
    ----------
    model : mrfbook.nn.model.TrainedModel
        The network (predicts T1, T2 in ms).
    sequence : mrfbook.physics.sequence.FispSequence
        The sequence the network was trained for.
    t2_ms : np.ndarray
        (R,) row T2 values in ms, > 0, each with at least one T1 value >= it.
    t1_ms : np.ndarray
        (M,) T1 values in ms, > 0; row r uses those >= ``t2_ms[r]``.
    training_t2_ms : np.ndarray
        The T2 values of the training grid (marks which rows lie on it, to 1e-6 ms).
    batch_size : int
        Signatures per forward pass.

    Returns
    -------
    RowErrors

    Explained in chapter 7, book/07_training.md.
    """
    from mrfbook.nn.inference import predict_parameters
    from mrfbook.physics.dictionary import build_dictionary

    t2 = np.asarray(t2_ms, dtype=np.float64)
    t1 = np.asarray(t1_ms, dtype=np.float64)
    train_t2 = np.asarray(training_t2_ms, dtype=np.float64)
    for name, arr in (("t2_ms", t2), ("t1_ms", t1), ("training_t2_ms", train_t2)):
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be a non-empty 1-D array of finite times > 0 ms")
    if t2.max() > t1.max():
        raise ValueError(f"every T2 row needs a T1 value >= it: t2_ms reaches {t2.max()} ms, t1_ms only {t1.max()} ms")
    rows_t1 = [t1[t1 >= v] for v in t2]
    all_t1 = np.concatenate(rows_t1)
    all_t2 = np.concatenate([np.full(r.size, v) for r, v in zip(rows_t1, t2)])
    pred = predict_parameters(model, build_dictionary(sequence, all_t1, all_t2).atoms, batch_size=batch_size)
    n = np.array([r.size for r in rows_t1])
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    sq_err = (pred - np.stack([all_t1, all_t2], axis=1)) ** 2
    rmse = np.sqrt(np.add.reduceat(sq_err, starts, axis=0) / n[:, None])
    on_row = np.array([bool(np.any(np.isclose(v, train_t2, rtol=0, atol=1e-6))) for v in t2])
    return RowErrors(t2_ms=t2, on_training_row=on_row, n=n, t1_rmse_ms=rmse[:, 0], t2_rmse_ms=rmse[:, 1])
