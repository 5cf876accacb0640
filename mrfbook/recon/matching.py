"""Dictionary matching: the classical signature-to-parameter map of MR fingerprinting.

Each measured signature ``x`` (length L, real or complex) is compared with every
dictionary atom ``d_k`` (real, simulated with PD = 1) by the normalised inner
product, and the best atom gives T1 and T2 through the look-up table::

    k* = argmax_k |<x, d_k>| / ||d_k||            (||x|| is the same for every k)
    correlation = |<x, d_k*>| / (||x|| ||d_k*||)   in [0, 1]
    PD = <d_k*, x> / ||d_k*||^2                    (least-squares scale of the atom)

For complex ``x`` the inner product is complex; PD is returned as its magnitude
``|<d, x>| / ||d||^2`` (the phase is the receive phase, not a tissue property).
For real ``x`` PD keeps its sign.

Speed. The brute-force search is one (N, K) matrix product plus an arg-max: for
16,384 signatures and 80,100 atoms that is 2.6e11 multiply-adds and a 5 GB score
matrix streamed through memory. :func:`match_signatures` gets the *same answer*
(the atom of the exhaustive float64 search in the full, uncompressed space) much
faster:

1. atoms and signatures are projected on the dictionary's leading SVD components
   (``rank``, McGivney et al. 2014). For a unit signature ``x`` and unit atom
   ``d`` the compressed score differs from the exact one by at most
   ``||x_perp|| * ||d_perp||`` (the parts outside the basis, Cauchy--Schwarz), so
   every compressed score comes with an interval that holds the exact score;
2. atoms that are neighbours on the parameter grid form a two-level tree of
   groups (about 8 x 8 and 2 x 2 grid points); each group stores its centroid
   ``c`` and radius ``r = max ||d - c||``, so ``|<x, c>| + r`` (plus the residual
   term) bounds the exact score of every member;
3. a compiled, parallel branch-and-bound (numba) scores the coarse centroids with
   one small matrix product, descends only into groups whose bound reaches the
   best *lower* end found so far, and keeps every atom whose interval does;
4. those few candidates are re-scored exactly (float64, full length L) and the
   best one wins (ties: the lower atom index, as ``argmax`` does).

The rank therefore trades speed only, never the answer. ``rank=None`` searches
the uncompressed signatures the same way.

What is matched. Before the search, the resolvability rule of
:func:`mrfbook.physics.noise.resolvable` (the one rule of the library) decides which signatures
carry enough signal: norm above ``min_snr`` (default 3) x the per-sample noise x sqrt(L), the
noise measured outside the dictionary's temporal subspace
(:func:`mrfbook.physics.noise.dictionary_subspace`) or given as ``error_level`` (e.g. by a
restoration), and above a round-off guard. The others are not matched: index -1, 0 in every map
(NaN is not used), ``resolvable`` and ``valid`` False.

Explained in chapter 4, book/04_matching.md.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple

import numba as nb
import numpy as np

from mrfbook.physics.noise import (
    DEFAULT_MIN_SNR,
    ZERO_TOL,  # noqa: F401 -- the round-off guard's home is physics.noise
    Resolvability,
    dictionary_subspace,
    resolvable,
)
from mrfbook.utils.checks import check_int

__all__ = [
    "DEFAULT_RANK",
    "MatchResult",
    "ParameterMaps",
    "match_signatures",
    "match_maps",
    "brute_force_match",
    "search_index",
    "SearchIndex",
]

#: Default number of SVD components used by :func:`match_signatures`.
DEFAULT_RANK = 24
#: Grid points per side of the coarse and fine groups of the search tree.
_COARSE_SIDE = 8
_FINE_SIDE = 2
#: Float32 rounding allowance on compressed scores (measured max error about 1.6e-6 for rank 24).
_SCORE_EPS = 1e-5
#: Safety margin added to group radii for float32 rounding of the scores.
_RADIUS_MARGIN = 1e-4


@dataclass
class MatchResult:
    """Per-signature result of dictionary matching.

    Attributes
    ----------
    t1_ms, t2_ms : numpy.ndarray
        (N,) float64 matched relaxation times in ms; 0 where not ``valid``.
    pd : numpy.ndarray
        (N,) float64 proton density ``<d, x>/||d||^2`` in the signal's units
        (magnitude for complex signatures); 0 where not ``valid``.
    index : numpy.ndarray
        (N,) int64 index of the matched atom in the dictionary; -1 where not ``valid``.
    correlation : numpy.ndarray
        (N,) float64 normalised correlation ``|<x, d>|/(||x|| ||d||)`` of the best
        atom in [0, 1] (computed with the uncompressed signature); 0 where not ``resolvable``.
    valid : numpy.ndarray
        (N,) bool: the signature could be resolved and, if ``min_correlation`` was
        given, matched at least that well.
    b1_scale : numpy.ndarray or None
        (N,) float64 matched flip-angle scale for a 3-parameter dictionary, else None.
    n_scored : numpy.ndarray or None
        (N,) int64 number of atoms whose score the search computed for each signature
        (the work it did; K for an exhaustive search); None from :func:`brute_force_match`.
    resolvable : numpy.ndarray or None
        (N,) bool: the signature passed the resolvability rule
        (:func:`mrfbook.physics.noise.resolvable`); the others hold 0 / -1 everywhere.
    resolvability : mrfbook.physics.noise.Resolvability or None
        The rule's numbers (noise level, error level, floor, min_snr) and the norms.

    Explained in chapter 4, book/04_matching.md.
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    pd: np.ndarray
    index: np.ndarray
    correlation: np.ndarray
    valid: np.ndarray
    b1_scale: np.ndarray | None = None
    n_scored: np.ndarray | None = None
    resolvable: np.ndarray | None = None
    resolvability: Resolvability | None = None

    def __len__(self) -> int:
        return int(self.index.size)


class _Maps(NamedTuple):
    t1_ms: np.ndarray
    t2_ms: np.ndarray
    pd: np.ndarray
    valid: np.ndarray


class ParameterMaps(_Maps):
    """Maps from :func:`match_maps`: unpacks as ``t1_ms, t2_ms, pd, valid``, each (H, W).

    Attributes
    ----------
    t1_ms, t2_ms : numpy.ndarray
        (H, W) float64 in ms; 0 where not ``valid``.
    pd : numpy.ndarray
        (H, W) float64 in signal units; 0 where not ``valid``.
    valid : numpy.ndarray
        (H, W) bool: in the mask, resolvable, and (with ``min_correlation``) matched well enough.
    resolvable : numpy.ndarray
        (H, W) bool: in the mask and resolvable (:func:`mrfbook.physics.noise.resolvable`); not
        part of the tuple.
    resolvability : mrfbook.physics.noise.Resolvability or None
        The rule's numbers over the matched pixels (its ``mask`` is per matched pixel, in
        row-major order of the mask); not part of the tuple.

    Explained in chapter 4, book/04_matching.md.
    """

    resolvable: np.ndarray | None = None
    resolvability: Resolvability | None = None

    def __new__(cls, t1_ms, t2_ms, pd, valid, resolvable=None, resolvability=None):
        """The four maps (the tuple), plus ``resolvable`` (default: ``valid``) and ``resolvability``."""
        self = super().__new__(cls, t1_ms, t2_ms, pd, valid)
        self.resolvable = np.asarray(valid, dtype=bool).copy() if resolvable is None else resolvable
        self.resolvability = resolvability
        return self

    def __reduce__(self):
        return (ParameterMaps, (*self, self.resolvable, self.resolvability))


@dataclass(frozen=True, eq=False)
class SearchIndex:
    """Precomputed data of the branch-and-bound search for one dictionary and rank.

    Atoms are stored group by group in a two-level tree: *coarse* groups (blocks of
    about 8 x 8 neighbouring grid points) made of *fine* groups (2 x 2 blocks).

    Attributes
    ----------
    basis : numpy.ndarray or None
        (L, k) float32 orthonormal temporal basis; None for the uncompressed search (k = L).
    atoms : numpy.ndarray
        (K, k) float32 unit-norm atoms in the search space, in tree order.
    order : numpy.ndarray
        (K,) int64: ``atoms[j]`` is dictionary atom ``order[j]``.
    fine_start : numpy.ndarray
        (F + 1,) int64: fine group f holds ``atoms[fine_start[f]:fine_start[f + 1]]``.
    fine_centroids, fine_radii, fine_residual : numpy.ndarray
        (F, k) float32 mean of each fine group's atoms; (F,) float32 largest distance
        ``||atom - centroid||`` in the group plus a rounding margin; (F,) float32 largest
        ``residual`` in the group.
    coarse_start : numpy.ndarray
        (G + 1,) int64: coarse group g holds fine groups ``coarse_start[g]:coarse_start[g + 1]``.
    coarse_centroids, coarse_radii, coarse_residual : numpy.ndarray
        As for the fine groups (over all the atoms of each coarse group).
    residual : numpy.ndarray
        (K,) float32 norm of the part of each unit atom outside the basis' span, tree
        order (0 if uncompressed); bounds the error of a compressed score.
    inv_norm : numpy.ndarray
        (K,) float64 ``1 / ||atom||`` of the raw atoms in dictionary order (0 for a zero atom).

    Explained in chapter 4, book/04_matching.md.
    """

    basis: np.ndarray | None
    atoms: np.ndarray
    order: np.ndarray
    fine_start: np.ndarray
    fine_centroids: np.ndarray
    fine_radii: np.ndarray
    fine_residual: np.ndarray
    coarse_start: np.ndarray
    coarse_centroids: np.ndarray
    coarse_radii: np.ndarray
    coarse_residual: np.ndarray
    residual: np.ndarray
    inv_norm: np.ndarray

    @property
    def rank(self) -> int | None:
        """Number of SVD components, or None for the uncompressed search."""
        return None if self.basis is None else int(self.basis.shape[1])

    @property
    def n_groups(self) -> tuple[int, int]:
        """(coarse, fine) numbers of groups."""
        return int(self.coarse_radii.size), int(self.fine_radii.size)


# one cache per Dictionary object (weak: it goes away with the dictionary)
_INDEX_CACHE: "weakref.WeakKeyDictionary[Any, dict[int | None, SearchIndex]]" = weakref.WeakKeyDictionary()


def _check_dictionary(dictionary) -> None:
    for attr in ("atoms", "t1_ms", "t2_ms", "normalised", "norms"):
        # look on the class first: hasattr on an instance would evaluate the ``norms`` property
        if not (hasattr(type(dictionary), attr) or attr in getattr(dictionary, "__dict__", {})):
            raise ValueError(
                f"dictionary must be an mrfbook.physics.dictionary.Dictionary (missing {attr!r}), "
                f"got {type(dictionary).__name__}"
            )


def _block_ids(dictionary, side: int) -> np.ndarray:
    """Label per atom: blocks of ``side`` neighbouring values along each parameter axis.

    Works on the ranks of the parameter values, so it suits any grid; scattered
    (non-grid) parameters are binned by quantiles instead.
    """
    cols = [np.asarray(dictionary.t1_ms), np.asarray(dictionary.t2_ms)]
    b1 = getattr(dictionary, "b1_scale", None)
    if b1 is not None:
        cols.append(np.asarray(b1))
    n = cols[0].size
    gid = np.zeros(n, dtype=np.int64)
    for c in cols:
        values = np.unique(c)
        rank = np.searchsorted(values, c)
        n_vals = values.size
        if n_vals > 0.5 * n:  # scattered values: use quantile bins of about grid-like width
            n_vals = max(1, int(round(n ** (1.0 / len(cols)))))
            rank = rank * n_vals // values.size
        block = rank // side
        gid = gid * (int(block.max()) + 1) + block
    return gid


def _groups(coords: np.ndarray, starts: np.ndarray, residual: np.ndarray):
    """Centroids (G, k), radii (G,) and largest residual (G,), float32, of contiguous groups.

    The radius is ``max ||atom - centroid||`` (plus a rounding margin). For a unit signature
    ``x`` with norm ``e_x`` outside the basis, ``|<Px, c>| + radius + e_x * max residual``
    bounds the *exact* score of every member (Cauchy--Schwarz twice).
    """
    sizes = np.diff(np.r_[starts, coords.shape[0]])
    centroids = np.add.reduceat(coords.astype(np.float64), starts, axis=0) / sizes[:, None]
    member = np.repeat(np.arange(sizes.size), sizes)
    dist = np.linalg.norm(coords - centroids[member], axis=1)
    radii = np.maximum.reduceat(dist, starts) + _RADIUS_MARGIN
    res = np.maximum.reduceat(residual, starts)
    return (
        np.ascontiguousarray(centroids, dtype=np.float32),
        radii.astype(np.float32),
        res.astype(np.float32),
    )


def _outside_norm(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(n,) float64 norm of each row of ``vectors`` outside span(basis), computed in float64."""
    v = np.asarray(vectors, dtype=np.float64)
    b = np.asarray(basis, dtype=np.float64)
    kept = v @ b
    total = np.einsum("nl,nl->n", v, v)
    return np.sqrt(np.clip(total - np.einsum("nk,nk->n", kept, kept), 0.0, None))


def search_index(dictionary, rank: int | None = DEFAULT_RANK) -> SearchIndex:
    """Build (or fetch from the per-dictionary cache) the search data for ``rank``.

    Parameters
    ----------
    dictionary : mrfbook.physics.dictionary.Dictionary
        The dictionary; treated as read-only (the cache is keyed by the object).
    rank : int or None
        SVD components kept, in [1, L]; None for the uncompressed search.

    Returns
    -------
    SearchIndex

    Explained in chapter 4, book/04_matching.md.
    """
    _check_dictionary(dictionary)
    n_t = int(np.asarray(dictionary.atoms).shape[1])
    rank = check_int("rank", rank, 1, n_t, allow_none=True)
    per_dict = _INDEX_CACHE.setdefault(dictionary, {})
    if rank in per_dict:
        return per_dict[rank]

    unit = np.asarray(dictionary.normalised(), dtype=np.float32)
    norms = np.asarray(dictionary.norms, dtype=np.float64)
    if rank is None:
        basis = None
        coords = np.array(unit, dtype=np.float32)
        residual = np.zeros(unit.shape[0])
    else:
        from mrfbook.physics.compression import svd_basis

        basis = np.ascontiguousarray(svd_basis(unit, rank=rank).basis, dtype=np.float32)
        coords = unit @ basis
        residual = _outside_norm(unit, basis)

    coarse = _block_ids(dictionary, _COARSE_SIDE)
    fine = _block_ids(dictionary, _FINE_SIDE)
    order = np.lexsort((fine, coarse)).astype(np.int64)
    coarse, fine = coarse[order], fine[order]
    new_fine = np.r_[True, (fine[1:] != fine[:-1]) | (coarse[1:] != coarse[:-1])]
    fine_starts = np.flatnonzero(new_fine)
    coarse_of_fine = coarse[fine_starts]
    coarse_fine_starts = np.flatnonzero(np.r_[True, coarse_of_fine[1:] != coarse_of_fine[:-1]])
    atoms = np.ascontiguousarray(coords[order])
    residual = residual[order]
    fine_c, fine_r, fine_res = _groups(atoms, fine_starts, residual)
    coarse_c, coarse_r, coarse_res = _groups(atoms, fine_starts[coarse_fine_starts], residual)
    index = SearchIndex(
        basis=basis,
        atoms=atoms,
        order=order,
        fine_start=np.r_[fine_starts, order.size].astype(np.int64),
        fine_centroids=fine_c,
        fine_radii=fine_r,
        fine_residual=fine_res,
        coarse_start=np.r_[coarse_fine_starts, fine_starts.size].astype(np.int64),
        coarse_centroids=coarse_c,
        coarse_radii=coarse_r,
        coarse_residual=coarse_res,
        residual=residual.astype(np.float32),
        inv_norm=np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0),
    )
    per_dict[rank] = index
    return index


@nb.njit(inline="always", fastmath=True)
def _score(xr, xi, i, vecs, row, cplx):  # pragma: no cover - compiled
    """|<x_i, vecs[row]>| for real (xr) or complex (xr + 1j xi) signatures, float32 sums."""
    sr = np.float32(0.0)
    if cplx:
        si = np.float32(0.0)
        for j in range(vecs.shape[1]):
            sr += xr[i, j] * vecs[row, j]
            si += xi[i, j] * vecs[row, j]
        return np.sqrt(sr * sr + si * si)
    for j in range(vecs.shape[1]):
        sr += xr[i, j] * vecs[row, j]
    return abs(sr)


@nb.njit(fastmath=False, cache=True, nogil=True)
def _rescore(full_r, full_i, i, cplx, raw_atoms, inv_norm, order, cand, n_cand, best_atom, best_v):  # pragma: no cover
    """Exact float64 scores of buffered candidates; returns the updated (best atom, best score).

    Ties go to the lower atom index, as ``argmax`` over the dictionary would.
    """
    for c in range(n_cand):
        atom = order[cand[c]]
        sr = 0.0
        si = 0.0
        for j in range(raw_atoms.shape[1]):
            sr += full_r[i, j] * raw_atoms[atom, j]
            if cplx:
                si += full_i[i, j] * raw_atoms[atom, j]
        v = np.sqrt(sr * sr + si * si) * inv_norm[atom]
        if v > best_v or (v == best_v and atom < best_atom):
            best_v = v
            best_atom = atom
    return best_atom, best_v


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _search(
    xr, xi, cplx, ex, bound,
    atoms, atom_res, fine_start, fine_c, fine_r, fine_res, coarse_start,
    full_r, full_i, raw_atoms, inv_norm, order,
    out_atom, out_scored,
):  # pragma: no cover - compiled
    """Branch and bound in the compressed space with exact float64 re-scoring.

    xr, xi: (n, k) float32 compressed unit signatures; ex: (n,) float32 norm of each
    signature outside the basis' span; bound: (n, G) float32 upper bounds of the coarse
    groups; atom_res: (K,) float32 norm of each unit atom outside the span (tree order);
    full_r, full_i: (n, L) float64 unit signatures; raw_atoms (K, L) float32 with
    inv_norm (K,) float64 in dictionary order; order maps tree position -> atom.

    The exact score of atom a lies in [s_a - ex * res_a, s_a + ex * res_a] (plus a float32
    rounding allowance). ``low`` is a proven lower bound of the best exact score: the best
    lower end so far, raised to the exact score of the best re-scored atom. Groups and
    atoms whose upper end is below ``low`` cannot win; the others are buffered and
    re-scored exactly whenever the buffer fills, and at the end.
    """
    n = xr.shape[0]
    n_coarse = bound.shape[1]
    cap = 64
    eps = np.float32(_SCORE_EPS)
    for i in nb.prange(n):
        cand = np.empty(cap, dtype=np.int64)
        cand_hi = np.empty(cap, dtype=np.float32)
        n_cand = 0
        scored = 0
        best_atom = -1
        best_v = -1.0
        e = ex[i]
        g0 = 0
        for g in range(1, n_coarse):
            if bound[i, g] > bound[i, g0]:
                g0 = g
        low = np.float32(-1.0)
        for sweep in range(n_coarse + 1):
            g = g0 if sweep == 0 else sweep - 1
            if sweep > 0 and (g == g0 or bound[i, g] < low):
                continue
            for f in range(coarse_start[g], coarse_start[g + 1]):
                if _score(xr, xi, i, fine_c, f, cplx) + fine_r[f] + e * fine_res[f] < low:
                    continue
                scored += fine_start[f + 1] - fine_start[f]
                for a in range(fine_start[f], fine_start[f + 1]):
                    s = _score(xr, xi, i, atoms, a, cplx)
                    half = e * atom_res[a] + eps
                    hi = s + half
                    if hi < low:
                        continue
                    if s - half > low:
                        low = s - half
                    if n_cand == cap:  # drop buffered atoms that can no longer win
                        m = 0
                        for c in range(n_cand):
                            if cand_hi[c] >= low:
                                cand[m] = cand[c]
                                cand_hi[m] = cand_hi[c]
                                m += 1
                        n_cand = m
                    if n_cand == cap:  # still full: settle them exactly, raising ``low``
                        best_atom, best_v = _rescore(full_r, full_i, i, cplx, raw_atoms, inv_norm,
                                                     order, cand, n_cand, best_atom, best_v)
                        n_cand = 0
                        if best_v > low:
                            low = np.float32(best_v) - eps
                        if hi < low:
                            continue
                    cand[n_cand] = a
                    cand_hi[n_cand] = hi
                    n_cand += 1
        m = 0
        for c in range(n_cand):
            if cand_hi[c] >= low:
                cand[m] = cand[c]
                m += 1
        best_atom, best_v = _rescore(full_r, full_i, i, cplx, raw_atoms, inv_norm,
                                     order, cand, m, best_atom, best_v)
        out_atom[i] = best_atom
        out_scored[i] = scored


def _check_signatures(signatures, n_timepoints: int) -> np.ndarray:
    x = np.asarray(signatures)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating)
            or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"signatures must be a real or complex numeric array, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != n_timepoints:
        raise ValueError(
            f"signatures must have shape (N, L) with L = {n_timepoints} (the dictionary's time "
            f"points), got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("signatures must be finite (no NaN or inf)")
    return x


def _check_common(chunk_size, min_correlation) -> tuple[int, float | None]:
    chunk_size = check_int("chunk_size", chunk_size, 1)
    if min_correlation is not None:
        if not np.isfinite(min_correlation) or not 0.0 <= float(min_correlation) <= 1.0:
            raise ValueError(f"min_correlation must be None or in [0, 1], got {min_correlation!r}")
        min_correlation = float(min_correlation)
    return int(chunk_size), min_correlation


def _rule(x: np.ndarray, dictionary, min_snr, error_level, noise_level) -> Resolvability:
    """The resolvability rule over the signatures of the call (basis: the dictionary's subspace)."""
    from mrfbook.physics.noise import check_min_snr

    measure = check_min_snr(min_snr) > 0 and noise_level is None
    return resolvable(x, dictionary_subspace(dictionary) if measure else None, min_snr=min_snr,
                      error_level=error_level, noise_level=noise_level)


def _finish(x, dictionary, index, rule: Resolvability, min_correlation) -> MatchResult:
    """Exact correlation and PD of the chosen atoms in the uncompressed space."""
    signal, norms = rule.mask, rule.norms
    n = x.shape[0]
    atoms = np.asarray(dictionary.atoms)
    t1 = np.zeros(n)
    t2 = np.zeros(n)
    pd = np.zeros(n)
    corr = np.zeros(n)
    b1_all = getattr(dictionary, "b1_scale", None)
    b1 = np.zeros(n) if b1_all is not None else None
    sel = np.flatnonzero(signal)
    if sel.size:
        d = atoms[index[sel]].astype(np.float64)
        xs = x[sel]
        xs = xs.astype(np.complex128) if np.iscomplexobj(xs) else xs.astype(np.float64)
        inner = np.einsum("nl,nl->n", d, xs)
        dnorm2 = np.einsum("nl,nl->n", d, d)
        corr[sel] = np.abs(inner) / (np.sqrt(dnorm2) * norms[sel])
        p = inner / dnorm2
        pd[sel] = np.abs(p) if np.iscomplexobj(p) else p
        t1[sel] = np.asarray(dictionary.t1_ms)[index[sel]]
        t2[sel] = np.asarray(dictionary.t2_ms)[index[sel]]
        if b1 is not None:
            b1[sel] = np.asarray(b1_all)[index[sel]]
    valid = signal.copy()
    if min_correlation is not None:
        valid &= corr >= min_correlation
    index = np.where(valid, index, -1).astype(np.int64)
    for a in (t1, t2, pd) + ((b1,) if b1 is not None else ()):
        a[~valid] = 0.0
    return MatchResult(t1, t2, pd, index, np.clip(corr, 0.0, 1.0), valid, b1, None, signal.copy(), rule)


def _progress(iterable, total: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="chunk")


def match_signatures(
    signatures: np.ndarray,
    dictionary,
    *,
    rank: int | None = DEFAULT_RANK,
    chunk_size: int = 4096,
    min_correlation: float | None = None,
    min_snr: float = DEFAULT_MIN_SNR,
    error_level: float | None = None,
    noise_level: float | None = None,
    progress: bool = False,
) -> MatchResult:
    """Match signatures to dictionary atoms by the normalised inner product (fast, exact search).

    Parameters
    ----------
    signatures : numpy.ndarray
        (N, L) real or complex signatures, finite; L = ``dictionary.n_timepoints``.
        Any scale (PD is estimated).
    dictionary : mrfbook.physics.dictionary.Dictionary
        Real atoms (K, L) simulated with PD = 1 and their T1, T2 (ms).
    rank : int or None
        SVD components for the search, in [1, L]; default :data:`DEFAULT_RANK`.
        None searches the uncompressed signatures. It changes the speed, not the
        matched atom (see the module notes). The basis and the search groups are
        computed once per dictionary and rank (about 1-2 s for 80,100 atoms), then cached.
    chunk_size : int
        Signatures per block (>= 1); memory grows as chunk_size x groups x 4 bytes.
    min_correlation : float, optional
        In [0, 1]: matches with a lower correlation are flagged invalid.
    min_snr : float
        Resolvability rule (:func:`mrfbook.physics.noise.resolvable`), finite, >= 0: a
        signature is matched only if its norm exceeds ``min_snr`` x the per-sample noise
        level x sqrt(L). Default 3; 0 keeps only the round-off guard (norm > 1e-6 x the
        largest norm of the call, and > 0).
    error_level : float, optional
        External per-sample error of the signatures (signal units, >= 0), e.g. a
        restoration's ``extra["error_level"]``; the rule uses the larger of it and the
        noise measured outside the dictionary's subspace.
    noise_level : float, optional
        Use this per-sample noise level instead of measuring it on these signatures.
    progress : bool
        Show a progress bar over chunks.

    Returns
    -------
    MatchResult
        Signatures that cannot be resolved are not matched: index -1,
        T1 = T2 = PD = correlation = 0, ``valid`` and ``resolvable`` False.

    Explained in chapter 4, book/04_matching.md.
    """
    _check_dictionary(dictionary)
    n_t = int(np.asarray(dictionary.atoms).shape[1])
    x = _check_signatures(signatures, n_t)
    rank = check_int("rank", rank, 1, n_t, allow_none=True)
    chunk_size, min_correlation = _check_common(chunk_size, min_correlation)

    rule = _rule(x, dictionary, min_snr, error_level, noise_level)
    idx = search_index(dictionary, rank)
    norms = rule.norms
    best = np.full(x.shape[0], -1, dtype=np.int64)
    scored = np.zeros(x.shape[0], dtype=np.int64)
    rows = np.flatnonzero(rule.mask)
    cplx = bool(np.iscomplexobj(x))
    raw = np.ascontiguousarray(np.asarray(dictionary.atoms), dtype=np.float32)
    inv_norm = idx.inv_norm
    dummy32, dummy64 = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float64)
    n_chunks = -(-rows.size // chunk_size)
    for c in _progress(range(n_chunks), n_chunks, progress, "matching"):
        r = rows[c * chunk_size : (c + 1) * chunk_size]
        unit = x[r] / norms[r, None]  # float64 / complex128, unit L2 norm
        full = [np.ascontiguousarray(unit.real, dtype=np.float64)]
        if cplx:
            full.append(np.ascontiguousarray(unit.imag, dtype=np.float64))
        if idx.basis is None:
            parts = [p.astype(np.float32) for p in full]
            outside = np.zeros(r.size)
        else:
            parts = [np.ascontiguousarray(p.astype(np.float32) @ idx.basis) for p in full]
            outside = np.sqrt(sum(_outside_norm(p, idx.basis) ** 2 for p in full))
        outside = outside.astype(np.float32)
        proj = [p @ idx.coarse_centroids.T for p in parts]
        bound = np.abs(proj[0]) if not cplx else np.sqrt(proj[0] ** 2 + proj[1] ** 2)
        bound += idx.coarse_radii[None, :] + outside[:, None] * idx.coarse_residual[None, :]
        out = np.empty(r.size, dtype=np.int64)
        out_scored = np.empty(r.size, dtype=np.int64)
        _search(
            parts[0], parts[1] if cplx else dummy32, cplx, outside, bound,
            idx.atoms, idx.residual, idx.fine_start, idx.fine_centroids, idx.fine_radii,
            idx.fine_residual, idx.coarse_start,
            full[0], full[1] if cplx else dummy64, raw, inv_norm, idx.order,
            out, out_scored,
        )
        scored[r] = out_scored
        best[r] = out
    result = _finish(x, dictionary, best, rule, min_correlation)
    result.n_scored = scored
    return result


def brute_force_match(
    signatures: np.ndarray,
    dictionary,
    *,
    chunk_size: int = 1024,
    min_correlation: float | None = None,
    min_snr: float = DEFAULT_MIN_SNR,
    error_level: float | None = None,
    noise_level: float | None = None,
    dtype: type = np.float32,
) -> MatchResult:
    """Reference matcher: score every atom with one BLAS product per chunk, then arg-max.

    Same inputs (the resolvability rule included: ``min_snr``, ``error_level``,
    ``noise_level``) and result as :func:`match_signatures` (uncompressed, exact up to
    ``dtype`` rounding); used as the baseline in benchmarks and tests.

    Explained in chapter 4, book/04_matching.md.
    """
    _check_dictionary(dictionary)
    n_t = int(np.asarray(dictionary.atoms).shape[1])
    x = _check_signatures(signatures, n_t)
    chunk_size, min_correlation = _check_common(chunk_size, min_correlation)
    if np.dtype(dtype) == np.float64:  # exact reference: normalise the raw atoms in float64
        norms64 = np.asarray(dictionary.norms, dtype=np.float64)
        inv = np.divide(1.0, norms64, out=np.zeros_like(norms64), where=norms64 > 0)
        unit_t = np.ascontiguousarray((np.asarray(dictionary.atoms, dtype=np.float64) * inv[:, None]).T)
    else:
        unit_t = np.ascontiguousarray(np.asarray(dictionary.normalised(), dtype=dtype).T)
    rule = _rule(x, dictionary, min_snr, error_level, noise_level)
    best = np.full(x.shape[0], -1, dtype=np.int64)
    rows = np.flatnonzero(rule.mask)
    for start in range(0, rows.size, chunk_size):
        r = rows[start : start + chunk_size]
        xc = x[r]
        if np.iscomplexobj(xc):
            s = xc.real.astype(dtype) @ unit_t
            s_imag = xc.imag.astype(dtype) @ unit_t
            np.multiply(s, s, out=s)
            np.multiply(s_imag, s_imag, out=s_imag)
            s += s_imag
        else:
            s = xc.astype(dtype) @ unit_t
            np.abs(s, out=s)
        best[r] = np.argmax(s, axis=1)
    return _finish(x, dictionary, best, rule, min_correlation)


def match_maps(
    stack: np.ndarray,
    dictionary,
    *,
    mask: np.ndarray | None = None,
    **kwargs,
) -> ParameterMaps:
    """Match an image stack pixel by pixel and return parameter maps.

    Parameters
    ----------
    stack : numpy.ndarray
        (H, W, L) real or complex image series.
    dictionary : mrfbook.physics.dictionary.Dictionary
    mask : numpy.ndarray, optional
        (H, W) bool; only these pixels are matched (others are invalid, 0). The
        resolvability rule is applied over them (its noise level is measured on them).
    **kwargs
        Passed to :func:`match_signatures` (rank, chunk_size, min_correlation, min_snr,
        error_level, noise_level, progress).

    Returns
    -------
    ParameterMaps
        Unpacks as (t1_ms, t2_ms, pd, valid), each (H, W); float64 maps in ms / signal
        units, 0 where not valid (outside the mask, not resolvable, or below
        ``min_correlation``); ``.resolvable`` (H, W) bool and ``.resolvability`` the rule.

    Explained in chapter 4, book/04_matching.md.
    """
    s = np.asarray(stack)
    if s.ndim != 3:
        raise ValueError(f"stack must have shape (H, W, L), got shape {s.shape}")
    h, w, n_t = s.shape
    flat = s.reshape(h * w, n_t)
    if mask is None:
        res = match_signatures(flat, dictionary, **kwargs)
        maps = [a.reshape(h, w) for a in (res.t1_ms, res.t2_ms, res.pd, res.valid, res.resolvable)]
        return ParameterMaps(*maps, res.resolvability)
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != (h, w):
        raise ValueError(f"mask must be a bool array of shape (H, W) = {(h, w)}, got {m.dtype} {m.shape}")
    res = match_signatures(flat[m.ravel()], dictionary, **kwargs)
    out = [np.zeros((h, w)), np.zeros((h, w)), np.zeros((h, w)), np.zeros((h, w), dtype=bool),
           np.zeros((h, w), dtype=bool)]
    for o, a in zip(out, (res.t1_ms, res.t2_ms, res.pd, res.valid, res.resolvable)):
        o[m] = a
    return ParameterMaps(*out, res.resolvability)
