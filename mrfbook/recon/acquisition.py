"""Simulated MRF acquisition: image stacks, undersampling masks, the sampling operator.

The MRF data model of the paper (Song et al., ICASSP 2019, section 2) is
``Y[:, i] = F_u{X[:, i]}``: every frame ``i`` of the image stack ``X`` (N pixels x L
frames) is Fourier transformed and only the k-space locations of that frame's mask are
kept. This module builds each piece:

* :func:`image_stack` -- the fully sampled stack ``X`` of a phantom: in every pixel the
  spin-weighted sum of its compartments' EPG fingerprints (partial volume, slow exchange), or
  PD x the fingerprint of its (T1, T2) for a phantom without compartments;
* :func:`variable_density_masks` -- one seeded variable-density random Cartesian mask per
  frame (Lustig's polynomial density, as in the authors' code);
* :class:`UndersampledFourier` -- the operator ``F_u``, its adjoint and ``F_u^H F_u``;
* :func:`zero_filled` and :func:`add_noise`.

Conventions (used everywhere in the package):

* Image stacks are ``(H, W, L)`` complex64, pixel ``(row, column)`` first, frame last.
* k-space stacks are ``(L, H, W)`` complex64, frame first, **centred**: the k-space origin
  (DC) sits at index ``(H // 2, W // 2)`` (``numpy.fft.fftshift`` convention), which is
  how masks are drawn. Rows (axis 1) are phase-encode lines ``k_y``, columns (axis 2) the
  readout direction ``k_x``.
* The 2-D DFT is orthonormal (``norm="ortho"``) and its image origin is the array's
  first element, so ``forward = fftshift_k(fft2(x, norm="ortho"))``. The image is not
  shifted: a circular shift of the image only multiplies k-space by a phase ramp, which
  commutes with a mask, so ``F_u^H F_u`` is identical either way and
  ``adjoint(forward(x))`` is the orthogonal projection of ``x`` onto the sampled
  frequencies.

Explained in chapter 5, book/05_undersampling.md.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.fft as sfft

from mrfbook.utils.checks import check_int, check_nonnegative

__all__ = [
    "image_stack",
    "variable_density_masks",
    "density_pdf",
    "UndersampledFourier",
    "zero_filled",
    "fft_workers",
]


def fft_workers() -> int:
    """Number of threads used for the batched FFTs (``$MRFBOOK_FFT_WORKERS``, default 2)."""
    value = os.environ.get("MRFBOOK_FFT_WORKERS", "2")
    try:
        workers = int(value)
    except ValueError as exc:
        raise ValueError(f"MRFBOOK_FFT_WORKERS must be a positive integer, got {value!r}") from exc
    if workers < 1:
        raise ValueError(f"MRFBOOK_FFT_WORKERS must be a positive integer, got {value!r}")
    return workers


# ---------------------------------------------------------------------------
# image stack
# ---------------------------------------------------------------------------


def image_stack(maps: Any, sequence: Any, *, b1: np.ndarray | None = None,
                progress: bool = False) -> np.ndarray:
    """Fully sampled MRF image stack of a phantom: PD x EPG signature in every pixel.

    Without compartments (``maps.compartments`` absent or None) every tissue pixel holds one
    tissue: its signal is ``pd`` times the fingerprint of its (``t1_ms``, ``t2_ms``), and pixels
    outside the tissue mask are zero. With compartments
    (:class:`mrfbook.physics.phantom.Compartments`, several tissues per pixel, slow exchange) the
    signal is ``sum_k weight[k] * fingerprint(t1_ms[k], t2_ms[k])`` wherever a compartment has a
    positive weight, inside the tissue mask or not (the mask is where estimates are scored, not
    where the object ends); compartment values may lie outside any dictionary's grid (e.g.
    T2 = 0.4 ms), only T1, T2 > 0 is required.

    Only the distinct (T1, T2[, B1]) combinations are simulated (a phantom with a few tissue
    classes costs a few EPG runs, a continuous one at most one run per pixel and compartment);
    the compartments' weighted sum is accumulated in float64 and cast once.

    Parameters
    ----------
    maps : mrfbook.physics.phantom.TissueMaps
        Anything with ``t1_ms``, ``t2_ms`` (ms), ``pd`` (relative, >= 0) as (H, W) float
        arrays and ``tissue_mask`` (H, W) bool; optionally ``compartments`` with ``weight``,
        ``t1_ms``, ``t2_ms`` as (K, H, W) float arrays.
    sequence : mrfbook.physics.sequence.FispSequence
        The FISP schedule (L time points).
    b1 : numpy.ndarray, optional
        (H, W) relative transmit field (flip-angle scale, > 0 wherever signal is simulated); None = 1.
        It scales the flip angles of every compartment of a pixel alike.
    progress : bool
        Show a tqdm bar during the EPG simulation.

    Returns
    -------
    numpy.ndarray
        (H, W, L) complex64 stack ``X``; its imaginary part is zero (the sequence's 90 deg
        RF phase makes every signature real), it is complex because k-space sampling
        and restoration produce complex images.

    Raises
    ------
    ValueError
        If the maps disagree in shape, are non-finite, or have T1 <= 0, T2 <= 0, PD < 0
        or B1 <= 0 inside the tissue mask; if the compartments disagree in shape with the maps,
        are non-finite, have a negative weight, or T1 <= 0 or T2 <= 0 where their weight is positive.

    Explained in chapter 5, book/05_undersampling.md.
    """
    from mrfbook.physics.epg import simulate_fisp

    t1, t2, pd, mask, comp = _check_maps(maps)
    if comp is not None:
        weight, c_t1, c_t2 = comp
        support = weight > 0  # (K, H, W)
        where = mask | support.any(axis=0)
    else:
        where = mask
    if b1 is not None:
        b1 = np.asarray(b1, dtype=np.float64)
        if b1.shape != t1.shape:
            raise ValueError(f"b1 must have the maps' shape {t1.shape}, got {b1.shape}")
        if not np.all(np.isfinite(b1[where])) or np.any(b1[where] <= 0):
            raise ValueError("b1 must be finite and > 0 inside the tissue mask"
                             + (" and wherever a compartment has weight" if comp is not None else ""))
    n_time = int(sequence.n_timepoints)
    out = np.zeros(t1.shape + (n_time,), dtype=np.complex64)
    if comp is not None:
        return _compartment_stack(out, weight, c_t1, c_t2, support, b1, sequence, progress)
    if not mask.any():
        return out
    columns = [t1[mask], t2[mask]] + ([b1[mask]] if b1 is not None else [])
    params = np.stack(columns, axis=1)
    unique, inverse = np.unique(params, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sig = simulate_fisp(sequence, unique[:, 0], unique[:, 1],
                        unique[:, 2] if b1 is not None else None, progress=progress)
    sig = np.asarray(sig)
    if sig.shape != (unique.shape[0], n_time):
        raise RuntimeError(f"simulate_fisp returned shape {sig.shape}, "
                           f"expected {(unique.shape[0], n_time)}")
    out[mask] = (pd[mask, None] * sig[inverse]).astype(np.complex64)
    return out


def _compartment_stack(out: np.ndarray, weight: np.ndarray, t1: np.ndarray, t2: np.ndarray,
                       support: np.ndarray, b1: np.ndarray | None, sequence: Any,
                       progress: bool) -> np.ndarray:
    """Fill ``out`` (H, W, L) with sum_k weight_k * fingerprint(T1_k, T2_k[, B1]) over ``support``."""
    from mrfbook.physics.epg import simulate_fisp

    any_k = support.any(axis=0)
    if not any_k.any():
        return out
    # position of every supported pixel in the (n_pixels, L) accumulator, row-major
    index = np.full(any_k.shape, -1, dtype=np.int64)
    index[any_k] = np.arange(int(any_k.sum()))
    rows, params = [], []
    for k in range(weight.shape[0]):
        sel = support[k]
        rows.append(index[sel])
        params.append(np.stack([t1[k][sel], t2[k][sel]] + ([b1[sel]] if b1 is not None else []), axis=1))
    allp = np.concatenate(params)
    unique, inverse = np.unique(allp, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_time = out.shape[-1]
    sig = np.asarray(simulate_fisp(sequence, unique[:, 0], unique[:, 1],
                                   unique[:, 2] if b1 is not None else None, progress=progress))
    if sig.shape != (unique.shape[0], n_time):
        raise RuntimeError(f"simulate_fisp returned shape {sig.shape}, "
                           f"expected {(unique.shape[0], n_time)}")
    acc = np.zeros((int(any_k.sum()), n_time), dtype=np.float64)
    start = 0
    for k in range(weight.shape[0]):
        n = rows[k].size
        # each pixel appears at most once per compartment, so fancy-index += is exact
        acc[rows[k]] += weight[k][support[k]][:, None] * sig[inverse[start:start + n]]
        start += n
    out[any_k] = acc.astype(np.complex64)
    return out


def _check_maps(maps: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                    tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Validated (t1, t2, pd, mask, compartments) of a phantom; compartments (weight, t1, t2) or None."""
    try:
        t1 = np.asarray(maps.t1_ms, dtype=np.float64)
        t2 = np.asarray(maps.t2_ms, dtype=np.float64)
        pd = np.asarray(maps.pd, dtype=np.float64)
        mask = np.asarray(maps.tissue_mask)
    except AttributeError as exc:
        raise ValueError("maps must have t1_ms, t2_ms, pd and tissue_mask attributes "
                         "(mrfbook.physics.phantom.TissueMaps)") from exc
    if t1.ndim != 2:
        raise ValueError(f"maps.t1_ms must be a 2-D (H, W) array, got shape {t1.shape}")
    for name, arr in (("t2_ms", t2), ("pd", pd), ("tissue_mask", mask)):
        if arr.shape != t1.shape:
            raise ValueError(f"maps.{name} must have shape {t1.shape} like maps.t1_ms, "
                             f"got {arr.shape}")
    if mask.dtype != bool:
        raise ValueError(f"maps.tissue_mask must be a bool array, got dtype {mask.dtype}")
    for name, arr in (("t1_ms", t1), ("t2_ms", t2), ("pd", pd)):
        if not np.all(np.isfinite(arr[mask])):
            raise ValueError(f"maps.{name} must be finite inside the tissue mask")
    if np.any(t1[mask] <= 0) or np.any(t2[mask] <= 0):
        raise ValueError("maps.t1_ms and maps.t2_ms must be > 0 ms inside the tissue mask")
    if np.any(pd[mask] < 0):
        raise ValueError("maps.pd must be >= 0 inside the tissue mask")
    return t1, t2, pd, mask, _check_compartments(getattr(maps, "compartments", None), t1.shape)


def _check_compartments(comp: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(weight, t1, t2) as (K, H, W) float64 of ``maps.compartments``, validated; None if absent."""
    if comp is None:
        return None
    try:
        weight = np.asarray(comp.weight, dtype=np.float64)
        c_t1 = np.asarray(comp.t1_ms, dtype=np.float64)
        c_t2 = np.asarray(comp.t2_ms, dtype=np.float64)
    except AttributeError as exc:
        raise ValueError("maps.compartments must have weight, t1_ms and t2_ms attributes "
                         "(mrfbook.physics.phantom.Compartments)") from exc
    for name, arr in (("weight", weight), ("t1_ms", c_t1), ("t2_ms", c_t2)):
        if arr.ndim != 3 or arr.shape[1:] != tuple(shape) or arr.shape[0] < 1:
            raise ValueError(f"maps.compartments.{name} must be a (K, H, W) array with (H, W) = {tuple(shape)} "
                             f"and K >= 1, got shape {arr.shape}")
        if arr.shape != weight.shape:
            raise ValueError(f"maps.compartments.{name} must have the weight's shape {weight.shape}, got {arr.shape}")
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError("maps.compartments.weight must be finite and >= 0")
    on = weight > 0
    for name, arr in (("t1_ms", c_t1), ("t2_ms", c_t2)):
        vals = arr[on]
        if not np.all(np.isfinite(vals)) or np.any(vals <= 0):
            raise ValueError(f"maps.compartments.{name} must be finite and > 0 ms wherever the weight is > 0")
    return weight, c_t1, c_t2


# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------


def density_pdf(shape: tuple[int, int], sampling_ratio: float = 0.15, *, power: float = 9.0,
                pattern: str = "lines") -> np.ndarray:
    """Lustig's polynomial variable-density sampling probability, centred.

    ``p(r) = min(1, (1 - r)**power + c)`` where ``r`` in [0, 1] is the normalised
    distance to the k-space centre and the offset ``c`` >= 0 is found by bisection so
    that the probabilities sum to ``sampling_ratio`` x (number of candidates). The
    centre (r = 0) always has probability 1.

    Parameters
    ----------
    shape : (int, int)
        Frame size (H, W).
    sampling_ratio : float
        Fraction of k-space to sample, in (0, 1].
    power : float
        Polynomial power (>= 0); 9 in the authors' code.
    pattern : {"lines", "points"}
        ``"lines"``: one probability per phase-encode row ``k_y`` (r = |k_y| / max|k_y|),
        returned with shape (H,). ``"points"``: one per k-space point, r = Euclidean
        distance normalised by its maximum (the corner), shape (H, W).

    Returns
    -------
    numpy.ndarray
        float64 probabilities in [0, 1] (centred: origin at index H // 2 [, W // 2]).
    """
    height, width = _check_shape(shape)
    ratio = _check_ratio(sampling_ratio)
    power = check_nonnegative("power", power)
    r = _radius((height, width), pattern)
    return _fit_pdf(r, ratio * r.size, power)


def _radius(shape: tuple[int, int], pattern: str) -> np.ndarray:
    height, width = shape
    ky = np.arange(height) - height // 2
    if pattern == "lines":
        r = np.abs(ky).astype(np.float64)
    elif pattern == "points":
        kx = np.arange(width) - width // 2
        r = np.hypot(ky[:, None], kx[None, :])
    else:
        raise ValueError(f"pattern must be 'lines' or 'points', got {pattern!r}")
    rmax = r.max()
    return r / rmax if rmax > 0 else r


def _fit_pdf(r: np.ndarray, target: float, power: float) -> np.ndarray:
    """Bisection on the additive offset so that sum(pdf) == target (pdf clipped to 1)."""
    base = (1.0 - r) ** power
    centre = r == 0
    base[centre] = 1.0

    def pdf(c: float) -> np.ndarray:
        p = np.minimum(base + c, 1.0)
        p[centre] = 1.0
        return p

    if pdf(0.0).sum() >= target:
        # Even without an offset there is too much density: scale the non-centre part
        # down instead (only happens for tiny ratios); the centre stays at 1.
        rest = base.copy()
        rest[centre] = 0.0
        n_centre = float(centre.sum())
        scale = max(target - n_centre, 0.0) / rest.sum() if rest.sum() > 0 else 0.0
        p = rest * scale
        p[centre] = 1.0
        return p
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if pdf(mid).sum() > target:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-15:
            break
    return pdf(0.5 * (lo + hi))


def variable_density_masks(shape: tuple[int, int], n_frames: int, sampling_ratio: float = 0.15,
                           *, power: float = 9.0, seed: int | None = 0,
                           pattern: str = "lines") -> np.ndarray:
    """Variable-density random Cartesian undersampling masks, a different one per frame.

    The sampling probability is Lustig's polynomial density ``(1 - r)**power`` with an
    additive offset fitted so that the expected fraction is ``sampling_ratio``
    (:func:`density_pdf`), the k-space centre always sampled. For each frame the sampled
    set is drawn by systematic probability-proportional-to-size sampling over a random
    ordering of the candidates: every candidate is included with exactly its
    probability, and every frame has a fixed number of samples. The per-frame count is
    ``floor`` or ``ceil`` of ``sampling_ratio x candidates``, dithered across frames so
    that the fraction over the whole stack is the requested ratio to within one sample.

    Parameters
    ----------
    shape : (int, int)
        Frame size (H, W), each >= 2.
    n_frames : int
        Number of frames L (>= 1).
    sampling_ratio : float
        Fraction of k-space sampled, in (0, 1]; 0.15 in the paper.
    power : float
        Polynomial power of the density, >= 0 (9 in the authors' code).
    seed : int or None
        Seed of the ``numpy.random.default_rng`` that draws every mask (deterministic).
    pattern : {"lines", "points"}
        ``"lines"`` (default): whole phase-encode rows ``k_y`` are chosen with the 1-D
        density and each chosen row is fully sampled along the readout ``k_x`` -- a
        realisable 2-D Cartesian acquisition. ``"points"``: individual k-space points with
        the 2-D radial density, as in the authors' MATLAB code (which, for 2-D, corresponds
        to Cartesian sampling of a 3-D acquisition's two phase-encode directions).

    Returns
    -------
    numpy.ndarray
        (L, H, W) bool, centred (DC at ``[:, H // 2, W // 2]``), True = sampled.

    Raises
    ------
    ValueError
        ``sampling_ratio`` outside (0, 1], ``power`` < 0, bad ``shape`` / ``n_frames`` /
        ``pattern``.
    """
    height, width = _check_shape(shape)
    ratio = _check_ratio(sampling_ratio)
    power = check_nonnegative("power", power)
    n_frames = check_int("n_frames", n_frames, 1)
    r = _radius((height, width), pattern).reshape(-1)
    n_cand = r.size
    rng = np.random.default_rng(seed)
    # Dithered integer count per frame: total over frames = round(ratio * n_cand * L).
    total = ratio * n_cand
    edges = np.floor(total * np.arange(n_frames + 1) + 0.5).astype(np.int64)
    counts = np.clip(np.diff(edges), 1, n_cand)
    pdf_cache: dict[int, np.ndarray] = {}
    flat = np.zeros((n_frames, n_cand), dtype=bool)
    for frame, count in enumerate(counts):
        count = int(count)
        if count not in pdf_cache:
            pdf_cache[count] = _fit_pdf(r, float(count), power)
        flat[frame] = _systematic_sample(pdf_cache[count], count, rng)
    if pattern == "lines":
        return np.repeat(flat[:, :, None], width, axis=2)
    return flat.reshape(n_frames, height, width)


def _systematic_sample(prob: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Draw exactly ``count`` candidates with inclusion probabilities ``prob`` (sum = count)."""
    order = rng.permutation(prob.size)
    cum = np.cumsum(prob[order])
    cum *= count / cum[-1]  # remove the bisection's residual so the total is exact
    u = rng.uniform(0.0, 1.0)
    # candidate j is selected when an integer lies in (cum[j-1] - u, cum[j] - u]
    hits = np.floor(cum - u + 1.0) - np.floor(np.concatenate(([0.0], cum[:-1])) - u + 1.0)
    chosen = np.zeros(prob.size, dtype=bool)
    chosen[order[hits > 0]] = True
    # certainty entries (prob == 1) are always hit; guard against round-off anyway
    chosen[prob >= 1.0] = True
    return chosen


# ---------------------------------------------------------------------------
# the sampling operator
# ---------------------------------------------------------------------------


class UndersampledFourier:
    """Per-frame masked, orthonormal 2-D Fourier transform ``F_u`` and its adjoint.

    Parameters
    ----------
    masks : numpy.ndarray
        (L, H, W) bool, centred masks (DC at ``[:, H // 2, W // 2]``), e.g. from
        :func:`variable_density_masks`.
    workers : int, optional
        Threads for scipy.fft (default :func:`fft_workers`, i.e. 2).

    Notes
    -----
    ``forward(x)[i] = M_i * fftshift(fft2(x[..., i], norm="ortho"))``; ``adjoint`` is
    its exact adjoint, ``ifft2(ifftshift(M_i * y_i), norm="ortho")``. Because the
    transform is unitary and ``M_i`` a 0/1 mask, ``normal = adjoint o forward`` is an
    orthogonal projection (operator norm 1 unless a mask is empty), so a gradient step
    of size 1 is safe for the data term ``1/2 ||F_u x - y||^2``.

    The iterative solvers work in an internal frame-major layout ``(L, H, W)`` and
    call the ``packed_*`` methods, which skip validation and transposes, and for line
    masks use 1-D FFTs along the phase-encode axis only (see :meth:`packed_data`).

    Explained in chapter 5, book/05_undersampling.md.
    """

    def __init__(self, masks: np.ndarray, *, workers: int | None = None) -> None:
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must be an (L, H, W) array, got shape {masks.shape}")
        if masks.dtype != bool:
            raise ValueError(f"masks must be a bool array, got dtype {masks.dtype}")
        if min(masks.shape) < 1:
            raise ValueError(f"masks must be non-empty, got shape {masks.shape}")
        self.masks = masks.copy()
        self.masks.setflags(write=False)
        self.workers = fft_workers() if workers is None else check_int("workers", workers, 1)
        # Unshifted (FFT-native) masks as float32 multipliers for the inner loops.
        self._mask_u = np.fft.ifftshift(masks, axes=(1, 2)).astype(np.float32)
        self._lines = bool(np.all(masks == masks[:, :, :1]))
        # flat indices (into an (L, H, W) FFT-order array) of the sampled values
        self._sampled = np.flatnonzero(self._mask_u)

    # shapes ---------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """L, the number of frames."""
        return int(self.masks.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W)."""
        return (int(self.masks.shape[1]), int(self.masks.shape[2]))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, L), the shape of an image stack."""
        return self.frame_shape + (self.n_frames,)

    @property
    def kspace_shape(self) -> tuple[int, int, int]:
        """(L, H, W), the shape of a k-space stack."""
        return tuple(self.masks.shape)  # type: ignore[return-value]

    @property
    def fft_masks(self) -> np.ndarray:
        """(L, H, W) float32 0/1 masks in FFT order (``ifftshift`` of :attr:`masks`)."""
        return self._mask_u

    @property
    def sampling_fraction(self) -> float:
        """Fraction of k-space sampled over all frames."""
        return float(self.masks.mean())

    # public operators -------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``F_u x``: (H, W, L) image stack -> (L, H, W) complex64 centred k-space, 0 off-mask."""
        x = self._check_array("x", x, self.image_shape)
        frames = np.ascontiguousarray(np.moveaxis(x, 2, 0), dtype=np.complex64)
        k = self._fft(frames)
        k *= self._mask_u
        return np.fft.fftshift(k, axes=(1, 2))

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        """``F_u^H y``: (L, H, W) centred k-space -> (H, W, L) complex64 image stack."""
        y = self._check_array("y", y, self.kspace_shape)
        return np.ascontiguousarray(np.moveaxis(self.adjoint_frames(y), 0, 2))

    def normal(self, x: np.ndarray) -> np.ndarray:
        """``F_u^H F_u x`` for an (H, W, L) stack (the projection onto the sampled data)."""
        x = self._check_array("x", x, self.image_shape)
        frames = np.ascontiguousarray(np.moveaxis(x, 2, 0), dtype=np.complex64)
        return np.ascontiguousarray(np.moveaxis(self.normal_frames(frames), 0, 2))

    # frame-major fast paths (no validation) -------------------------------------
    def adjoint_frames(self, y: np.ndarray) -> np.ndarray:
        """Adjoint for centred k-space (L, H, W) -> frame-major images (L, H, W) complex64."""
        k = np.fft.ifftshift(np.asarray(y, dtype=np.complex64), axes=(1, 2)) * self._mask_u
        return self._ifft(k)

    def normal_frames(self, frames: np.ndarray) -> np.ndarray:
        """``F_u^H F_u`` on frame-major images (L, H, W) complex64."""
        return self.packed_adjoint(self.packed_forward(frames))

    @property
    def line_masks(self) -> bool:
        """True when every mask is constant along the readout axis (whole k_y lines)."""
        return self._lines

    @property
    def n_samples(self) -> int:
        """Number of sampled k-space values over all frames (length of the packed data)."""
        return int(self._sampled.size)

    def packed_data(self, y: np.ndarray) -> np.ndarray:
        """Centred k-space (L, H, W) -> the solvers' packed data vector (complex64).

        The solvers keep only the sampled values, packed into a 1-D vector
        (:attr:`n_samples` long), so the element-wise work on data-domain arrays shrinks
        by the sampling ratio. For line masks the readout transform is first undone
        (``ifft`` along the columns): the data then live in the hybrid (k_y, x) domain and
        every solver iteration needs only 1-D FFTs along the phase-encode axis -- half the
        work of 2-D FFTs with the same result, since the readout FFT is unitary and
        commutes with a mask constant along k_x. Otherwise the values are k-space in FFT
        order. Norms, hence data terms, are those of the masked k-space.
        """
        k = np.fft.ifftshift(np.asarray(y, dtype=np.complex64), axes=(1, 2))
        if self._lines:
            k = sfft.ifft(k, axis=2, norm="ortho", workers=self.workers, overwrite_x=True)
        return np.take(k.reshape(-1), self._sampled)

    def packed_forward(self, frames: np.ndarray) -> np.ndarray:
        """Frame-major images (L, H, W) -> packed sampled values (see :meth:`packed_data`)."""
        if self._lines:
            k = sfft.fft(frames, axis=1, norm="ortho", workers=self.workers)
        else:
            k = self._fft(frames)
        return np.take(k.reshape(-1), self._sampled)

    def packed_adjoint(self, packed: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`packed_forward`: packed values -> (L, H, W) complex64 images."""
        k = np.zeros(self.kspace_shape, dtype=np.complex64)
        k.reshape(-1)[self._sampled] = packed
        if self._lines:
            return sfft.ifft(k, axis=1, norm="ortho", workers=self.workers, overwrite_x=True)
        return self._ifft(k)

    # helpers -----------------------------------------------------------------
    def _fft(self, frames: np.ndarray) -> np.ndarray:
        return sfft.fft2(frames, axes=(1, 2), norm="ortho", workers=self.workers,
                         overwrite_x=False)

    def _ifft(self, k: np.ndarray) -> np.ndarray:
        return sfft.ifft2(k, axes=(1, 2), norm="ortho", workers=self.workers, overwrite_x=True)

    @staticmethod
    def _check_array(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.shape != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)} to match the masks, "
                             f"got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite (found NaN or inf)")
        return arr

    def __repr__(self) -> str:
        return (f"UndersampledFourier(frames={self.n_frames}, frame_shape={self.frame_shape}, "
                f"sampling_fraction={self.sampling_fraction:.4f})")


def zero_filled(y: np.ndarray, op: UndersampledFourier) -> np.ndarray:
    """Zero-filled reconstruction ``F_u^H y``: (L, H, W) k-space -> (H, W, L) complex64.

    With an orthonormal FFT and a full mask this is the exact inverse.
    Explained in chapter 5, book/05_undersampling.md.
    """
    return op.adjoint(y)


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _check_ratio(sampling_ratio: float) -> float:
    try:
        ratio = float(sampling_ratio)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sampling_ratio must be a number in (0, 1], got {sampling_ratio!r}") from exc
    if not (0.0 < ratio <= 1.0):
        raise ValueError(f"sampling_ratio must be in (0, 1], got {sampling_ratio!r}")
    return ratio


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in shape)
        ok = all(int(s) == s for s in shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shape must be two integers (H, W) >= 2, got {shape!r}") from exc
    if not ok or height < 2 or width < 2:
        raise ValueError(f"shape must be two integers (H, W) >= 2, got {shape!r}")
    return height, width
