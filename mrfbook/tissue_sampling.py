"""Random tissues off the grid: fresh (T1, T2) pairs and their signatures for training.

A dictionary samples (T1, T2) on a grid (the paper's: every 10 ms). A network trained on it
sees each T2 row and nothing between; where the fingerprint changes quickly with T2 (short
T2), it interpolates poorly between rows (chapter 7, "Between the grid rows"). Drawing new
tissues uniformly from the same region every epoch removes the rows: over many epochs the
network sees the whole continuum, at the cost of one EPG simulation per epoch (about 0.4 s for
64,080 tissues on the project's 2-core CPU, measured 2026-11-26).

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inference import normalise_signatures
from .sequence import FispSequence

__all__ = ["check_range", "sample_tissues", "fresh_training_set"]


def check_range(name: str, value: Any) -> tuple[float, float]:
    """``(lo, hi)`` in ms with ``0 < lo <= hi`` finite, else ValueError naming ``name``."""
    msg = f"{name} must be a pair (lo, hi) of finite times in ms with 0 < lo <= hi, got {value!r}"
    if isinstance(value, (str, bytes)):
        raise ValueError(msg)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(msg) from exc
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(msg)
    return lo, hi


def sample_tissues(
    n: int,
    *,
    t1_range_ms: tuple[float, float],
    t2_range_ms: tuple[float, float],
    seed: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` tissues drawn uniformly from ``{T1 in t1_range, T2 in t2_range, T1 >= T2}``.

    Uniform density over the (T1, T2) region, like the paper's grid (which is uniform too),
    but continuous. Rejection sampling from the bounding rectangle.

    Parameters
    ----------
    n : int
        Number of tissues, >= 1.
    t1_range_ms, t2_range_ms : (float, float)
        Closed ranges in ms, ``0 < lo <= hi``. The region ``T1 >= T2`` inside them must not be
        empty (``t1 hi >= t2 lo``).
    seed : int or sequence of int
        Seed of ``numpy.random.default_rng`` (e.g. ``[seed, epoch]``): equal seeds give equal tissues.

    Returns
    -------
    t1_ms, t2_ms : np.ndarray
        (n,) float64 in ms, ``t1_ms >= t2_ms``.

    Explained in chapter 7, book/07_training.md.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    t1_lo, t1_hi = check_range("t1_range_ms", t1_range_ms)
    t2_lo, t2_hi = check_range("t2_range_ms", t2_range_ms)
    if t1_hi < t2_lo:
        raise ValueError(f"no tissue with T1 >= T2 in t1_range_ms {t1_range_ms} and t2_range_ms {t2_range_ms}")
    rng = np.random.default_rng(seed)
    t1_out = np.empty(0)
    t2_out = np.empty(0)
    while t1_out.size < n:
        m = 2 * (n - t1_out.size) + 64
        t1 = rng.uniform(t1_lo, t1_hi, m)
        t2 = rng.uniform(t2_lo, t2_hi, m)
        keep = t1 >= t2
        t1_out = np.concatenate([t1_out, t1[keep]])
        t2_out = np.concatenate([t2_out, t2[keep]])
    return t1_out[:n], t2_out[:n]


def fresh_training_set(
    sequence: FispSequence,
    n: int,
    *,
    t1_range_ms: tuple[float, float],
    t2_range_ms: tuple[float, float],
    seed: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs and labels for ``n`` new random tissues under ``sequence``.

    The tissues come from :func:`sample_tissues`; their signatures from
    :func:`mrfbook.epg.simulate_fisp` with every dephasing state kept (as
    :func:`mrfbook.dictionary.build_dictionary` simulates atoms), turned into inputs as
    :func:`mrfbook.training.prepare_training_data` turns atoms (real part, unit L2 norm).

    Returns
    -------
    x : np.ndarray
        (n, L) float32 unit-norm inputs.
    y_ms : np.ndarray
        (n, 2) float64 labels [T1, T2] in ms.

    Explained in chapter 7, book/07_training.md.
    """
    from .epg import simulate_fisp  # compiled with numba on first use

    if not isinstance(sequence, FispSequence):
        raise ValueError(f"sequence must be a FispSequence, got {type(sequence).__name__}")
    t1, t2 = sample_tissues(n, t1_range_ms=t1_range_ms, t2_range_ms=t2_range_ms, seed=seed)
    atoms = simulate_fisp(sequence, t1, t2, dtype=np.float32)
    x, _ = normalise_signatures(np.asarray(atoms), complex_mode="real")
    return x, np.stack([t1, t2], axis=1)
