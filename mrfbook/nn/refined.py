"""The network for real inputs: a small network in the dictionary's subspace, then a model fit.

The paper's network reads the whole 200-point fingerprint with 67.6 M multiply-adds and returns
(T1, T2) directly; trained on clean dictionary atoms only, it is lost on what the pipeline
actually hands it (restored, noisy, partial-volume fingerprints). This network does three cheap
things instead:

1. **Encode.** Dephase and sign-resolve the signature (as for every network of the book), project
   it on the rank-K subspace of the simulated signal (:class:`mrfbook.physics.manifold.SignalManifold`,
   K = 24 by default) and scale the K coefficients to unit norm.
2. **Propose.** A multilayer perceptron (a few dense layers, SiLU) maps the K coefficients to
   (ln T1, ln T2). It is trained on off-grid tissues, two-tissue partial-volume sums (labelled
   with the book's rate-mix convention) and white noise over a range of SNRs
   (:func:`training_set`), not on the dictionary's grid atoms.
3. **Refine.** A few Gauss-Newton steps on the interpolated signal model
   (:meth:`~mrfbook.physics.manifold.SignalManifold.fit`) from the network's proposal. On a clean
   fingerprint they land on its exact (T1, T2); on a noisy or restored one, on the continuous
   least-squares value. The proposal's job is to start the fit in the right basin, fast.
   Where that fit leaves more than the signature's own noise explains
   (:meth:`RefinedNetwork.noise_residual`), the fit starts again from the best node of a coarse
   table (``coarse_step``) and keeps the better fit.
4. **Correct for noise.** The least-squares fit is the most likely tissue, not the one of least
   expected error: under white noise, where the fingerprint barely depends on T2 (long T2), it
   scatters over the whole flat valley. A second small dense network reads the coefficients, the
   fit and the signature's own noise level (:func:`signature_noise_level`, measured outside the
   subspace) and adds a correction to the fitted (ln T1, ln T2), times a gate
   ``max(0, 1 - (clean_level / noise_level)**2)`` that is closed for a clean fingerprint (whose
   level outside the subspace is only the rank-K truncation, at most ``clean_level``). Trained on
   noisy off-grid tissues towards their true T1 and T2 in ms, it learns the estimate of least
   squared error for the noise it sees. Restoration error lies inside the subspace
   (chapter 11), so restored fingerprints keep the gate closed and the fit.
5. **Decline (optional, off by default).** A fingerprint whose correlation with its fitted signal
   is below ``min_correlation`` gets no estimate (NaN, "not mapped" in a map). The default is 0:
   FLOR's threshold of 0.9, tried on the head phantom after restoration, declined faint but
   readable fingerprints and kept the bone pixels whose restored fingerprint is another tissue's
   (it correlates above 0.9 with a long-T1 fit; chapter 11). ``estimate`` returns the correlation
   either way.

Inference is plain NumPy (no Keras import): the dense layers' weights and the manifold live in one
``.npz`` file with a JSON sidecar. Keras trains the proposal network (:mod:`mrfbook.nn.train_refined`).

Explained in chapter 11, book/11_real_inputs.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np

from mrfbook.nn.inputs import normalise_signatures
from mrfbook.physics.manifold import SignalManifold
from mrfbook.utils.checks import check_int
from mrfbook.utils.provenance import atomic_write_json

__all__ = [
    "REFINED_FORMAT",
    "LOG_T1_RANGE",
    "LOG_T2_RANGE",
    "RefinedNetwork",
    "encode",
    "correction_features",
    "signature_noise_level",
    "noise_gate",
    "NOISE_RESIDUAL_QUANTILE",
    "DEFAULT_MIN_CORRELATION",
    "to_log_labels",
    "from_log_labels",
    "load_refined_network",
    "is_refined_model_path",
]

REFINED_FORMAT = "mrfbook-refined-network/1"
#: The proposal network's outputs are ln T1 and ln T2 mapped linearly onto [0, 1] over these ranges (ms).
LOG_T1_RANGE = (1.0, 5000.0)
LOG_T2_RANGE = (1.0, 2000.0)
#: A fingerprint whose correlation with its fitted signal is lower is not mapped; 0 maps every one.
#: FLOR's 0.9 (:data:`mrfbook.recon.flor.FLOR_MIN_CORRELATION`) was tried: after 15 % restoration of
#: the head phantom it declined readable fingerprints of faint pixels and kept the swamped ones it
#: was meant to catch (chapter 11).
DEFAULT_MIN_CORRELATION = 0.0
#: Quantile of the noise-only fit residual under which the fit from the proposal is kept without a
#: second start (:meth:`RefinedNetwork.noise_residual`).
NOISE_RESIDUAL_QUANTILE = 0.999


def to_log_labels(t1_ms: np.ndarray, t2_ms: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """(N, 2) labels in [0, 1] (``dtype``, float32 for training): ln T scaled over :data:`LOG_T1_RANGE` / :data:`LOG_T2_RANGE`."""
    a1, b1 = np.log(LOG_T1_RANGE)
    a2, b2 = np.log(LOG_T2_RANGE)
    return np.stack([(np.log(t1_ms) - a1) / (b1 - a1), (np.log(t2_ms) - a2) / (b2 - a2)], axis=1).astype(dtype)


def from_log_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`to_log_labels`: (T1 ms, T2 ms), each (N,) float64."""
    a1, b1 = np.log(LOG_T1_RANGE)
    a2, b2 = np.log(LOG_T2_RANGE)
    y = np.asarray(y, dtype=np.float64)
    return np.exp(a1 + y[:, 0] * (b1 - a1)), np.exp(a2 + y[:, 1] * (b2 - a2))


def encode(real_signatures: np.ndarray, manifold: SignalManifold) -> np.ndarray:
    """The proposal network's input: subspace coefficients of real signatures, scaled to unit norm.

    Parameters
    ----------
    real_signatures : numpy.ndarray
        (N, L) real, sign-resolved signatures, any scale.
    manifold : SignalManifold

    Returns
    -------
    numpy.ndarray
        (N, K) float64; rows with no signal stay 0.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    return _unit_rows(manifold.project(real_signatures))[0]


def _unit_rows(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``z`` scaled to unit norm (rows of norm 0 stay 0), and the norms (N,)."""
    norm = np.linalg.norm(z, axis=1)
    return z / np.where(norm > 0, norm, 1.0)[:, None], norm


@nb.njit(parallel=True, fastmath=True, cache=True)
def _silu_inplace(h: np.ndarray) -> None:  # pragma: no cover - compiled
    """``h <- h * sigmoid(h)`` row-parallel (exp(-h) overflows to inf for h << 0: h / inf = -0, as it should)."""
    n, m = h.shape
    one = h.dtype.type(1.0)  # stay in the array's precision (float32: vectorised exp)
    for i in nb.prange(n):
        for j in range(m):
            v = h[i, j]
            h[i, j] = v / (one + np.exp(-v))


def _dense_stack(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Dense layers with SiLU between them (the last linear), float32 inside, float64 out."""
    h = np.asarray(x, dtype=np.float32)
    for i, (kernel, bias) in enumerate(layers):
        h = h @ kernel
        h += bias
        if i < len(layers) - 1:
            _silu_inplace(h)
    return h.astype(np.float64)


def signature_noise_level(unit_signatures: np.ndarray, manifold: SignalManifold,
                          projection: np.ndarray | None = None) -> np.ndarray:
    """Each signature's own noise level per sample, from its energy outside the manifold's subspace.

    ``sqrt(||x - B B^T x||^2 / (L - K))`` for unit-norm real signatures ``x`` (white noise spreads
    evenly over all L directions, the signal lies in the K of the basis ``B``; the energy outside
    is :func:`mrfbook.physics.noise.outside_energy`, here ``||x||^2 - ||B^T x||^2`` since ``B`` is
    orthonormal).

    Parameters
    ----------
    unit_signatures : numpy.ndarray
        (N, L) real signatures of unit norm.
    manifold : SignalManifold
    projection : numpy.ndarray, optional
        (N, K) ``manifold.project(unit_signatures)`` if already computed.

    Returns
    -------
    numpy.ndarray
        (N,) float64, relative to the signature's norm (a clean fingerprint shows its rank-K
        truncation, about 1e-4 for the paper's sequence and K = 24).

    Explained in chapter 11, book/11_real_inputs.md.
    """
    x = np.asarray(unit_signatures, dtype=np.float64)
    z = manifold.project(x) if projection is None else np.asarray(projection, dtype=np.float64)
    rest = np.sum(x**2, axis=1) - np.sum(z**2, axis=1)
    return np.sqrt(np.maximum(rest, 0.0) / (manifold.n_timepoints - manifold.rank))


def correction_features(coefficients: np.ndarray, fit_labels: np.ndarray, noise_level: np.ndarray) -> np.ndarray:
    """The correction network's input (N, K + 3) float32: coefficients, fitted labels, log10 noise level.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    lvl = np.log10(np.maximum(np.asarray(noise_level, dtype=np.float64), 1e-8))[:, None]
    return np.concatenate([np.asarray(coefficients), np.asarray(fit_labels), lvl], axis=1).astype(np.float32)


def noise_gate(noise_level: np.ndarray, clean_level: float) -> np.ndarray:
    """``max(0, 1 - (clean_level / noise_level)**2)`` (N,) float64: 0 at or below the clean level.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    lvl = np.asarray(noise_level, dtype=np.float64)
    ratio = np.where(lvl > 0, clean_level / np.where(lvl > 0, lvl, 1.0), np.inf)
    return np.clip(1.0 - ratio**2, 0.0, 1.0)


@dataclass
class RefinedNetwork:
    """Proposal network (dense layers) + Gauss-Newton refinement on the signal manifold.

    Attributes
    ----------
    weights : list of (numpy.ndarray, numpy.ndarray)
        Per dense layer, kernel (n_in, n_out) and bias (n_out,), float32; SiLU between layers, the
        last one linear with two outputs (scaled ln T1, ln T2, see :func:`to_log_labels`).
    manifold : SignalManifold
        The interpolated signal model the refinement fits (and whose basis encodes the input).
    n_iter : int
        Gauss-Newton steps (0 = the proposal network alone).
    correction : list of (numpy.ndarray, numpy.ndarray)
        Dense layers of the correction network (empty: none). Its input is the K unit-norm
        coefficients, the fitted (ln T1, ln T2) scaled as the labels and ``log10`` of the
        signature's noise level (:func:`signature_noise_level`); its two outputs, times the gate
        :func:`noise_gate`, are added to the fitted scaled (ln T1, ln T2).
    clean_level : float
        The largest noise level a clean fingerprint shows (its rank-K truncation, >= 0); the
        gate is closed at or below it, so clean fingerprints keep the exact fit.
    coarse_step : int
        0: the fit starts from the proposal only. Else, where the fit from the proposal leaves
        more than noise explains (:meth:`noise_residual`), it also starts from the best-correlated
        node of every ``coarse_step``-th node of the manifold's table
        (:meth:`~mrfbook.physics.manifold.SignalManifold.coarse_start`), and keeps whichever fit
        leaves the smaller residual.
    min_correlation : float
        In [0, 1]. A signature whose correlation with its fitted signal (over all L time points) is
        below it gets NaN, as a signature without signal does: no single tissue explains it.
        0 maps every signature. Default :data:`DEFAULT_MIN_CORRELATION`.
    sequence : dict
        ``FispSequence.to_dict()`` of the sequence it was made for.
    sequence_digest : str
    metadata : dict
        Sidecar content (training configuration, accuracy, provenance).

    Explained in chapter 11, book/11_real_inputs.md.
    """

    weights: list[tuple[np.ndarray, np.ndarray]]
    manifold: SignalManifold
    n_iter: int
    sequence: dict[str, Any] | None
    sequence_digest: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    correction: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    clean_level: float = 0.0
    coarse_step: int = 0
    min_correlation: float = DEFAULT_MIN_CORRELATION

    def __post_init__(self) -> None:
        if not (np.isfinite(self.min_correlation) and 0.0 <= self.min_correlation <= 1.0):
            raise ValueError(f"min_correlation must be in [0, 1], got {self.min_correlation!r}")
        if not (np.isfinite(self.clean_level) and self.clean_level >= 0.0):
            raise ValueError(f"clean_level must be a finite number >= 0, got {self.clean_level!r}")

    def noise_residual(self, noise_level: np.ndarray, in_subspace: np.ndarray) -> np.ndarray:
        """The largest fit residual that noise alone explains, (N,) float64 (unit-norm coefficients).

        White noise of level ``sigma`` per sample leaves a least-squares fit of the K coefficients
        (three fitted: T1, T2, amplitude) a squared residual of ``sigma**2`` times a chi-squared
        variable with K - 3 degrees of freedom; its 99.9th percentile, with ``sigma`` at least
        ``clean_level`` (the clean table's own error) and relative to the signature's norm in the
        subspace (``in_subspace``), bounds what a fit at the true tissue leaves. A fit that leaves
        no more needs no second start.

        Explained in chapter 11, book/11_real_inputs.md.
        """
        from scipy.special import gammaincinv  # chi2.ppf(q, k) = 2 gammaincinv(k / 2, q); scipy.stats loads slowly

        dof = max(self.manifold.rank - 3, 1)
        sigma = np.maximum(np.asarray(noise_level, dtype=np.float64), self.clean_level)
        scale = np.where(in_subspace > 0, in_subspace, 1.0)
        return np.sqrt(2.0 * gammaincinv(dof / 2.0, NOISE_RESIDUAL_QUANTILE)) * sigma / scale

    def propose(self, coefficients: np.ndarray) -> np.ndarray:
        """The proposal network's raw output (N, 2) float64 for unit-norm coefficients (N, K)."""
        return _dense_stack(self.weights, coefficients)

    def correct(self, coefficients: np.ndarray, t1_fit_ms: np.ndarray, t2_fit_ms: np.ndarray,
                noise_level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply the gated correction network to a fit; returns (T1 ms, T2 ms), each (N,) float64."""
        t1 = np.array(t1_fit_ms, dtype=np.float64)
        t2 = np.array(t2_fit_ms, dtype=np.float64)
        if not self.correction or len(t1) == 0:
            return t1, t2
        gate = noise_gate(noise_level, self.clean_level)
        open_ = gate > 0  # the network runs only where the gate lets it act; elsewhere the fit, exactly
        if open_.any():
            y = to_log_labels(t1[open_], t2[open_], dtype=np.float64)
            delta = _dense_stack(self.correction, correction_features(coefficients[open_], y,
                                                                      np.asarray(noise_level)[open_]))
            t1[open_], t2[open_] = from_log_labels(y + gate[open_, None] * delta)
        return t1, t2

    def estimate(self, signatures: np.ndarray, *, complex_mode: str = "dephase",
                 phase_reference: np.ndarray | None = None, n_iter: int | None = None) -> dict[str, np.ndarray]:
        """Every stage's result for real or complex signatures (N, L).

        Returns
        -------
        dict
            ``t1_ms``, ``t2_ms`` (N,) the final estimate; ``t1_proposed_ms``, ``t2_proposed_ms``
            (N,) the network's proposal; ``t1_fit_ms``, ``t2_fit_ms`` (N,) the model fit before the
            correction; ``residual`` (N,) the fraction of the signature's
            subspace norm the fitted signal leaves unexplained; ``noise_level`` (N,) the
            signature's own (:func:`signature_noise_level`); ``correlation`` (N,) the
            correlation of the real signature with its fitted signal over all L points;
            ``norm`` (N,) the real signature's L2 norm. Rows without signal are NaN; so are
            ``t1_ms`` and ``t2_ms`` where ``correlation < min_correlation`` after a fit
            (``n_iter`` > 0; the proposal alone is never declined).

        Explained in chapter 11, book/11_real_inputs.md.
        """
        n_iter = self.n_iter if n_iter is None else check_int("n_iter", n_iter, 0)
        x, norms = normalise_signatures(signatures, complex_mode=complex_mode, phase_reference=phase_reference)
        if x.shape[1] != self.manifold.n_timepoints:
            raise ValueError(f"signatures must have {self.manifold.n_timepoints} time points (the model's input "
                             f"length), got {x.shape[1]}")
        z_raw = self.manifold.project(x)
        z, in_subspace = _unit_rows(z_raw)  # encode(); x has unit norm: in_subspace is its share in the subspace
        t1_p, t2_p = from_log_labels(self.propose(z)) if len(z) else (np.zeros(0), np.zeros(0))
        fit = self.manifold.fit(z, t1_p, t2_p, n_iter=n_iter)
        level = signature_noise_level(x, self.manifold, z_raw)
        if self.coarse_step and n_iter and len(z):
            # a second start, the best node of a coarse table, where the first fit leaves more than
            # the noise could explain: keep whichever fit explains more
            rows = np.flatnonzero(fit["residual"] > self.noise_residual(level, in_subspace))
            if rows.size:
                t1_c, t2_c = self.manifold.coarse_start(z[rows], self.coarse_step)
                other = self.manifold.fit(z[rows], t1_c, t2_c, n_iter=n_iter)
                keep = other["residual"] < fit["residual"][rows]
                for k in fit:
                    fit[k][rows[keep]] = other[k][keep]
        t1, t2 = self.correct(z, fit["t1_ms"], fit["t2_ms"], level) if n_iter else (t1_p, t2_p)
        # the fitted signal explains sqrt(1 - residual^2) of the subspace part, which is in_subspace of x
        correlation = in_subspace * np.sqrt(np.clip(1.0 - np.asarray(fit["residual"]) ** 2, 0.0, 1.0))
        declined = (correlation < self.min_correlation) if n_iter else np.zeros(len(z), dtype=bool)
        t1, t2 = np.where(declined, np.nan, t1), np.where(declined, np.nan, t2)
        none = norms == 0
        out = {"t1_ms": t1, "t2_ms": t2, "t1_proposed_ms": t1_p, "t2_proposed_ms": t2_p,
               "t1_fit_ms": fit["t1_ms"], "t2_fit_ms": fit["t2_ms"], "residual": fit["residual"],
               "correlation": correlation, "noise_level": level, "norm": norms}
        for key in ("t1_ms", "t2_ms", "t1_proposed_ms", "t2_proposed_ms", "t1_fit_ms", "t2_fit_ms", "residual",
                    "correlation", "noise_level"):
            out[key] = np.where(none, np.nan, out[key])
        return out

    def predict(self, signatures: np.ndarray, *, batch_size: int = 4096, complex_mode: str = "dephase",
                phase_reference: np.ndarray | None = None) -> np.ndarray:
        """(T1, T2) in ms, (N, 2) float64, as :meth:`mrfbook.nn.model.TrainedModel.predict`.

        ``batch_size`` (>= 1) is accepted for the same call signature; NumPy works on all rows at once.

        Explained in chapter 11, book/11_real_inputs.md.
        """
        check_int("batch_size", batch_size, 1)
        est = self.estimate(signatures, complex_mode=complex_mode, phase_reference=phase_reference)
        return np.stack([est["t1_ms"], est["t2_ms"]], axis=1)

    def check_sequence(self, expected_sequence: Any) -> None:
        """Raise SequenceMismatchError unless ``expected_sequence`` is the sequence it was made for."""
        from mrfbook.nn.model import TrainedModel

        TrainedModel.check_sequence(self, expected_sequence)  # type: ignore[arg-type]  # same two fields

    def parameter_count(self) -> int:
        """Trained weights (kernels and biases of both dense networks); the manifold is simulated, not trained."""
        return int(sum(w.size + b.size for w, b in [*self.weights, *self.correction]))

    def multiply_adds(self) -> dict[str, int]:
        """Multiply-adds per signature of each stage, and their total.

        Encoding: L x K (projection) + K (norm) + L (the noise level); proposal: its dense layers;
        correction: its dense layers (its gate skips them for clean signatures; counted as if not);
        refinement: per start and step 16 spline nodes x 3 values (signal and two derivatives) x K,
        plus 8 K for the normal equations, and one final evaluation (a halved step costs one more
        evaluation; not counted); with ``coarse_step``, K per coarse node for the second start,
        counted for every signature although it runs only where the first fit leaves more than noise.

        Explained in chapter 11, book/11_real_inputs.md.
        """
        k, length = self.manifold.rank, self.manifold.n_timepoints
        encode_macs = length * k + k + length
        propose = int(sum(w.shape[0] * w.shape[1] for w, _ in self.weights))
        starts = 2 if self.coarse_step else 1
        refine = starts * (self.n_iter + 1) * (16 * 3 * k + 8 * k)
        if self.coarse_step:
            refine += k * _n_coarse_nodes(self.manifold, self.coarse_step)
        correct = int(sum(w.shape[0] * w.shape[1] for w, _ in self.correction))
        return {"encode": encode_macs, "propose": propose, "refine": refine, "correct": correct,
                "total": encode_macs + propose + refine + correct}

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights and manifold to ``path`` (.npz) and the metadata to ``path`` with .json."""
        p = Path(path)
        if p.suffix != ".npz":
            raise ValueError(f"path must end in '.npz', got {str(p)!r}")
        p.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"kernel_{i}": w for i, (w, _) in enumerate(self.weights)}
        arrays.update({f"bias_{i}": b for i, (_, b) in enumerate(self.weights)})
        arrays.update({f"correction_kernel_{i}": w for i, (w, _) in enumerate(self.correction)})
        arrays.update({f"correction_bias_{i}": b for i, (_, b) in enumerate(self.correction)})
        m = self.manifold
        np.savez(p, format=np.array(REFINED_FORMAT), n_layers=np.array(len(self.weights)), n_iter=np.array(self.n_iter),
                 n_correction_layers=np.array(len(self.correction)), clean_level=np.array(self.clean_level),
                 coarse_step=np.array(self.coarse_step), min_correlation=np.array(self.min_correlation),
                 log_t1=m.log_t1, log_t2=m.log_t2, basis=m.basis, coefficients=m.coefficients,
                 t1_range_ms=np.array(m.t1_range_ms), t2_range_ms=np.array(m.t2_range_ms),
                 manifold_digest=np.array(m.sequence_digest), **arrays)
        meta = dict(self.metadata)
        meta.update(format=REFINED_FORMAT, sequence=self.sequence, sequence_digest=self.sequence_digest,
                    n_iter=self.n_iter, min_correlation=self.min_correlation, clean_level=self.clean_level,
                    multiply_adds=self.multiply_adds(), model_file=p.name)
        atomic_write_json(p.with_suffix(".json"), meta)
        return p


def _n_coarse_nodes(manifold: SignalManifold, step: int) -> int:
    from mrfbook.physics.manifold import _coarse_nodes

    return int(len(_coarse_nodes(manifold, step)[0]))


def is_refined_model_path(path: str | os.PathLike) -> bool:
    """True for a path ending in .npz (the refined network's file); Keras networks end in .keras."""
    return Path(path).suffix == ".npz"


def load_refined_network(path: str | os.PathLike, expected_sequence: Any = None) -> RefinedNetwork:
    """Load a network written by :meth:`RefinedNetwork.save` (no Keras needed).

    Parameters
    ----------
    path : path to the ``.npz`` file (its ``.json`` sidecar must sit next to it)
    expected_sequence : FispSequence, optional
        If given, the network must have been made for exactly this sequence, else
        :class:`mrfbook.nn.model.SequenceMismatchError`.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no model file at path={str(p)!r}")
    side = p.with_suffix(".json")
    if not side.is_file():
        raise ValueError(f"model {str(p)!r} has no metadata sidecar {str(side)!r}")
    meta = json.loads(side.read_text())
    with np.load(p, allow_pickle=False) as d:
        if "format" not in d.files or str(d["format"]) != REFINED_FORMAT:
            raise ValueError(f"{str(p)!r} is not a {REFINED_FORMAT} file")
        n_layers = int(d["n_layers"])
        weights = [(d[f"kernel_{i}"].astype(np.float32), d[f"bias_{i}"].astype(np.float32)) for i in range(n_layers)]
        manifold = SignalManifold(d["log_t1"], d["log_t2"], d["basis"], np.ascontiguousarray(d["coefficients"]),
                                  tuple(d["t1_range_ms"].tolist()), tuple(d["t2_range_ms"].tolist()),
                                  str(d["manifold_digest"]))
        n_iter = int(d["n_iter"])
        correction = [(d[f"correction_kernel_{i}"].astype(np.float32), d[f"correction_bias_{i}"].astype(np.float32))
                      for i in range(int(d["n_correction_layers"]))]
        clean_level = float(d["clean_level"]) if "clean_level" in d.files else 0.0
        if correction and "clean_level" not in d.files:
            raise ValueError(f"{str(p)!r} has a correction network of an older format (gated by the fit's "
                             "residual), which this version does not run")
        coarse_step = int(d["coarse_step"]) if "coarse_step" in d.files else 0
        # files written before the rule existed map every signature, as they did then
        min_correlation = float(d["min_correlation"]) if "min_correlation" in d.files else 0.0
    if manifold.sequence_digest != meta.get("sequence_digest"):
        raise ValueError(f"{str(p)!r}: its signal table was simulated for another sequence than its metadata names")
    net = RefinedNetwork(weights, manifold, n_iter, meta.get("sequence"), meta.get("sequence_digest"), meta,
                         correction, clean_level, coarse_step, min_correlation)
    net.check_sequence(expected_sequence)
    return net
