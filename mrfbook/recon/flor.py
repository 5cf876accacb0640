"""FLOR: low-rank restoration constrained to the dictionary's temporal subspace.

FLOR (Mazor, Weizman, Tal & Eldar, "Low-rank magnetic resonance fingerprinting",
Medical Physics 45(9):4066-4084, 2018) is the restoration the paper compares against
(Song et al., ICASSP 2019, fig. 5). As the authors ran it, each iteration is

    X = U - mu F_u^H (F_u U - Y)        gradient step on the data term
    X = X P                             project every signature onto span(D^T)
    X = SVT_lam(X)                      soft-threshold the singular values
    U = X + (t_{k-1} - 1)/t_k (X - X_prev)   FISTA momentum

from X = 0 with mu = 1, a threshold of 5 and 30 iterations, followed by dictionary
matching that keeps a pixel only if its normalised correlation exceeds 0.9.

``P = B B^T`` with ``B`` (L x k) the leading right singular vectors of the dictionary
atoms (:func:`mrfbook.physics.compression.svd_basis`). Projection followed by the threshold is
*exactly* the proximal operator of ``lam ||X||_* + indicator{rows of X in span(B)}``
(for X = C B^T the singular values of X are those of C), so this is proximal gradient
on a convex objective and the threshold is applied to the small N x k matrix ``C``.

``lam`` uses the same normalised units as :func:`mrfbook.recon.lowrank.lowrank_restore`
(see :mod:`mrfbook.recon.lowrank`).

Explained in chapter 5, book/05_undersampling.md.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mrfbook.recon.acquisition import UndersampledFourier
from mrfbook.recon.lowrank import resolve_scale, svt
from mrfbook.recon.solvers import LowRankProx, Prox, RestorationResult, check_kspace, proximal_gradient, single_threaded_blas
from mrfbook.utils.checks import check_int

__all__ = ["FLOR_MIN_CORRELATION", "subspace_basis", "flor_restore", "flor_maps"]

#: Matches with a normalised correlation at or below this are discarded (authors' code).
FLOR_MIN_CORRELATION: float = 0.9

#: Default energy kept by the temporal subspace when ``subspace_rank`` is None.
DEFAULT_ENERGY: float = 0.9999


def subspace_basis(dictionary: Any, *, subspace_rank: int | None = None,
                   energy: float = DEFAULT_ENERGY) -> np.ndarray:
    """Orthonormal temporal basis ``B`` (L x k) of a dictionary, float32.

    Parameters
    ----------
    dictionary : Dictionary, SvdBasis or numpy.ndarray
        A :class:`mrfbook.physics.dictionary.Dictionary` (its unit-norm atoms are decomposed with
        :func:`mrfbook.physics.compression.svd_basis`), an :class:`mrfbook.physics.compression.SvdBasis`
        (used as is), or an (L, k) array with orthonormal columns.
    subspace_rank : int, optional
        Number of components k (1 <= k <= L). None: the fewest reaching ``energy``.
    energy : float
        Cumulative energy fraction in (0, 1] kept when ``subspace_rank`` is None.

    Returns
    -------
    numpy.ndarray
        (L, k) float32 (complex64 for complex atoms) with orthonormal columns.

    Explained in chapter 5, book/05_undersampling.md.
    """
    from mrfbook.physics.compression import SvdBasis, svd_basis

    if isinstance(dictionary, SvdBasis):
        basis = dictionary.basis
        if subspace_rank is not None:
            basis = basis[:, : check_int("subspace_rank", subspace_rank, 1, basis.shape[1])]
    elif isinstance(dictionary, np.ndarray):
        basis = dictionary
        if basis.ndim != 2 or basis.shape[1] > basis.shape[0]:
            raise ValueError(f"dictionary given as an array must be an (L, k) basis with k <= L, "
                             f"got shape {basis.shape}")
        gram = basis.conj().T @ basis
        if not np.allclose(gram, np.eye(basis.shape[1]), atol=1e-4):
            raise ValueError("dictionary given as an array must have orthonormal columns")
        if subspace_rank is not None:
            basis = basis[:, : check_int("subspace_rank", subspace_rank, 1, basis.shape[1])]
    elif hasattr(dictionary, "atoms"):
        atoms = dictionary.normalised() if hasattr(dictionary, "normalised") else dictionary.atoms
        if subspace_rank is not None:
            n_t = np.asarray(atoms).shape[1]
            basis = svd_basis(atoms, rank=check_int("subspace_rank", subspace_rank, 1, n_t)).basis
        else:
            if not (0.0 < float(energy) <= 1.0):
                raise ValueError(f"energy must be in (0, 1], got {energy!r}")
            basis = svd_basis(atoms, energy=float(energy)).basis
    else:
        raise ValueError("dictionary must be a Dictionary, an SvdBasis or an (L, k) basis array, "
                         f"got {type(dictionary).__name__}")
    dtype = np.complex64 if np.iscomplexobj(basis) else np.float32
    return np.ascontiguousarray(basis, dtype=dtype)


def _project_then_svt(basis: np.ndarray) -> Prox:
    """prox of lam ||X||_* + indicator(rows of X in span B), on frame-major stacks (L, H, W)."""
    n_t, k = basis.shape
    real_basis = not np.iscomplexobj(basis)
    bt = np.ascontiguousarray(basis.conj().T)

    def prox(z: np.ndarray, t: float) -> tuple[np.ndarray, float, int]:
        shape = z.shape
        zz = np.ascontiguousarray(z, dtype=np.complex64).reshape(n_t, -1)
        with single_threaded_blas():
            if real_basis:  # real (k x L) @ complex (L x N) as one real GEMM on the float view
                coeff = (bt @ zz.view(np.float32)).view(np.complex64)
            else:
                coeff = bt @ zz
        coeff, reg, rank = svt(coeff, t)  # C^T (k x N): same singular values as X
        with single_threaded_blas():
            if real_basis:
                out = (basis @ np.ascontiguousarray(coeff).view(np.float32)).view(np.complex64)
            else:
                out = basis @ coeff
        return out.reshape(shape), reg, rank

    return prox


def flor_restore(kspace: np.ndarray, op: UndersampledFourier, dictionary: Any, *,
                 lam: float = 5.0, mu: float = 1.0, n_iter: int = 30,
                 subspace_rank: int | None = None, energy: float = DEFAULT_ENERGY,
                 fista: bool = True, restart: bool = True, tol: float | None = None,
                 scale: float | str = "auto",
                 progress: bool = False,
                 callback: Callable[[int, np.ndarray, float], None] | None = None,
                 x0: Any = None, engine: str = "factored", continuation: float = 0.0
                 ) -> RestorationResult:
    """FLOR restoration (Mazor et al. 2018) as run by the paper's authors.

    Proximal gradient on ``1/2 ||F_u X - Y||^2 + lam ||X||_*`` with every signature
    (row of X) constrained to the dictionary's temporal subspace: gradient step,
    projection onto the subspace, singular-value soft threshold, FISTA momentum; X0 = 0.

    Parameters
    ----------
    kspace : numpy.ndarray
        (L, H, W) complex centred k-space (``op.forward(x)``).
    op : mrfbook.recon.acquisition.UndersampledFourier
    dictionary : Dictionary, SvdBasis or (L, k) array
        Source of the temporal subspace (:func:`subspace_basis`).
    lam : float
        Threshold weight (>= 0), normalised units of :mod:`mrfbook.recon.lowrank`; 5 as the
        authors.
    mu : float
        Step in (0, 2); 1 as the authors.
    n_iter : int
        Maximum number of iterations (>= 1); 30 as the authors.
    subspace_rank : int, optional
        Dimension k of the temporal subspace; None keeps ``energy`` of the atoms' energy.
    energy : float
        Energy fraction for the automatic rank (default 0.9999).
    fista : bool
        FISTA momentum (True, as the authors).
    restart : bool
        Adaptive restart of the momentum when the objective increases (the authors'
        code has none; it only removes overshoot).
    tol : float or None
        Optional early stop on the relative change (None: run ``n_iter`` iterations).
    scale : "auto" or float
        Data normalisation, as in :func:`mrfbook.recon.lowrank.lowrank_restore`.
    progress : bool
        tqdm bar.
    callback : callable, optional
        ``callback(iteration, frames (L, H, W), objective)``.
    x0 : numpy.ndarray or RestorationResult, optional
        Warm start, as in :func:`mrfbook.recon.lowrank.lowrank_restore`: an (H, W, L) stack
        in the input's units or a previous result (its factors are reused). None: X0 = 0.
    engine : {"factored", "dense"}
        ``"factored"`` (default): iterations on the low-rank factors in k-space
        (:mod:`mrfbook.recon.solvers`), the same iterates as ``"dense"`` to float32
        round-off (FISTA's restart test aside, :data:`mrfbook.recon.solvers.RESTART_RTOL`),
        3.7x faster at 128 x 128 x 200 (0.33 against 1.23 s); ``"dense"``: gradient step,
        projection and threshold of the full stack.
    continuation : float
        0 (default) or a factor in (0, 1): the weight starts high and shrinks by this
        factor per iteration down to ``lam`` (factored engine, cold start only; see
        :func:`mrfbook.recon.lowrank.lowrank_restore`).

    Returns
    -------
    mrfbook.recon.solvers.RestorationResult
        ``images`` (H, W, L) complex64 whose every signature lies in the subspace;
        ``extra["basis"]`` holds the (L, k) basis.

    Explained in chapter 5, book/05_undersampling.md.
    """
    n_iter = check_int("n_iter", n_iter, 1)
    kspace = check_kspace(kspace, op)
    basis = subspace_basis(dictionary, subspace_rank=subspace_rank, energy=energy)
    if basis.shape[0] != op.n_frames:
        raise ValueError(f"the dictionary has {basis.shape[0]} time points but op has "
                         f"{op.n_frames} frames")
    if engine not in ("factored", "dense"):
        raise ValueError(f"engine must be 'factored' or 'dense', got {engine!r}")
    s = resolve_scale(scale, kspace, op)
    prox = LowRankProx(basis=basis) if engine == "factored" else _project_then_svt(basis)
    result = proximal_gradient(kspace, op, prox, lam=lam, mu=mu,
                               max_iter=n_iter, tol=tol, fista=fista, restart=restart, scale=s,
                               progress=progress, callback=callback,
                               method="flor-fista" if fista else "flor-ista", desc="FLOR",
                               x0=x0, continuation=continuation)
    result.extra["basis"] = basis
    return result


def flor_maps(images: np.ndarray, dictionary: Any, *, mask: np.ndarray | None = None,
              min_correlation: float = FLOR_MIN_CORRELATION, **kwargs: Any):
    """Dictionary matching after FLOR: a pixel is kept only if its correlation > 0.9.

    Thin wrapper of :func:`mrfbook.recon.matching.match_maps` with
    ``min_correlation=0.9``; pixels that match worse are invalid (T1 = T2 = PD = 0).

    Parameters
    ----------
    images : numpy.ndarray
        (H, W, L) restored stack.
    dictionary : mrfbook.physics.dictionary.Dictionary
    mask : numpy.ndarray, optional
        (H, W) bool pixels to match.
    min_correlation : float
        Correlation threshold in [0, 1] (0.9 in the authors' code).
    **kwargs
        Passed to :func:`mrfbook.recon.matching.match_maps` (rank, chunk_size, progress).

    Returns
    -------
    mrfbook.recon.matching.ParameterMaps
        (t1_ms, t2_ms, pd, valid), each (H, W).

    Explained in chapter 5, book/05_undersampling.md.
    """
    from mrfbook.recon.matching import match_maps

    return match_maps(images, dictionary, mask=mask, min_correlation=min_correlation, **kwargs)
