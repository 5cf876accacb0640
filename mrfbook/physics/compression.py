"""SVD compression of the dictionary's time axis (McGivney et al. 2014 style).

MRF atoms of a smooth sequence live close to a low-dimensional subspace of R^L. The leading right
singular vectors of the (K, L) atom matrix span it; projecting atoms and measured signatures onto
them keeps inner products (hence matching) almost unchanged at a fraction of the cost.

Explained in chapter 3, book/03_dictionary.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SvdBasis", "svd_basis", "compress", "reconstruct", "rank_for_energy", "energy_curve"]

_CHUNK_ROWS = 8192


@dataclass(frozen=True, eq=False)
class SvdBasis:
    """Leading right singular vectors of a dictionary.

    Attributes
    ----------
    basis : np.ndarray
        (L, k) orthonormal columns, float32 (complex64 for complex atoms), ordered by decreasing
        singular value; the sign of each column is fixed so that its largest-magnitude entry is
        positive (deterministic across runs).
    singular_values : np.ndarray
        (min(K, L),) float64 all singular values of the atom matrix, decreasing.
    energy : np.ndarray
        (min(K, L),) float64 cumulative energy fraction: ``energy[j]`` is the share of
        ``sum(singular_values**2)`` kept by the first ``j + 1`` components.

    Explained in chapter 3, book/03_dictionary.md.
    """

    basis: np.ndarray
    singular_values: np.ndarray
    energy: np.ndarray

    @property
    def rank(self) -> int:
        """Number of kept components k."""
        return int(self.basis.shape[1])

    @property
    def n_timepoints(self) -> int:
        """Length L of the uncompressed signatures."""
        return int(self.basis.shape[0])

    @property
    def kept_energy(self) -> float:
        """Energy fraction kept by the ``rank`` components."""
        return float(self.energy[self.rank - 1])


def energy_curve(singular_values: np.ndarray) -> np.ndarray:
    """Cumulative energy fraction ``cumsum(s**2) / sum(s**2)`` of decreasing singular values.

    Parameters
    ----------
    singular_values : np.ndarray
        (n,) finite, >= 0, non-increasing, not all zero.

    Returns
    -------
    np.ndarray
        (n,) float64, non-decreasing, last entry 1.

    Explained in chapter 3, book/03_dictionary.md.
    """
    s = _check_singular_values(singular_values)
    e = np.cumsum(s**2)
    return e / e[-1]


def _check_singular_values(singular_values) -> np.ndarray:
    s = np.asarray(singular_values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"singular_values must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("singular_values must be finite and >= 0")
    if np.any(np.diff(s) > 1e-12 * max(s[0], 1.0)):
        raise ValueError("singular_values must be sorted in decreasing order")
    if s[0] == 0:
        raise ValueError("singular_values are all zero: no energy to keep")
    return s


def rank_for_energy(singular_values: np.ndarray, fraction: float) -> int:
    """Smallest number of components whose cumulative energy is >= ``fraction``.

    Parameters
    ----------
    singular_values : np.ndarray
        (n,) decreasing singular values (see :func:`energy_curve`).
    fraction : float
        Wanted energy share in (0, 1], e.g. 0.999.

    Returns
    -------
    int
        k in 1..n.

    Explained in chapter 3, book/03_dictionary.md.
    """
    fraction = float(fraction)
    if not np.isfinite(fraction) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    energy = energy_curve(singular_values)
    # tolerance so that fraction = 1 is reached despite rounding in the cumulative sum
    k = int(np.searchsorted(energy, fraction - 1e-12, side="left")) + 1
    return min(k, energy.size)


def _gram(atoms: np.ndarray) -> np.ndarray:
    """(L, L) float64/complex128 Gram matrix A^H A, accumulated in chunks of rows."""
    wide = np.complex128 if np.iscomplexobj(atoms) else np.float64
    n_t = atoms.shape[1]
    gram = np.zeros((n_t, n_t), dtype=wide)
    for start in range(0, atoms.shape[0], _CHUNK_ROWS):
        block = np.asarray(atoms[start : start + _CHUNK_ROWS], dtype=wide)
        gram += block.conj().T @ block
    return gram


def svd_basis(
    atoms: np.ndarray, rank: int | None = None, energy: float | None = None
) -> SvdBasis:
    """Temporal SVD basis of a dictionary, truncated by rank or by kept energy.

    Uses the eigendecomposition of the L x L Gram matrix ``A^H A`` (accumulated in float64), which
    for K >> L (80,100 x 200) is far cheaper than an SVD of A and accurate for every component
    above ~1e-7 of the leading singular value.

    Parameters
    ----------
    atoms : np.ndarray
        (K, L) real or complex atoms; usually the *normalised* atoms
        (:meth:`mrfbook.physics.dictionary.Dictionary.normalised`), since matching uses those.
    rank : int, optional
        Number of components to keep, 1 <= rank <= min(K, L).
    energy : float, optional
        Keep the fewest components whose cumulative energy is >= ``energy`` (in (0, 1]).
        Exactly one of ``rank`` and ``energy`` must be given.

    Returns
    -------
    SvdBasis

    Explained in chapter 3, book/03_dictionary.md.
    """
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank (int) and energy (fraction in (0, 1])")
    a = np.asarray(atoms)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"atoms must be a non-empty 2-D (K, L) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
        raise ValueError(f"atoms must be numeric, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError("atoms must be finite (no NaN or inf)")
    k_atoms, n_t = a.shape
    n_sv = min(k_atoms, n_t)
    if rank is not None:
        if isinstance(rank, bool) or int(rank) != rank or not 1 <= int(rank) <= n_sv:
            raise ValueError(f"rank must be an integer in [1, min(K, L)] = [1, {n_sv}], got {rank!r}")
        rank = int(rank)

    eigval, eigvec = np.linalg.eigh(_gram(a))
    order = np.argsort(eigval)[::-1][:n_sv]
    eigval = np.clip(eigval[order], 0.0, None)
    eigvec = eigvec[:, order]
    singular_values = np.sqrt(eigval)
    if singular_values[0] == 0:
        raise ValueError("atoms are all zero: no subspace to find")
    cumulative = energy_curve(singular_values)
    if energy is not None:
        rank = rank_for_energy(singular_values, energy)

    vecs = eigvec[:, :rank]
    # deterministic signs: largest-magnitude entry of each column real and positive
    pivot = vecs[np.argmax(np.abs(vecs), axis=0), np.arange(rank)]
    vecs = vecs * (np.abs(pivot) / pivot)[None, :]
    out_dtype = np.complex64 if np.iscomplexobj(a) else np.float32
    return SvdBasis(
        basis=np.ascontiguousarray(vecs, dtype=out_dtype),
        singular_values=singular_values,
        energy=cumulative,
    )


def _basis_matrix(basis: SvdBasis | np.ndarray) -> np.ndarray:
    v = basis.basis if isinstance(basis, SvdBasis) else np.asarray(basis)
    if v.ndim != 2:
        raise ValueError(f"basis must be an SvdBasis or an (L, k) array, got shape {v.shape}")
    return v


def compress(x: np.ndarray, basis: SvdBasis | np.ndarray) -> np.ndarray:
    """Coefficients of signatures in the SVD basis: ``x @ conj(V)``.

    Parameters
    ----------
    x : np.ndarray
        (..., L) signatures (real or complex), typically (N, L) or the atoms themselves.
    basis : SvdBasis or np.ndarray
        The basis from :func:`svd_basis` (or its (L, k) matrix V).

    Returns
    -------
    np.ndarray
        (..., k) coefficients; for real x and basis, float32 if x is float32.
        Inner products are kept: ``compress(a) @ compress(b).conj().T ≈ a @ b.conj().T`` for
        signals in the basis' span.

    Explained in chapter 3, book/03_dictionary.md.
    """
    v = _basis_matrix(basis)
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] != v.shape[0]:
        raise ValueError(
            f"x must have L = {v.shape[0]} time points on its last axis, got shape {x.shape}"
        )
    return x @ (v.conj() if np.iscomplexobj(v) else v)


def reconstruct(z: np.ndarray, basis: SvdBasis | np.ndarray) -> np.ndarray:
    """Back from coefficients to time signatures: ``z @ V^T`` (the projection onto the span).

    Parameters
    ----------
    z : np.ndarray
        (..., k) coefficients from :func:`compress`.
    basis : SvdBasis or np.ndarray
        The same basis.

    Returns
    -------
    np.ndarray
        (..., L) signatures.

    Explained in chapter 3, book/03_dictionary.md.
    """
    v = _basis_matrix(basis)
    z = np.asarray(z)
    if z.ndim < 1 or z.shape[-1] != v.shape[1]:
        raise ValueError(f"z must have k = {v.shape[1]} coefficients on its last axis, got shape {z.shape}")
    return z @ v.T
