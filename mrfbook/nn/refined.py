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
   The fit starts twice, from the proposal and from the best node of a coarse table
   (``coarse_step``), and keeps the better fit.
4. **Correct** (optional, not in the shipped network). A second small dense network reads the
   coefficients, the fit and its relative residual, and adds a correction to the fitted
   (ln T1, ln T2), scaled by a gate that is closed when the residual is zero. Trained on restored
   fingerprints of random phantoms (:mod:`mrfbook.analysis.training_inputs`) labelled with their
   rate-mix maps, it learned that convention and made the book's brain phantom worse (chapter 11),
   so the shipped network has none.

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

import numpy as np
from scipy.special import expit

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
    "DEFAULT_GATE_RESIDUAL",
    "to_log_labels",
    "from_log_labels",
    "load_refined_network",
    "is_refined_model_path",
]

REFINED_FORMAT = "mrfbook-refined-network/1"
#: The proposal network's outputs are ln T1 and ln T2 mapped linearly onto [0, 1] over these ranges (ms).
LOG_T1_RANGE = (1.0, 5000.0)
LOG_T2_RANGE = (1.0, 2000.0)
#: Relative fit residual at which the correction network's gate is half open.
DEFAULT_GATE_RESIDUAL = 1e-3


def to_log_labels(t1_ms: np.ndarray, t2_ms: np.ndarray) -> np.ndarray:
    """(N, 2) float32 labels in [0, 1]: ln T scaled over :data:`LOG_T1_RANGE` / :data:`LOG_T2_RANGE`."""
    a1, b1 = np.log(LOG_T1_RANGE)
    a2, b2 = np.log(LOG_T2_RANGE)
    return np.stack([(np.log(t1_ms) - a1) / (b1 - a1), (np.log(t2_ms) - a2) / (b2 - a2)], axis=1).astype(np.float32)


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
    z = manifold.project(real_signatures)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norm > 0, norm, 1.0)


def _silu(x: np.ndarray) -> np.ndarray:
    return x * expit(x)  # expit is stable where exp(-x) would overflow


def _dense_stack(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Dense layers with SiLU between them (the last linear), float32 inside, float64 out."""
    h = np.asarray(x, dtype=np.float32)
    for i, (kernel, bias) in enumerate(layers):
        h = h @ kernel + bias
        if i < len(layers) - 1:
            h = _silu(h)
    return h.astype(np.float64)


def correction_features(coefficients: np.ndarray, fit_labels: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The correction network's input (N, K + 3) float32: coefficients, fitted labels, log10 residual.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    rho = np.log10(np.maximum(np.asarray(residual, dtype=np.float64), 1e-8))[:, None]
    return np.concatenate([np.asarray(coefficients), np.asarray(fit_labels), rho], axis=1).astype(np.float32)


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
        coefficients, the fitted (ln T1, ln T2) scaled as the labels and ``log10`` of the fit's
        relative residual; its two outputs, times the gate ``rho**2 / (rho**2 + gate_residual**2)``
        (``rho`` the relative residual), are added to the fitted scaled (ln T1, ln T2).
    gate_residual : float
        Relative residual at which the correction is half on (> 0). A signature the model fits
        exactly (clean) keeps the fit; one it cannot (restored, noisy, mixed) gets the correction.
    coarse_step : int
        0: the fit starts from the proposal only. Else it also starts from the best-correlated
        node of every ``coarse_step``-th node of the manifold's table
        (:meth:`~mrfbook.physics.manifold.SignalManifold.coarse_start`), and keeps whichever fit
        leaves the smaller residual.
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
    gate_residual: float = DEFAULT_GATE_RESIDUAL
    coarse_step: int = 0

    def propose(self, coefficients: np.ndarray) -> np.ndarray:
        """The proposal network's raw output (N, 2) float64 for unit-norm coefficients (N, K)."""
        return _dense_stack(self.weights, coefficients)

    def correct(self, coefficients: np.ndarray, t1_fit_ms: np.ndarray, t2_fit_ms: np.ndarray,
                residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply the gated correction network to a fit; returns (T1 ms, T2 ms), each (N,) float64."""
        y = to_log_labels(t1_fit_ms, t2_fit_ms).astype(np.float64)
        if not self.correction or len(y) == 0:
            return np.asarray(t1_fit_ms, dtype=np.float64), np.asarray(t2_fit_ms, dtype=np.float64)
        delta = _dense_stack(self.correction, correction_features(coefficients, y, residual))
        rho2 = np.asarray(residual, dtype=np.float64) ** 2
        gate = rho2 / (rho2 + self.gate_residual**2)
        return from_log_labels(y + gate[:, None] * delta)

    def estimate(self, signatures: np.ndarray, *, complex_mode: str = "dephase",
                 phase_reference: np.ndarray | None = None, n_iter: int | None = None) -> dict[str, np.ndarray]:
        """Every stage's result for real or complex signatures (N, L).

        Returns
        -------
        dict
            ``t1_ms``, ``t2_ms`` (N,) the final estimate; ``t1_proposed_ms``, ``t2_proposed_ms``
            (N,) the network's proposal; ``t1_fit_ms``, ``t2_fit_ms`` (N,) the model fit before the
            correction; ``residual`` (N,) the fraction of the signature's
            subspace norm the fitted signal leaves unexplained; ``norm`` (N,) the real signature's
            L2 norm. Rows without signal are NaN.

        Explained in chapter 11, book/11_real_inputs.md.
        """
        n_iter = self.n_iter if n_iter is None else check_int("n_iter", n_iter, 0)
        x, norms = normalise_signatures(signatures, complex_mode=complex_mode, phase_reference=phase_reference)
        if x.shape[1] != self.manifold.n_timepoints:
            raise ValueError(f"signatures must have {self.manifold.n_timepoints} time points (the model's input "
                             f"length), got {x.shape[1]}")
        z = encode(x, self.manifold)
        t1_p, t2_p = from_log_labels(self.propose(z)) if len(z) else (np.zeros(0), np.zeros(0))
        fit = self.manifold.fit(z, t1_p, t2_p, n_iter=n_iter)
        if self.coarse_step and n_iter and len(z):
            # a second start, the best node of a coarse table: keep whichever fit explains more
            t1_c, t2_c = self.manifold.coarse_start(z, self.coarse_step)
            other = self.manifold.fit(z, t1_c, t2_c, n_iter=n_iter)
            better = other["residual"] < fit["residual"]
            fit = {k: np.where(better, other[k], fit[k]) for k in fit}
        t1, t2 = self.correct(z, fit["t1_ms"], fit["t2_ms"], fit["residual"]) if n_iter else (t1_p, t2_p)
        none = norms == 0
        out = {"t1_ms": t1, "t2_ms": t2, "t1_proposed_ms": t1_p, "t2_proposed_ms": t2_p,
               "t1_fit_ms": fit["t1_ms"], "t2_fit_ms": fit["t2_ms"], "residual": fit["residual"], "norm": norms}
        for key in ("t1_ms", "t2_ms", "t1_proposed_ms", "t2_proposed_ms", "t1_fit_ms", "t2_fit_ms", "residual"):
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

        Encoding: L x K (projection) + K (norm); proposal and correction: their dense layers;
        refinement: per start and step 16 spline nodes x 3 values (signal and two derivatives) x K,
        plus 8 K for the normal equations, and one final evaluation (a halved step costs one more
        evaluation; not counted); with ``coarse_step``, K per coarse node for the second start.

        Explained in chapter 11, book/11_real_inputs.md.
        """
        k, length = self.manifold.rank, self.manifold.n_timepoints
        encode_macs = length * k + k
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
                 n_correction_layers=np.array(len(self.correction)), gate_residual=np.array(self.gate_residual),
                 coarse_step=np.array(self.coarse_step),
                 log_t1=m.log_t1, log_t2=m.log_t2, basis=m.basis, coefficients=m.coefficients,
                 t1_range_ms=np.array(m.t1_range_ms), t2_range_ms=np.array(m.t2_range_ms),
                 manifold_digest=np.array(m.sequence_digest), **arrays)
        meta = dict(self.metadata)
        meta.update(format=REFINED_FORMAT, sequence=self.sequence, sequence_digest=self.sequence_digest,
                    n_iter=self.n_iter, multiply_adds=self.multiply_adds(), model_file=p.name)
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
        gate = float(d["gate_residual"])
        coarse_step = int(d["coarse_step"]) if "coarse_step" in d.files else 0
    if manifold.sequence_digest != meta.get("sequence_digest"):
        raise ValueError(f"{str(p)!r}: its signal table was simulated for another sequence than its metadata names")
    net = RefinedNetwork(weights, manifold, n_iter, meta.get("sequence"), meta.get("sequence_digest"), meta,
                         correction, gate, coarse_step)
    net.check_sequence(expected_sequence)
    return net
