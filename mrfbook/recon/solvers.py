"""Proximal gradient (ISTA / FISTA) for undersampled MRF k-space: the loop the restorations share.

Solves ``min_X 1/2 ||F_u X - Y||^2 + lam R(X)`` for any regulariser ``R`` whose proximal
operator is given: :func:`mrfbook.recon.lowrank.lowrank_restore` passes the singular-value
threshold (the paper's eq. 2), :func:`mrfbook.recon.flor.flor_restore` the projection onto the
dictionary's subspace followed by the threshold. The loop works on the frame-major (L, H, W)
stack and on the packed sampled data of :class:`mrfbook.recon.acquisition.UndersampledFourier`
(its ``packed_*`` methods), with fused numba kernels for the element-wise steps.

Explained in chapter 5, book/05_undersampling.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit

try:  # a dependency of scikit-learn, which nilearn requires
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - the loop then runs with the default BLAS threads
    ThreadpoolController = None

from mrfbook.recon.acquisition import UndersampledFourier
from mrfbook.utils.checks import check_int, check_nonnegative, check_positive
from mrfbook.utils.timing import Stopwatch

__all__ = ["RestorationResult", "Prox", "proximal_gradient", "check_kspace", "single_threaded_blas"]


@dataclass
class RestorationResult:
    """Output of :func:`proximal_gradient` (via :func:`mrfbook.recon.lowrank.lowrank_restore` and
    :func:`mrfbook.recon.flor.flor_restore`).

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
    extra : dict
        Solver-specific extras (``restarts``: iterations where FISTA's momentum was reset;
        FLOR adds ``basis``).

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
# the proximal gradient loop
# ---------------------------------------------------------------------------


#: ``prox(Z, t) -> (prox_{t R}(Z), R(result), rank)`` on a frame-major (L, H, W) stack.
Prox = Callable[[np.ndarray, float], tuple[np.ndarray, float, int]]


def proximal_gradient(kspace: np.ndarray, op: UndersampledFourier, prox: Prox, *, lam: float,
                      mu: float = 1.0, max_iter: int = 100, tol: float | None = 1e-4,
                      fista: bool = False, scale: float = 1.0, progress: bool = False,
                      callback: Callable[[int, np.ndarray, float], None] | None = None,
                      restart: bool = True, method: str = "",
                      desc: str = "restoration") -> RestorationResult:
    """Proximal gradient (ISTA / FISTA) for ``1/2 ||F_u X - Y||^2 + lam R(X)``.

    ``prox(Z, t)`` must return ``(prox_{t R}(Z), R(result), rank)`` for a frame-major
    stack Z (L, H, W). Used by :func:`mrfbook.recon.lowrank.lowrank_restore` and
    :func:`mrfbook.recon.flor.flor_restore`; argument meanings are documented there. Each
    iteration costs one forward and one inverse batched FFT (the k-space of the iterates is
    carried along, so FISTA's extrapolated point needs no extra transform) plus one ``prox``.

    ``scale`` (a finite number > 0) divides the k-space before ``lam`` applies, and the
    returned images are multiplied back by it; the callers resolve their ``scale="auto"``
    with :func:`mrfbook.recon.lowrank.data_scale`.

    Explained in chapter 5, book/05_undersampling.md.
    """
    kspace = check_kspace(kspace, op)
    lam = check_nonnegative("lam", lam)
    mu = _check_mu(mu)
    max_iter = check_int("max_iter", max_iter, 1)
    if tol is not None:
        tol = check_nonnegative("tol", tol)
    s = check_positive("scale", scale)

    y = op.packed_data(kspace)  # packed sampled data (see UndersampledFourier.packed_data)
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


def _check_mu(value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"mu must be a step size in (0, 2), got {value!r}") from exc
    if not (0.0 < v < 2.0):
        raise ValueError(f"mu must be a step size in (0, 2), got {value!r}")
    return v
