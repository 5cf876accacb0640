"""Low-rank restoration of an undersampled MRF image stack (the paper's eq. 2).

Song et al. (ICASSP 2019, section 3.1) restore the image stack ``X`` (N pixels x L
frames) from undersampled k-space ``Y`` by

    min_X  1/2 sum_i || Y_i - F_u X_i ||_2^2  +  lam ||X||_*

(``||X||_*`` = sum of singular values), with step ``mu = 1`` and ``lam = 5``. It is
solved here by proximal gradient descent (ISTA), optionally with FISTA momentum:

    Z = U - mu F_u^H (F_u U - Y);   X = SVT_{mu lam}(Z)

where ``SVT_t`` soft-thresholds the singular values of the N x L matrix by ``t``.

Scale of ``lam``
----------------
The nuclear norm is not scale invariant: multiplying the data by ``c`` multiplies the
best ``lam`` by ``c``, and the singular values of an N x L stack grow with the number of
pixels. The authors' ``lam = 5`` is in the absolute units of *their* phantom (proton
density up to about 117, 128 x 128 pixels), while :mod:`mrfbook.physics.phantom` uses a relative
PD of about 1. So ``lam`` here is applied to **normalised** data: the k-space is divided by

    s = sigma_1(x_zf) / REFERENCE_SCALE,     REFERENCE_SCALE = 1000,

where ``sigma_1(x_zf)`` is the largest singular value of the zero-filled stack
``x_zf = F_u^H Y`` (N x L). In words: ``lam`` is measured in thousandths of the
dominant singular value of the zero-filled data, and the default ``lam = 5`` thresholds
every singular value by 0.5 % of it per unit step. This is independent of the intensity
scale, the matrix size and (nearly) the sampling ratio, because the dominant component
(the mean signature times the PD image) is low-frequency and always sampled.

Why not the authors' absolute units: on our 128 x 128 brain phantom with its PD scaled
to the authors' maximum of 117, their ``lam = 5`` equals ``lam`` of about 0.6 here -- a
weak threshold: without noise it is more accurate once converged, but it needs several
times more iterations than a 10-second budget allows. The default ``lam = 5`` in normalised units keeps the paper's number and
converges in well under a hundred iterations (about 80 at 128 x 128 x 200, 15 % line
masks) at a small cost in accuracy. Chapter 5 measures the error against ``lam``. The
returned images are scaled back to the input's units. Pass ``scale=1.0`` to apply
``lam`` in absolute units instead.

Speed
-----
The cost of one iteration is two batched FFTs (scipy.fft, ``workers`` threads) and one
singular-value threshold. The SVT never forms a full SVD: the L x L Gram matrix
``X^H X`` (one ``cherk``) is eigendecomposed in float64, and the stack is rebuilt from
the kept components only, ``X <- X V diag(1 - t/sigma) V^H``. ``svt_method="svd"`` switches to
``numpy.linalg.svd(full_matrices=False)`` for comparison (benchmarks/bench_restoration.py).

Explained in chapter 5, book/05_undersampling.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit
import scipy.linalg
from scipy.linalg.blas import cherk

try:  # a dependency of scikit-learn, which nilearn requires
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - the loop then runs with the default BLAS threads
    ThreadpoolController = None

from mrfbook.recon.acquisition import UndersampledFourier
from mrfbook.utils.checks import check_int, check_nonnegative

__all__ = [
    "REFERENCE_SCALE",
    "RestorationResult",
    "lowrank_restore",
    "data_scale",
    "svt",
    "proximal_gradient",
]

#: Largest singular value of the zero-filled stack after normalisation: ``lam`` is in
#: units of ``sigma_1(x_zf) / REFERENCE_SCALE`` (see the module docstring).
REFERENCE_SCALE: float = 1000.0


@dataclass
class RestorationResult:
    """Output of :func:`lowrank_restore` and :func:`mrfbook.recon.flor.flor_restore`.

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
        (n_iter,) float64, the stopping criterion per iteration (inf for the first).
    scale : float
        The data scale ``s`` (k-space was divided by ``s`` before applying ``lam``).
    lam : float
        The regularisation weight used (normalised units).
    elapsed_s : float
        Wall time of the iterations in seconds.
    method : str
        Short description ("lowrank-ista", "lowrank-fista", "flor", ...).
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


# ---------------------------------------------------------------------------
# singular-value thresholding
# ---------------------------------------------------------------------------


def svt(frames: np.ndarray, threshold: float, *, method: str = "gram") -> tuple[np.ndarray, float, int]:
    """Singular-value soft threshold of a frame-major stack.

    Parameters
    ----------
    frames : numpy.ndarray
        (L, ...) complex64; treated as the L x N matrix ``X^T`` (its singular values are
        those of the N x L stack ``X``).
    threshold : float
        Soft threshold ``t`` >= 0 applied to every singular value.
    method : {"gram", "svd"}
        ``"gram"``: eigendecomposition of the L x L Gram matrix (fast, default);
        ``"svd"``: ``numpy.linalg.svd(full_matrices=False)`` of the L x N matrix.

    Returns
    -------
    (numpy.ndarray, float, int)
        The thresholded stack (same shape, complex64), its nuclear norm
        ``sum(max(sigma - t, 0))`` and its rank.

    Explained in chapter 5, book/05_undersampling.md.
    """
    if method == "svd":  # the plain baseline: numpy's default BLAS/LAPACK threading
        return _svt(frames, threshold, method)
    with _single_threaded_blas():
        return _svt(frames, threshold, method)


def _svt(frames: np.ndarray, threshold: float, method: str) -> tuple[np.ndarray, float, int]:
    shape = frames.shape
    z = np.ascontiguousarray(frames, dtype=np.complex64).reshape(shape[0], -1)
    if method == "gram":
        # cherk on the Fortran view z.T (N x L) with trans=2 gives conj(z z^H) in its upper
        # triangle; eigenvectors of conj(G) are the conjugates of those of G.
        gram_c = cherk(1.0, z.T, trans=2, lower=0)
        # upper triangle of G = z z^H in float64; only eigenpairs with sigma > threshold are
        # computed (LAPACK *heevr on (threshold^2, inf]), cheaper than a full eigh at low rank
        gram = np.conj(gram_c, dtype=np.complex128)
        w, v = scipy.linalg.eigh(gram, lower=False, subset_by_value=(threshold**2, np.inf),
                                 driver="evr", overwrite_a=True, check_finite=False)
        sigma = np.sqrt(np.clip(w, 0.0, None))
        keep = sigma > threshold
        if not keep.any():
            return np.zeros(shape, dtype=np.complex64), 0.0, 0
        vk = v[:, keep]
        sk = sigma[keep]
        factor = (sk - threshold) / sk
        vk32 = vk.astype(np.complex64)
        coeff = vk32.conj().T @ z
        coeff *= factor.astype(np.float32)[:, None]
        out = vk32 @ coeff
        return out.reshape(shape), float(np.sum(sk - threshold)), int(keep.sum())
    if method == "svd":
        u, s, vh = np.linalg.svd(z, full_matrices=False)
        keep = s > threshold
        if not keep.any():
            return np.zeros(shape, dtype=np.complex64), 0.0, 0
        sk = (s[keep] - threshold).astype(np.float32)
        out = (u[:, keep] * sk) @ vh[keep]
        return out.astype(np.complex64).reshape(shape), float(np.sum(sk, dtype=np.float64)), int(keep.sum())
    raise ValueError(f"method must be 'gram' or 'svd', got {method!r}")


_CONTROLLER = None


def _single_threaded_blas():
    """Context limiting BLAS/LAPACK to one thread.

    The products in the threshold take ~30 ms single-threaded at 128 x 128 x 200; with
    OpenBLAS's two threads on a busy two-core machine, the 200 x 200 ``eigh`` was
    measured to slow from ~20 ms to ~0.5-1.5 s (threads spin-waiting for a core), so the
    threshold runs single-threaded and the two cores go to the FFTs instead.
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
# generic proximal gradient loop
# ---------------------------------------------------------------------------


Prox = Callable[[np.ndarray, float], tuple[np.ndarray, float, int]]


def data_scale(kspace: np.ndarray, op: UndersampledFourier) -> float:
    """The normalisation ``s`` applied before ``lam`` (see the module docstring).

    ``s = sigma_1(F_u^H Y) / REFERENCE_SCALE``: the largest singular value of the
    zero-filled (N x L) stack over 1000; 1.0 if the data are all zero.

    Explained in chapter 5, book/05_undersampling.md.
    """
    zf = op.adjoint_frames(kspace).reshape(op.n_frames, -1)  # (L, N)
    with _single_threaded_blas():
        gram = cherk(1.0, zf.T, trans=2, lower=0)
        gram = np.triu(gram).astype(np.complex128)
        gram = gram + np.triu(gram, 1).conj().T
        top = float(np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)))
    return top / REFERENCE_SCALE if top > 0 else 1.0


def proximal_gradient(kspace: np.ndarray, op: UndersampledFourier, prox: Prox, *, lam: float,
                      mu: float = 1.0, max_iter: int = 100, tol: float | None = 1e-4,
                      fista: bool = False, scale: float | str = "auto", progress: bool = False,
                      callback: Callable[[int, np.ndarray, float], None] | None = None,
                      restart: bool = True, method: str = "",
                      desc: str = "restoration") -> RestorationResult:
    """Proximal gradient (ISTA / FISTA) for ``1/2 ||F_u X - Y||^2 + lam R(X)``.

    ``prox(Z, t)`` must return ``(prox_{t R}(Z), R(result), rank)`` for a frame-major
    stack Z (L, H, W). Used by :func:`lowrank_restore` and :func:`mrfbook.recon.flor.flor_restore`;
    argument meanings are documented there. Each iteration costs one forward and one
    inverse batched FFT (the k-space of the iterates is carried along, so FISTA's
    extrapolated point needs no extra transform) plus one ``prox``.

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
    lam = check_nonnegative("lam", lam)
    mu = _check_mu(mu)
    max_iter = check_int("max_iter", max_iter, 1)
    if tol is not None:
        tol = check_nonnegative("tol", tol)
    if isinstance(scale, str):
        if scale != "auto":
            raise ValueError(f"scale must be 'auto' or a positive number, got {scale!r}")
        s = data_scale(kspace, op)
    else:
        s = float(scale)
        if not np.isfinite(s) or s <= 0:
            raise ValueError(f"scale must be 'auto' or a positive finite number, got {scale!r}")

    y = op.internal_data(kspace)  # packed sampled data (see UndersampledFourier.internal_data)
    y *= np.float32(1.0 / s)
    shape = op.kspace_shape
    x = np.zeros(shape, dtype=np.complex64)
    ax = np.zeros(y.shape, dtype=np.complex64)  # F_u x, packed
    x_prev, ax_prev = x, ax
    resid = np.empty(y.shape, dtype=np.complex64)
    norm_x = 0.0
    t_k = 1.0
    objective: list[float] = []
    ranks: list[int] = []
    changes: list[float] = []
    restarts: list[int] = []
    converged = False
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_iter, desc=desc, leave=False)
    flat = lambda a: a.reshape(-1)  # noqa: E731 - views for the fused kernels
    start = time.perf_counter()
    for it in range(max_iter):
        beta = 0.0
        if fista and it > 0:
            t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t_k * t_k))
            beta = (t_k - 1.0) / t_next
            t_k = t_next
        # data residual at the extrapolated point U = X + beta (X - X_prev), by linearity
        _residual(ax, ax_prev, y, np.float32(beta), resid)
        z = op.internal_adjoint(resid)
        # z <- U - mu F_u^H (F_u U - Y), without storing U
        _gradient_step(flat(x), flat(x_prev), flat(z), np.float32(beta), np.float32(mu))
        x_new, reg, rank = prox(z, mu * lam)
        x_new = np.ascontiguousarray(x_new, dtype=np.complex64)
        ax_new = op.internal_forward(x_new)
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
    elapsed = time.perf_counter() - start
    if bar is not None:
        bar.close()
    images = np.ascontiguousarray(np.moveaxis(x * np.float32(s), 0, 2))
    return RestorationResult(images=images, objective=np.asarray(objective), n_iter=len(objective),
                             converged=converged, rank=np.asarray(ranks, dtype=np.int64),
                             relative_change=np.asarray(changes), scale=s, lam=lam,
                             elapsed_s=elapsed, method=method,
                             extra={"restarts": restarts})


def lowrank_restore(kspace: np.ndarray, op: UndersampledFourier, *, lam: float = 5.0,
                    mu: float = 1.0, max_iter: int = 100, tol: float | None = 1e-4,
                    fista: bool = False, restart: bool = True, scale: float | str = "auto",
                    svt_method: str = "gram", progress: bool = False,
                    callback: Callable[[int, np.ndarray, float], None] | None = None
                    ) -> RestorationResult:
    """Restore an image stack from undersampled k-space with a nuclear-norm prior (eq. 2).

    Solves ``min_X 1/2 sum_i ||Y_i - F_u X_i||^2 + lam ||X||_*`` (X: N pixels x L frames)
    by proximal gradient: ``X <- SVT_{mu lam}(U - mu F_u^H(F_u U - Y))``, ``U = X``
    (ISTA) or the FISTA extrapolation. Starts from X = 0.

    Parameters
    ----------
    kspace : numpy.ndarray
        (L, H, W) complex centred k-space, zero off-mask (``op.forward(x)``).
    op : mrfbook.recon.acquisition.UndersampledFourier
        The sampling operator that produced ``kspace``.
    lam : float
        Nuclear-norm weight (>= 0) in normalised units: thousandths of the largest
        singular value of the zero-filled stack (see the module docstring). 5 is the
        paper's number.
    mu : float
        Step size in (0, 2); 1 (the paper's) is the classical 1/Lipschitz step since
        ``F_u^H F_u`` is a projection.
    max_iter : int
        Maximum number of iterations (>= 1).
    tol : float or None
        Stop when ``||X_k - X_{k-1}||_F / ||X_{k-1}||_F < tol``; None runs ``max_iter``.
    fista : bool
        Use FISTA momentum (Beck & Teboulle 2009).
    restart : bool
        With FISTA, reset the momentum whenever the objective increases (adaptive
        restart, O'Donoghue & Candes 2015); ignored by ISTA, whose objective never
        increases with ``mu <= 1``.
    scale : "auto" or float
        Data scale ``s`` (k-space is divided by ``s`` before ``lam`` applies); "auto"
        uses :func:`data_scale`. ``scale=1.0`` means ``lam`` is in absolute units.
    svt_method : {"gram", "svd"}
        How the singular values are computed (:func:`svt`).
    progress : bool
        Show a tqdm bar (objective, rank and relative change per iteration).
    callback : callable, optional
        ``callback(iteration, frames, objective)`` after every iteration; ``frames`` is
        the (L, H, W) iterate in normalised units (do not modify it).

    Returns
    -------
    RestorationResult
        ``images`` (H, W, L) complex64 in the input's units, objective history, rank
        history, ``n_iter``, ``converged``.

    Raises
    ------
    ValueError
        Shapes that disagree with ``op``, non-finite k-space, ``lam`` < 0, ``mu`` outside
        (0, 2), ``max_iter`` < 1, ``tol`` < 0, bad ``scale`` or ``svt_method``.

    Explained in chapter 5, book/05_undersampling.md.
    """
    if svt_method not in ("gram", "svd"):
        raise ValueError(f"svt_method must be 'gram' or 'svd', got {svt_method!r}")

    def prox(z: np.ndarray, t: float) -> tuple[np.ndarray, float, int]:
        return svt(z, t, method=svt_method)

    return proximal_gradient(kspace, op, prox, lam=lam, mu=mu, max_iter=max_iter, tol=tol,
                             fista=fista, restart=restart, scale=scale, progress=progress,
                             callback=callback, method="lowrank-fista" if fista else "lowrank-ista",
                             desc="low-rank (FISTA)" if fista else "low-rank (ISTA)")


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _check_mu(value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"mu must be a step size in (0, 2), got {value!r}") from exc
    if not (0.0 < v < 2.0):
        raise ValueError(f"mu must be a step size in (0, 2), got {value!r}")
    return v
