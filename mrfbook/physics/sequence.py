"""FISP acquisition schedules for MR fingerprinting.

A :class:`FispSequence` holds, for each of its ``L`` time points, the flip angle,
repetition time (TR), echo time (TE) and RF phase of one FISP readout, plus an
optional ideal inversion pulse before the first readout.  The arrays are stored
as read-only ``float64`` copies and the object is immutable, so its
:attr:`FispSequence.digest` can be used to detect stale dictionaries and models.

Factory functions build the schedules used in the book:

* :func:`paper_sequence` - the schedule of Song et al. (ICASSP 2019): TE 2 ms,
  TR 11.5-14.5 ms following smooth Perlin-like noise, flip angles in smooth
  half-sine lobes between 0 and 70 degrees (the MRF-FISP pattern of Jiang et
  al. 2015), inversion before the first pulse.
* :func:`constant_sequence`, :func:`single_sinusoid`, :func:`random_sequence`
  - simple alternatives for experiments.
* :meth:`FispSequence.from_arrays` - any user schedule (scalars broadcast).

Explained in chapter 2, book/02_simulation.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mrfbook.utils.checks import check_int

__all__ = [
    "SAME_SEQUENCE_RTOL",
    "FispSequence",
    "paper_sequence",
    "sinusoidal_lobes",
    "perlin_tr",
    "constant_sequence",
    "single_sinusoid",
    "random_sequence",
    "make_sequence",
    "SHAPES",
]

_ARRAY_FIELDS = ("flip_angles_deg", "tr_ms", "te_ms", "rf_phase_deg")
_FORMAT_VERSION = 1
#: Relative tolerance of :meth:`FispSequence.matches`: sequences that differ by less are the same
#: sequence (floating-point round-off of another machine), well below any scanner's timing resolution.
SAME_SEQUENCE_RTOL = 1e-12


def _as_readonly_1d(name: str, value: Any) -> np.ndarray:
    """Copy ``value`` to a read-only 1-D float64 array (no broadcasting)."""
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D array of real numbers; got {value!r}") from exc
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of shape (L,), L >= 1; got shape {arr.shape} "
            "(use FispSequence.from_arrays to broadcast scalars)"
        )
    if arr.size == 0:
        raise ValueError(f"{name} must have at least one time point (L >= 1); got length 0")
    arr.setflags(write=False)
    return arr


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True, eq=False)
class FispSequence:
    """An MRF-FISP acquisition schedule (immutable).

    Parameters
    ----------
    flip_angles_deg : ndarray, shape (L,), float64
        Nominal flip angle of each RF pulse in degrees, each in [0, 180].
    tr_ms : ndarray, shape (L,), float64
        Repetition time of each time point in ms, each finite and > 0.
    te_ms : ndarray, shape (L,), float64
        Echo time (RF pulse to readout) of each time point in ms, 0 < TE < TR.
    rf_phase_deg : ndarray, shape (L,), float64
        RF phase of each pulse in degrees (finite).  90 degrees everywhere
        rotates about the y axis and keeps FISP signatures real.
    inversion : bool, default True
        Apply an ideal 180 degree inversion (Z0 = -1) before the first pulse.
    inversion_delay_ms : float, default 0.0
        Free relaxation between the inversion and the first pulse, in ms (>= 0).

    Notes
    -----
    Arrays are copied and stored read-only.  Equality and hashing use
    :attr:`digest`.  Scalars are *not* broadcast by the constructor; use
    :meth:`from_arrays` for that.

    Explained in chapter 2, book/02_simulation.md.
    """

    flip_angles_deg: np.ndarray
    tr_ms: np.ndarray
    te_ms: np.ndarray
    rf_phase_deg: np.ndarray
    inversion: bool = True
    inversion_delay_ms: float = 0.0

    def __post_init__(self) -> None:
        arrays = {name: _as_readonly_1d(name, getattr(self, name)) for name in _ARRAY_FIELDS}
        n = arrays["flip_angles_deg"].size
        for name, arr in arrays.items():
            if arr.size != n:
                raise ValueError(
                    f"{name} has length {arr.size} but flip_angles_deg has length {n}; "
                    "all per-time-point arrays must have the same length L"
                )
        fa, tr, te, ph = (arrays[k] for k in _ARRAY_FIELDS)
        bad = ~np.isfinite(fa) | (fa < 0.0) | (fa > 180.0)
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(
                f"flip_angles_deg must be finite and in [0, 180] degrees; got {fa[i]!r} at index {i}"
            )
        bad = ~np.isfinite(tr) | (tr <= 0.0)
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(f"tr_ms must be finite and > 0 ms; got {tr[i]!r} at index {i}")
        bad = ~np.isfinite(te) | (te <= 0.0)
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(
                f"te_ms must be finite and in (0, tr_ms) ms; got {te[i]!r} at index {i}"
            )
        bad = te >= tr
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(
                f"te_ms must be < tr_ms (allowed range 0 < te_ms < tr_ms); got te_ms={te[i]!r} "
                f">= tr_ms={tr[i]!r} at index {i}"
            )
        bad = ~np.isfinite(ph)
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(f"rf_phase_deg must be finite (degrees); got {ph[i]!r} at index {i}")
        if not isinstance(self.inversion, (bool, np.bool_)):
            raise ValueError(f"inversion must be a bool (True or False); got {self.inversion!r}")
        try:
            delay = float(self.inversion_delay_ms)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"inversion_delay_ms must be a finite number >= 0 ms; got {self.inversion_delay_ms!r}"
            ) from exc
        if not np.isfinite(delay) or delay < 0.0:
            raise ValueError(f"inversion_delay_ms must be finite and >= 0 ms; got {delay!r}")
        for name, arr in arrays.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "inversion", bool(self.inversion))
        object.__setattr__(self, "inversion_delay_ms", delay)

    # ------------------------------------------------------------------ basics
    @property
    def n_timepoints(self) -> int:
        """Number of time points ``L`` (int)."""
        return int(self.flip_angles_deg.size)

    @property
    def total_time_ms(self) -> float:
        """Total acquisition time: inversion delay plus the sum of all TRs, in ms."""
        return float(self.inversion_delay_ms + self.tr_ms.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able representation (lists of Python floats, exact round trip)."""
        return {
            "format": "mrfbook.FispSequence",
            "version": _FORMAT_VERSION,
            "flip_angles_deg": self.flip_angles_deg.tolist(),
            "tr_ms": self.tr_ms.tolist(),
            "te_ms": self.te_ms.tolist(),
            "rf_phase_deg": self.rf_phase_deg.tolist(),
            "inversion": self.inversion,
            "inversion_delay_ms": self.inversion_delay_ms,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FispSequence":
        """Rebuild a sequence from :meth:`to_dict` output (validated)."""
        missing = [k for k in (*_ARRAY_FIELDS, "inversion", "inversion_delay_ms") if k not in d]
        if missing:
            raise ValueError(f"d is missing the FispSequence keys {missing}")
        version = d.get("version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise ValueError(f"d['version'] must be {_FORMAT_VERSION}; got {version!r}")
        return cls(
            flip_angles_deg=d["flip_angles_deg"],
            tr_ms=d["tr_ms"],
            te_ms=d["te_ms"],
            rf_phase_deg=d["rf_phase_deg"],
            inversion=d["inversion"],
            inversion_delay_ms=d["inversion_delay_ms"],
        )

    @property
    def digest(self) -> str:
        """SHA-256 hex digest of every parameter (changes if any value changes)."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            payload = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
            cached = hashlib.sha256(payload.encode("utf-8")).hexdigest()
            object.__setattr__(self, "_digest", cached)
        return cached

    def matches(self, other: "FispSequence | Mapping[str, Any] | None", *, rtol: float = SAME_SEQUENCE_RTOL) -> bool:
        """Whether ``other`` is this sequence up to floating-point round-off.

        The digest changes with the last bit of any value, and a sequence generated on another
        machine (another NumPy, another CPU's vector code) can differ from the stored one by an
        ulp: a shipped network trained on it is still a network for this sequence. Array fields
        must agree to the relative tolerance ``rtol``, the inversion flag exactly, its delay to
        ``rtol``.

        Parameters
        ----------
        other : FispSequence, or its :meth:`to_dict` form, or None (never matches)
        rtol : float
            Relative tolerance per value (default :data:`SAME_SEQUENCE_RTOL`).

        Returns
        -------
        bool

        Explained in chapter 2, book/02_simulation.md.
        """
        if other is None:
            return False
        d = other.to_dict() if isinstance(other, FispSequence) else other
        try:
            arrays = [np.asarray(d[k], dtype=np.float64) for k in _ARRAY_FIELDS]
            inversion, delay = bool(d["inversion"]), float(d["inversion_delay_ms"])
        except (KeyError, TypeError, ValueError):
            return False
        if inversion != self.inversion or not np.isclose(delay, self.inversion_delay_ms, rtol=rtol, atol=0.0):
            return False
        mine = (getattr(self, k) for k in _ARRAY_FIELDS)
        return all(a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=0.0) for a, b in zip(arrays, mine))

    def __reduce__(self):
        # pickle through the validated dict form, so unpickled arrays are read-only again
        return (FispSequence.from_dict, (self.to_dict(),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FispSequence):
            return NotImplemented
        return self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        fa, tr = self.flip_angles_deg, self.tr_ms
        return (
            f"FispSequence(L={self.n_timepoints}, flip {fa.min():.3g}-{fa.max():.3g} deg, "
            f"TR {tr.min():.4g}-{tr.max():.4g} ms, TE {self.te_ms.min():.4g}-{self.te_ms.max():.4g} ms, "
            f"inversion={self.inversion}, inversion_delay_ms={self.inversion_delay_ms:g}, "
            f"digest={self.digest[:12]})"
        )

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        flip_angles_deg: Any,
        tr_ms: Any,
        te_ms: Any,
        rf_phase_deg: Any = 90.0,
        inversion: bool = True,
        inversion_delay_ms: float = 0.0,
    ) -> "FispSequence":
        """Build a sequence from user arrays; scalars are broadcast to length ``L``.

        ``L`` is the length of the non-scalar arguments (they must agree); if all
        four are scalars, ``L = 1``.  All values are validated as in the class
        docstring; a bad value raises ``ValueError`` naming the parameter.
        """
        raw = {
            "flip_angles_deg": flip_angles_deg,
            "tr_ms": tr_ms,
            "te_ms": te_ms,
            "rf_phase_deg": rf_phase_deg,
        }
        arrays: dict[str, np.ndarray] = {}
        for name, value in raw.items():
            try:
                arrays[name] = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be a scalar or 1-D array of real numbers") from exc
            if arrays[name].ndim > 1:
                raise ValueError(
                    f"{name} must be a scalar or 1-D array of shape (L,); got shape {arrays[name].shape}"
                )
        lengths = {name: a.size for name, a in arrays.items() if a.ndim == 1}
        n = max(lengths.values()) if lengths else 1
        for name, size in lengths.items():
            if size != n:
                raise ValueError(
                    f"{name} has length {size} but other arrays have length {n}; "
                    "all non-scalar arrays must have the same length L"
                )
        full = {name: (np.full(n, a) if a.ndim == 0 else a) for name, a in arrays.items()}
        return cls(**full, inversion=inversion, inversion_delay_ms=inversion_delay_ms)


# ---------------------------------------------------------------- schedule shapes
def _check_max_flip(max_flip_deg: float) -> float:
    v = float(max_flip_deg)
    if not np.isfinite(v) or v < 0.0 or v > 180.0:
        raise ValueError(f"max_flip_deg must be in [0, 180] degrees; got {max_flip_deg!r}")
    return v


def _check_tr_range(tr_range_ms: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in tr_range_ms)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tr_range_ms must be a pair (min_ms, max_ms); got {tr_range_ms!r}") from exc
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0.0 or hi < lo:
        raise ValueError(
            f"tr_range_ms must satisfy 0 < min_ms <= max_ms (finite); got {tr_range_ms!r}"
        )
    return lo, hi


def sinusoidal_lobes(
    n_timepoints: int,
    max_flip_deg: float,
    n_lobes: int,
    *,
    gap_fraction: float = 0.1,
) -> np.ndarray:
    """Flip-angle schedule made of smooth half-sine lobes of differing heights.

    The ``n_timepoints`` points are split into ``n_lobes`` near-equal segments.
    Each segment holds one half-sine lobe ``h_k sin(pi (j + 1/2) / n_k)``
    (strictly positive, peak normalised to ``h_k``) followed by a short gap of
    zero flip angle covering ``gap_fraction`` of the segment (at least one point
    when ``gap_fraction > 0`` and the segment has >= 2 points).  Lobe heights are
    ``h_0 = max_flip_deg`` and ``h_k = max_flip_deg * (0.35 + 0.65 frac(k phi))``
    for ``k >= 1`` (``phi`` the golden ratio), so lobes differ in height in a
    deterministic way, as in the MRF-FISP pattern of Jiang et al. 2015.

    Parameters
    ----------
    n_timepoints : int
        Schedule length ``L`` (>= n_lobes).
    max_flip_deg : float
        Height of the tallest lobe in degrees, in [0, 180].
    n_lobes : int
        Number of lobes (>= 1).
    gap_fraction : float, default 0.1
        Fraction of each segment at 0 degrees after the lobe, in [0, 0.5].

    Returns
    -------
    ndarray, shape (L,), float64
        Flip angles in degrees, in [0, max_flip_deg]; the maximum is reached.
    """
    n = check_int("n_timepoints", n_timepoints, 1)
    n_lobes = check_int("n_lobes", n_lobes, 1)
    if n_lobes > n:
        raise ValueError(f"n_lobes must be in [1, n_timepoints={n}]; got {n_lobes}")
    vmax = _check_max_flip(max_flip_deg)
    gap_fraction = float(gap_fraction)
    if not (0.0 <= gap_fraction <= 0.5):
        raise ValueError(f"gap_fraction must be in [0, 0.5]; got {gap_fraction!r}")
    golden = (1.0 + np.sqrt(5.0)) / 2.0
    edges = np.linspace(0, n, n_lobes + 1).round().astype(int)
    out = np.zeros(n, dtype=np.float64)
    for k in range(n_lobes):
        seg = edges[k + 1] - edges[k]
        n_gap = int(round(gap_fraction * seg))
        if gap_fraction > 0 and seg >= 2:
            n_gap = max(n_gap, 1)
        n_gap = min(n_gap, seg - 1)
        n_lobe = seg - n_gap
        height = 1.0 if k == 0 else 0.35 + 0.65 * ((k * golden) % 1.0)
        shape = np.sin(np.pi * (np.arange(n_lobe) + 0.5) / n_lobe)
        out[edges[k] : edges[k] + n_lobe] = vmax * height * shape / shape.max()
    return out


def perlin_tr(
    n_timepoints: int,
    tr_range_ms: tuple[float, float] = (11.5, 14.5),
    seed: int = 0,
    *,
    n_cells: int | None = None,
) -> np.ndarray:
    """Smooth 1-D Perlin-like gradient noise scaled to a TR range.

    Random unit gradients ``g_i`` (+-1 times a uniform magnitude) are drawn at
    ``n_cells + 1`` lattice points; between lattice points ``i`` and ``i+1`` the
    noise is ``(1-s) g_i u + s g_{i+1} (u-1)`` with local coordinate ``u`` in
    [0, 1) and quintic fade ``s = 6u^5 - 15u^4 + 10u^3`` (Perlin 2002).  The
    result is min-max scaled so that it spans exactly ``tr_range_ms``.

    Parameters
    ----------
    n_timepoints : int
        Length ``L`` (>= 1).
    tr_range_ms : (float, float)
        ``(min, max)`` TR in ms, ``0 < min <= max``.  ``min == max`` gives a
        constant TR.
    seed : int
        Seed of ``numpy.random.default_rng`` (same seed -> same TRs).
    n_cells : int, optional
        Number of lattice cells; default ``max(1, L // 20)`` (10 for L = 200).

    Returns
    -------
    ndarray, shape (L,), float64
        TR in ms.
    """
    n = check_int("n_timepoints", n_timepoints, 1)
    lo, hi = _check_tr_range(tr_range_ms)
    cells = max(1, n // 20) if n_cells is None else check_int("n_cells", n_cells, 1)
    rng = np.random.default_rng(seed)
    grads = rng.choice([-1.0, 1.0], size=cells + 1) * rng.uniform(0.5, 1.0, size=cells + 1)
    x = (np.arange(n) + 0.5) / n * cells
    i = np.minimum(np.floor(x).astype(int), cells - 1)
    u = x - i
    fade = u**3 * (u * (u * 6.0 - 15.0) + 10.0)
    noise = (1.0 - fade) * grads[i] * u + fade * grads[i + 1] * (u - 1.0)
    span = noise.max() - noise.min()
    if hi == lo or span == 0.0:
        return np.full(n, lo)
    return lo + (noise - noise.min()) / span * (hi - lo)


# ---------------------------------------------------------------- factory functions
def paper_sequence(
    n_timepoints: int = 200,
    *,
    max_flip_deg: float = 70.0,
    n_lobes: int = 4,
    tr_range_ms: tuple[float, float] = (11.5, 14.5),
    te_ms: float = 2.0,
    seed: int = 0,
    inversion: bool = True,
    gap_fraction: float = 0.1,
) -> FispSequence:
    """The MRF-FISP schedule of Song et al. (ICASSP 2019), as used in the book.

    200 time points; TE 2 ms; TR following smooth Perlin-like noise between
    11.5 and 14.5 ms (:func:`perlin_tr`, seeded); flip angles in 4 half-sine
    lobes of differing heights between 0 and 70 degrees with short zero-degree
    gaps (:func:`sinusoidal_lobes`); RF phase 90 degrees; ideal inversion
    before the first pulse.  The paper does not publish its exact schedule, so
    lobe count, heights and TR noise are our documented choice.

    Returns
    -------
    FispSequence
        Explained in chapter 2, book/02_simulation.md.
    """
    fa = sinusoidal_lobes(n_timepoints, max_flip_deg, n_lobes, gap_fraction=gap_fraction)
    tr = perlin_tr(n_timepoints, tr_range_ms, seed)
    return FispSequence.from_arrays(fa, tr, te_ms, 90.0, inversion=inversion)


def constant_sequence(
    n_timepoints: int,
    flip_deg: float,
    tr_ms: float,
    te_ms: float,
    inversion: bool = False,
    rf_phase_deg: float = 90.0,
) -> FispSequence:
    """Constant flip angle, TR and TE (used for steady-state checks).

    Returns a :class:`FispSequence` of length ``n_timepoints``.
    """
    n = check_int("n_timepoints", n_timepoints, 1)
    return FispSequence.from_arrays(
        np.full(n, float(flip_deg)), tr_ms, te_ms, rf_phase_deg, inversion=inversion
    )


def single_sinusoid(
    n_timepoints: int = 200,
    *,
    max_flip_deg: float = 70.0,
    tr_range_ms: tuple[float, float] = (11.5, 14.5),
    te_ms: float = 2.0,
    seed: int = 0,
    inversion: bool = True,
) -> FispSequence:
    """One half-sine flip-angle lobe over the whole schedule, Perlin TR.

    Returns a :class:`FispSequence` (flip angles in (0, max_flip_deg]).
    """
    fa = sinusoidal_lobes(n_timepoints, max_flip_deg, 1, gap_fraction=0.0)
    tr = perlin_tr(n_timepoints, tr_range_ms, seed)
    return FispSequence.from_arrays(fa, tr, te_ms, 90.0, inversion=inversion)


def random_sequence(
    n_timepoints: int = 200,
    *,
    max_flip_deg: float = 70.0,
    tr_range_ms: tuple[float, float] = (11.5, 14.5),
    te_ms: float = 2.0,
    seed: int = 0,
    inversion: bool = True,
) -> FispSequence:
    """Independent uniform random flip angles in [0, max] and TRs in the range.

    Seeded with ``numpy.random.default_rng(seed)``; returns a
    :class:`FispSequence`.
    """
    n = check_int("n_timepoints", n_timepoints, 1)
    vmax = _check_max_flip(max_flip_deg)
    lo, hi = _check_tr_range(tr_range_ms)
    rng = np.random.default_rng(seed)
    fa = rng.uniform(0.0, vmax, size=n)
    tr = rng.uniform(lo, hi, size=n)
    return FispSequence.from_arrays(fa, tr, te_ms, 90.0, inversion=inversion)


#: schedule shapes understood by :func:`make_sequence`
SHAPES = ("lobes", "constant", "single_sinusoid", "random")


def make_sequence(
    shape: str = "lobes",
    n_timepoints: int = 200,
    *,
    max_flip_deg: float = 70.0,
    n_lobes: int = 4,
    tr_range_ms: tuple[float, float] = (11.5, 14.5),
    te_ms: float = 2.0,
    seed: int = 0,
    inversion: bool = True,
) -> FispSequence:
    """One entry point for the schedule shapes of chapter 2's explorer.

    Parameters
    ----------
    shape : {"lobes", "constant", "single_sinusoid", "random"}
        ``"lobes"``: :func:`paper_sequence` (``n_lobes`` half-sine lobes);
        ``"constant"``: flip angle ``max_flip_deg`` throughout;
        ``"single_sinusoid"``: :func:`single_sinusoid`; ``"random"``:
        :func:`random_sequence` (random TR too).  Except for ``"random"``, TR
        follows :func:`perlin_tr` over ``tr_range_ms`` (constant if both ends
        are equal).
    Other parameters as in :func:`paper_sequence`.

    Returns
    -------
    FispSequence
    """
    common = dict(max_flip_deg=max_flip_deg, tr_range_ms=tr_range_ms, te_ms=te_ms, seed=seed, inversion=inversion)
    if shape == "lobes":
        return paper_sequence(n_timepoints, n_lobes=n_lobes, **common)
    if shape == "single_sinusoid":
        return single_sinusoid(n_timepoints, **common)
    if shape == "random":
        return random_sequence(n_timepoints, **common)
    if shape == "constant":
        n = check_int("n_timepoints", n_timepoints, 1)
        fa = np.full(n, _check_max_flip(max_flip_deg))
        return FispSequence.from_arrays(fa, perlin_tr(n, tr_range_ms, seed), te_ms, 90.0, inversion=inversion)
    raise ValueError(f"shape must be one of {SHAPES}; got {shape!r}")
