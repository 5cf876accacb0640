"""Training the network for real inputs (:mod:`mrfbook.nn.refined`), resumably, on a CPU.

Three stages, each written to the run folder as it finishes, so that an interrupted run picks up
where it stopped (the Keras checkpoints hold the optimiser's state and the epoch):

1. the signal manifold (:func:`mrfbook.physics.manifold.build_manifold`), ``manifold.npz``;
2. the proposal network, on :func:`synthetic_signatures` (off-grid tissues, partial-volume sums,
   white noise) plus the restored fingerprints given, ``proposal.keras``;
3. the correction network, on noisy off-grid tissues (:func:`noisy_tissue_signatures`) after the
   proposal and the fit: it learns the estimate of least squared error (ms) for the noise level
   each signature shows, ``correction.keras``.

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
    LOG_T1_RANGE,
    LOG_T2_RANGE,
    RefinedNetwork,
    correction_features,
    encode,
    noise_gate,
    to_log_labels,
)
from mrfbook.physics.manifold import SignalManifold, build_manifold
from mrfbook.utils.checks import check_int
from mrfbook.utils.provenance import atomic_write_json, utc_now

__all__ = ["RefinedConfig", "synthetic_signatures", "noisy_tissue_signatures", "build_dense", "train_refined",
           "train_correction", "STAGE_FILES"]

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
        The same for the correction network (depth 0: none).
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
    n_correction : int
        Noisy training signatures of the correction network (:func:`noisy_tissue_signatures`).
    correction_snr_db : tuple of float
        Range of their image SNR (dB).
    clean_fraction : float
        Share of them without noise (they teach the correction to leave a clean fit alone).
    epochs, correction_epochs, batch_size : int
    learning_rate : float
        Peak learning rate (Adam, cosine decay to 1 % of it).
    validation_fraction : float
        Share of the training signatures held out for validation.
    seed : int

    Explained in chapter 11, book/11_real_inputs.md.
    """

    rank: int = 24
    width: int = 256
    depth: int = 3
    correction_width: int = 128
    correction_depth: int = 2
    n_iter: int = 8
    coarse_step: int = 4
    n_synthetic: int = 600_000
    mix_fraction: float = 0.3
    noise_fraction: float = 0.5
    snr_db: tuple[float, float] = (10.0, 50.0)
    epochs: int = 30
    correction_epochs: int = 16
    n_correction: int = 400_000
    correction_snr_db: tuple[float, float] = (10.0, 60.0)
    clean_fraction: float = 0.15
    batch_size: int = 1024
    learning_rate: float = 2e-3
    validation_fraction: float = 0.05
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary."""
        d = asdict(self)
        d["snr_db"] = list(self.snr_db)
        d["correction_snr_db"] = list(self.correction_snr_db)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RefinedConfig":
        """Inverse of :meth:`to_dict` (unknown keys raise ValueError)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"RefinedConfig has no fields {sorted(unknown)}; allowed: {sorted(known)}")
        d = dict(d)
        for key in ("snr_db", "correction_snr_db"):
            if key in d:
                d[key] = tuple(d[key])
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


def noisy_tissue_signatures(sequence: Any, n: int, seed: int, *, snr_db: tuple[float, float] = (10.0, 60.0),
                            clean_fraction: float = 0.15, chunk: int = 2000,
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Off-grid tissues with noise at the image, as a scan (and chapter 10's noise study) adds it.

    Tissues are uniform over the paper's dictionary box (T1 in [1, 5000] ms, T2 in [1, 2000] ms,
    T2 <= T1: the distribution of its grid, without the grid). They come in chunks of ``chunk``
    fingerprints, each chunk one "image" with one noise level: circular complex white noise at an
    image SNR drawn uniformly in ``snr_db``
    (:func:`mrfbook.physics.noise.image_noise_sigma`, :func:`~mrfbook.physics.noise.add_white_noise`),
    so that dark tissues get a lower SNR than bright ones, as in a scan; a ``clean_fraction`` of
    the chunks (at least one when it is > 0) stay clean.

    Returns
    -------
    x : numpy.ndarray
        (n, L) complex64 signatures (M0 = 1).
    t1_ms, t2_ms : numpy.ndarray
        (n,) float64 true values.
    clean : numpy.ndarray
        (n,) bool, the signatures without noise.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    from mrfbook.physics.epg import simulate_fisp
    from mrfbook.physics.noise import add_white_noise, image_noise_sigma

    n = check_int("n", n, 1)
    chunk = check_int("chunk", chunk, 1)
    if not (isinstance(clean_fraction, (int, float)) and 0.0 <= clean_fraction <= 1.0):
        raise ValueError(f"clean_fraction must be a number in [0, 1], got {clean_fraction!r}")
    if not (len(snr_db) == 2 and all(np.isfinite(snr_db)) and snr_db[0] <= snr_db[1]):
        raise ValueError(f"snr_db must be (low, high) finite dB values with low <= high, got {snr_db!r}")
    rng = np.random.default_rng([check_int("seed", seed, 0), 11])
    t1, t2 = np.empty(0), np.empty(0)
    while t1.size < n:  # uniform over the box, rejecting T2 > T1
        a, b = rng.uniform(*LOG_T1_RANGE, 2 * n), rng.uniform(*LOG_T2_RANGE, 2 * n)
        t1, t2 = np.concatenate([t1, a[b <= a]]), np.concatenate([t2, b[b <= a]])
    t1, t2 = t1[:n], t2[:n]
    atoms = np.asarray(simulate_fisp(sequence, t1, t2))
    x = atoms.astype(np.complex64)
    clean = np.ones(n, dtype=bool)
    starts = range(0, n, chunk)
    n_clean = max(1, int(round(clean_fraction * len(starts)))) if clean_fraction > 0 else 0
    clean_chunks = set(rng.choice(len(starts), size=n_clean, replace=False).tolist())
    for i, lo in enumerate(starts):
        snr = rng.uniform(*snr_db)
        if i in clean_chunks:
            continue
        block = atoms[lo:lo + chunk]
        x[lo:lo + chunk] = add_white_noise(block, image_noise_sigma(block[:, None, :], snr), seed=[seed, 11, i])
        clean[lo:lo + chunk] = False
    return x, t1, t2, clean


def build_dense(n_inputs: int, width: int, depth: int, name: str, *, zero_output: bool = False) -> keras.Model:
    """Dense network: ``depth`` hidden layers of ``width`` units (SiLU), two linear outputs.

    ``zero_output`` starts the output layer at zero (a correction that starts as none).

    Explained in chapter 11, book/11_real_inputs.md.
    """
    inputs = keras.Input((check_int("n_inputs", n_inputs, 1),), name="coefficients")
    h = inputs
    for i in range(check_int("depth", depth, 0)):
        h = keras.layers.Dense(check_int("width", width, 1), activation="silu", name=f"dense_{i}")(h)
    init = "zeros" if zero_output else "glorot_uniform"
    return keras.Model(inputs, keras.layers.Dense(2, name="out", kernel_initializer=init)(h), name=name)


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


def _gated_ms_loss(y_true: Any, y_pred: Any) -> Any:
    """Squared error in ms of the corrected fit, T1 over 5000 ms and T2 over 2000 ms.

    ``y_true`` (N, 5): true T1 and T2 scaled so, the fitted labels (2) and the gate; ``y_pred`` the
    network's raw correction of the labels, applied as at inference (fit + gate x correction).
    """
    ops = keras.ops
    low = np.log(np.array([LOG_T1_RANGE[0], LOG_T2_RANGE[0]], dtype=np.float32))
    span = np.log(np.array([LOG_T1_RANGE[1] / LOG_T1_RANGE[0], LOG_T2_RANGE[1] / LOG_T2_RANGE[0]], dtype=np.float32))
    top = np.array([LOG_T1_RANGE[1], LOG_T2_RANGE[1]], dtype=np.float32)
    y = y_true[:, 2:4] + y_true[:, 4:5] * y_pred
    t = ops.exp(ops.convert_to_tensor(low) + y * ops.convert_to_tensor(span)) / ops.convert_to_tensor(top)
    return ops.mean(ops.sum(ops.square(t - y_true[:, :2]), axis=1))


def _fit_stage(folder: Path, stage: str, build: Any, x: np.ndarray, y: np.ndarray, cfg: RefinedConfig,
               epochs: int, loss: Any, verbose: int) -> keras.Model:
    """Train (or resume, or load when done) one stage; checkpoint every epoch."""
    ckpt = folder / f"{stage}.checkpoint.keras"
    done = folder / f"{stage}.keras"
    custom = {"_gated_ms_loss": _gated_ms_loss}
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
                         coarse_step=config.coarse_step)
    if config.correction_depth > 0:
        train_correction(net, sequence, out, config, verbose=verbose)
    net.metadata = {"config": config.to_dict(), "n_training": int(len(z)), "n_restored": n_restored,
                    "seconds_last_call": time.perf_counter() - t_start, "saved": utc_now()}
    net.save(out / "model.npz")
    return net


#: The gate closes at this multiple of the largest noise level a clean training fingerprint shows.
CLEAN_LEVEL_MARGIN = 1.1


def train_correction(net: RefinedNetwork, sequence: Any, folder: str | Path, config: RefinedConfig, *,
                     verbose: int = 2) -> RefinedNetwork:
    """Train the noise correction of ``net`` (resumable stage ``correction``) and attach it, in place.

    Signatures: :func:`noisy_tissue_signatures` (``config.n_correction``, ``correction_snr_db``,
    ``clean_fraction``), read by ``net`` up to its fit. ``net.clean_level`` becomes
    :data:`CLEAN_LEVEL_MARGIN` times the largest noise level of the clean ones; the network is
    trained through the gate, towards the true T1 and T2 in ms (:func:`_gated_ms_loss`).

    Returns
    -------
    RefinedNetwork
        ``net``, with ``correction`` and ``clean_level`` set.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    out = Path(folder)
    x, t1, t2, clean = noisy_tissue_signatures(sequence, config.n_correction, config.seed,
                                               snr_db=config.correction_snr_db, clean_fraction=config.clean_fraction)
    keep_correction, net.correction = net.correction, []
    est = net.estimate(x)  # without a correction: the fit, and each signature's noise level
    net.correction = keep_correction
    ok = np.isfinite(est["t1_fit_ms"]) & np.isfinite(est["noise_level"])
    if not clean[ok].any():
        raise ValueError("clean_fraction: the correction's training set has no clean signature to set the gate by")
    net.clean_level = CLEAN_LEVEL_MARGIN * float(np.max(est["noise_level"][ok & clean]))
    xr, _ = normalise_signatures(x[ok])
    z = encode(xr, net.manifold).astype(np.float32)
    fit_labels = to_log_labels(est["t1_fit_ms"][ok], est["t2_fit_ms"][ok])
    feats = correction_features(z, fit_labels, est["noise_level"][ok])
    gate = noise_gate(est["noise_level"][ok], net.clean_level)[:, None]
    truth = np.stack([t1[ok] / LOG_T1_RANGE[1], t2[ok] / LOG_T2_RANGE[1]], axis=1)
    y = np.concatenate([truth, fit_labels, gate], axis=1).astype(np.float32)
    correction = _fit_stage(out, "correction",
                            lambda: build_dense(feats.shape[1], config.correction_width, config.correction_depth,
                                                "correction", zero_output=True),
                            feats, y, config, config.correction_epochs, _gated_ms_loss, verbose)
    net.correction = _dense_weights(correction)
    return net
