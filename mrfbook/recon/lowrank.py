"""Low-rank restoration of an undersampled MRF image stack (the paper's eq. 2).

Song et al. (ICASSP 2019, section 3.1) restore the image stack ``X`` (N pixels x L
frames) from undersampled k-space ``Y`` by

    min_X  1/2 sum_i || Y_i - F_u X_i ||_2^2  +  lam ||X||_*

(``||X||_*`` = sum of singular values), with step ``mu = 1`` and ``lam = 5``. It is
solved by proximal gradient descent (ISTA, :func:`mrfbook.recon.solvers.proximal_gradient`),
optionally with FISTA momentum:

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
The default ``engine="factored"`` (:mod:`mrfbook.recon.solvers`) iterates in k-space on the
low-rank factors of the iterate: no FFT inside the loop, and a threshold assembled from small
Gram matrices, 16 ms per iteration at 128 x 128 x 200, 15 % line masks, lam = 5, against 72 ms
for ``engine="dense"``, the same iterates (FISTA's restart test aside, see
:data:`mrfbook.recon.solvers.RESTART_RTOL`). The dense engine is the textbook loop: two batched
FFTs (scipy.fft, ``workers`` threads) and one singular-value threshold of the full stack per
iteration. Its SVT never forms a full SVD: the L x L Gram matrix ``X^H X`` (one ``cherk``) is
eigendecomposed in float64, and the stack is rebuilt from the kept components only,
``X <- X V diag(1 - t/sigma) V^H``. ``svt_method="svd"`` (dense engine) switches to
``numpy.linalg.svd(full_matrices=False)`` for comparison (benchmarks/bench_restoration.py).
:func:`mrfbook.recon.weights.restore` adds alternating least squares, a path of weights from a
cold start and the weight chosen from the data.

Explained in chapter 5, book/05_undersampling.md.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.linalg
from scipy.linalg.blas import cherk

from mrfbook.recon.acquisition import UndersampledFourier
from mrfbook.recon.solvers import LowRankProx, RestorationResult, check_kspace, proximal_gradient, single_threaded_blas
from mrfbook.utils.checks import check_positive

__all__ = [
    "REFERENCE_SCALE",
    "lowrank_restore",
    "data_scale",
    "resolve_scale",
    "svt",
]

#: Largest singular value of the zero-filled stack after normalisation: ``lam`` is in
#: units of ``sigma_1(x_zf) / REFERENCE_SCALE`` (see the module docstring).
REFERENCE_SCALE: float = 1000.0


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
    with single_threaded_blas():
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


# ---------------------------------------------------------------------------
# the scale of lam
# ---------------------------------------------------------------------------


def data_scale(kspace: np.ndarray, op: UndersampledFourier) -> float:
    """The normalisation ``s`` applied before ``lam`` (see the module docstring).

    ``s = sigma_1(F_u^H Y) / REFERENCE_SCALE``: the largest singular value of the
    zero-filled (N x L) stack over 1000; 1.0 if the data are all zero.

    Explained in chapter 5, book/05_undersampling.md.
    """
    zf = op.adjoint_frames(kspace).reshape(op.n_frames, -1)  # (L, N)
    with single_threaded_blas():
        gram = cherk(1.0, zf.T, trans=2, lower=0)
        gram = np.triu(gram).astype(np.complex128)
        gram = gram + np.triu(gram, 1).conj().T
        top = float(np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)))
    return top / REFERENCE_SCALE if top > 0 else 1.0


def resolve_scale(scale: float | str, kspace: np.ndarray, op: UndersampledFourier) -> float:
    """The data scale ``s`` a restoration divides the k-space by before ``lam`` applies.

    Parameters
    ----------
    scale : "auto" or float
        ``"auto"``: :func:`data_scale` of ``kspace``; a number: itself (finite, > 0).
    kspace : numpy.ndarray
        (L, H, W) complex centred k-space (checked by the caller against ``op``).
    op : mrfbook.recon.acquisition.UndersampledFourier

    Returns
    -------
    float
        ``s`` > 0.

    Explained in chapter 5, book/05_undersampling.md.
    """
    if isinstance(scale, str):
        if scale != "auto":
            raise ValueError(f"scale must be 'auto' or a positive number, got {scale!r}")
        return data_scale(kspace, op)
    return check_positive("scale", scale, allowed="'auto' or a positive finite number")


def lowrank_restore(kspace: np.ndarray, op: UndersampledFourier, *, lam: float = 5.0,
                    mu: float = 1.0, max_iter: int = 100, tol: float | None = 1e-4,
                    fista: bool = False, restart: bool = True, scale: float | str = "auto",
                    svt_method: str = "gram", progress: bool = False,
                    callback: Callable[[int, np.ndarray, float], None] | None = None,
                    x0: Any = None, engine: str = "factored", continuation: float = 0.0
                    ) -> RestorationResult:
    """Restore an image stack from undersampled k-space with a nuclear-norm prior (eq. 2).

    Solves ``min_X 1/2 sum_i ||Y_i - F_u X_i||^2 + lam ||X||_*`` (X: N pixels x L frames)
    by proximal gradient: ``X <- SVT_{mu lam}(U - mu F_u^H(F_u U - Y))``, ``U = X``
    (ISTA) or the FISTA extrapolation. Starts from X = 0 or from ``x0``.

    Parameters
    ----------
    kspace : numpy.ndarray
        (L, H, W) complex centred k-space, zero off-mask (``op.forward(x)``).
    op : mrfbook.recon.acquisition.UndersampledFourier
        The sampling operator that produced ``kspace``.
    lam : float
        Nuclear-norm weight (>= 0) in normalised units: thousandths of the largest
        singular value of the zero-filled stack (see the module docstring). 5 is the
        paper's number; :func:`mrfbook.recon.weights.restore` chooses it from the data.
    mu : float
        Step size in (0, 2); 1 (the paper's) is the classical 1/Lipschitz step since
        ``F_u^H F_u`` is a projection.
    max_iter : int
        Maximum number of iterations (>= 1).
    tol : float or None
        Stop when ``||X_k - X_{k-1}||_F / ||X_{k-1}||_F < tol``; None runs ``max_iter``.
    fista : bool
        Use FISTA momentum (Beck & Teboulle 2009). The default stays ISTA, the paper's
        method; FISTA needs about half the iterations (59 against 106 at 128 x 128 x 200,
        15 % lines, lam = 5, tol = 1e-4) and is what :func:`mrfbook.recon.weights.restore` runs.
    restart : bool
        With FISTA, reset the momentum whenever the objective increases (adaptive
        restart, O'Donoghue & Candes 2015); ignored by ISTA, whose objective never
        increases with ``mu <= 1``.
    scale : "auto" or float
        Data scale ``s`` (k-space is divided by ``s`` before ``lam`` applies); "auto"
        uses :func:`data_scale`. ``scale=1.0`` means ``lam`` is in absolute units.
    svt_method : {"gram", "svd"}
        How the singular values are computed (:func:`svt`) by the dense engine;
        ``"svd"`` needs ``engine="dense"``.
    progress : bool
        Show a tqdm bar (objective, rank and relative change per iteration).
    callback : callable, optional
        ``callback(iteration, frames, objective)`` after every iteration; ``frames`` is
        the (L, H, W) complex64 iterate in normalised units (do not modify it; the factored
        engine builds it for the callback only).
    x0 : numpy.ndarray or RestorationResult, optional
        Warm start: an (H, W, L) complex stack in the input's units (e.g. a previous
        result's ``images``) or a previous result itself (its low-rank factors are reused
        exactly). None starts from X = 0.
    engine : {"factored", "dense"}
        ``"factored"`` (default): the iterations run in k-space on the iterate's low-rank
        factors (:mod:`mrfbook.recon.solvers`), the same iterates as ``"dense"`` to
        float32 round-off (FISTA's restart test aside), about 4x faster per iteration at
        128 x 128 x 200, 15 % lines (16 against 72 ms at lam = 5). ``"dense"``: the textbook loop on the full stack
        (FFTs and a threshold of the full stack per iteration).
    continuation : float
        0 (default): constant weight. A factor in (0, 1) (factored engine, cold start
        only): the weight starts just below the largest singular value of the zero-filled
        stack and shrinks by this factor per iteration until it reaches ``lam`` (Toh & Yun,
        Pacific J. Optim. 6:615-640, 2010); the ranks of the early iterates then stay low,
        which pays off most for small ``lam`` (lam = 0.3 at 128 x 128 x 200: 2 s against 6 s).

    Returns
    -------
    mrfbook.recon.solvers.RestorationResult
        ``images`` (H, W, L) complex64 in the input's units, objective history, rank
        history, ``n_iter``, ``converged``; the factored engine stores the low-rank factors
        in ``extra["factors"]``.

    Raises
    ------
    ValueError
        Shapes that disagree with ``op``, non-finite k-space, ``lam`` < 0, ``mu`` outside
        (0, 2), ``max_iter`` < 1, ``tol`` < 0, bad ``scale``, ``svt_method``, ``engine``,
        ``continuation`` or ``x0``.

    Explained in chapter 5, book/05_undersampling.md.
    """
    if svt_method not in ("gram", "svd"):
        raise ValueError(f"svt_method must be 'gram' or 'svd', got {svt_method!r}")
    if engine not in ("factored", "dense"):
        raise ValueError(f"engine must be 'factored' or 'dense', got {engine!r}")
    if svt_method == "svd" and engine != "dense":
        raise ValueError("svt_method='svd' needs engine='dense' (the factored engine never forms the stack)")
    kspace = check_kspace(kspace, op)
    s = resolve_scale(scale, kspace, op)

    if engine == "factored":
        prox: Any = LowRankProx()
    else:
        def prox(z: np.ndarray, t: float) -> tuple[np.ndarray, float, int]:
            return svt(z, t, method=svt_method)

    return proximal_gradient(kspace, op, prox, lam=lam, mu=mu, max_iter=max_iter, tol=tol,
                             fista=fista, restart=restart, scale=s, progress=progress,
                             callback=callback, method="lowrank-fista" if fista else "lowrank-ista",
                             desc="low-rank (FISTA)" if fista else "low-rank (ISTA)", x0=x0,
                             continuation=continuation)
