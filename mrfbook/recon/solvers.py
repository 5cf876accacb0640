"""Proximal gradient (ISTA / FISTA) for undersampled MRF k-space: the loop the restorations share.

Solves ``min_X 1/2 ||F_u X - Y||^2 + lam R(X)`` for any regulariser ``R`` whose proximal
operator is given: :func:`mrfbook.recon.lowrank.lowrank_restore` passes the singular-value
threshold (the paper's eq. 2), :func:`mrfbook.recon.flor.flor_restore` the projection onto the
dictionary's subspace followed by the threshold. Two engines run the same iterations (to float32
round-off; only FISTA's restart test differs, see :data:`RESTART_RTOL`):

* the **dense** engine (a :data:`Prox` callable): the textbook loop on the frame-major
  (L, H, W) stack, two batched FFTs and one threshold of the full stack per iteration, on the
  packed sampled data of :class:`mrfbook.recon.acquisition.UndersampledFourier` (its
  ``packed_*`` methods), with fused numba kernels for the element-wise steps;
* the **factored** engine (a :class:`LowRankProx`): the same iterates, computed in k-space on
  the low-rank factors ``X = A B`` (A: L x r temporal, B: r x N k-space). Every frame uses the
  same unitary 2-D DFT, so the singular-value threshold of the k-space stack is the threshold of
  the image stack moved to k-space (the nuclear norm is invariant to a unitary transform of the
  pixel axis), and the data term lives in k-space: no FFT runs inside the loop. The gradient
  point ``Z = U + mu P_Omega(Y - U)`` is low rank (the extrapolated iterate U) plus a sparse
  k-space correction on the sampled entries only, the "sparse plus low rank" structure
  Soft-Impute exploits for matrix completion (Mazumder, Hastie & Tibshirani, JMLR
  11:2287-2322, 2010). Its L x L Gram matrix is assembled from the small Grams of the factors
  (in float64), the sparse part's own Gram (one small ``cherk`` per k-space line for line masks)
  and their cross term, so an iteration costs O(r x samples) plus O(L^2 x samples per location)
  instead of a full ``cherk`` and two batched FFTs: 16 against 72 ms at 128 x 128 x 200, 15 %
  lines, lam = 5 (benchmarks/bench_restoration.py). While the rank exceeds half the number of
  frames (noise fitted by a small weight) it steps on the dense k-space stack instead, which is
  cheaper there; the iterates are the same.

The factored engine also offers, for the restorations of :mod:`mrfbook.recon.weights`:
continuation of the weight from a cold start (Toh & Yun, Pacific J. Optim. 6:615-640, 2010);
``patience`` (converged only after the change stayed below ``tol`` that many iterations);
blocks of alternating least squares on the factors (``als=True``; Srebro, Rennie & Jaakkola,
NIPS 2004; Hastie, Mazumder, Lee & Zadeh, JMLR 16:3367-3402, 2015), which reach in a few sweeps
the minimiser that proximal gradient approaches in hundreds of iterations when the weight is
small (each block is followed by proximal-gradient iterations, whose small change certifies the
result); and a ``monitor`` that may stop the iterations.

Warm starts: every entry point takes ``x0``, the starting iterate, as an (H, W, L) stack in
the input's units (for example a previous :class:`RestorationResult`'s ``images``) or as a
previous :class:`RestorationResult` itself (the factored engine then reuses its low-rank
factors exactly, without a transform).

Explained in chapter 5, book/05_undersampling.md.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.fft as sfft
import scipy.linalg
from numba import njit
from scipy.linalg.blas import cherk

try:  # a dependency of scikit-learn, which nilearn requires
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - the loop then runs with the default BLAS threads
    ThreadpoolController = None

from mrfbook.recon.acquisition import UndersampledFourier
from mrfbook.utils.checks import check_int, check_nonnegative, check_positive
from mrfbook.utils.timing import Stopwatch

__all__ = ["RestorationResult", "Prox", "LowRankProx", "proximal_gradient", "SampleMisfit", "sampled_rms", "check_kspace",
           "check_x0", "single_threaded_blas"]


@dataclass
class RestorationResult:
    """Output of :func:`proximal_gradient` (via :func:`mrfbook.recon.lowrank.lowrank_restore`,
    :func:`mrfbook.recon.flor.flor_restore` and :func:`mrfbook.recon.weights.restore`).

    Attributes
    ----------
    images : numpy.ndarray
        (H, W, L) complex64 restored image stack, in the units of the input k-space.
    objective : numpy.ndarray
        (n_iter,) float64, objective ``1/2 ||F_u X - Y||^2 + lam ||X||_*`` after each
        iteration, evaluated on the normalised data (divide-by-``scale`` units).
    n_iter : int
        Number of iterations run.
    converged : bool
        True if the relative change ``||X_k - X_{k-1}||_F / ||X_{k-1}||_F`` fell below
        ``tol`` before ``max_iter``.
    rank : numpy.ndarray
        (n_iter,) int64, rank of the iterate after each threshold.
    relative_change : numpy.ndarray
        (n_iter,) float64, the stopping criterion per iteration (inf for the first one
        from X = 0; from a warm start it is measured against the starting iterate).
    scale : float
        The data scale ``s`` (k-space was divided by ``s`` before applying ``lam``).
    lam : float
        The regularisation weight used (normalised units).
    elapsed_s : float
        Wall time of the iterations in seconds.
    method : str
        Short description ("lowrank-ista", "lowrank-fista", "flor-fista", ...).
    extra : dict
        Solver-specific extras: ``restarts`` (iterations where FISTA's momentum was reset);
        the factored engine adds ``factors = (A, B)``, the restored stack's low-rank factors
        (A: (L, r) complex64 temporal, orthonormal columns; B: (r, H, W) complex64 centred
        k-space of the components, input units; the k-space stack is ``A @ B``), which a
        warm start (``x0=result``) reuses, ``als_sweeps`` and ``als_after`` (the ALS
        blocks' sweeps and the iterations before each) and ``stopped_by_monitor``; FLOR adds
        ``basis``; :func:`mrfbook.recon.weights.restore` adds ``weight_choice``,
        ``error_level``, ``iterations_final`` and ``path``.

    Explained in chapter 5, book/05_undersampling.md.
    """

    images: np.ndarray
    objective: np.ndarray
    n_iter: int
    converged: bool
    rank: np.ndarray
    relative_change: np.ndarray
    scale: float
    lam: float
    elapsed_s: float
    method: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LowRankProx:
    """The nuclear-norm regulariser, optionally restricted to a temporal subspace, for the factored engine.

    Passing an instance as ``prox`` to :func:`proximal_gradient` selects the factored k-space
    engine (module docstring). Its proximal operator is the singular-value soft threshold of
    the (N pixels x L frames) stack; with ``basis`` (B, L x k, orthonormal columns) every
    signature is first projected onto span(B), i.e. the prox of
    ``lam ||X||_* + indicator{rows of X in span(B)}`` (FLOR, :mod:`mrfbook.recon.flor`).

    Attributes
    ----------
    basis : numpy.ndarray or None
        (L, k) float32 or complex64 orthonormal temporal basis, or None (plain nuclear norm).

    Explained in chapter 5, book/05_undersampling.md.
    """

    basis: np.ndarray | None = None


# ---------------------------------------------------------------------------
# BLAS threads
# ---------------------------------------------------------------------------


_CONTROLLER = None


def single_threaded_blas():
    """Context manager limiting BLAS/LAPACK to one thread (``with single_threaded_blas(): ...``).

    The products in the threshold take ~30 ms single-threaded at 128 x 128 x 200; with
    OpenBLAS's two threads on a busy two-core machine, the 200 x 200 ``eigh`` was
    measured to slow from ~20 ms to ~0.5-1.5 s (threads spin-waiting for a core), so the
    threshold runs single-threaded and the two cores go to the FFTs instead. Without
    threadpoolctl it is a no-op context.

    Explained in chapter 5, book/05_undersampling.md.
    """
    global _CONTROLLER
    if ThreadpoolController is None:
        import contextlib
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


# ---------------------------------------------------------------------------
# fused element-wise kernels of the loop (one pass over memory each)
# ---------------------------------------------------------------------------


@njit(cache=True)
def _residual(ax, ax_prev, y, beta, out):  # pragma: no cover - compiled
    for i in range(ax.size):
        out[i] = ax[i] + beta * (ax[i] - ax_prev[i]) - y[i]


@njit(cache=True)
def _gradient_step(x, x_prev, grad, beta, mu):  # pragma: no cover - compiled
    for i in range(x.size):
        grad[i] = x[i] + beta * (x[i] - x_prev[i]) - mu * grad[i]


@njit(cache=True)
def _sq_dist(a, b):  # pragma: no cover - compiled
    acc = 0.0
    for i in range(a.size):
        d = a[i] - b[i]
        acc += np.float64(d.real) ** 2 + np.float64(d.imag) ** 2
    return acc


@njit(cache=True)
def _change(new, old):  # pragma: no cover - compiled
    diff = 0.0
    norm = 0.0
    for i in range(new.size):
        d = new[i] - old[i]
        diff += np.float64(d.real) ** 2 + np.float64(d.imag) ** 2
        norm += np.float64(new[i].real) ** 2 + np.float64(new[i].imag) ** 2
    return diff, norm


# ---------------------------------------------------------------------------
# numba kernels of the factored engine for point masks (samples sorted by location)
# ---------------------------------------------------------------------------


@njit(cache=True)
def _pt_gather(frm, loc, a, b, out):  # pragma: no cover - compiled
    # out[s] = sum_m A[frm[s], m] B[m, loc[s]]
    for s in range(frm.size):
        f = frm[s]
        j = loc[s]
        acc = np.complex64(0)
        for m in range(a.shape[1]):
            acc += a[f, m] * b[m, j]
        out[s] = acc


@njit(cache=True)
def _pt_cross(frm, loc, c, vals, out):  # pragma: no cover - compiled
    # out[m, f] += C[m, loc[s]] conj(vals[s]) over the samples s of frame f
    for s in range(frm.size):
        f = frm[s]
        j = loc[s]
        v = np.conj(vals[s])
        for m in range(c.shape[0]):
            out[m, f] += c[m, j] * v


@njit(cache=True)
def _pt_scatter(frm, loc, vh, vals, out):  # pragma: no cover - compiled
    # out[m, loc[s]] += Vh[m, frm[s]] vals[s]
    for s in range(frm.size):
        f = frm[s]
        j = loc[s]
        v = vals[s]
        for m in range(vh.shape[0]):
            out[m, j] += vh[m, f] * v


@njit(cache=True)
def _pt_als_b(ptr, frm, a, vals, gram, rhs):  # pragma: no cover - compiled
    # per location j: gram[j] = sum A[f]^H A[f], rhs[j] = sum conj(A[f]) y over its samples
    r = a.shape[1]
    for j in range(ptr.size - 1):
        for p in range(ptr[j], ptr[j + 1]):
            f = frm[p]
            v = np.complex128(vals[p])
            for m in range(r):
                am = np.conj(np.complex128(a[f, m]))
                rhs[j, m] += am * v
                for n in range(r):
                    gram[j, m, n] += am * a[f, n]


@njit(cache=True)
def _pt_als_a(frm, loc, b, vals, gram, rhs):  # pragma: no cover - compiled
    # per frame i: gram[i] = sum B[:, j] B[:, j]^H, rhs[i] = sum conj(B[:, j]) y over its samples
    r = b.shape[0]
    for s in range(frm.size):
        f = frm[s]
        j = loc[s]
        v = np.complex128(vals[s])
        for m in range(r):
            bm = np.complex128(b[m, j])
            rhs[f, m] += np.conj(bm) * v
            for n in range(r):
                gram[f, m, n] += bm * np.conj(b[n, j])


@njit(cache=True)
def _add_upper(flat, pairs, block):  # pragma: no cover - compiled
    # flat[pairs] += upper triangle of the (n x n) block (pairs: the block's flat indices)
    n = block.shape[0]
    for j in range(n):
        for i in range(j + 1):
            flat[pairs[i * n + j]] += block[i, j]


@njit(cache=True)
def _pt_self_gram(ptr, frm, vals, gram):  # pragma: no cover - compiled
    # upper triangle of S S^H: samples of one location pair up (frames sorted within it)
    for j in range(ptr.size - 1):
        for p in range(ptr[j], ptr[j + 1]):
            fp = frm[p]
            vp = np.complex128(vals[p])
            for q in range(p, ptr[j + 1]):
                gram[fp, frm[q]] += vp * np.conj(np.complex128(vals[q]))


# ---------------------------------------------------------------------------
# the sampled entries, packed for the factored engine
# ---------------------------------------------------------------------------


class _Layout:
    """The sampled k-space entries of an operator, grouped for the factored engine.

    Line masks: the samples are packed row by row (k_y), within a row frame by frame, each
    frame's row a contiguous run of W values (k_x); the frames that sample a row see the same
    W locations, so every product with the sparse part is one small BLAS call per row. Other
    masks: packed by location, then frame, and handled by numba kernels.
    """

    def __init__(self, op: UndersampledFourier) -> None:
        masks = op.masks
        n_t, height, width = masks.shape
        self.shape = (n_t, height, width)
        self.n_pix = height * width
        self.lines = op.line_masks
        if self.lines:
            self._select = np.ascontiguousarray(masks.transpose(1, 0, 2))  # (H, L, W)
            rows = []
            offset = 0
            for ky in range(height):
                frames = np.flatnonzero(masks[:, ky, 0])
                if frames.size:
                    # flat indices of the (frames x frames) block in an (L, L) matrix
                    pairs = (frames[:, None] * n_t + frames[None, :]).ravel()
                    rows.append((ky, frames, offset, offset + frames.size * width, pairs))
                    offset += frames.size * width
            self.rows = rows
            self.n = offset
            self.incidence = masks[:, :, 0].astype(np.float64)  # (L, H): frame i samples row k_y
            ky, frm, kx = np.nonzero(self._select)  # packed order
            self.flat = (frm * self.n_pix + ky * width + kx).astype(np.int64)  # into an (L, H W) array
        else:
            self._select = np.ascontiguousarray(masks.reshape(n_t, -1).T)  # (N, L)
            loc, frm = np.nonzero(self._select)
            self.loc = loc.astype(np.int64)
            self.frm = frm.astype(np.int64)
            self.ptr = np.concatenate(([0], np.cumsum(self._select.sum(axis=1)))).astype(np.int64)
            self.n = int(loc.size)
            self.flat = (self.frm * self.n_pix + self.loc).astype(np.int64)  # into an (L, H W) array

    def pack(self, kspace: np.ndarray) -> np.ndarray:
        """Centred (L, H, W) k-space -> the packed sampled values (complex64)."""
        k = np.asarray(kspace)
        if self.lines:
            return np.ascontiguousarray(k.transpose(1, 0, 2)[self._select], dtype=np.complex64)
        return np.ascontiguousarray(k.reshape(self.shape[0], -1).T[self._select], dtype=np.complex64)

    def gather(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Sampled entries of the k-space stack ``A @ B`` (A: L x r, B: r x N)."""
        out = np.zeros(self.n, dtype=np.complex64)
        if a.shape[1] == 0:
            return out
        if self.lines:
            width = self.shape[2]
            b3 = b.reshape(b.shape[0], self.shape[1], width)
            for ky, frames, lo, hi, _ in self.rows:
                np.matmul(a[frames], b3[:, ky, :], out=out[lo:hi].reshape(frames.size, width))
            return out
        _pt_gather(self.frm, self.loc, a, b, out)
        return out

    def gram_terms(self, c: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(C S^H, S S^H)`` for the sparse k-space stack S of ``vals``: (q, L) and (L, L) complex128."""
        n_t = self.shape[0]
        cross = np.zeros((c.shape[0], n_t), dtype=np.complex128)
        gram = np.zeros((n_t, n_t), dtype=np.complex128)
        if self.lines:
            # accumulate the conjugates, conj(C) S^T and conj(S S^H) (upper triangle), so that
            # every product reads the packed rows in place (cherk on the Fortran view blk.T)
            width = self.shape[2]
            c3 = np.conj(c).reshape(c.shape[0], self.shape[1], width)
            flat = gram.reshape(-1)
            for ky, frames, lo, hi, pairs in self.rows:
                blk_t = vals[lo:hi].reshape(frames.size, width).T
                if c.shape[0]:
                    cross[:, frames] += c3[:, ky, :] @ blk_t
                _add_upper(flat, pairs, cherk(1.0, blk_t, trans=2, lower=0))
            np.conjugate(cross, out=cross)
            upper = np.triu(gram, 1)
            return cross, np.conj(upper + upper.conj().T) + np.diag(np.diag(gram).real)
        if c.shape[0]:
            _pt_cross(self.frm, self.loc, c, vals, cross)
        _pt_self_gram(self.ptr, self.frm, vals, gram)
        upper = np.triu(gram, 1)
        gram = upper + upper.conj().T + np.diag(np.diag(gram).real)
        return cross, gram

    def cross(self, c: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """``C S^H`` for the sparse k-space stack S of ``vals``: (q, L) complex128 (C: q x N)."""
        out = np.zeros((c.shape[0], self.shape[0]), dtype=np.complex128)
        if c.shape[0] == 0:
            return out
        if self.lines:
            width = self.shape[2]
            c3 = np.conj(c).reshape(c.shape[0], self.shape[1], width)
            for ky, frames, lo, hi, _ in self.rows:
                out[:, frames] += c3[:, ky, :] @ vals[lo:hi].reshape(frames.size, width).T
            return np.conjugate(out, out=out)
        _pt_cross(self.frm, self.loc, np.ascontiguousarray(c), vals, out)
        return out

    def scatter(self, vh: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """``Vh @ S`` for the sparse k-space stack S of ``vals``: (m, N) complex64 (Vh: m x L)."""
        out = np.zeros((vh.shape[0], self.n_pix), dtype=np.complex64)
        if vh.shape[0] == 0:
            return out
        if self.lines:
            width = self.shape[2]
            out3 = out.reshape(vh.shape[0], self.shape[1], width)
            for ky, frames, lo, hi, _ in self.rows:
                np.matmul(vh[:, frames], vals[lo:hi].reshape(frames.size, width), out=out3[:, ky, :])
            return out
        _pt_scatter(self.frm, self.loc, np.ascontiguousarray(vh), vals, out)
        return out

    # alternating least squares on X = A B (see _als_block) ---------------------
    def als_b(self, a: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
        """Ridge least squares for B given A: every location's column, (r, N) complex64."""
        r = a.shape[1]
        eye = lam * np.eye(r)
        if self.lines:
            width = self.shape[2]
            b3 = np.zeros((r, self.shape[1], width), dtype=np.complex64)
            for ky, frames, lo, hi, _ in self.rows:
                ar = a[frames]
                ar128 = ar.astype(np.complex128)
                gram = ar128.conj().T @ ar128 + eye
                rhs = ar.conj().T @ y[lo:hi].reshape(frames.size, width)
                b3[:, ky, :] = scipy.linalg.solve(gram, rhs, assume_a="pos", check_finite=False)
            return b3.reshape(r, -1)
        gram = np.zeros((self.n_pix, r, r), dtype=np.complex128)
        rhs = np.zeros((self.n_pix, r), dtype=np.complex128)
        _pt_als_b(self.ptr, self.frm, np.ascontiguousarray(a), y, gram, rhs)
        gram += eye
        return np.ascontiguousarray(np.linalg.solve(gram, rhs[:, :, None])[:, :, 0].T, dtype=np.complex64)

    def als_a(self, b: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
        """Ridge least squares for A given B: every frame's row, (L, r) complex64."""
        r = b.shape[0]
        n_t = self.shape[0]
        if self.lines:
            width = self.shape[2]
            b3 = b.reshape(r, self.shape[1], width)
            b_rows = np.ascontiguousarray(b3.transpose(1, 0, 2)).astype(np.complex128)  # (H, r, W)
            row_gram = b_rows @ b_rows.conj().transpose(0, 2, 1)  # (H, r, r)
            gram = (self.incidence @ row_gram.reshape(self.shape[1], -1)).reshape(n_t, r, r)
            rhs = np.zeros((n_t, r), dtype=np.complex128)
            for ky, frames, lo, hi, _ in self.rows:
                rhs[frames] += y[lo:hi].reshape(frames.size, width) @ b3[:, ky, :].conj().T
        else:
            gram = np.zeros((n_t, r, r), dtype=np.complex128)
            rhs = np.zeros((n_t, r), dtype=np.complex128)
            _pt_als_a(self.frm, self.loc, np.ascontiguousarray(b), y, gram, rhs)
        # normal equations of frame i's row a_i: (conj(B B^H) + lam I) a_i^T = conj(B) y_i
        gram = np.conj(gram) + lam * np.eye(r)
        return np.ascontiguousarray(np.linalg.solve(gram, rhs[:, :, None])[:, :, 0], dtype=np.complex64)


_LAYOUTS: "weakref.WeakKeyDictionary[UndersampledFourier, _Layout]" = weakref.WeakKeyDictionary()


def _layout(op: UndersampledFourier) -> _Layout:
    """The (cached) packed layout of ``op``'s masks (the masks are read-only)."""
    layout = _LAYOUTS.get(op)
    if layout is None:
        layout = _LAYOUTS[op] = _Layout(op)
    return layout


# ---------------------------------------------------------------------------
# factors <-> image stacks
# ---------------------------------------------------------------------------


def _kspace_factors(frames: np.ndarray, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact low-rank factors (A: L x r, B: r x N centred k-space) of an (L, H, W) image stack.

    Components whose squared singular value is below 1e-12 of the largest are dropped (far
    below float32 resolution of the stack); a restored stack is low rank, so r is small.
    """
    n_t = frames.shape[0]
    k = sfft.fft2(np.asarray(frames, dtype=np.complex64), axes=(1, 2), norm="ortho", workers=workers)
    return _matrix_factors(np.fft.fftshift(k, axes=(1, 2)).reshape(n_t, -1))


def _matrix_factors(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact low-rank factors (A orthonormal, B = A^H K) of an (L, N) complex64 matrix K."""
    k = np.ascontiguousarray(k, dtype=np.complex64)
    with single_threaded_blas():
        gram = np.conj(cherk(1.0, k.T, trans=2, lower=0), dtype=np.complex128)
        w, v = scipy.linalg.eigh(gram, lower=False, check_finite=False)
    keep = w > 1e-12 * max(w.max(), 0.0) if w.max() > 0 else np.zeros(w.shape, bool)
    a = np.ascontiguousarray(v[:, keep][:, ::-1], dtype=np.complex64)
    with single_threaded_blas():
        b = a.conj().T @ k
    return a, np.ascontiguousarray(b)


def _factor_images(a: np.ndarray, b: np.ndarray, shape: tuple[int, int, int], workers: int,
                   scale: float = 1.0, frame_major: bool = False) -> np.ndarray:
    """The image stack of k-space factors: (H, W, L) complex64 (or (L, H, W) with ``frame_major``)."""
    n_t, height, width = shape
    r = b.shape[0]
    if r == 0:
        return np.zeros(shape if frame_major else (height, width, n_t), dtype=np.complex64)
    img = sfft.ifft2(np.fft.ifftshift(b.reshape(r, height, width), axes=(1, 2)), axes=(1, 2),
                     norm="ortho", workers=workers).reshape(r, -1)
    a_s = (a * np.float32(scale)).astype(np.complex64)
    with single_threaded_blas():
        if frame_major:
            return (a_s @ img).reshape(n_t, height, width)
        return (img.T @ a_s.T).reshape(height, width, n_t)


#: Above this rank (a fraction of the number of frames) the factored engine steps on the dense
#: k-space stack instead (one ``cherk`` and one L x L x N product per iteration).
DENSE_RANK_FRACTION: float = 0.5

#: ALS blocks of the factored engine (``als=True``): extra rank beyond the iterate's, sweep cap,
#: and the sweeps' stopping tolerance as a fraction of ``tol``.
ALS_MARGIN: int = 2
#: ALS works on at most this many of the iterate's strongest components (plus the margin): the
#: early, high-rank iterates of a small weight are mostly artefacts the threshold removes later.
ALS_MAX_RANK: int = 16
ALS_MAX_SWEEPS: int = 40
ALS_TOL_FRACTION: float = 0.1
#: FISTA iterations between two ALS blocks, and the most blocks per restoration.
ALS_GAP: int = 3
ALS_MAX_BLOCKS: int = 8


def _als_block(layout: _Layout, a: np.ndarray, b: np.ndarray, y: np.ndarray, lam: float, tol: float,
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """Alternating ridge least squares on ``min 1/2 ||P(A B) - y||^2 + lam/2 (||A||^2 + ||B||^2)``.

    The factored form of the nuclear-norm problem (``||X||_* = min_{X = A B} (||A||^2 +
    ||B||^2) / 2``; Srebro, Rennie & Jaakkola, NIPS 2004; Hastie, Mazumder, Lee & Zadeh, JMLR
    16:3367-3402, 2015): at a rank at least the solution's, its minimisers are those of the
    convex problem, and each half-step is an exact least-squares solve, which moves the slow
    (poorly sampled) directions that proximal gradient creeps along. Starts from the iterate
    ``A B`` (A orthonormal) balanced, plus ``ALS_MARGIN`` empty components; stops when the
    relative change of ``A B`` falls below ``tol`` or after ``ALS_MAX_SWEEPS`` sweeps.
    Returns the new (A orthonormal, B) and the number of sweeps.
    """
    norms = np.sqrt(np.maximum(np.real(np.einsum("ij,ij->i", b, b.conj())), 0.0))
    if norms.size > ALS_MAX_RANK:  # keep the strongest components
        top = np.sort(np.argsort(norms)[::-1][:ALS_MAX_RANK])
        a, b, norms = a[:, top], b[top], norms[top]
    norms = np.where(norms > 0, norms, 1.0)
    root = np.sqrt(norms).astype(np.float32)
    rng = np.random.default_rng(0)
    pad = (rng.standard_normal((a.shape[0], ALS_MARGIN)) * (1e-3 * float(root.min(initial=1.0)))).astype(np.complex64)
    fa = np.ascontiguousarray(np.concatenate([a * root, pad], axis=1), dtype=np.complex64)
    fb = np.concatenate([b / root[:, None], np.zeros((ALS_MARGIN, b.shape[1]), np.complex64)], axis=0)
    prev = None
    x_norm2 = 0.0
    sweeps = 0
    for sweeps in range(1, ALS_MAX_SWEEPS + 1):
        fb = layout.als_b(fa, y, lam)
        fa = layout.als_a(fb, y, lam)
        # relative change of A B between sweeps, from float64 Grams of the factors
        a128, b128 = fa.astype(np.complex128), fb.astype(np.complex128)
        new2 = _trace_product(a128.conj().T @ a128, b128 @ b128.conj().T)
        if prev is not None:
            pa, pb, old2 = prev
            cross = _trace_product(pa.conj().T @ a128, b128 @ pb.conj().T)
            diff2 = max(new2 + old2 - 2.0 * cross, 0.0)
            if new2 > 0 and np.sqrt(diff2 / new2) < tol:
                x_norm2 = new2
                break
        prev = (a128, b128, new2)
        x_norm2 = new2
    if not x_norm2 > 0:
        return a[:, :0], b[:0], sweeps
    q, rr = np.linalg.qr(fa.astype(np.complex128))
    b_out = np.ascontiguousarray((rr @ fb.astype(np.complex128)).astype(np.complex64))
    return np.ascontiguousarray(q, dtype=np.complex64), b_out, sweeps


def _trace_product(x: np.ndarray, y: np.ndarray) -> float:
    """``Re tr(X Y)`` of two small matrices."""
    return float(np.real(np.einsum("ij,ji->", x, y)))


# ---------------------------------------------------------------------------
# the proximal gradient loop
# ---------------------------------------------------------------------------


#: The factored engine restarts FISTA's momentum when the objective rises by more than this
#: fraction of its value (the float32 iterates make it uncertain at about that level; the dense
#: engine, kept as it was, restarts on any rise, so their FISTA runs may part after a while).
RESTART_RTOL: float = 1e-6

#: ``prox(Z, t) -> (prox_{t R}(Z), R(result), rank)`` on a frame-major (L, H, W) stack.
Prox = Callable[[np.ndarray, float], tuple[np.ndarray, float, int]]


def proximal_gradient(kspace: np.ndarray, op: UndersampledFourier, prox: Prox | LowRankProx, *,
                      lam: float, mu: float = 1.0, max_iter: int = 100, tol: float | None = 1e-4,
                      fista: bool = False, scale: float = 1.0, progress: bool = False,
                      callback: Callable[[int, np.ndarray, float], None] | None = None,
                      restart: bool = True, method: str = "", desc: str = "restoration",
                      x0: Any = None, continuation: float = 0.0, patience: int = 1,
                      als: bool = False,
                      monitor: Callable[[int, np.ndarray, np.ndarray], bool] | None = None
                      ) -> RestorationResult:
    """Proximal gradient (ISTA / FISTA) for ``1/2 ||F_u X - Y||^2 + lam R(X)``.

    ``prox`` is either a :data:`Prox` callable ``prox(Z, t) -> (prox_{t R}(Z), R(result),
    rank)`` on a frame-major stack Z (L, H, W) -- the dense engine: one forward and one
    inverse batched FFT (the k-space of the iterates is carried along, so FISTA's
    extrapolated point needs no extra transform) plus one ``prox`` per iteration -- or a
    :class:`LowRankProx`, which runs the factored k-space engine (module docstring) on the
    same iterates. Used by :func:`mrfbook.recon.lowrank.lowrank_restore` and
    :func:`mrfbook.recon.flor.flor_restore`; argument meanings are documented there.

    ``scale`` (a finite number > 0) divides the k-space before ``lam`` applies, and the
    returned images are multiplied back by it; the callers resolve their ``scale="auto"``
    with :func:`mrfbook.recon.lowrank.data_scale`.

    ``x0`` (see :func:`check_x0`) is the starting iterate: None (X = 0), an (H, W, L) stack
    in the input's units, or a previous :class:`RestorationResult` of the same shape. FISTA's
    momentum starts afresh from it; the first relative change is measured against it, so a
    start at the solution stops after one iteration.

    Factored engine only (ValueError with a callable ``prox`` unless left at their defaults):
    ``continuation`` (0 or a factor in (0, 1): from a cold start the weight starts just below
    the largest singular value of the first gradient point and shrinks by this factor per
    iteration down to ``lam``); ``patience`` (int >= 1: converged once the change stayed below
    ``tol`` that many iterations in a row); ``als`` (bool, nuclear norm without ``basis``:
    blocks of alternating least squares on the factors, once at the target weight and again
    whenever the iterations move; ``extra["als_sweeps"]`` lists their sweeps); ``monitor``
    (``monitor(iteration, A, B) -> bool`` after every iteration with the factors in normalised
    units, the k-space stack being ``A @ B``; True stops the iterations and sets
    ``extra["stopped_by_monitor"]``).

    Explained in chapter 5, book/05_undersampling.md.
    """
    kspace = check_kspace(kspace, op)
    lam = check_nonnegative("lam", lam)
    mu = _check_mu(mu)
    max_iter = check_int("max_iter", max_iter, 1)
    if tol is not None:
        tol = check_nonnegative("tol", tol)
    s = check_positive("scale", scale)
    x0 = check_x0(x0, op)
    args = dict(lam=lam, mu=mu, max_iter=max_iter, tol=tol, fista=fista, scale=s, progress=progress,
                callback=callback, restart=restart, method=method, desc=desc, x0=x0)
    continuation = _check_continuation(continuation)
    patience = check_int("patience", patience, 1)
    if isinstance(prox, LowRankProx):
        return _factored_loop(kspace, op, prox, continuation=continuation, patience=patience, als=als,
                              monitor=monitor, **args)
    if not callable(prox):
        raise ValueError(f"prox must be a callable prox(Z, t) or a LowRankProx, got {type(prox).__name__}")
    if continuation or patience != 1 or als or monitor is not None:
        raise ValueError("continuation, patience, als and monitor need the factored engine "
                         "(prox=LowRankProx(...)); leave them at their defaults with a callable prox")
    return _dense_loop(kspace, op, prox, **args)


def _progress_bar(progress: bool, max_iter: int, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=max_iter, desc=desc, leave=False)


def _dense_loop(kspace, op, prox, *, lam, mu, max_iter, tol, fista, scale, progress, callback,
                restart, method, desc, x0) -> RestorationResult:
    """The textbook loop on the full (L, H, W) stack (see :func:`proximal_gradient`)."""
    s = scale
    y = op.packed_data(kspace)  # packed sampled data (see UndersampledFourier.packed_data)
    y *= np.float32(1.0 / s)
    shape = op.kspace_shape
    if x0 is None:
        x = np.zeros(shape, dtype=np.complex64)
        ax = np.zeros(y.shape, dtype=np.complex64)  # F_u x, packed
        norm_x = 0.0
    else:
        images = x0.images if isinstance(x0, RestorationResult) else x0
        x = np.ascontiguousarray(np.moveaxis(np.asarray(images), 2, 0), dtype=np.complex64)
        x *= np.float32(1.0 / s)
        ax = op.packed_forward(x)
        norm_x = float(np.linalg.norm(x))
    x_prev, ax_prev = x, ax
    resid = np.empty(y.shape, dtype=np.complex64)
    t_k = 1.0
    objective: list[float] = []
    ranks: list[int] = []
    changes: list[float] = []
    restarts: list[int] = []
    converged = False
    bar = _progress_bar(progress, max_iter, desc)
    flat = lambda a: a.reshape(-1)  # noqa: E731 - views for the fused kernels
    watch = Stopwatch().start()
    for it in range(max_iter):
        beta = 0.0
        if fista and it > 0:
            t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t_k * t_k))
            beta = (t_k - 1.0) / t_next
            t_k = t_next
        # data residual at the extrapolated point U = X + beta (X - X_prev), by linearity
        _residual(ax, ax_prev, y, np.float32(beta), resid)
        z = op.packed_adjoint(resid)
        # z <- U - mu F_u^H (F_u U - Y), without storing U
        _gradient_step(flat(x), flat(x_prev), flat(z), np.float32(beta), np.float32(mu))
        x_new, reg, rank = prox(z, mu * lam)
        x_new = np.ascontiguousarray(x_new, dtype=np.complex64)
        ax_new = op.packed_forward(x_new)
        data_term = 0.5 * _sq_dist(ax_new, y)
        diff2, norm2 = _change(flat(x_new), flat(x))
        obj = data_term + lam * reg
        change = np.sqrt(diff2) / norm_x if norm_x > 0 else np.inf
        if fista and restart and objective and obj > objective[-1]:
            # adaptive restart (O'Donoghue & Candes 2015): momentum overshot, drop it
            t_k = 1.0
            restarts.append(it)
        objective.append(obj)
        ranks.append(rank)
        changes.append(change)
        x_prev, ax_prev = x, ax
        x, ax = x_new, ax_new
        norm_x = np.sqrt(norm2)
        if callback is not None:
            callback(it, x, obj)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(objective=f"{obj:.4g}", rank=rank, change=f"{change:.2e}")
        if tol is not None and change < tol:
            converged = True
            break
    elapsed = watch.stop()
    if bar is not None:
        bar.close()
    images = np.ascontiguousarray(np.moveaxis(x * np.float32(s), 0, 2))
    return RestorationResult(images=images, objective=np.asarray(objective), n_iter=len(objective),
                             converged=converged, rank=np.asarray(ranks, dtype=np.int64),
                             relative_change=np.asarray(changes), scale=s, lam=lam,
                             elapsed_s=elapsed, method=method,
                             extra={"restarts": restarts})


def _initial_factors(x0: Any, op: UndersampledFourier, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of the starting iterate in normalised units (empty for X = 0)."""
    n_t, height, width = op.kspace_shape
    if x0 is None:
        return np.zeros((n_t, 0), np.complex64), np.zeros((0, height * width), np.complex64)
    if isinstance(x0, RestorationResult) and "factors" in x0.extra:
        a, b = x0.extra["factors"]
        a = np.ascontiguousarray(a, dtype=np.complex64)
        b = np.asarray(b, dtype=np.complex64).reshape(a.shape[1], -1) * np.float32(1.0 / scale)
        return a, np.ascontiguousarray(b, dtype=np.complex64)
    images = x0.images if isinstance(x0, RestorationResult) else x0
    frames = np.moveaxis(np.asarray(images), 2, 0) * np.float32(1.0 / scale)
    return _kspace_factors(frames, op.workers)


def _factored_loop(kspace, op, prox: LowRankProx, *, lam, mu, max_iter, tol, fista, scale, progress,
                   callback, restart, method, desc, x0, continuation=0.0, patience=1,
                   als=False, monitor=None) -> RestorationResult:
    """The factored k-space engine (see the module docstring and :func:`proximal_gradient`)."""
    s = scale
    layout = _layout(op)
    n_t = op.n_frames
    y = layout.pack(kspace)
    y *= np.float32(1.0 / s)
    basis = None
    if prox.basis is not None:
        basis = np.ascontiguousarray(prox.basis, dtype=np.complex64)
        if basis.ndim != 2 or basis.shape[0] != n_t:
            raise ValueError(f"LowRankProx.basis must be (L, k) with L = {n_t}, got shape {basis.shape}")
        basis_h = np.ascontiguousarray(basis.conj().T)
        basis128 = basis.astype(np.complex128)
    c64, c128 = np.complex64, np.complex128

    with single_threaded_blas():
        a, b = _initial_factors(x0, op, s)
        ax = layout.gather(a, b)
        b128 = b.astype(c128)
        bb = b128 @ b128.conj().T  # Gram of the k-space components, exact in float64
        a128 = a.astype(c128)
        norm_x = float(np.sqrt(max(_trace_product(a128.conj().T @ a128, bb), 0.0)))
        if a.shape[1]:  # make A orthonormal (a result's factors are, up to float32)
            a, rr = np.linalg.qr(a128)
            b = np.ascontiguousarray((rr @ b128).astype(c64))
            a = np.ascontiguousarray(a, dtype=c64)
            b128 = b.astype(c128)
            bb = b128 @ b128.conj().T
    a_prev, b_prev, ax_prev, bb_prev, bb_cross = a, b, ax, bb, bb
    lam_path = np.inf if (continuation and x0 is None) else None  # set at the first iteration
    lam_k = lam_prev = lam
    below = 0  # consecutive iterations with the change below tol
    als = bool(als) and basis is None
    DENSE_RANK = int(DENSE_RANK_FRACTION * n_t)  # noqa: N806 - a constant of this run
    since_als = 0
    als_sweeps: list[int] = []  # sweeps of every ALS block
    als_at: list[int] = []  # the number of FISTA iterations before each block
    stopped = False  # by the monitor
    dense = None  # (K, K_prev), (L, N) k-space stacks, while the rank is above DENSE_RANK
    dense_last = None
    resid = np.empty(y.shape, dtype=c64)
    t_k = 1.0
    objective: list[float] = []
    ranks: list[int] = []
    changes: list[float] = []
    restarts: list[int] = []
    converged = False
    bar = _progress_bar(progress, max_iter, desc)
    watch = Stopwatch().start()
    with single_threaded_blas():
        for it in range(max_iter):
            beta = 0.0
            if fista and it > 0:
                t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t_k * t_k))
                beta = (t_k - 1.0) / t_next
                t_k = t_next
            # sparse part S = -mu (F_u U - Y) at the extrapolated point, by linearity
            _residual(ax, ax_prev, y, np.float32(beta), resid)
            resid *= np.float32(-mu)
            # low-rank part U = Q C
            # continuation (Toh & Yun 2010): the weight starts high and shrinks to lam
            lam_k = lam
            if lam_path is not None:
                lam_k = max(lam_path, lam)
                lam_path = lam_path * continuation if lam_k > lam else None
            t = mu * lam_k
            # low-rank part U = Q C of the gradient point Z = U + S
            r = a.shape[1]
            if beta != 0.0:
                g1, g2 = 1.0 + beta, -beta
                q = np.concatenate([a, a_prev], axis=1)
                c = np.concatenate([b * np.float32(g1), b_prev * np.float32(g2)], axis=0)
                cc = np.block([[g1 * g1 * bb, g1 * g2 * bb_cross],
                               [g1 * g2 * bb_cross.conj().T, g2 * g2 * bb_prev]])
                cb = np.concatenate([g1 * bb, g2 * bb_cross.conj().T], axis=0)  # C B^H
            else:
                g1 = 1.0
                q, c, cc, cb = a, b, bb, bb
            q128 = q.astype(c128)
            if dense is not None:
                # high rank: the same step on the dense (L, N) k-space stack, cheaper than the
                # factors there (one cherk and one L x L x N product)
                k_cur, k_prev = dense
                z = k_cur + np.float32(beta) * (k_cur - k_prev) if beta != 0.0 else k_cur.copy()
                z.reshape(-1)[layout.flat] += resid
                gram = np.conj(cherk(1.0, z.T, trans=2, lower=0), dtype=c128)
                w, v = scipy.linalg.eigh(gram, lower=False, subset_by_value=(t * t, np.inf), driver="evr",
                                         overwrite_a=True, check_finite=False)
                sigma = np.sqrt(np.clip(w, 0.0, None))
                keep = sigma > t
                v = v[:, keep]
                sigma = sigma[keep]
                shrunk = sigma - t
                factor = (shrunk / sigma).astype(np.float32) if sigma.size else np.zeros(0, np.float32)
                rank = int(sigma.size)
                if rank > DENSE_RANK:
                    k_new = ((v * factor) @ v.conj().T).astype(c64) @ z
                    ax_new = k_new.reshape(-1)[layout.flat]
                    diff2, norm2 = _change(k_new.reshape(-1), k_cur.reshape(-1))
                    reg = float(np.sum(shrunk))
                    obj = 0.5 * _sq_dist(ax_new, y) + lam_k * reg
                    change = np.sqrt(diff2) / norm_x if norm_x > 0 else np.inf
                    if fista and restart and objective and lam_k == lam_prev and \
                            obj > objective[-1] + RESTART_RTOL * abs(objective[-1]):
                        t_k = 1.0
                        restarts.append(it)
                    lam_prev = lam_k
                    objective.append(obj)
                    ranks.append(rank)
                    changes.append(change)
                    dense = (k_new, k_cur)
                    dense_last = (v, factor, z)  # K_new = V diag(f) V^H Z, for exact factors at the end
                    ax_prev, ax = ax, ax_new
                    norm_x = float(np.sqrt(norm2))
                    a = np.eye(n_t, dtype=c64)  # X = I K for the monitor and the output
                    b = k_new
                    if callback is not None:
                        callback(it, _factor_images(a, b, op.kspace_shape, op.workers, frame_major=True), obj)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(objective=f"{obj:.4g}", rank=rank, change=f"{change:.2e}")
                    below = below + 1 if (tol is not None and change < tol and lam_k == lam) else 0
                    if below >= patience:
                        converged = True
                        break
                    if monitor is not None and monitor(it, a, b):
                        stopped = True
                        break
                    continue
                # the rank fell: back to the factors (X_new = V diag(f) V^H Z; X = exact factors)
                vh = np.ascontiguousarray(v.conj().T, dtype=c64)
                a_new = np.ascontiguousarray(v, dtype=c64)
                b_new = np.ascontiguousarray((vh @ z) * factor[:, None], dtype=c64)
                ax_new = layout.gather(a_new, b_new)
                k_new = a_new @ b_new
                diff2, norm2 = _change(k_new.reshape(-1), k_cur.reshape(-1))
                del k_new
                reg = float(np.sum(shrunk))
                obj = 0.5 * _sq_dist(ax_new, y) + lam_k * reg
                change = np.sqrt(diff2) / norm_x if norm_x > 0 else np.inf
                if fista and restart and objective and lam_k == lam_prev and \
                        obj > objective[-1] + RESTART_RTOL * abs(objective[-1]):
                    t_k = 1.0
                    restarts.append(it)
                lam_prev = lam_k
                objective.append(obj)
                ranks.append(rank)
                changes.append(change)
                dense = None
                a_prev, b_prev = _matrix_factors(k_cur)
                bp128, bn128 = b_prev.astype(c128), b_new.astype(c128)
                bb_prev = bp128 @ bp128.conj().T
                bb_cross = bn128 @ bp128.conj().T
                a, b, ax_prev, ax = a_new, b_new, ax, ax_new
                bb = bn128 @ bn128.conj().T
                norm_x = float(np.sqrt(norm2))
                if callback is not None:
                    callback(it, _factor_images(a, b, op.kspace_shape, op.workers, frame_major=True), obj)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(objective=f"{obj:.4g}", rank=rank, change=f"{change:.2e}")
                below = below + 1 if (tol is not None and change < tol and lam_k == lam) else 0
                if below >= patience:
                    converged = True
                    break
                if monitor is not None and monitor(it, a, b):
                    stopped = True
                    break
                continue
            if basis is None:
                cross, gram_s = layout.gram_terms(c, resid)  # C S^H, S S^H
                bs = cross[:r] / g1  # B S^H
                qx = q128 @ cross
                gram = (q128 @ cc) @ q128.conj().T + qx + qx.conj().T + gram_s
                if lam_path is not None and it == 0 and x0 is None:
                    # first step of the continuation: just below the largest singular value
                    top = np.sqrt(max(scipy.linalg.eigvalsh(gram, subset_by_index=(n_t - 1, n_t - 1))[0], 0.0))
                    lam_k = max(lam, 0.9 * top / mu)
                    lam_path = lam_k * continuation
                    t = mu * lam_k
                w, v = scipy.linalg.eigh(gram, lower=False, subset_by_value=(t * t, np.inf), driver="evr",
                                         overwrite_a=True, check_finite=False)
                sigma = np.sqrt(np.clip(w, 0.0, None))
                keep = sigma > t
                v = v[:, keep]  # = A_new, complex128
                sigma = sigma[keep]
                vh = np.ascontiguousarray(v.conj().T, dtype=c64)
                coeff = (vh @ q) @ c + layout.scatter(vh, resid)
                a_new = np.ascontiguousarray(v, dtype=c64)
                an128 = v
            else:
                zc = (basis_h @ q) @ c + layout.scatter(basis_h, resid)  # (k, N) coefficients
                bs = layout.cross(b, resid)
                zc128 = zc.astype(c128)
                gram = zc128 @ zc128.conj().T
                w, v = scipy.linalg.eigh(gram, lower=False, check_finite=False)
                sigma = np.sqrt(np.clip(w, 0.0, None))
                if lam_path is not None and it == 0 and x0 is None:
                    lam_k = max(lam, 0.9 * float(sigma.max(initial=0.0)) / mu)
                    lam_path = lam_k * continuation
                    t = mu * lam_k
                keep = sigma > t
                v = v[:, keep]
                sigma = sigma[keep]
                coeff = np.ascontiguousarray(v.conj().T, dtype=c64) @ zc
                an128 = basis128 @ v
                a_new = np.ascontiguousarray(an128, dtype=c64)
            shrunk = sigma - t
            factor = (shrunk / sigma).astype(np.float32) if sigma.size else np.zeros(0, np.float32)
            b_new = np.ascontiguousarray(coeff * factor[:, None], dtype=c64)
            reg = float(np.sum(shrunk))
            rank = int(sigma.size)
            ax_new = layout.gather(a_new, b_new)
            data_term = 0.5 * _sq_dist(ax_new, y)
            # Grams of the new factors without touching them: A_new^H Z Z^H A_new = diag(sigma^2)
            # and B_new B^H = diag(f) A_new^H (Q C B^H + S B^H)
            bb_new = np.diag(shrunk * shrunk).astype(c128)
            zb = q128 @ cb + bs.conj().T  # Z B^H, (L, r)
            bb_cross_new = (factor.astype(np.float64)[:, None] * (an128.conj().T @ zb))
            norm2 = float(np.sum(shrunk * shrunk))
            inner = _trace_product(a.astype(c128).conj().T @ an128, bb_cross_new)  # Re <X_new, X>
            diff2 = norm2 + norm_x * norm_x - 2.0 * inner
            if diff2 < (0.05 * norm_x) ** 2:
                # small change: that difference cancels; take it from the factors directly,
                # X_new - X = A (M B_new - B) + (A_new - A M) B_new with M = A^H A_new
                m = a.conj().T @ a_new
                d1 = m @ b_new - b
                perp = (a_new - a @ m).astype(c128)
                diff2 = float(np.vdot(d1, d1).real) + _trace_product(perp.conj().T @ perp, bb_new)
            diff2 = max(diff2, 0.0)
            obj = data_term + lam_k * reg
            change = np.sqrt(diff2) / norm_x if norm_x > 0 else np.inf
            if fista and restart and objective and lam_k == lam_prev and \
                    obj > objective[-1] + RESTART_RTOL * abs(objective[-1]):
                # adaptive restart (O'Donoghue & Candes 2015): momentum overshot, drop it
                t_k = 1.0
                restarts.append(it)
            lam_prev = lam_k
            objective.append(obj)
            ranks.append(rank)
            changes.append(change)
            a_prev, b_prev, ax_prev, bb_prev = a, b, ax, bb
            a, b, ax, bb = a_new, b_new, ax_new, bb_new
            bb_cross = bb_cross_new
            norm_x = float(np.sqrt(norm2))
            if callback is not None:
                callback(it, _factor_images(a, b, op.kspace_shape, op.workers, frame_major=True), obj)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(objective=f"{obj:.4g}", rank=rank, change=f"{change:.2e}")
            below = below + 1 if (tol is not None and change < tol and lam_k == lam) else 0
            if below >= patience:
                converged = True
                break
            if monitor is not None and monitor(it, a, b):
                stopped = True
                break
            if basis is None and rank > DENSE_RANK:
                # switch to the dense stack for the high-rank iterations
                k_cur = a @ b
                dense = (k_cur, a_prev @ b_prev)
                a = np.eye(n_t, dtype=c64)
                b = k_cur
                continue
            since_als += 1
            # ALS: once at the target weight (whatever the change says: a warm start's small steps
            # do not mean it has converged), then whenever FISTA moves again
            due = (not als_sweeps) or (below == 0 and since_als >= ALS_GAP)
            if als and due and lam_k == lam and len(als_sweeps) < ALS_MAX_BLOCKS and rank > 0:
                # an ALS block from the current iterate; FISTA's momentum restarts from its result
                a, b, sweeps = _als_block(layout, a, b, y, lam, ALS_TOL_FRACTION * (tol if tol else 1e-4))
                als_sweeps.append(sweeps)
                if sweeps >= ALS_MAX_SWEEPS and len(als_sweeps) >= 2:
                    als = False  # two blocks, the last one not converging: leave it to FISTA
                als_at.append(it + 1)
                ax = layout.gather(a, b)
                b128 = b.astype(c128)
                bb = b128 @ b128.conj().T
                norm_x = float(np.sqrt(max(_trace_product(np.eye(a.shape[1]), bb), 0.0)))
                a_prev, b_prev, ax_prev, bb_prev, bb_cross = a, b, ax, bb, bb
                t_k = 1.0
                since_als = 0
                below = 0
    elapsed = watch.stop()
    if bar is not None:
        bar.close()
    if dense is not None:  # the factors of the last (dense) step, V and diag(f) V^H Z
        v, factor, z = dense_last
        a = np.ascontiguousarray(v, dtype=np.complex64)
        with single_threaded_blas():
            b = np.ascontiguousarray((a.conj().T @ z) * factor[:, None], dtype=np.complex64)
    images = _factor_images(a, b, op.kspace_shape, op.workers, scale=s)
    factors = (a, (b * np.float32(s)).reshape((a.shape[1],) + op.frame_shape))
    return RestorationResult(images=images, objective=np.asarray(objective), n_iter=len(objective),
                             converged=converged, rank=np.asarray(ranks, dtype=np.int64),
                             relative_change=np.asarray(changes), scale=s, lam=lam,
                             elapsed_s=elapsed, method=method,
                             extra={"restarts": restarts, "factors": factors, "als_sweeps": als_sweeps,
                                    "als_after": als_at, "stopped_by_monitor": stopped})


class SampleMisfit:
    """RMS misfit, per complex sample, of a k-space stack at an operator's sampled entries.

    ``sqrt(sum |F_u x_hat - Y|^2 / n)`` over the ``n`` samples of ``op``'s masks, in the
    input's units. With ``op`` the held-out part of an acquisition this is the hold-out error
    of :mod:`mrfbook.recon.weights`. The measured values are packed once, so evaluating many
    restorations (or many iterates, from their factors) is cheap.

    Parameters
    ----------
    kspace : numpy.ndarray
        (L, H, W) centred k-space holding the measured values at ``op``'s samples.
    op : mrfbook.recon.acquisition.UndersampledFourier
        Where to compare.

    Attributes
    ----------
    n : int
        Number of samples compared.

    Explained in chapter 5, book/05_undersampling.md.
    """

    def __init__(self, kspace: np.ndarray, op: UndersampledFourier) -> None:
        kspace = check_kspace(kspace, op)
        self._op = op
        self._layout = _layout(op)
        self._measured = self._layout.pack(kspace)
        self.n = int(self._layout.n)

    def factors(self, a: np.ndarray, b: np.ndarray, scale: float = 1.0) -> float:
        """Misfit of the k-space stack ``scale * A @ B`` (A: (L, r), B: (r, H W) centred k-space)."""
        if self.n == 0:
            return 0.0
        return float(np.sqrt(_sq_dist(self._predict_factors(a, b, scale), self._measured) / self.n))

    def __call__(self, result: Any) -> float:
        """Misfit of a :class:`RestorationResult` (its factors when it has them) or an (H, W, L) stack."""
        if self.n == 0:
            return 0.0
        return float(np.sqrt(_sq_dist(self._predict(result), self._measured) / self.n))

    def unit_mse(self, result: Any) -> np.ndarray:
        """Mean squared misfit of every sampling unit: each frame's k_y line (line masks) or sample.

        Returns a (units,) float64 array; its mean is the squared RMS misfit.
        """
        if self.n == 0:
            return np.zeros(0)
        err = self._predict(result) - self._measured
        sq = err.real.astype(np.float64) ** 2 + err.imag.astype(np.float64) ** 2
        width = self._op.frame_shape[1] if self._layout.lines else 1
        return sq.reshape(-1, width).mean(axis=1)

    def _predict_factors(self, a: np.ndarray, b: np.ndarray, scale: float = 1.0) -> np.ndarray:
        with single_threaded_blas():
            predicted = self._layout.gather(np.ascontiguousarray(a, dtype=np.complex64),
                                            np.ascontiguousarray(b, dtype=np.complex64).reshape(a.shape[1], -1))
        if scale != 1.0:
            predicted *= np.float32(scale)
        return predicted

    def _predict(self, result: Any) -> np.ndarray:
        op = self._op
        factors = result.extra.get("factors") if isinstance(result, RestorationResult) else None
        if factors is not None and factors[0].shape[0] == op.n_frames and factors[1].shape[1:] == op.frame_shape:
            return self._predict_factors(factors[0], factors[1])
        images = result.images if isinstance(result, RestorationResult) else result
        return self._layout.pack(op.forward(images))


def sampled_rms(result: Any, kspace: np.ndarray, op: UndersampledFourier) -> float:
    """RMS misfit per complex sample of a restoration at ``op``'s sampled entries (:class:`SampleMisfit`).

    Parameters
    ----------
    result : RestorationResult or numpy.ndarray
        A restoration (its factors are used when it has them, else its ``images``) or an
        (H, W, L) image stack in the input's units.
    kspace : numpy.ndarray
        (L, H, W) centred k-space holding the measured values at ``op``'s samples.
    op : mrfbook.recon.acquisition.UndersampledFourier
        Where to compare.

    Returns
    -------
    float
        ``sqrt(sum |F_u x_hat - Y|^2 / n)`` in the input's units (0.0 when ``op`` samples nothing).

    Explained in chapter 5, book/05_undersampling.md.
    """
    return SampleMisfit(kspace, op)(result)


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def check_kspace(kspace: np.ndarray, op: UndersampledFourier) -> np.ndarray:
    """Return ``kspace`` as an array after checking it against ``op``, else raise ``ValueError``.

    ``op`` must be an :class:`mrfbook.recon.acquisition.UndersampledFourier` and ``kspace`` a
    finite (L, H, W) array of ``op.kspace_shape``.

    Explained in chapter 5, book/05_undersampling.md.
    """
    if not isinstance(op, UndersampledFourier):
        raise ValueError(f"op must be an mrfbook.recon.acquisition.UndersampledFourier, got {type(op).__name__}")
    kspace = np.asarray(kspace)
    if kspace.shape != op.kspace_shape:
        raise ValueError(f"kspace must have shape {op.kspace_shape} (L, H, W) to match op's masks, "
                         f"got {kspace.shape}")
    if not np.all(np.isfinite(kspace)):
        raise ValueError("kspace must be finite (found NaN or inf)")
    return kspace


def check_x0(x0: Any, op: UndersampledFourier) -> Any:
    """Return a warm start ``x0`` checked against ``op``, else raise ``ValueError`` naming ``x0``.

    Parameters
    ----------
    x0 : None, numpy.ndarray or RestorationResult
        None (start from X = 0); a finite (H, W, L) complex image stack in the input's units
        (``op.image_shape``), e.g. a previous result's ``images``; or a previous
        :class:`RestorationResult` whose ``images`` have that shape.
    op : mrfbook.recon.acquisition.UndersampledFourier

    Returns
    -------
    None, numpy.ndarray or RestorationResult
        ``x0`` (an array as a numpy array).

    Explained in chapter 5, book/05_undersampling.md.
    """
    if x0 is None or isinstance(x0, RestorationResult):
        images = None if x0 is None else np.asarray(x0.images)
    else:
        try:
            x0 = images = np.asarray(x0)
        except (TypeError, ValueError) as exc:  # pragma: no cover - asarray accepts almost anything
            raise ValueError(f"x0 must be None, an (H, W, L) array or a RestorationResult, got {type(x0).__name__}") from exc
        if not np.issubdtype(images.dtype, np.number):
            raise ValueError(f"x0 must be None, an (H, W, L) numeric array or a RestorationResult, "
                             f"got dtype {images.dtype}")
    if images is not None:
        if images.shape != op.image_shape:
            raise ValueError(f"x0 must have shape {op.image_shape} (H, W, L) to match op, got {images.shape}")
        if not np.all(np.isfinite(images)):
            raise ValueError("x0 must be finite (found NaN or inf)")
    return x0


def _check_continuation(value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"continuation must be 0 (off) or a factor in (0, 1), got {value!r}") from exc
    if not (v == 0.0 or 0.0 < v < 1.0):
        raise ValueError(f"continuation must be 0 (off) or a factor in (0, 1), got {value!r}")
    return v


def _check_mu(value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"mu must be a step size in (0, 2), got {value!r}") from exc
    if not (0.0 < v < 2.0):
        raise ValueError(f"mu must be a step size in (0, 2), got {value!r}")
    return v
