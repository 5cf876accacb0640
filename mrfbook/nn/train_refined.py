"""Training the network for real inputs (:mod:`mrfbook.nn.refined`), resumably, on a CPU.

Three stages, each written to the run folder as it finishes, so that an interrupted run picks up
where it stopped (the Keras checkpoints hold the optimiser's state and the epoch):

1. the signal manifold (:func:`mrfbook.physics.manifold.build_manifold`), ``manifold.npz``;
2. the proposal network, on :func:`synthetic_signatures` (off-grid tissues, partial-volume sums,
   white noise) plus the restored fingerprints given, ``proposal.keras``;
3. the correction network, on the same signatures after the proposal and the fit: it learns what
   the least-squares fit still gets wrong on inputs the signal model does not explain,
   ``correction.keras``.

:func:`train_refined` then assembles and saves the :class:`~mrfbook.nn.refined.RefinedNetwork`.

Explained in chapter 11, book/11_real_inputs.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from mrfbook.nn.backend import keras
from mrfbook.nn.inputs import normalise_signatures
from mrfbook.nn.refined import (
    DEFAULT_GATE_RESIDUAL,
    LOG_T1_RANGE,
    LOG_T2_RANGE,
    RefinedNetwork,
    correction_features,
    encode,
    to_log_labels,
)
from mrfbook.physics.manifold import SignalManifold, build_manifold
from mrfbook.utils.checks import check_int
from mrfbook.utils.provenance import atomic_write_json, utc_now

__all__ = ["RefinedConfig", "synthetic_signatures", "build_dense", "train_refined", "STAGE_FILES"]

STAGE_FILES = ("manifold.npz", "proposal.keras", "correction.keras")


@dataclass(frozen=True)
class RefinedConfig:
    """Everything that defines a training run of the refined network.

    Attributes
    ----------
    rank : int
        K, subspace coefficients (the manifold's rank).
    width, depth : int
        Units per hidden layer and hidden layers of the proposal network.
    correction_width, correction_depth : int
        The same for the correction network (depth 0, the default: no correction network; one
        trained towards the random phantoms' rate-mix maps learned that convention and made the
        book's phantom worse, chapter 11).
    n_iter : int
        Gauss-Newton steps of the refinement.
    coarse_step : int
        The fit's second start: the best node of every ``coarse_step``-th table node (0: none).
    n_synthetic : int
        Synthetic training signatures (:func:`synthetic_signatures`).
    mix_fraction, noise_fraction : float
        Shares of the synthetic signatures that are two-tissue sums / get white noise.
    snr_db : tuple of float
        Range of the per-signature SNR of that noise (dB).
    epochs, correction_epochs, batch_size : int
    learning_rate : float
        Peak learning rate (Adam, cosine decay to 1 % of it).
    validation_fraction : float
        Share of the training signatures held out for validation.
    gate_residual : float
        See :class:`~mrfbook.nn.refined.RefinedNetwork`.
    seed : int

    Explained in chapter 11, book/11_real_inputs.md.
    """

    rank: int = 24
    width: int = 256
    depth: int = 3
    correction_width: int = 128
    correction_depth: int = 0
    n_iter: int = 8
    coarse_step: int = 4
    n_synthetic: int = 600_000
    mix_fraction: float = 0.3
    noise_fraction: float = 0.5
    snr_db: tuple[float, float] = (10.0, 50.0)
    epochs: int = 30
    correction_epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 2e-3
    validation_fraction: float = 0.05
    gate_residual: float = DEFAULT_GATE_RESIDUAL
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary."""
        d = asdict(self)
        d["snr_db"] = list(self.snr_db)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RefinedConfig":
        """Inverse of :meth:`to_dict` (unknown keys raise ValueError)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"RefinedConfig has no fields {sorted(unknown)}; allowed: {sorted(known)}")
        d = dict(d)
        if "snr_db" in d:
            d["snr_db"] = tuple(d["snr_db"])
        return cls(**d)


def _tissues(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(T1, T2) ms with T1 >= T2 inside the label box: half uniform, half log-uniform on each axis."""
    uniform = rng.random(n) < 0.5
    t1 = np.where(uniform, rng.uniform(*LOG_T1_RANGE, n), np.exp(rng.uniform(*np.log(LOG_T1_RANGE), n)))
    t2 = np.where(uniform, rng.uniform(*LOG_T2_RANGE, n), np.exp(rng.uniform(*np.log(LOG_T2_RANGE), n)))
    swap = t2 > t1
    t1[swap], t2[swap] = t2[swap], t1[swap]
    t2 = np.minimum(t2, LOG_T2_RANGE[1])
    return np.maximum(t1, t2), t2


def synthetic_signatures(sequence: Any, n: int, seed: int, *, mix_fraction: float = 0.3,
                         noise_fraction: float = 0.5, snr_db: tuple[float, float] = (10.0, 50.0),
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Off-grid fingerprints with partial volume and noise, and their reference (T1, T2).

    Tissues: T1 in [1, 5000] ms, T2 in [1, min(T1, 2000)] ms, half drawn uniformly, half
    log-uniformly. A ``mix_fraction`` of the signatures are sums of two such tissues' fingerprints
    (spin weights drawn at random), labelled with the rate mix of the book's phantoms
    (:meth:`mrfbook.physics.phantom.Compartments.reference_maps`). A ``noise_fraction`` get real
    white Gaussian noise at a per-signature SNR drawn uniformly in ``snr_db`` (signal RMS over
    noise standard deviation, dB).

    Returns
    -------
    x : numpy.ndarray
        (n, L) float64 real signatures (PD-weighted, not normalised).
    t1_ms, t2_ms : numpy.ndarray
        (n,) float64 reference values.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    from mrfbook.physics.epg import simulate_fisp

    n = check_int("n", n, 1)
    for name, value in (("mix_fraction", mix_fraction), ("noise_fraction", noise_fraction)):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not (len(snr_db) == 2 and all(np.isfinite(snr_db)) and snr_db[0] <= snr_db[1]):
        raise ValueError(f"snr_db must be (low, high) finite dB values with low <= high, got {snr_db!r}")
    rng = np.random.default_rng([check_int("seed", seed, 0), 3])
    t1, t2 = _tissues(rng, n)
    x = np.asarray(simulate_fisp(sequence, t1, t2, dtype=np.float64))
    ref1, ref2 = t1.copy(), t2.copy()
    mix = np.flatnonzero(rng.random(n) < mix_fraction)
    if mix.size:
        s1, s2 = _tissues(rng, mix.size)
        w = rng.uniform(0.05, 0.95, mix.size)
        wa, wb = w * rng.uniform(0.3, 1.0, mix.size), (1.0 - w) * rng.uniform(0.3, 1.0, mix.size)
        x[mix] = wa[:, None] * x[mix] + wb[:, None] * np.asarray(simulate_fisp(sequence, s1, s2, dtype=np.float64))
        ref1[mix] = (wa + wb) / (wa / t1[mix] + wb / s1)
        ref2[mix] = (wa + wb) / (wa / t2[mix] + wb / s2)
    noisy = np.flatnonzero(rng.random(n) < noise_fraction)
    if noisy.size:
        snr = rng.uniform(snr_db[0], snr_db[1], noisy.size)
        sigma = np.linalg.norm(x[noisy], axis=1) / np.sqrt(x.shape[1]) * 10.0 ** (-snr / 20.0)
        x[noisy] += sigma[:, None] * rng.standard_normal((noisy.size, x.shape[1]))
    return x, ref1, ref2


def build_dense(n_inputs: int, width: int, depth: int, name: str) -> keras.Model:
    """Dense network: ``depth`` hidden layers of ``width`` units (SiLU), two linear outputs.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    inputs = keras.Input((check_int("n_inputs", n_inputs, 1),), name="coefficients")
    h = inputs
    for i in range(check_int("depth", depth, 0)):
        h = keras.layers.Dense(check_int("width", width, 1), activation="silu", name=f"dense_{i}")(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(h), name=name)


def _dense_weights(model: keras.Model) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(w[0], np.float32), np.asarray(w[1], np.float32))
            for w in (layer.get_weights() for layer in model.layers) if w]


class _JsonLog(keras.callbacks.Callback):
    """Appends one JSON line per epoch (stage, epoch, losses, seconds) to the run's log."""

    def __init__(self, path: Path, stage: str) -> None:
        super().__init__()
        self.path, self.stage, self.t0 = path, stage, time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        rec = {"stage": self.stage, "epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
               "seconds": time.perf_counter() - self.t0, "time": utc_now()}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


def _weighted_mse(y_true: Any, y_pred: Any) -> Any:
    """Squared error of the two outputs, each weighted by the column after it (y_true is (N, 4))."""
    ops = keras.ops
    err = ops.square(y_pred - y_true[:, :2]) * y_true[:, 2:]
    return ops.mean(ops.sum(err, axis=1))


def _fit_stage(folder: Path, stage: str, build: Any, x: np.ndarray, y: np.ndarray, cfg: RefinedConfig,
               epochs: int, loss: Any, verbose: int) -> keras.Model:
    """Train (or resume, or load when done) one stage; checkpoint every epoch."""
    ckpt = folder / f"{stage}.checkpoint.keras"
    done = folder / f"{stage}.keras"
    custom = {"_weighted_mse": _weighted_mse}
    if done.is_file():
        return keras.saving.load_model(done, custom_objects=custom, compile=False)
    n_val = int(round(cfg.validation_fraction * len(x)))
    order = np.random.default_rng([cfg.seed, 9]).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    state_path = folder / f"{stage}.state.json"
    start = 0
    if ckpt.is_file() and state_path.is_file():
        model = keras.saving.load_model(ckpt, custom_objects=custom, compile=True)
        start = int(json.loads(state_path.read_text())["epochs_done"])
    else:
        model = build()
        steps = epochs * int(np.ceil(len(train) / cfg.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, alpha=0.01)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)

    class _Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            model.save(ckpt)
            atomic_write_json(state_path, {"epochs_done": epoch + 1, "time": utc_now()})

    if start < epochs:
        model.fit(x[train], y[train], batch_size=cfg.batch_size, epochs=epochs, initial_epoch=start,
                  validation_data=(x[val], y[val]), shuffle=True, verbose=verbose,
                  callbacks=[_JsonLog(folder / "training_log.jsonl", stage), _Checkpoint()])
    model.save(done)
    return model


def train_refined(sequence: Any, folder: str | Path, config: RefinedConfig = RefinedConfig(), *,
                  restored: dict[str, np.ndarray] | None = None, verbose: int = 2) -> RefinedNetwork:
    """Train the refined network into ``folder``, resuming whatever an earlier call left there.

    Parameters
    ----------
    sequence : mrfbook.physics.sequence.FispSequence
    folder : path
        Run folder: stage files (:data:`STAGE_FILES`), checkpoints, ``training_log.jsonl``,
        ``config.json`` (the configuration, the sequence's digest and the number of restored
        signatures); a folder holding another run is refused.
    config : RefinedConfig
    restored : dict, optional
        Restored fingerprints and their reference (``x`` (N, L) real sign-resolved, ``t1_ms``,
        ``t2_ms``), e.g. :func:`mrfbook.analysis.training_inputs.load_restored_training_set`;
        added to both stages' training signatures.
    verbose : int
        Keras's progress lines (0 = none).

    Returns
    -------
    RefinedNetwork
        Also written to ``folder/model.npz`` (+ ``model.json``).

    Explained in chapter 11, book/11_real_inputs.md.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    n_restored = 0 if restored is None else int(len(restored["t1_ms"]))
    record = {**config.to_dict(), "sequence_digest": sequence.digest, "n_restored": n_restored}
    if cfg_path.is_file() and json.loads(cfg_path.read_text()) != record:
        raise ValueError(f"{cfg_path} holds another run (configuration, sequence or restored training set); "
                         "use a new folder, or the same configuration, sequence and training inputs")
    atomic_write_json(cfg_path, record)
    t_start = time.perf_counter()
    man_path = out / STAGE_FILES[0]
    if man_path.is_file():
        manifold = SignalManifold.load(man_path)
        if manifold.sequence_digest != sequence.digest:
            raise ValueError(f"{man_path} was simulated for another sequence; use a new folder")
    else:
        manifold = build_manifold(sequence, rank=config.rank)
        manifold.save(man_path)
    x, t1, t2 = synthetic_signatures(sequence, config.n_synthetic, config.seed, mix_fraction=config.mix_fraction,
                                     noise_fraction=config.noise_fraction, snr_db=config.snr_db)
    x, _ = normalise_signatures(x)
    if restored is not None:
        xr, _ = normalise_signatures(np.asarray(restored["x"]))
        x = np.concatenate([x, xr])
        t1 = np.concatenate([t1, np.asarray(restored["t1_ms"], dtype=np.float64)])
        t2 = np.concatenate([t2, np.asarray(restored["t2_ms"], dtype=np.float64)])
    t1 = np.clip(t1, *LOG_T1_RANGE)
    t2 = np.clip(t2, *LOG_T2_RANGE)
    z = encode(x, manifold).astype(np.float32)
    labels = to_log_labels(t1, t2)
    proposal = _fit_stage(out, "proposal", lambda: build_dense(config.rank, config.width, config.depth, "proposal"),
                          z, labels, config, config.epochs, "mse", verbose)
    net = RefinedNetwork(_dense_weights(proposal), manifold, config.n_iter, sequence.to_dict(), sequence.digest,
                         gate_residual=config.gate_residual, coarse_step=config.coarse_step)
    if config.correction_depth > 0:
        from mrfbook.nn.refined import from_log_labels

        t1_p, t2_p = from_log_labels(net.propose(z))
        fit = manifold.fit(z.astype(np.float64), t1_p, t2_p, n_iter=config.n_iter)
        fit_labels = to_log_labels(fit["t1_ms"], fit["t2_ms"])
        feats = correction_features(z, fit_labels, fit["residual"])
        # Weights turn the squared error of ln T into that of T (ms), scaled to O(1): the maps' SNR
        # is measured in ms, where long T1 and T2 carry the error.
        span = np.log(np.array([LOG_T1_RANGE[1] / LOG_T1_RANGE[0], LOG_T2_RANGE[1] / LOG_T2_RANGE[0]]))
        w = (np.stack([t1 / 1000.0, t2 / 100.0], axis=1) * span) ** 2
        rho2 = fit["residual"] ** 2
        gate = (rho2 / (rho2 + config.gate_residual**2))[:, None]
        # the network's output is multiplied by the gate at inference: train the gated output
        target = np.where(gate > 1e-3, (labels - fit_labels) / np.maximum(gate, 1e-3), 0.0)
        w = w * gate**2
        y = np.concatenate([target, w], axis=1).astype(np.float32)
        correction = _fit_stage(out, "correction",
                                lambda: build_dense(feats.shape[1], config.correction_width, config.correction_depth,
                                                    "correction"),
                                feats, y, config, config.correction_epochs, _weighted_mse, verbose)
        net.correction = _dense_weights(correction)
    net.metadata = {"config": config.to_dict(), "n_training": int(len(z)), "n_restored": n_restored,
                    "seconds_last_call": time.perf_counter() - t_start, "saved": utc_now()}
    net.save(out / "model.npz")
    return net
