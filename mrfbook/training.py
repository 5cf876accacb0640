"""Train the residual 1-D CNN on a dictionary, with checkpoints, logs and provenance.

The recipe of Song et al. (ICASSP 2019, section 4.1) is the default
:class:`TrainingConfig` with ONE documented change: RMSE loss, Adam, learning
rate divided by 10 every 10 epochs down to 1e-6, batch 256, 50 epochs, 20 % of
the dictionary held out for validation. Inputs are the real part of each atom
scaled to unit L2 norm; labels are (T1, T2) in ms divided by (5000, 2000) ms
(the top of the paper's grid) so both outputs are O(1); predictions are mapped
back to ms. The change: the initial learning rate is 1e-3, not the paper's
1e-2. The paper trained on labels in ms, for which 1e-2 suits the output layer;
with scaled labels the paper network at 1e-2 diverged in its first steps and
collapsed to predicting the mean in our tests, while 1e-3 trains steadily.
``TrainingConfig.paper_exact()`` gives the paper's setting (1e-2, labels in ms).

The loop runs one ``model.fit`` call per epoch with an epoch-seeded
permutation of the training set and the learning rate set from the epoch
number, so a run interrupted after epoch n and resumed from its checkpoint
continues with exactly the batches and learning rates the uninterrupted run
would have used.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from mrfbook.inference import normalise_signatures, predict_maps, predict_parameters
from mrfbook.network import NetworkConfig, build_from_config, paper_config
from mrfbook.sequence import FispSequence
from mrfbook.tissue_sampling import fresh_training_set

__all__ = [
    "LabelScaling",
    "make_label_scaling",
    "TrainingConfig",
    "TrainingResult",
    "TrainedModel",
    "SequenceMismatchError",
    "CheckpointMismatchError",
    "rmse_loss",
    "ParameterRMSE",
    "prepare_training_data",
    "split_indices",
    "random_subset",
    "add_signature_noise",
    "noisy_training_inputs",
    "evaluate_on_dictionary",
    "train",
    "save_trained_model",
    "load_trained_model",
    "load_model",
    "read_model_metadata",
    "sidecar_path",
    "runtime_info",
    "file_sha256",
    "read_log",
    "predict_parameters",
    "predict_maps",
]

SIDECAR_FORMAT = "mrfbook-trained-model/1"
CHECKPOINT_MODEL = "checkpoint.keras"
CHECKPOINT_STATE = "state.json"
LOG_NAME = "training_log.jsonl"
EMBEDDED_METADATA = "mrfbook.json"
LABEL_SCALINGS = ("fixed", "standardise", "none")


class SequenceMismatchError(ValueError):
    """A trained model is used with a sequence other than the one it was trained on."""


class CheckpointMismatchError(ValueError):
    """A checkpoint directory holds a run with another configuration or dictionary."""


# --------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class LabelScaling:
    """Affine map between parameters in ms and the network's outputs.

    ``scaled = (y_ms - offset) / scale`` per column.

    Attributes
    ----------
    offset, scale : tuple of float, length n_outputs
        In ms. Default: offset 0, scale (5000, 2000) ms, the top of the
        paper's T1 / T2 grid, so labels lie in [0, 1].
    method : str
        "fixed" or "standardise" (offset = mean, scale = std of the training labels).

    Explained in chapter 7, book/07_training.md.
    """

    offset: tuple[float, ...] = (0.0, 0.0)
    scale: tuple[float, ...] = (5000.0, 2000.0)
    method: str = "fixed"

    def __post_init__(self) -> None:
        if len(self.offset) != len(self.scale):
            raise ValueError(f"offset and scale must have the same length, got {len(self.offset)} and {len(self.scale)}")
        if not all(np.isfinite(s) and s > 0 for s in self.scale):
            raise ValueError(f"scale must be finite and > 0 in every column, got {self.scale}")

    @classmethod
    def fixed(cls, t1_max_ms: float = 5000.0, t2_max_ms: float = 2000.0) -> "LabelScaling":
        """T1 / t1_max_ms, T2 / t2_max_ms."""
        return cls((0.0, 0.0), (float(t1_max_ms), float(t2_max_ms)), "fixed")

    @classmethod
    def standardised(cls, y_ms: np.ndarray) -> "LabelScaling":
        """Zero mean, unit variance per column of ``y_ms`` (N, n_outputs)."""
        y = np.asarray(y_ms, dtype=np.float64)
        return cls(tuple(map(float, y.mean(axis=0))), tuple(map(float, y.std(axis=0))), "standardise")

    def transform(self, y_ms: np.ndarray) -> np.ndarray:
        """ms (N, n_outputs) -> network units, float32."""
        y = np.asarray(y_ms, dtype=np.float64)
        return ((y - np.asarray(self.offset)) / np.asarray(self.scale)).astype(np.float32)

    def inverse(self, y_scaled: np.ndarray) -> np.ndarray:
        """Network units (N, n_outputs) -> ms, float64."""
        y = np.asarray(y_scaled, dtype=np.float64)
        return y * np.asarray(self.scale) + np.asarray(self.offset)

    def to_dict(self) -> dict[str, Any]:
        return {"offset": list(self.offset), "scale": list(self.scale), "method": self.method}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabelScaling":
        return cls(tuple(d["offset"]), tuple(d["scale"]), d.get("method", "fixed"))


def make_label_scaling(method: str, y_ms: np.ndarray) -> LabelScaling:
    """``"fixed"`` (T1/5000, T2/2000 ms), ``"standardise"`` (from ``y_ms``) or ``"none"`` (labels in ms)."""
    if method == "fixed":
        return LabelScaling.fixed()
    if method == "standardise":
        return LabelScaling.standardised(y_ms)
    if method == "none":
        return LabelScaling((0.0, 0.0), (1.0, 1.0), "none")
    raise ValueError(f"label_scaling must be one of {LABEL_SCALINGS}, got {method!r}")


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of a training run (defaults = the paper's recipe).

    Attributes
    ----------
    network : NetworkConfig
        Architecture (default :func:`mrfbook.network.paper_config`).
    epochs : int
        Number of epochs (paper: 50).
    batch_size : int
        Signatures per optimiser step (paper: 256).
    learning_rate : float
        Initial Adam learning rate. Default 1e-3 for the scaled labels; the paper's
        1e-2 with labels in ms is :meth:`paper_exact` (see the module docstring).
    lr_decay_factor, lr_decay_every : float, int
        Multiply the rate by ``lr_decay_factor`` every ``lr_decay_every`` epochs (0.1, 10).
    min_learning_rate : float
        Floor of the schedule (paper: 1e-6).
    validation_fraction : float
        Fraction of the dictionary held out, chosen by a seeded permutation (0.2).
    label_scaling : {"fixed", "standardise", "none"}
        "fixed": T1/5000 ms, T2/2000 ms; "standardise": per-column mean/std of the training
        labels; "none": labels in ms (the paper's code).
    seed : int
        Seeds weight initialisation, the split and the per-epoch batch order.
    mixed_precision : bool
        Compute in bfloat16 (CPU) / float16 with loss scaling (GPU); weights stay float32.
    jit_compile : bool or "auto"
        Passed to ``model.compile`` (XLA for TF/JAX; "auto" lets Keras decide).
    noise_snr_db : (float, float) or None
        Training-time noise augmentation (not in the paper; default None = clean
        atoms, the paper's recipe). With ``(lo, hi)``, every epoch each training
        signature gets fresh noise at its own SNR drawn uniformly in ``[lo, hi]``
        dB, exactly as a noisy image-stack signature reaches the network: the
        clean real signature ``s`` (L,) receives circular complex white Gaussian
        noise of variance ``sigma**2`` per time point (real and imaginary parts
        each ``sigma**2 / 2``) with ``SNR_dB = 10 log10(mean_t |s_t|**2 / sigma**2)``
        (the definition of :func:`mrfbook.acquisition.add_noise`, applied per
        signature), then goes through :func:`mrfbook.inference.normalise_signatures`
        with ``complex_mode="dephase"`` (real part after removing the constant
        phase, unit L2 norm) like every signature at inference. See
        :func:`noisy_training_inputs`. The noise and the SNRs are seeded from
        ``(seed, epoch)``, so a resumed run sees the same noise as an
        uninterrupted one. Validation data stay clean. Left out of
        :meth:`to_dict` when None, so configurations and checkpoints written
        before this field existed still match.
    fresh_tissues : bool
        Not in the paper (default False: train on the dictionary's atoms). True: every
        epoch trains on as many *new* tissues as the training split holds, drawn uniformly
        from the (T1, T2) region the training atoms span (T1 >= T2) and simulated with the
        dictionary's sequence (:func:`mrfbook.tissue_sampling.fresh_training_set`), seeded
        from ``(seed, epoch)`` so a resumed run sees the same tissues. The validation split
        stays the held-out atoms. Removes the grid rows a network otherwise never sees
        between (chapter 7). Needs a (T1, T2) dictionary of a FispSequence (no B1). Left out
        of :meth:`to_dict` when False.

    Explained in chapter 7, book/07_training.md; noise augmentation in chapter 10,
    book/10_beyond.md.
    """

    network: NetworkConfig = field(default_factory=paper_config)
    epochs: int = 50
    batch_size: int = 256
    learning_rate: float = 1e-3
    lr_decay_factor: float = 0.1
    lr_decay_every: int = 10
    min_learning_rate: float = 1e-6
    validation_fraction: float = 0.2
    label_scaling: str = "fixed"
    seed: int = 0
    mixed_precision: bool = False
    jit_compile: bool | str = "auto"
    noise_snr_db: tuple[float, float] | None = None
    fresh_tissues: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.network, NetworkConfig):
            raise ValueError(f"network must be a NetworkConfig, got {type(self.network).__name__}")
        for name in ("epochs", "batch_size", "lr_decay_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (0 < self.lr_decay_factor <= 1):
            raise ValueError(f"lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        if not (0 < self.min_learning_rate <= self.learning_rate):
            raise ValueError(f"min_learning_rate must be in (0, learning_rate], got {self.min_learning_rate}")
        if not (0 < self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.label_scaling not in LABEL_SCALINGS:
            raise ValueError(f"label_scaling must be one of {LABEL_SCALINGS}, got {self.label_scaling!r}")
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError(f"jit_compile must be True, False or 'auto', got {self.jit_compile!r}")
        if self.noise_snr_db is not None:
            object.__setattr__(self, "noise_snr_db", _check_snr_range(self.noise_snr_db))
        if not isinstance(self.fresh_tissues, bool):
            raise ValueError(f"fresh_tissues must be True or False, got {self.fresh_tissues!r}")

    @classmethod
    def paper_exact(cls, **changes: Any) -> "TrainingConfig":
        """The paper's setting as published: Adam at 1e-2 on labels in ms (``label_scaling="none"``)."""
        return cls(**{"learning_rate": 1e-2, "label_scaling": "none", **changes})

    def learning_rate_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: lr * factor**(epoch // every), floored at min_learning_rate."""
        lr = self.learning_rate * self.lr_decay_factor ** (epoch // self.lr_decay_every)
        return float(max(lr, self.min_learning_rate))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``noise_snr_db`` and ``fresh_tissues`` appear only when set (see the class docstring)."""
        d = dataclasses.asdict(self)
        d["network"] = self.network.to_dict()
        if not self.fresh_tissues:
            del d["fresh_tissues"]
        if self.noise_snr_db is None:
            del d["noise_snr_db"]
        else:
            d["noise_snr_db"] = list(self.noise_snr_db)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainingConfig":
        """Inverse of :meth:`to_dict`; dicts written before ``noise_snr_db`` existed load as clean training."""
        d = dict(d)
        d["network"] = NetworkConfig.from_dict(d["network"])
        if d.get("noise_snr_db") is not None:
            d["noise_snr_db"] = tuple(d["noise_snr_db"])
        return cls(**d)


def _check_snr_range(value: Any) -> tuple[float, float]:
    """``(lo, hi)`` in dB, finite, lo <= hi, else ValueError naming ``noise_snr_db``."""
    msg = f"noise_snr_db must be None or a pair (lo, hi) of finite SNRs in dB with lo <= hi, got {value!r}"
    if isinstance(value, (str, bytes)):
        raise ValueError(msg)
    try:
        pair = tuple(value)
    except TypeError as exc:
        raise ValueError(msg) from exc
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in pair):
        raise ValueError(msg)
    lo, hi = float(pair[0]), float(pair[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(msg)
    return lo, hi


# --------------------------------------------------------------------------- loss / metrics
@keras.saving.register_keras_serializable(package="mrfbook")
def rmse_loss(y_true, y_pred):
    """Root-mean-square error over the batch and all outputs (the paper's loss)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.sqrt(ops.mean(ops.square(y_pred - y_true)) + 1e-12)


@keras.saving.register_keras_serializable(package="mrfbook")
class ParameterRMSE(keras.metrics.Metric):
    """RMSE of one output column in ms, accumulated exactly over an epoch."""

    def __init__(self, index: int = 0, scale: float = 1.0, name: str = "rmse_ms", **kwargs):
        super().__init__(name=name, **kwargs)
        self.index = int(index)
        self.scale = float(scale)
        self.sse = self.add_variable(shape=(), initializer="zeros", name="sse")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        d = (ops.cast(y_pred[:, self.index], "float32") - ops.cast(y_true[:, self.index], "float32")) * self.scale
        self.sse.assign(self.sse + ops.sum(ops.square(d)))
        self.count.assign(self.count + ops.cast(ops.shape(d)[0], "float32"))

    def result(self):
        return ops.sqrt(self.sse / ops.maximum(self.count, 1.0))

    def reset_state(self):
        self.sse.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "index": self.index, "scale": self.scale}


# --------------------------------------------------------------------------- data
def prepare_training_data(dictionary: Any) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs and labels from a dictionary.

    Parameters
    ----------
    dictionary : mrfbook.dictionary.Dictionary
        ``atoms`` (K, L), ``t1_ms`` (K,), ``t2_ms`` (K,).

    Returns
    -------
    x : ndarray, (K, L), float32
        Real part of each atom scaled to unit L2 norm.
    y : ndarray, (K, 2), float64
        [T1, T2] in ms.

    Explained in chapter 7, book/07_training.md.
    """
    atoms = np.asarray(dictionary.atoms)
    t1 = np.asarray(dictionary.t1_ms, dtype=np.float64)
    t2 = np.asarray(dictionary.t2_ms, dtype=np.float64)
    if atoms.ndim != 2 or t1.shape != (atoms.shape[0],) or t2.shape != (atoms.shape[0],):
        raise ValueError(
            f"dictionary must have atoms (K, L) and t1_ms, t2_ms (K,); got {atoms.shape}, {t1.shape}, {t2.shape}"
        )
    x, norms = normalise_signatures(atoms, complex_mode="real")
    if np.any(norms == 0):
        raise ValueError(f"dictionary.atoms has {int(np.sum(norms == 0))} all-zero rows; every atom needs signal")
    return x, np.stack([t1, t2], axis=1)


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, validation) index split of ``n`` samples."""
    if not (0 < validation_fraction < 1):
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    n_val = int(round(validation_fraction * n))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"need at least one training and one validation sample; n={n}, validation_fraction={validation_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def random_subset(dictionary: Any, n_atoms: int, *, seed: int = 0) -> Any:
    """A seeded random subset of ``n_atoms`` atoms of ``dictionary`` (same type, same sequence).

    Used for quick trainings and smoke tests (e.g. ``scripts/train_full.py --max-atoms``).
    """
    k = len(dictionary.t1_ms)
    if isinstance(n_atoms, bool) or not isinstance(n_atoms, (int, np.integer)) or not (1 <= n_atoms <= k):
        raise ValueError(f"n_atoms must be an integer in [1, {k}], got {n_atoms!r}")
    idx = np.sort(np.random.default_rng(seed).choice(k, size=int(n_atoms), replace=False))
    changes = {"atoms": np.asarray(dictionary.atoms)[idx], "t1_ms": np.asarray(dictionary.t1_ms)[idx],
               "t2_ms": np.asarray(dictionary.t2_ms)[idx]}
    if getattr(dictionary, "b1_scale", None) is not None:
        changes["b1_scale"] = np.asarray(dictionary.b1_scale)[idx]
    return dataclasses.replace(dictionary, **changes)


def evaluate_on_dictionary(model: Any, dictionary: Any, *, batch_size: int = 4096,
                           return_predictions: bool = False) -> Any:
    """Accuracy of a trained model on the atoms of a (test) dictionary.

    Parameters
    ----------
    model : TrainedModel
    dictionary : Dictionary
        E.g. the shifted test grid (``cached_dictionary(grid="test")``), no pair in common with training.
    batch_size : int
        Signatures per forward pass.
    return_predictions : bool
        Also return the predictions, so further analysis (e.g. :mod:`mrfbook.error_breakdown`)
        needs no second pass.

    Returns
    -------
    dict, or (dict, (N, 2) float array) with ``return_predictions``
        ``n``, ``seconds`` (inference), and per parameter ``t1_rmse_ms``, ``t1_mae_ms``,
        ``t1_max_abs_ms``, ``t1_r2`` (same for t2); the predicted (T1, T2) in ms.

    Explained in chapter 7, book/07_training.md.
    """
    from mrfbook.metrics import r2, rmse

    t0 = time.perf_counter()
    pred = predict_parameters(model, dictionary.atoms, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"n": int(len(pred)), "seconds": seconds}
    for j, (name, ref) in enumerate((("t1", dictionary.t1_ms), ("t2", dictionary.t2_ms))):
        ref = np.asarray(ref, dtype=np.float64)
        err = pred[:, j] - ref
        out[f"{name}_rmse_ms"] = float(rmse(pred[:, j], ref))
        out[f"{name}_mae_ms"] = float(np.mean(np.abs(err)))
        out[f"{name}_max_abs_ms"] = float(np.max(np.abs(err)))
        out[f"{name}_r2"] = float(r2(pred[:, j], ref))
    return (out, pred) if return_predictions else out


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, 1, epoch]).permutation(n)


def add_signature_noise(
    signatures: np.ndarray, snr_db: float | np.ndarray, rng: np.random.Generator | int | None = 0
) -> np.ndarray:
    """Circular complex white Gaussian noise at a stated SNR for every signature.

    Definition (that of :func:`mrfbook.acquisition.add_noise`, applied to each row
    on its own): ``SNR_dB = 10 log10(mean_t |s_t|**2 / sigma**2)``, ``sigma**2`` the
    noise variance per complex time point, real and imaginary parts independent
    with variance ``sigma**2 / 2`` each. All-zero rows stay zero.

    Parameters
    ----------
    signatures : ndarray, (N, L), real or complex
        Clean signatures, any units.
    snr_db : float or ndarray (N,)
        SNR in dB, one for all rows or one per row; finite.
    rng : numpy.random.Generator, int or None
        Generator, or a seed for ``numpy.random.default_rng``.

    Returns
    -------
    ndarray, (N, L), complex64
        Noisy signatures.

    Explained in chapter 10, book/10_beyond.md.
    """
    s = np.asarray(signatures)
    if s.ndim != 2:
        raise ValueError(f"signatures must be a 2-D array (N, L), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("signatures must be finite (found NaN or inf)")
    snr = np.asarray(snr_db, dtype=np.float64)
    if snr.ndim > 1 or (snr.ndim == 1 and snr.shape != (s.shape[0],)) or not np.all(np.isfinite(snr)):
        raise ValueError(f"snr_db must be a finite number of dB or an array of shape ({s.shape[0]},), got {snr_db!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    power = np.mean(np.abs(s.astype(np.complex128)) ** 2, axis=1)
    sigma = np.sqrt(power / 10.0 ** (snr / 10.0)).astype(np.float32)
    scale = (sigma / np.float32(np.sqrt(2.0)))[:, None]
    noise_re = gen.standard_normal(s.shape, dtype=np.float32)
    noise_im = gen.standard_normal(s.shape, dtype=np.float32)
    out = s.astype(np.complex64, copy=True)
    out.real += noise_re * scale
    out.imag += noise_im * scale
    return out


def noisy_training_inputs(x: np.ndarray, snr_range_db: tuple[float, float], seed: int, epoch: int) -> np.ndarray:
    """Network inputs of one epoch of noise-augmented training (``TrainingConfig.noise_snr_db``).

    Every row gets an SNR drawn uniformly in ``snr_range_db`` and noise from
    :func:`add_signature_noise`, then :func:`mrfbook.inference.normalise_signatures`
    (``complex_mode="dephase"``, as at inference). The generator is seeded from
    ``(seed, epoch)``: the same call gives the same array.

    Parameters
    ----------
    x : ndarray, (N, L), real
        Clean inputs (e.g. from :func:`prepare_training_data`).
    snr_range_db : (float, float)
        ``(lo, hi)`` in dB, lo <= hi.
    seed, epoch : int
        Run seed and 0-based epoch.

    Returns
    -------
    ndarray, (N, L), float32
        Unit-norm noisy inputs.

    Explained in chapter 10, book/10_beyond.md.
    """
    lo, hi = _check_snr_range(snr_range_db)
    rng = np.random.default_rng([int(seed), 2, int(epoch)])
    snr = rng.uniform(lo, hi, size=np.asarray(x).shape[0]) if hi > lo else np.full(np.asarray(x).shape[0], lo)
    noisy, _ = normalise_signatures(add_signature_noise(x, snr, rng), complex_mode="dephase")
    return noisy


# --------------------------------------------------------------------------- provenance
def runtime_info() -> dict[str, Any]:
    """Backend, device, library versions and host of the current process."""
    import numpy

    backend = keras.backend.backend()
    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "keras": keras.__version__}
    device = "cpu"
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            versions["tensorflow"] = tf.__version__
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                device = f"gpu: {details.get('device_name', gpus[0].name)} (x{len(gpus)})"
        elif backend == "jax":
            import jax

            versions["jax"] = jax.__version__
            d = jax.devices()[0]
            device = f"{d.platform}: {getattr(d, 'device_kind', '')}"
        elif backend == "torch":
            import torch

            versions["torch"] = torch.__version__
            if torch.cuda.is_available():
                device = f"gpu: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    except Exception as exc:  # pragma: no cover - provenance must never break training
        device = f"unknown ({exc})"
    try:
        from importlib.metadata import version

        versions["mrfbook"] = version("mrfbook")
    except Exception:  # pragma: no cover
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    return {
        "backend": backend,
        "device": device,
        "cpu": f"{cpu} ({os.cpu_count()} logical cores)",
        "host": platform.node(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _is_gpu(info: dict[str, Any]) -> bool:
    return info["device"].startswith("gpu")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _sequence_info(dictionary: Any) -> tuple[dict[str, Any] | None, str | None]:
    seq = getattr(dictionary, "sequence", None)
    if seq is None:
        return None, None
    return seq.to_dict(), seq.digest


# --------------------------------------------------------------------------- results
@dataclass
class TrainingResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : keras.Model
        Trained (compiled) model; outputs are in scaled label units.
    history : dict of str -> list of float
        Per-epoch ``loss``, ``val_loss``, ``t1_rmse_ms``, ``t2_rmse_ms`` (and ``val_`` versions),
        ``lr`` and ``seconds`` for every epoch of the run, including epochs
        done before a resume.
    config : TrainingConfig
    label_scaling : LabelScaling
    sequence : dict or None
        ``sequence.to_dict()`` of the dictionary's sequence.
    sequence_digest : str or None
    n_atoms : int
    resumed_from_epoch : int
        Epochs already completed in the checkpoint when this call started (0 = fresh).
    runtime : dict
        :func:`runtime_info` of this process.
    initial_model : dict or None
        For a continuation (``train(..., initial_model=...)``): the start model's
        path, SHA-256, epochs completed and training configuration; None for a run
        from random weights.
    """

    model: keras.Model
    history: dict[str, list[float]]
    config: TrainingConfig
    label_scaling: LabelScaling
    sequence: dict[str, Any] | None
    sequence_digest: str | None
    n_atoms: int
    resumed_from_epoch: int = 0
    runtime: dict[str, Any] = field(default_factory=dict)
    initial_model: dict[str, Any] | None = None

    @property
    def epochs_completed(self) -> int:
        return len(self.history.get("loss", []))

    def trained_model(self) -> "TrainedModel":
        """The model packaged with its label scaling and sequence, ready for prediction."""
        return TrainedModel(self.model, self.label_scaling, self.sequence, self.sequence_digest, self.metadata())

    def metadata(self) -> dict[str, Any]:
        """Sidecar content: sequence, scaling, configs, history summary, provenance."""
        return {
            "format": SIDECAR_FORMAT,
            "sequence": self.sequence,
            "sequence_digest": self.sequence_digest,
            "label_scaling": self.label_scaling.to_dict(),
            "network": self.config.network.to_dict(),
            "training": self.config.to_dict(),
            "n_atoms": self.n_atoms,
            "epochs_completed": self.epochs_completed,
            "final": {k: v[-1] for k, v in self.history.items() if v},
            "input": "real part of each signature, L2-normalised per signature",
            "runtime": self.runtime,
            "saved": _now(),
            **({"continued_from": self.initial_model} if self.initial_model is not None else {}),
        }

    def save(self, path: str | os.PathLike, *, sidecar: bool = True) -> Path:
        """Save as ``path`` (.keras, metadata inside) plus the sidecar ``<path stem>.json``; returns the path."""
        return save_trained_model(self.trained_model(), path, sidecar=sidecar)


@dataclass
class TrainedModel:
    """A network bundled with what is needed to use it correctly.

    Attributes
    ----------
    model : keras.Model
    label_scaling : LabelScaling
    sequence : dict or None
        ``FispSequence.to_dict()`` of the training sequence.
    sequence_digest : str or None
    metadata : dict
        Full sidecar content.
    """

    model: keras.Model
    label_scaling: LabelScaling
    sequence: dict[str, Any] | None
    sequence_digest: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict(self, signatures: np.ndarray, **kwargs) -> np.ndarray:
        """(N, L) signatures -> (N, 2) [T1, T2] ms; see :func:`mrfbook.inference.predict_parameters`."""
        return predict_parameters(self, signatures, **kwargs)

    def check_sequence(self, expected_sequence: Any) -> None:
        """Raise SequenceMismatchError unless ``expected_sequence`` is the training sequence."""
        if expected_sequence is None:
            return
        if self.sequence_digest is None:
            raise SequenceMismatchError(
                "this model records no training sequence, so it cannot be checked against expected_sequence"
            )
        if expected_sequence.digest != self.sequence_digest:
            differing = []
            if self.sequence is not None:
                exp = expected_sequence.to_dict()
                differing = sorted(k for k in set(exp) | set(self.sequence) if exp.get(k) != self.sequence.get(k))
            raise SequenceMismatchError(
                "expected_sequence does not match the sequence the model was trained on "
                f"(digest {expected_sequence.digest[:12]}… vs trained {self.sequence_digest[:12]}…; "
                f"differing fields: {', '.join(differing) or 'unknown'}). Retrain the network for this sequence."
            )


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``models/x/model.keras`` -> ``models/x/model.json``."""
    p = Path(model_path)
    return p.with_suffix(".json")


def save_trained_model(trained: TrainedModel, path: str | os.PathLike, *, sidecar: bool = True) -> Path:
    """Write ``path`` (must end in .keras) with its metadata, plus a readable JSON sidecar.

    The metadata (training sequence and its digest, label scaling, network and
    training configuration, provenance) is stored twice: inside the ``.keras``
    zip as ``mrfbook.json`` (so the file is self-contained and can be renamed
    or moved alone) and, if ``sidecar``, as ``<path stem>.json`` for people (leave it out when
    ``path`` is a temporary name that will be renamed).

    Explained in chapter 7, book/07_training.md.
    """
    p = Path(path)
    if p.suffix != ".keras":
        raise ValueError(f"path must end in '.keras', got {str(p)!r}")
    p.parent.mkdir(parents=True, exist_ok=True)
    trained.model.save(p)
    meta = dict(trained.metadata)
    meta.update(
        format=SIDECAR_FORMAT,
        sequence=trained.sequence,
        sequence_digest=trained.sequence_digest,
        label_scaling=trained.label_scaling.to_dict(),
        model_file=p.name,
    )
    with zipfile.ZipFile(p, "a") as zf:
        zf.writestr(EMBEDDED_METADATA, json.dumps(meta))
    if sidecar:
        _atomic_write_json(sidecar_path(p), meta)
    return p


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata stored in a model file by :func:`save_trained_model` (sidecar as fallback)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no model file at path={str(p)!r}")
    meta = None
    try:
        with zipfile.ZipFile(p) as zf:
            if EMBEDDED_METADATA in zf.namelist():
                meta = json.loads(zf.read(EMBEDDED_METADATA))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"path={str(p)!r} is not a .keras model file ({exc})") from exc
    if meta is None and sidecar_path(p).is_file():
        meta = json.loads(sidecar_path(p).read_text())
    if meta is None:
        raise ValueError(
            f"model {str(p)!r} records no training metadata (no {EMBEDDED_METADATA} inside and no sidecar "
            f"{str(sidecar_path(p))!r}): its sequence and label scaling are unknown; save it with save_trained_model"
        )
    if meta.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"model {str(p)!r} has metadata format {meta.get('format')!r}, expected {SIDECAR_FORMAT!r}")
    return meta


def load_trained_model(path: str | os.PathLike, expected_sequence: Any = None, *, compile: bool = False) -> TrainedModel:
    """Load a model saved by :func:`save_trained_model` / :meth:`TrainingResult.save`.

    Parameters
    ----------
    path : path to the ``.keras`` file
    expected_sequence : FispSequence, optional
        If given, the model must have been trained on exactly this sequence
        (same digest), else :class:`SequenceMismatchError`.
    compile : bool
        Also restore the loss/optimizer (only needed to continue training).

    Explained in chapter 7, book/07_training.md.
    """
    meta = read_model_metadata(path)
    model = keras.saving.load_model(Path(path), compile=compile)
    trained = TrainedModel(
        model=model,
        label_scaling=LabelScaling.from_dict(meta["label_scaling"]),
        sequence=meta.get("sequence"),
        sequence_digest=meta.get("sequence_digest"),
        metadata=meta,
    )
    trained.check_sequence(expected_sequence)
    return trained


def load_model(path: str | os.PathLike, expected_sequence: Any = None) -> tuple[TrainedModel, Any]:
    """:func:`load_trained_model` plus the training sequence as a ``FispSequence``."""
    from mrfbook.sequence import FispSequence

    trained = load_trained_model(path, expected_sequence)
    if trained.sequence is None:
        raise ValueError(f"model {str(path)!r} records no training sequence")
    return trained, FispSequence.from_dict(trained.sequence)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSON-lines training log (one dict per epoch)."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------- training
def _compile(model: keras.Model, config: TrainingConfig, scaling: LabelScaling, gpu: bool) -> None:
    opt: Any = keras.optimizers.Adam(learning_rate=config.learning_rate)
    if config.mixed_precision and gpu:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    metrics = [
        ParameterRMSE(j, scaling.scale[j], name=f"{name}_rmse_ms")
        for j, name in enumerate(("t1", "t2")[: config.network.n_outputs])
    ]
    model.compile(optimizer=opt, loss=rmse_loss, metrics=metrics, jit_compile=config.jit_compile)


def _set_lr(model: keras.Model, lr: float) -> None:
    model.optimizer.learning_rate = lr


def train(
    dictionary: Any,
    config: TrainingConfig | None = None,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    log_path: str | os.PathLike | None = None,
    initial_model: str | os.PathLike | None = None,
    reset_optimizer: bool = False,
) -> TrainingResult:
    """Train the network on ``dictionary`` (resuming from ``checkpoint_dir`` if it holds a run).

    Parameters
    ----------
    dictionary : mrfbook.dictionary.Dictionary
        Training set: atoms (K, L), t1_ms, t2_ms (K,) in ms, and its ``sequence``.
    config : TrainingConfig, optional
        Default: the paper's recipe and network (for the dictionary's L).
        ``config.network.n_timepoints`` must equal L.
    checkpoint_dir : path, optional
        After every epoch the model with its optimizer state is saved to
        ``checkpoint.keras`` and the run state (epochs done, history, config,
        sequence digest) to ``state.json`` here. If the directory already
        holds a run with the same configuration and dictionary, training
        resumes after its last completed epoch; ``config.epochs`` may be
        larger than before to extend a finished run. A different run raises
        :class:`CheckpointMismatchError`.
    progress : bool
        Show a tqdm bar over epochs with the latest losses.
    log_path : path, optional
        JSON-lines log, one record per epoch (epoch, loss, val_loss, RMSEs in ms,
        lr, seconds, device, backend, versions). Default: ``training_log.jsonl``
        in ``checkpoint_dir`` when that is given, else no log.
    initial_model : path, optional
        Continue a finished run instead of starting from random weights: the
        ``.keras`` file of a model saved by :meth:`TrainingResult.save` (with its
        optimizer state, as :func:`train` saves it). ``config`` then describes the
        continuation (its epochs and learning-rate schedule, counted from 0); its
        network, seed, validation fraction and label scaling must be the ones the
        model was trained with, so the continuation sees the same split, the same
        scaled labels and the same architecture, else ValueError naming the
        differing field. The model file's SHA-256 enters the checkpoint key, and
        :attr:`TrainingResult.initial_model` records where the run started.
        Batch orders (and augmentation noise) continue from the initial model's
        epoch count, as if its run had gone on.
    reset_optimizer : bool
        With ``initial_model``: start from its weights with a *new* Adam optimizer
        (fine-tuning, e.g. with ``config.fresh_tissues``) instead of its saved
        optimizer state, so weights-only copies (``scripts/strip_optimizer.py``) can
        start a run. The same checks of network, split and labels apply. Without
        ``initial_model``, ValueError.

    Returns
    -------
    TrainingResult

    Explained in chapter 7, book/07_training.md.
    """
    if config is None:
        config = TrainingConfig(network=paper_config(int(np.asarray(dictionary.atoms).shape[-1])))
    if not isinstance(config, TrainingConfig):
        raise ValueError(f"config must be a TrainingConfig, got {type(config).__name__}")
    if reset_optimizer and initial_model is None:
        raise ValueError("reset_optimizer=True needs an initial_model whose weights the run starts from")
    x, y_ms = prepare_training_data(dictionary)
    n_atoms, n_t = x.shape
    if n_t != config.network.n_timepoints:
        raise ValueError(
            f"config.network.n_timepoints ({config.network.n_timepoints}) must equal the dictionary's "
            f"number of time points ({n_t})"
        )
    if config.network.n_outputs != 2:
        raise ValueError(f"config.network.n_outputs must be 2 (T1, T2) for dictionary training, got {config.network.n_outputs}")
    seq_dict, seq_digest = _sequence_info(dictionary)
    train_idx, val_idx = split_indices(n_atoms, config.validation_fraction, config.seed)
    scaling = make_label_scaling(config.label_scaling, y_ms[train_idx])
    y = scaling.transform(y_ms)
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    tissue_ranges = _fresh_tissue_ranges(dictionary, y_ms[train_idx]) if config.fresh_tissues else None
    info = runtime_info()

    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if log_path is None and ckpt is not None:
        log_path = ckpt / LOG_NAME
    run_key = {
        "config": {k: v for k, v in config.to_dict().items() if k != "epochs"},
        "sequence_digest": seq_digest,
        "n_atoms": n_atoms,
        "label_scaling": scaling.to_dict(),
    }
    start_info = None
    if initial_model is not None:
        start_info = _check_initial_model(Path(initial_model), config, scaling, seq_digest)
        run_key["initial_model_sha256"] = start_info["sha256"]
        if reset_optimizer:
            run_key["reset_optimizer"] = True

    history: dict[str, list[float]] = {}
    start_epoch = 0
    model = None
    if ckpt is not None and (ckpt / CHECKPOINT_STATE).is_file() and (ckpt / CHECKPOINT_MODEL).is_file():
        state = json.loads((ckpt / CHECKPOINT_STATE).read_text())
        saved_key = state.get("run_key")
        if saved_key != json.loads(json.dumps(run_key)):
            diff = sorted(k for k in run_key if json.loads(json.dumps(run_key[k])) != (saved_key or {}).get(k))
            raise CheckpointMismatchError(
                f"checkpoint_dir {str(ckpt)!r} holds a run with a different {', '.join(diff) or 'setup'}; "
                "use another checkpoint_dir or delete it to start afresh"
            )
        model = keras.saving.load_model(ckpt / CHECKPOINT_MODEL, compile=True)
        history = {k: list(v) for k, v in state["history"].items()}
        start_epoch = int(state["epochs_completed"])
    if model is None and start_info is not None:
        keras.utils.set_random_seed(config.seed)
        model = keras.saving.load_model(Path(initial_model), compile=not reset_optimizer)
        if reset_optimizer:
            _compile(model, config, scaling, _is_gpu(info))
        elif getattr(model, "optimizer", None) is None:
            raise ValueError(
                f"initial_model {str(initial_model)!r} holds no optimizer state (saved uncompiled, e.g. by "
                "scripts/strip_optimizer.py), so its run cannot be continued where it stopped; use the file "
                "train() wrote, with its Adam state, or reset_optimizer=True to fine-tune from its weights"
            )
        if ckpt is not None:
            ckpt.mkdir(parents=True, exist_ok=True)
    if model is None:
        keras.utils.set_random_seed(config.seed)
        policy = None
        if config.mixed_precision:
            policy = "mixed_float16" if _is_gpu(info) else "mixed_bfloat16"
        model = build_from_config(config.network, dtype_policy=policy)
        _compile(model, config, scaling, _is_gpu(info))
        if ckpt is not None:
            ckpt.mkdir(parents=True, exist_ok=True)

    epoch_offset = int((start_info or {}).get("epochs_completed") or 0)
    bar = None
    if progress and start_epoch < config.epochs:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, initial=start_epoch, desc="training", unit="epoch")
    try:
        for epoch in range(start_epoch, config.epochs):
            lr = config.learning_rate_at(epoch)
            _set_lr(model, lr)
            # a continuation draws the batch orders (and noise) of the epochs after the initial model's
            data_epoch = epoch + epoch_offset
            t0 = time.perf_counter()
            if tissue_ranges is not None:
                x_epoch, y_epoch_ms = fresh_training_set(
                    dictionary.sequence, len(train_idx), seed=[config.seed, 2, data_epoch], **tissue_ranges)
                y_epoch = scaling.transform(y_epoch_ms)
            else:
                order = _epoch_order(len(train_idx), config.seed, data_epoch)
                x_epoch, y_epoch = x_train[order], y_train[order]
            if config.noise_snr_db is not None:
                x_epoch = noisy_training_inputs(x_epoch, config.noise_snr_db, config.seed, data_epoch)
            h = model.fit(
                x_epoch, y_epoch,
                batch_size=config.batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                validation_data=(x_val, y_val), validation_batch_size=max(config.batch_size, 1024), verbose=0,
            )
            seconds = time.perf_counter() - t0
            rec = {k: float(v[-1]) for k, v in h.history.items() if k not in ("learning_rate",)}
            rec.update(lr=lr, seconds=seconds)
            for k, v in rec.items():
                history.setdefault(k, []).append(v)
            if not np.isfinite(rec["loss"]):
                raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss={rec['loss']}); lower learning_rate")
            if ckpt is not None:
                tmp = ckpt / ("tmp_" + CHECKPOINT_MODEL)
                model.save(tmp)
                os.replace(tmp, ckpt / CHECKPOINT_MODEL)
                _atomic_write_json(
                    ckpt / CHECKPOINT_STATE,
                    {"epochs_completed": epoch + 1, "history": history, "run_key": run_key,
                     "sequence": seq_dict, "updated": _now()},
                )
            if log_path is not None:
                line = {"epoch": epoch + 1, **rec, "time": _now(), "n_train": len(train_idx), "n_val": len(val_idx),
                        "device": info["device"], "cpu": info["cpu"], "backend": info["backend"],
                        "versions": info["versions"]}
                Path(log_path).parent.mkdir(parents=True, exist_ok=True)
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(line) + "\n")
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", val_loss=f"{rec['val_loss']:.4f}", lr=f"{lr:.0e}")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return TrainingResult(
        model=model, history=history, config=config, label_scaling=scaling, sequence=seq_dict,
        sequence_digest=seq_digest, n_atoms=n_atoms, resumed_from_epoch=start_epoch, runtime=info,
        initial_model=start_info,
    )


def _fresh_tissue_ranges(dictionary: Any, y_train_ms: np.ndarray) -> dict[str, tuple[float, float]]:
    """The (T1, T2) ranges the training atoms span, for ``TrainingConfig.fresh_tissues``."""
    if not isinstance(getattr(dictionary, "sequence", None), FispSequence):
        raise ValueError("config.fresh_tissues needs a dictionary with its FispSequence (dictionary.sequence) to simulate new tissues")
    if getattr(dictionary, "b1_scale", None) is not None:
        raise ValueError("config.fresh_tissues supports (T1, T2) dictionaries only; this one has a B1 axis")
    return {"t1_range_ms": (float(y_train_ms[:, 0].min()), float(y_train_ms[:, 0].max())),
            "t2_range_ms": (float(y_train_ms[:, 1].min()), float(y_train_ms[:, 1].max()))}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (model files are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_initial_model(path: Path, config: TrainingConfig, scaling: LabelScaling, seq_digest: str | None) -> dict[str, Any]:
    """Check that a run can continue from the model file ``path``; return what :attr:`TrainingResult.initial_model` records."""
    meta = read_model_metadata(path)  # FileNotFoundError / ValueError name the path
    earlier = meta.get("training") or {}
    if meta.get("sequence_digest") != seq_digest:
        raise ValueError(
            f"initial_model {str(path)!r} was trained on another sequence than the dictionary's "
            f"(digest {str(meta.get('sequence_digest'))[:12]}… vs {str(seq_digest)[:12]}…)"
        )
    if meta.get("network") != config.network.to_dict():
        raise ValueError(f"initial_model {str(path)!r} has network {meta.get('network')}, config.network is {config.network.to_dict()}")
    for name in ("seed", "validation_fraction", "label_scaling"):
        if name in earlier and earlier[name] != getattr(config, name):
            raise ValueError(
                f"config.{name} must equal the initial_model's ({earlier[name]!r}) so the continuation sees the "
                f"same split and labels, got {getattr(config, name)!r}"
            )
    if meta.get("label_scaling") != json.loads(json.dumps(scaling.to_dict())):
        raise ValueError(f"initial_model {str(path)!r} has label scaling {meta.get('label_scaling')}, this run {scaling.to_dict()}")
    return {"path": str(path), "sha256": file_sha256(path), "epochs_completed": meta.get("epochs_completed"),
            "training": earlier}
