"""The restoration weight chosen from the data: k-space hold-out cross-validation.

The low-rank (:mod:`mrfbook.recon.lowrank`) and FLOR (:mod:`mrfbook.recon.flor`) restorations
have one weight, ``lam`` (normalised units of :mod:`mrfbook.recon.lowrank`). Its best value
depends on the data -- the paper's ``lam = 5`` suits neither every phantom nor every sampling
ratio nor every noise level -- so :func:`restore` chooses it by hold-out cross-validation in
k-space: the recipe of Ward ("Compressed sensing with cross validation", IEEE Trans. Inf. Theory
55(12):5773-5782, 2009), with the measured k-space split into disjoint sets as in Yaman et al.
("Self-supervised learning of physics-guided reconstruction neural networks without fully sampled
reference data", Magn. Reson. Med. 84(6):3172-3191, 2020):

1. hold out a random fraction (default 10 %) of the measured samples of every frame (seeded;
   the rule is below);
2. restore from the rest for a log-spaced set of candidate weights, from the largest down,
   each warm-started from the previous candidate's solution (the regularisation path of
   Soft-Impute, Mazumder, Hastie & Tibshirani, JMLR 11:2287-2322, 2010);
3. score each candidate by the RMS error of its k-space at the held-out samples (input units,
   per held-out complex sample): data the restoration never saw;
4. keep the largest weight whose score is within one standard error of the best (the
   one-standard-error rule of cross-validation, Breiman et al. 1984, Hastie, Tibshirani &
   Friedman, *The Elements of Statistical Learning*, 2nd ed., section 7.10; the standard error
   is that of the paired per-unit differences from the best, since every candidate is scored
   on the same held-out units). Before that, a best weight at an end of the grid extends the
   grid that way (up to ``MAX_EXTENSION`` steps), and the parabola in ``log(lam)`` through the
   best three refines it (the refined weight is restored and scored like the others) when it
   promises more than the candidates' standard error;
5. restore from all samples at the chosen weight, warm-started from its hold-out solution.

**What is held out.** Whole acquisition units: for line masks
(:attr:`mrfbook.recon.acquisition.UndersampledFourier.line_masks`) whole phase-encode lines of a
frame, otherwise single k-space points. Every frame gives up ``holdout_fraction`` of its measured
units (counts dithered across frames so that the total is that fraction of all measured units to
within one), drawn uniformly among its measured units, so the reduced acquisition keeps the
masks' variable density at a slightly lower rate. The k-space centre (the line ``k_y = 0``, or
the DC point) is never held out: the masks sample it in every frame with probability one, so it is
not a random sample of the acquisition; it carries most of each frame's energy (a held-out centre
would dominate the score with an error no prior can undo); and keeping it keeps the data scale
``s`` -- the largest singular value of the zero-filled stack, which the centre sets -- the same for
the reduced and the full data, so a weight means the same thing on both. ``s`` is computed once,
on all samples, and used throughout.

**The default grid** is 9 weights log-spaced over [0.05, 20] (a factor 2.11 apart), symmetric in
``log`` around ``lam = 1``, wide enough to hold the weights chosen on every case measured (from
about 0.005 for noiseless data, after extension, to about 10 with 10 % noise), and not centred on
any of them by construction. Since the weights are tried from the largest down and the hold-out
error is, in practice, a single valley, the search stops once the error has risen for two
candidates in a row past its minimum, and a candidate whose error, already above the best one's,
rises for three iterations in a row is abandoned (``WeightChoice.stopped_early``): with noise, the
small weights (high-rank, slow iterates that fit the noise) are not run to convergence.

**Speed.** Every restoration here is FISTA with adaptive restart on the factored k-space engine
of :mod:`mrfbook.recon.solvers`, with blocks of alternating least squares on the low-rank factors
(``als=True``), which settle in a few sweeps the poorly sampled directions proximal gradient
creeps along, and a cold start follows a short path of weights (``PATH_START``, ``PATH_STEP``).
At 128 x 128 x 200, 15 % line masks, no noise (benchmarks/bench_restoration.py, medians of 3):
``restore(lam=5.0)`` 0.28 s against 4.2 s for the old dense FISTA, at the same NRMSE (0.0381
against 0.0382); ``restore()`` 3.9 s end to end (search 3.0 s), NRMSE 0.0053.

**How good the choice is** (scripts/weight_choice_study.py, results in scripts/results/: brain,
head and Shepp-Logan phantoms at 10, 15 and 25 % line masks, noiseless, against a 13-weight sweep
from 0.002 to 20, every tissue pixel mapped by matching): the chosen weight's T1 and T2 SNR are
within 0.43 dB of the sweep's best in 7 of the 9 cases. In the other two (head 15 %, Shepp-Logan
10 %) T1 is best at the largest weight and T2 at the smallest, so no single weight comes within
0.5 dB of both, and no weight beats the chosen one by 0.5 dB in both; there the T1 score is set by
about a hundred edge pixels whose signal is below the restoration's local error, which every weight
maps wrongly.

**The error level.** The chosen candidate's hold-out RMS error estimates the restored stack's RMS
error per complex sample (equivalently per pixel and frame, the transform being unitary), in the
input's units; :func:`restore` stores it as ``extra["error_level"]`` (the command line uses it as
the error floor of the restored stack). It is biased both ways -- it includes the noise of the
held-out samples, is measured on the reduced data (a slightly worse restoration), and samples
k-space with the masks' density, where the error is below that of the rarely sampled outer lines
-- and was within a factor of 3 of the true error in the cases measured when this rule was set
(0.34 to 2.7). It can fall further short: on the head phantom at 15 % line masks, noiseless, the
true RMS error over the image is about 6 times the estimate (chapter 11, book/11_real_inputs.md).

Explained in chapter 5, book/05_undersampling.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrfbook.recon.acquisition import UndersampledFourier
from mrfbook.recon.lowrank import data_scale
from mrfbook.recon.solvers import LowRankProx, RestorationResult, SampleMisfit, check_kspace, proximal_gradient, sampled_rms
from mrfbook.utils.checks import check_int, check_nonnegative
from mrfbook.utils.timing import Stopwatch

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_MAX_ITER",
    "DEFAULT_TOL",
    "CONTINUATION",
    "WeightChoice",
    "holdout_split",
    "choose_weight",
    "restore",
]

#: Candidate weights (normalised units of :mod:`mrfbook.recon.lowrank`): 9 values log-spaced
#: over [0.05, 20], symmetric in log around 1.
DEFAULT_CANDIDATES: tuple[float, ...] = tuple(float(v) for v in np.geomspace(0.05, 20.0, 9))

#: Default iteration cap of every restoration :func:`restore` and :func:`choose_weight` run.
DEFAULT_MAX_ITER: int = 300

#: Default relative-change tolerance of those restorations (see :func:`restore`).
DEFAULT_TOL: float = 1e-4

#: A restoration has converged once its relative change stayed below ``tol`` this many
#: iterations in a row.
PATIENCE_ITERS: int = 3

#: A cold start reaches small weights through stages: from this weight down, a factor
#: ``PATH_STEP`` apart (see ``_restore_at``).
PATH_START: float = 2.0
PATH_STEP: float = 4.0

#: Continuation factor of a cold start (:func:`mrfbook.recon.lowrank.lowrank_restore`).
CONTINUATION: float = 0.5

#: Grid steps added beyond an end of the grid when the best weight sits there.
MAX_EXTENSION: int = 3

#: The search stops after this many candidates in a row scored worse than their predecessor
#: past the minimum.
PATIENCE: int = 2

#: A candidate is abandoned once its hold-out error, above the best candidate's, has risen this
#: many iterations in a row.
ABORT_AFTER: int = 3

_METHODS = ("lowrank", "flor")


@dataclass
class WeightChoice:
    """The weight :func:`choose_weight` picked and the evidence: every candidate and its hold-out error.

    Attributes
    ----------
    lam : float
        Chosen weight, normalised units of :mod:`mrfbook.recon.lowrank`.
    candidates : numpy.ndarray
        (K,) float64, the weights tried, in the order tried (the grid from the largest down,
        possibly extended, then the parabola's refinement if it was tried).
    holdout_error : numpy.ndarray
        (K,) float64, RMS error per held-out complex k-space sample of each candidate's
        restoration from the reduced data, in the input's units.
    holdout_fraction : float
        Fraction of each frame's measured units held out.
    n_holdout : int
        Number of held-out complex k-space samples.
    seed : int
        Seed of the hold-out draw.
    iterations : numpy.ndarray
        (K,) int64, iterations of each candidate's restoration.
    seconds : float
        Wall time of the search (split, candidates and refinement), seconds.
    method : str
        "k-space hold-out".
    restoration : str
        The restoration the weight is for: "lowrank" or "flor".
    stopped_early : numpy.ndarray or None
        (K,) bool: candidates abandoned before convergence because their hold-out error,
        already above the best candidate's, kept rising (their error is then a lower bound).
    holdout_se : numpy.ndarray or None
        (K,) float64, input units: how far above the smallest hold-out error each candidate's
        may lie and still count as tied with it -- one standard error of the paired per-unit
        differences (held-out lines or points) from the best candidate, expressed on the RMS
        scale (0 for the best itself). The weight chosen is the largest tied one.

    Explained in chapter 5, book/05_undersampling.md.
    """

    lam: float
    candidates: np.ndarray
    holdout_error: np.ndarray
    holdout_fraction: float
    n_holdout: int
    seed: int
    iterations: np.ndarray
    seconds: float
    method: str = "k-space hold-out"
    restoration: str = "lowrank"
    stopped_early: np.ndarray | None = None
    holdout_se: np.ndarray | None = None

    @property
    def error_level(self) -> float:
        """Hold-out RMS error per sample of the chosen weight (input units)."""
        return float(self.holdout_error[int(np.flatnonzero(self.candidates == self.lam)[0])])


# ---------------------------------------------------------------------------
# the hold-out split
# ---------------------------------------------------------------------------


def holdout_split(op: UndersampledFourier, holdout_fraction: float = 0.1,
                  seed: int = 0) -> tuple[UndersampledFourier, UndersampledFourier]:
    """Split an operator's samples into the kept and the held-out ones (rule: module docstring).

    Parameters
    ----------
    op : mrfbook.recon.acquisition.UndersampledFourier
        The acquisition.
    holdout_fraction : float
        Fraction in (0, 0.5] of each frame's measured units (whole k_y lines for line masks,
        points otherwise) to hold out; the k-space centre is never held out.
    seed : int
        Seed of the ``numpy.random.default_rng`` that draws the held-out units.

    Returns
    -------
    (UndersampledFourier, UndersampledFourier)
        The reduced operator (the samples kept) and the held-out operator (the samples held
        out); their masks are disjoint and their union is ``op.masks``.

    Raises
    ------
    ValueError
        ``op`` not an operator, ``holdout_fraction`` outside (0, 0.5], a bad ``seed``, or no
        sample to hold out (every frame measures only its centre).

    Explained in chapter 5, book/05_undersampling.md.
    """
    if not isinstance(op, UndersampledFourier):
        raise ValueError(f"op must be an mrfbook.recon.acquisition.UndersampledFourier, got {type(op).__name__}")
    fraction = _check_fraction(holdout_fraction)
    seed = check_int("seed", seed, 0)
    masks = op.masks
    n_t, height, width = masks.shape
    cy, cx = height // 2, width // 2
    if op.line_masks:
        units = masks[:, :, 0]  # (L, H): line k_y of frame i measured
        centre = np.zeros(height, bool)
        centre[cy] = True
    else:
        units = masks.reshape(n_t, -1)  # (L, H W)
        centre = np.zeros(height * width, bool)
        centre[cy * width + cx] = True
    measured = units.sum(axis=1)
    # dithered per-frame counts: the total is round(fraction x all measured units)
    edges = np.floor(fraction * np.concatenate(([0], np.cumsum(measured))) + 0.5).astype(np.int64)
    rng = np.random.default_rng(seed)
    held = np.zeros_like(units)
    for i in range(n_t):
        candidates = np.flatnonzero(units[i] & ~centre)
        count = min(int(edges[i + 1] - edges[i]), candidates.size)
        if count > 0:
            held[i, rng.choice(candidates, size=count, replace=False)] = True
    if not held.any():
        raise ValueError("holdout_fraction leaves no sample to hold out: the masks measure too few "
                         "samples outside the k-space centre (raise holdout_fraction or sample more)")
    if op.line_masks:
        held_masks = np.repeat(held[:, :, None], width, axis=2)
    else:
        held_masks = held.reshape(n_t, height, width)
    kept = UndersampledFourier(masks & ~held_masks, workers=op.workers)
    out = UndersampledFourier(held_masks, workers=op.workers)
    return kept, out


# ---------------------------------------------------------------------------
# one restoration at one weight
# ---------------------------------------------------------------------------


def _restore_at(kspace: np.ndarray, op: UndersampledFourier, lam: float, *, basis: np.ndarray | None,
                scale: float, max_iter: int, tol: float, x0: Any, progress: bool, method: str,
                monitor: Any = None) -> RestorationResult:
    """One restoration at weight ``lam``: FISTA with restart on the factored engine, ALS blocks.

    From a cold start the weight follows a short path: continuation from the top down to
    ``lam``, or, for ``lam`` below ``PATH_START``, down to ``PATH_START`` and then stages a factor
    ``PATH_STEP`` apart, each solved to ``10 tol`` and warm-starting the next -- a small weight reached
    in one continuation sweep leaves high-rank iterates that FISTA then needs hundreds of
    iterations to clean up (measured: lam = 0.005 at 128 x 128 x 200, 29 s against 2 s).
    """
    name = "flor" if basis is not None else "lowrank"
    path = []
    cold = x0 is None
    if cold and lam < PATH_START:
        stages = [PATH_START]
        while stages[-1] / PATH_STEP > max(lam, 1e-4) * 1.0001:  # (lam = 0: stop at 1e-4)
            stages.append(stages[-1] / PATH_STEP)
        for k, stage in enumerate(stages):
            x0 = proximal_gradient(kspace, op, LowRankProx(basis=basis), lam=stage, max_iter=max_iter,
                                   tol=10.0 * tol, fista=True, restart=True, scale=scale, progress=progress,
                                   method=f"{name}-fista", desc=f"{name} (lam {stage:.3g})", x0=x0,
                                   continuation=CONTINUATION if k == 0 else 0.0, patience=PATIENCE_ITERS,
                                   als=basis is None)
            path.append((float(stage), int(x0.n_iter)))
    result = proximal_gradient(kspace, op, LowRankProx(basis=basis), lam=lam, max_iter=max_iter, tol=tol,
                               fista=True, restart=True, scale=scale, progress=progress,
                               method=f"{name}-fista", desc=f"{name} (lam {lam:.3g})", x0=x0,
                               continuation=CONTINUATION if x0 is None else 0.0, patience=PATIENCE_ITERS,
                               als=basis is None, monitor=monitor)
    path.append((float(lam), int(result.n_iter)))
    result.extra["path"] = path
    if basis is not None:
        result.extra["basis"] = basis
    result.extra.setdefault("weight_choice", None)
    return result


# ---------------------------------------------------------------------------
# the search
# ---------------------------------------------------------------------------


def choose_weight(kspace: np.ndarray, op: UndersampledFourier, *, method: str = "lowrank",
                  dictionary: Any = None, candidates: Any = None, holdout_fraction: float = 0.1,
                  seed: int = 0, max_iter: int | None = None, tol: float = DEFAULT_TOL,
                  progress: bool = False) -> tuple[WeightChoice, RestorationResult]:
    """Choose the restoration weight by k-space hold-out cross-validation (module docstring).

    Parameters
    ----------
    kspace : numpy.ndarray
        (L, H, W) complex centred k-space (``op.forward(x)``), any units.
    op : mrfbook.recon.acquisition.UndersampledFourier
        The sampling operator of ``kspace``.
    method : {"lowrank", "flor"}
        The restoration to tune: :func:`mrfbook.recon.lowrank.lowrank_restore`'s nuclear norm,
        or FLOR's (:func:`mrfbook.recon.flor.flor_restore`, needs ``dictionary``).
    dictionary : Dictionary, SvdBasis or (L, k) array, optional
        FLOR's temporal subspace source (:func:`mrfbook.recon.flor.subspace_basis`, default
        energy); required for ``method="flor"``, ignored otherwise.
    candidates : sequence of float, optional
        Weights to try (each >= 0, normalised units; sorted and tried from the largest down).
        Default :data:`DEFAULT_CANDIDATES`. With at least three positive log-spaced values the
        grid may be extended past an end and refined by a parabola.
    holdout_fraction : float
        Fraction in (0, 0.5] of every frame's measured units held out (default 0.1).
    seed : int
        Seed (>= 0) of the hold-out draw; the same seed gives the same choice.
    max_iter : int, optional
        Iteration cap of each candidate's restoration (>= 1); None: :data:`DEFAULT_MAX_ITER`.
    tol : float
        Relative-change tolerance (> 0) of each candidate's restoration.
    progress : bool
        tqdm bars of the restorations.

    Returns
    -------
    (WeightChoice, mrfbook.recon.solvers.RestorationResult)
        The choice, and the chosen candidate's restoration from the reduced data (images
        (H, W, L) complex64, input units), the warm start of the final restoration.

    Raises
    ------
    ValueError
        Bad ``kspace`` / ``op`` shapes, ``method``, missing ``dictionary`` for FLOR, bad
        ``candidates``, ``holdout_fraction`` outside (0, 0.5], ``seed`` < 0, ``max_iter`` < 1,
        ``tol`` <= 0.

    Explained in chapter 5, book/05_undersampling.md.
    """
    method, basis = _check_method(method, dictionary, op)
    kspace = check_kspace(kspace, op)
    grid = _check_candidates(candidates)
    fraction = _check_fraction(holdout_fraction)
    seed = check_int("seed", seed, 0)
    max_iter = DEFAULT_MAX_ITER if max_iter is None else check_int("max_iter", max_iter, 1)
    tol = _check_tol(tol)
    watch = Stopwatch().start()
    s = data_scale(kspace, op)
    kept, held = holdout_split(op, fraction, seed)
    n_holdout = int(held.masks.sum())
    reduced = kspace * kept.masks  # the held-out samples are zeroed, not only ignored

    tried: list[float] = []
    errors: list[float] = []
    unit_errors: list[np.ndarray] = []  # squared misfit per held-out unit, per candidate
    iterations: list[int] = []
    aborted: list[bool] = []
    results: list[RestorationResult] = []
    misfit = SampleMisfit(kspace, held)

    def run(lam: float, x0: Any) -> None:
        best = min(errors, default=np.inf)
        trail: list[float] = []

        def monitor(it: int, a: np.ndarray, b: np.ndarray) -> bool:
            # give up on a candidate whose hold-out error is above the best one's and has
            # risen ABORT_AFTER times in a row: it is on its way to a worse solution
            if not np.isfinite(best):
                return False
            trail.append(misfit.factors(a, b, s))
            rising = len(trail) > ABORT_AFTER and all(trail[-j] > trail[-j - 1] for j in range(1, ABORT_AFTER + 1))
            return rising and trail[-1] > best

        res = _restore_at(reduced, kept, lam, basis=basis, scale=s, max_iter=max_iter, tol=tol, x0=x0,
                          progress=progress, method=method, monitor=monitor)
        units = misfit.unit_mse(res)
        tried.append(lam)
        errors.append(float(np.sqrt(units.mean())))
        unit_errors.append(units)
        iterations.append(res.n_iter)
        aborted.append(bool(res.extra.get("stopped_by_monitor", False)))
        results.append(res)

    # the grid from the largest weight down, warm-started one from the next; stop once the
    # error has risen PATIENCE times in a row past its minimum
    for lam in grid:
        run(lam, results[-1] if results else None)
        best = int(np.argmin(errors))
        rising = len(errors) - 1 - best
        if rising >= PATIENCE and all(errors[j + 1] > errors[j] for j in range(best, len(errors) - 1)):
            break
    # extend past an end of the grid when the best weight sits there
    ratio = _grid_ratio(grid)
    if ratio is not None:
        for _ in range(MAX_EXTENSION):
            best = int(np.argmin(errors))
            if tried[best] == min(tried):
                lam = tried[best] / ratio  # the smallest weight won: go lower
            elif tried[best] == max(tried):
                lam = tried[best] * ratio  # the largest weight won: go higher
            else:
                break
            run(lam, results[best])
            if errors[-1] >= errors[best]:
                break
        # refine: the minimum of the parabola through the best three, in log(lam) -- unless the
        # next larger weight is already within one standard error (the rule below keeps it)
        best = int(np.argmin(errors))
        margin = _paired_margin(unit_errors, best)
        larger = [j for j in range(len(tried)) if tried[j] > tried[best]]
        nearest = min(larger, key=lambda j: tried[j]) if larger else None
        flat = nearest is not None and errors[nearest] <= margin[nearest]
        # (an abandoned neighbour's error is only a lower bound: no parabola through it)
        order = sorted(range(len(tried)), key=lambda j: tried[j])
        pos = order.index(best)
        near = order[max(pos - 1, 0): pos + 2]
        vertex = None if any(aborted[j] for j in near) else _parabola_minimum(tried, errors)
        if vertex is not None and not flat:
            refined, predicted = vertex
            # only where the parabola promises more than the candidates' standard error
            spread = float(np.median([margin[j] - errors[best] for j in near if j != best] or [0.0]))
            if predicted < errors[best] - spread and \
                    all(abs(math.log(refined / v)) > 0.05 * math.log(ratio) for v in tried):
                run(refined, results[best])
    best = int(np.argmin(errors))
    margin = _paired_margin(unit_errors, best)
    tied = [j for j in range(len(tried)) if errors[j] <= margin[j]]
    chosen = max(tied, key=lambda j: tried[j])  # the one-standard-error rule, paired
    choice = WeightChoice(lam=float(tried[chosen]), candidates=np.asarray(tried, dtype=np.float64),
                          holdout_error=np.asarray(errors, dtype=np.float64), holdout_fraction=fraction,
                          n_holdout=n_holdout, seed=seed, iterations=np.asarray(iterations, dtype=np.int64),
                          seconds=watch.stop(), restoration=method, stopped_early=np.asarray(aborted, dtype=bool),
                          holdout_se=np.asarray(margin, dtype=np.float64) - errors[best])
    return choice, results[chosen]


def _paired_margin(unit_errors: list[np.ndarray], best: int) -> np.ndarray:
    """Every candidate's tie threshold: the best error plus one standard error of the paired difference.

    All candidates are scored on the same held-out units, so each is compared with the best
    through the per-unit differences of squared misfit (a paired comparison, far more precise
    than the spread of the units themselves): candidate j is statistically tied with the best
    when its mean squared error exceeds the best's by at most one standard error of those
    differences. Returned as RMS thresholds, (K,) float64.
    """
    base = unit_errors[best]
    mse_best = float(base.mean())
    out = np.empty(len(unit_errors))
    for j, units in enumerate(unit_errors):
        diff = units - base
        se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
        out[j] = np.sqrt(mse_best + se)
    return out


def _grid_ratio(grid: tuple[float, ...]) -> float | None:
    """Common ratio of a log-spaced grid of >= 3 positive weights (descending), else None."""
    if len(grid) < 3 or grid[-1] <= 0:
        return None
    ratios = np.asarray(grid[:-1]) / np.asarray(grid[1:])
    if not np.allclose(ratios, ratios[0], rtol=0.05) or ratios[0] <= 1.0:
        return None
    return float(ratios[0])


def _parabola_minimum(lams: list[float], errors: list[float]) -> tuple[float, float] | None:
    """Vertex (lam, error) of the parabola in log(lam) through the best point and its two neighbours.

    None when the best is at an end of the weights tried or the parabola opens downwards.
    """
    order = np.argsort(lams)
    lam_sorted = np.asarray(lams, dtype=np.float64)[order]
    err_sorted = np.asarray(errors, dtype=np.float64)[order]
    best = int(np.argmin(err_sorted))
    if best == 0 or best == lam_sorted.size - 1 or lam_sorted[best - 1] <= 0:
        return None
    x = np.log(lam_sorted[best - 1: best + 2])
    e = err_sorted[best - 1: best + 2]
    a, b, c = np.polyfit(x, e, 2)
    if a <= 0:
        return None
    vertex = float(np.clip(-b / (2.0 * a), x[0], x[2]))
    return float(np.exp(vertex)), float(a * vertex * vertex + b * vertex + c)


# ---------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------


def restore(kspace: np.ndarray, op: UndersampledFourier, *, method: str = "lowrank", lam: Any = "auto",
            dictionary: Any = None, max_iter: int | None = None, tol: float = DEFAULT_TOL, seed: int = 0,
            holdout_fraction: float = 0.1, estimate_error: bool = False,
            progress: bool = False) -> RestorationResult:
    """Restore an undersampled MRF image stack, with the weight chosen from the data by default.

    Runs FISTA with adaptive restart on the factored k-space engine (:mod:`mrfbook.recon.solvers`)
    with ALS blocks (low-rank only), until the relative change stays below ``tol`` for three
    iterations; a cold start follows a short path of weights (module docstring). With
    ``lam="auto"``: :func:`choose_weight`, then the restoration from all samples at the chosen
    weight, warm-started from the chosen candidate's solution. Every restoration of a given
    weight solves the same convex problem as :func:`mrfbook.recon.lowrank.lowrank_restore` (or
    :func:`mrfbook.recon.flor.flor_restore`) at that weight, only faster.

    Parameters
    ----------
    kspace : numpy.ndarray
        (L, H, W) complex centred k-space (``op.forward(x)``), any units.
    op : mrfbook.recon.acquisition.UndersampledFourier
        The sampling operator of ``kspace``.
    method : {"lowrank", "flor"}
        Nuclear norm (the paper's eq. 2, :func:`mrfbook.recon.lowrank.lowrank_restore`) or
        FLOR (:func:`mrfbook.recon.flor.flor_restore`, needs ``dictionary``; here run to
        ``tol`` rather than for the authors' fixed 30 iterations).
    lam : "auto" or float
        ``"auto"`` (default): chosen by k-space hold-out; a number >= 0: that weight
        (normalised units of :mod:`mrfbook.recon.lowrank`).
    dictionary : Dictionary, SvdBasis or (L, k) array, optional
        FLOR's temporal subspace source (default energy); required for ``method="flor"``.
    max_iter : int, optional
        Iteration cap (>= 1) of each restoration; None: :data:`DEFAULT_MAX_ITER` (300).
    tol : float
        Relative-change tolerance (> 0), default 1e-4: at 128 x 128 x 200, lam = 5, the
        result's NRMSE is that of the old fixed-weight FISTA run to the same tolerance
        (0.0381 against 0.0382, benchmarks/bench_restoration.py).
    seed : int
        Seed (>= 0) of the hold-out draw.
    holdout_fraction : float
        Fraction in (0, 0.5] of every frame's measured units held out (default 0.1).
    estimate_error : bool
        With a numeric ``lam``: also restore the hold-out split at that weight
        (warm-started from the result) to fill ``extra["error_level"]``; else it is None.
        Ignored with ``lam="auto"``, which always measures it.
    progress : bool
        tqdm bars.

    Returns
    -------
    mrfbook.recon.solvers.RestorationResult
        ``images`` (H, W, L) complex64 in the input's units, ``n_iter``, ``converged``,
        ``elapsed_s`` (wall time of the whole call, search included), ``lam`` (the weight
        used); ``extra["weight_choice"]``: the :class:`WeightChoice` (None for a numeric
        ``lam``); ``extra["error_level"]``: the hold-out RMS error per complex sample
        (input units) at the weight used, or None; ``extra["iterations_final"]``: the
        iterations of the final restoration alone (= ``n_iter``); ``extra["path"]``: the
        (weight, iterations) of its stages; ``extra["als_sweeps"]``: the ALS sweeps of its
        blocks.

    Raises
    ------
    ValueError
        ``lam`` neither "auto" nor a number >= 0, and the conditions of
        :func:`choose_weight`.

    Explained in chapter 5, book/05_undersampling.md.
    """
    lam = _check_lam(lam)
    method, basis = _check_method(method, dictionary, op)
    kspace = check_kspace(kspace, op)
    fraction = _check_fraction(holdout_fraction)
    seed = check_int("seed", seed, 0)
    max_iter = DEFAULT_MAX_ITER if max_iter is None else check_int("max_iter", max_iter, 1)
    tol = _check_tol(tol)
    watch = Stopwatch().start()
    if lam == "auto":
        choice, start = choose_weight(kspace, op, method=method, dictionary=basis, holdout_fraction=fraction,
                                      seed=seed, max_iter=max_iter, tol=tol, progress=progress)
        result = _restore_at(kspace, op, choice.lam, basis=basis, scale=start.scale, max_iter=max_iter,
                             tol=tol, x0=start, progress=progress, method=method)
        result.extra["weight_choice"] = choice
        result.extra["error_level"] = choice.error_level
    else:
        s = data_scale(kspace, op)
        result = _restore_at(kspace, op, lam, basis=basis, scale=s, max_iter=max_iter, tol=tol, x0=None,
                             progress=progress, method=method)
        result.extra["weight_choice"] = None
        result.extra["error_level"] = None
        if estimate_error:
            kept, held = holdout_split(op, fraction, seed)
            check = _restore_at(kspace * kept.masks, kept, lam, basis=basis, scale=s, max_iter=max_iter,
                                tol=tol, x0=result, progress=progress, method=method)
            result.extra["error_level"] = sampled_rms(check, kspace, held)
    result.extra["iterations_final"] = result.n_iter
    result.elapsed_s = watch.stop()
    return result


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _check_method(method: Any, dictionary: Any, op: Any) -> tuple[str, np.ndarray | None]:
    if method not in _METHODS:
        raise ValueError(f"method must be 'lowrank' or 'flor', got {method!r}")
    if method == "lowrank":
        return method, None
    if dictionary is None:
        raise ValueError("method='flor' needs a dictionary (Dictionary, SvdBasis or (L, k) basis)")
    from mrfbook.recon.flor import subspace_basis

    basis = subspace_basis(dictionary)
    if isinstance(op, UndersampledFourier) and basis.shape[0] != op.n_frames:
        raise ValueError(f"the dictionary has {basis.shape[0]} time points but op has {op.n_frames} frames")
    return method, basis


def _check_lam(lam: Any) -> Any:
    if isinstance(lam, str):
        if lam != "auto":
            raise ValueError(f"lam must be 'auto' or a number >= 0, got {lam!r}")
        return lam
    try:
        return check_nonnegative("lam", lam)
    except ValueError:
        raise ValueError(f"lam must be 'auto' or a finite number >= 0, got {lam!r}") from None


def _check_fraction(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"holdout_fraction must be a number in (0, 0.5], got {value!r}") from exc
    if not (0.0 < v <= 0.5):
        raise ValueError(f"holdout_fraction must be a number in (0, 0.5], got {value!r}")
    return v


def _check_tol(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tol must be a finite number > 0, got {value!r}") from exc
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"tol must be a finite number > 0, got {value!r}")
    return v


def _check_candidates(candidates: Any) -> tuple[float, ...]:
    if candidates is None:
        return tuple(sorted(DEFAULT_CANDIDATES, reverse=True))
    try:
        values = np.asarray(candidates, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"candidates must be a sequence of numbers >= 0, got {candidates!r}") from exc
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"candidates must be a non-empty sequence of finite numbers >= 0, got {candidates!r}")
    return tuple(float(v) for v in sorted(set(values.tolist()), reverse=True))
