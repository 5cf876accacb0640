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

import dataclasses
from typing import Any

import numpy as np

from mrfbook.nn.inputs import normalise_signatures
from mrfbook.physics.noise import add_signature_noise
from mrfbook.physics.sequence import FispSequence
from mrfbook.utils.checks import check_int

__all__ = [
    "check_range",
    "sample_tissues",
    "fresh_training_set",
    "fresh_tissue_ranges",
    "split_indices",
    "epoch_order",
    "random_subset",
    "check_snr_range",
    "noisy_training_inputs",
]


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
    n = check_int("n", n, 1)
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
    :func:`mrfbook.physics.epg.simulate_fisp` with every dephasing state kept (as
    :func:`mrfbook.physics.dictionary.build_dictionary` simulates atoms), turned into inputs as
    :func:`mrfbook.nn.inputs.prepare_training_data` turns atoms (real part, unit L2 norm).

    Returns
    -------
    x : np.ndarray
        (n, L) float32 unit-norm inputs.
    y_ms : np.ndarray
        (n, 2) float64 labels [T1, T2] in ms.

    Explained in chapter 7, book/07_training.md.
    """
    from mrfbook.physics.epg import simulate_fisp  # compiled with numba on first use

    if not isinstance(sequence, FispSequence):
        raise ValueError(f"sequence must be a FispSequence, got {type(sequence).__name__}")
    t1, t2 = sample_tissues(n, t1_range_ms=t1_range_ms, t2_range_ms=t2_range_ms, seed=seed)
    atoms = simulate_fisp(sequence, t1, t2, dtype=np.float32)
    x, _ = normalise_signatures(np.asarray(atoms), complex_mode="real")
    return x, np.stack([t1, t2], axis=1)


def check_snr_range(value: Any) -> tuple[float, float]:
    """``(lo, hi)`` in dB, finite, lo <= hi, else ValueError naming ``noise_snr_db``."""
    msg = f"noise_snr_db must be None or a pair (lo, hi) of finite SNRs in dB with lo <= hi, got {value!r}"
    if isinstance(value, (str, bytes)):
        raise ValueError(msg)
    try:
        pair = tuple(value)
    except TypeError as exc:
        raise ValueError(msg) from exc
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in pair):
        raise ValueError(msg)
    lo, hi = float(pair[0]), float(pair[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(msg)
    return lo, hi


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, validation) index split of ``n`` samples."""
    if not (0 < validation_fraction < 1):
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    n_val = int(round(validation_fraction * n))
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"need at least one training and one validation sample; n={n}, validation_fraction={validation_fraction}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def random_subset(dictionary: Any, n_atoms: int, *, seed: int = 0) -> Any:
    """A seeded random subset of ``n_atoms`` atoms of ``dictionary`` (same type, same sequence).

    Used for quick trainings and smoke tests (e.g. ``scripts/train_full.py --max-atoms``).
    """
    k = len(dictionary.t1_ms)
    n_atoms = check_int("n_atoms", n_atoms, 1, k)
    idx = np.sort(np.random.default_rng(seed).choice(k, size=int(n_atoms), replace=False))
    changes = {"atoms": np.asarray(dictionary.atoms)[idx], "t1_ms": np.asarray(dictionary.t1_ms)[idx],
               "t2_ms": np.asarray(dictionary.t2_ms)[idx]}
    if getattr(dictionary, "b1_scale", None) is not None:
        changes["b1_scale"] = np.asarray(dictionary.b1_scale)[idx]
    return dataclasses.replace(dictionary, **changes)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which 0-based ``epoch`` of a run seeded ``seed`` visits its ``n`` training atoms.

    Returns
    -------
    np.ndarray
        (n,) int64, a permutation of ``range(n)`` drawn from ``default_rng([seed, 1, epoch])``.

    Explained in chapter 7, book/07_training.md.
    """
    return np.random.default_rng([seed, 1, epoch]).permutation(n)


def noisy_training_inputs(x: np.ndarray, snr_range_db: tuple[float, float], seed: int, epoch: int) -> np.ndarray:
    """Network inputs of one epoch of noise-augmented training (``TrainingConfig.noise_snr_db``).

    Every row gets an SNR drawn uniformly in ``snr_range_db`` and noise from
    :func:`add_signature_noise`, then :func:`mrfbook.nn.inputs.normalise_signatures`
    (``complex_mode="dephase"``, as at inference). The generator is seeded from
    ``(seed, epoch)``: the same call gives the same array.

    Parameters
    ----------
    x : ndarray, (N, L), real
        Clean inputs (e.g. from :func:`prepare_training_data`).
    snr_range_db : (float, float)
        ``(lo, hi)`` in dB, lo <= hi.
    seed, epoch : int
        Run seed and 0-based epoch.

    Returns
    -------
    ndarray, (N, L), float32
        Unit-norm noisy inputs.

    Explained in chapter 10, book/10_beyond.md.
    """
    lo, hi = check_snr_range(snr_range_db)
    rng = np.random.default_rng([int(seed), 2, int(epoch)])
    snr = rng.uniform(lo, hi, size=np.asarray(x).shape[0]) if hi > lo else np.full(np.asarray(x).shape[0], lo)
    noisy, _ = normalise_signatures(add_signature_noise(x, snr, rng), complex_mode="dephase")
    return noisy


def fresh_tissue_ranges(dictionary: Any, y_train_ms: np.ndarray) -> dict[str, tuple[float, float]]:
    """The (T1, T2) ranges the training atoms span, for ``TrainingConfig.fresh_tissues``."""
    if not isinstance(getattr(dictionary, "sequence", None), FispSequence):
        raise ValueError(
            "config.fresh_tissues needs a dictionary with its FispSequence (dictionary.sequence) to simulate new tissues"
        )
    if getattr(dictionary, "b1_scale", None) is not None:
        raise ValueError("config.fresh_tissues supports (T1, T2) dictionaries only; this one has a B1 axis")
    return {"t1_range_ms": (float(y_train_ms[:, 0].min()), float(y_train_ms[:, 0].max())),
            "t2_range_ms": (float(y_train_ms[:, 1].min()), float(y_train_ms[:, 1].max()))}
