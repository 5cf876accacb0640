"""How a network does on the rows of its training grid and between them.

The paper's dictionary has a T2 row every 10 ms (1, 11, 21, ... ms); its shifted test grid
sits halfway (6, 16, 26, ... ms). Simulating tissues *on* and *between* the rows, with the
same off-grid T1 values, separates an interpolation error (large between rows, small on them)
from an error the network makes everywhere.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RowErrors", "errors_by_t2_row"]


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
        with ``t2_min_ms < T2 <= t2_max_ms``, each row weighted by its tissue count."""
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
    model : mrfbook.training.TrainedModel
        The network (predicts T1, T2 in ms).
    sequence : mrfbook.sequence.FispSequence
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
    from mrfbook.dictionary import build_dictionary
    from mrfbook.inference import predict_parameters

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
