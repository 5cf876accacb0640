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

:func:`train` is a few steps: :func:`resolve_config`, :meth:`TrainingData.build` (inputs,
split, label scaling, tissue ranges), :class:`mrfbook.nn.runs.RunFiles` (checkpoint, log,
resume), :func:`new_or_continued_model`, then per epoch :meth:`TrainingData.epoch_inputs`
(an epoch-seeded permutation of the training set, or fresh tissues, plus noise) and
:func:`fit_one_epoch` (one ``model.fit`` call at the rate of that epoch number), the one
loop body every training in the library uses. A run interrupted after epoch n and resumed
from its checkpoint therefore continues with exactly the batches and learning rates the
uninterrupted run would have used.

Beyond one CPU (:mod:`mrfbook.nn.distribution`): ``TrainingConfig(data_parallel=True)`` runs the
same loop under a ``keras.distribution.DataParallel`` over the devices present (JAX backend
only; the same global batch, so the same SGD up to the order of floating-point sums), and
``mixed_precision=True`` computes in bfloat16 (CPU) / float16 (GPU) with float32 weights. The
loop, the checkpoints and the saved files are backend-neutral: a model trained and saved under
JAX loads and predicts under TensorFlow, and the reverse (tests/test_backends.py).

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrfbook.nn.backend import keras
from mrfbook.nn.data import (
    check_snr_range,
    epoch_order,
    fresh_tissue_ranges,
    fresh_training_set,
    noisy_training_inputs,
    split_indices,
)
from mrfbook.nn.distribution import (
    check_data_parallel_backend,
    check_even_batches,
    data_parallel_distribution,
    distribution_record,
    mixed_precision_policy,
    training_scope,
)
from mrfbook.nn.inputs import prepare_training_data
from mrfbook.nn.losses import CUSTOM_OBJECTS, ParameterRMSE, rmse_loss
from mrfbook.nn.model import (
    LABEL_SCALINGS,
    SIDECAR_FORMAT,
    LabelScaling,
    TrainedModel,
    make_label_scaling,
    read_model_metadata,
    save_trained_model,
)
from mrfbook.nn.network import NetworkConfig, build_from_config, paper_config
from mrfbook.nn.runs import CheckpointMismatchError, RunFiles, is_gpu, runtime_info
from mrfbook.utils.checks import check_int
from mrfbook.utils.provenance import file_sha256, utc_now
from mrfbook.utils.timing import Stopwatch

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "TrainingData",
    "CheckpointMismatchError",
    "resolve_config",
    "new_or_continued_model",
    "fit_one_epoch",
    "validation_batch_size",
    "train",
]


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of a training run (defaults = the paper's recipe).

    Attributes
    ----------
    network : NetworkConfig
        Architecture (default :func:`mrfbook.nn.network.paper_config`).
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
        Compute the hidden layers in bfloat16 (CPU) / float16 with loss scaling (GPU); weights,
        optimizer state and the output layer stay float32, so the model's raw outputs are float32
        and :meth:`mrfbook.nn.model.TrainedModel.predict` still returns float64 ms (see
        :func:`mrfbook.nn.distribution.mixed_precision_policy`). Works under TensorFlow and JAX.
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
        (the definition of :func:`mrfbook.physics.noise.add_noise`, applied per
        signature), then goes through :func:`mrfbook.nn.inputs.normalise_signatures`
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
        dictionary's sequence (:func:`mrfbook.nn.data.fresh_training_set`), seeded
        from ``(seed, epoch)`` so a resumed run sees the same tissues. The validation split
        stays the held-out atoms. Removes the grid rows a network otherwise never sees
        between (chapter 7). Needs a (T1, T2) dictionary of a FispSequence (no B1). Left out
        of :meth:`to_dict` when False.
    data_parallel : bool
        Not in the paper (default False: one device). True: train under a
        ``keras.distribution.DataParallel`` over every device Keras lists (all GPUs, or the CPU
        devices), each step's ``batch_size`` rows split evenly over them and the gradients summed:
        the same SGD as on one device up to floating-point summation order
        (:mod:`mrfbook.nn.distribution`). Needs the JAX backend (:func:`train` raises ValueError
        naming ``data_parallel`` under another) and batches that split evenly over the devices.
        It changes where the steps run, not what they compute, so it is left out of the
        checkpoint key (a run may resume with or without it) and out of :meth:`to_dict` when False.

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
    data_parallel: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.network, NetworkConfig):
            raise ValueError(f"network must be a NetworkConfig, got {type(self.network).__name__}")
        for name in ("epochs", "batch_size", "lr_decay_every"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), 1))
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
            object.__setattr__(self, "noise_snr_db", check_snr_range(self.noise_snr_db))
        if not isinstance(self.fresh_tissues, bool):
            raise ValueError(f"fresh_tissues must be True or False, got {self.fresh_tissues!r}")
        for name in ("mixed_precision", "data_parallel"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def paper_exact(cls, **changes: Any) -> "TrainingConfig":
        """The paper's setting as published: Adam at 1e-2 on labels in ms (``label_scaling="none"``)."""
        return cls(**{"learning_rate": 1e-2, "label_scaling": "none", **changes})

    def learning_rate_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: lr * factor**(epoch // every), floored at min_learning_rate."""
        lr = self.learning_rate * self.lr_decay_factor ** (epoch // self.lr_decay_every)
        return float(max(lr, self.min_learning_rate))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``noise_snr_db``, ``fresh_tissues`` and ``data_parallel`` appear only when set."""
        d = dataclasses.asdict(self)
        d["network"] = self.network.to_dict()
        if not self.data_parallel:
            del d["data_parallel"]
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
    reset_optimizer : bool
        The run started from ``initial_model``'s weights with a new optimizer.
    seconds : float
        Wall-clock seconds of this :func:`train` call (0 epochs trained: the loading only).
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
    reset_optimizer: bool = False
    seconds: float = 0.0

    @property
    def epochs_completed(self) -> int:
        """Epochs in the history, those before a resume included."""
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
            "saved": utc_now(),
            **({"continued_from": self.initial_model} if self.initial_model is not None else {}),
        }

    def save(self, path: str | os.PathLike, *, sidecar: bool = True) -> Path:
        """Save as ``path`` (.keras, metadata inside) plus the sidecar ``<path stem>.json``; returns the path."""
        return save_trained_model(self.trained_model(), path, sidecar=sidecar)


# --------------------------------------------------------------------------- data of a run
@dataclass
class TrainingData:
    """The arrays a run trains and validates on, and how it draws each epoch's training inputs.

    Attributes
    ----------
    x_train, x_val : np.ndarray
        (N_train, L) and (N_val, L) float32 unit-norm inputs of the training and validation atoms.
    y_train, y_val : np.ndarray
        (N_train, 2) and (N_val, 2) float32 labels in network units (``label_scaling`` applied).
    label_scaling : LabelScaling
        Fitted on the training atoms' labels.
    n_atoms : int
        Atoms of the dictionary (N_train + N_val).
    sequence : FispSequence or None
        The dictionary's sequence (simulates the fresh tissues).
    tissue_ranges : dict or None
        ``{"t1_range_ms": (lo, hi), "t2_range_ms": (lo, hi)}`` of the training atoms when
        ``config.fresh_tissues``, else None.

    Explained in chapter 7, book/07_training.md.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    label_scaling: LabelScaling
    n_atoms: int
    sequence: Any = None
    tissue_ranges: dict[str, tuple[float, float]] | None = None

    @classmethod
    def build(cls, dictionary: Any, config: TrainingConfig) -> "TrainingData":
        """Inputs, seeded split, label scaling and (with ``config.fresh_tissues``) tissue ranges of ``dictionary``.

        ValueError if ``config.network`` does not fit the dictionary (input length L, two outputs)
        or the split leaves no training or no validation atom.
        """
        x, y_ms = prepare_training_data(dictionary)
        n_atoms, n_t = x.shape
        if n_t != config.network.n_timepoints:
            raise ValueError(
                f"config.network.n_timepoints ({config.network.n_timepoints}) must equal the dictionary's "
                f"number of time points ({n_t})"
            )
        if config.network.n_outputs != 2:
            raise ValueError(
                f"config.network.n_outputs must be 2 (T1, T2) for dictionary training, got {config.network.n_outputs}")
        train_idx, val_idx = split_indices(n_atoms, config.validation_fraction, config.seed)
        scaling = make_label_scaling(config.label_scaling, y_ms[train_idx])
        y = scaling.transform(y_ms)
        ranges = fresh_tissue_ranges(dictionary, y_ms[train_idx]) if config.fresh_tissues else None
        return cls(x[train_idx], y[train_idx], x[val_idx], y[val_idx], scaling, int(n_atoms),
                   getattr(dictionary, "sequence", None), ranges)

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_val, y_val)``: the held-out atoms, always clean."""
        return self.x_val, self.y_val

    def epoch_inputs(self, config: TrainingConfig, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Training inputs and scaled labels of 0-based data ``epoch`` (its seeds come from ``(config.seed, epoch)``).

        New tissues of the training region (``config.fresh_tissues``) or the training atoms in
        the epoch's order, then noise (``config.noise_snr_db``) if set. Equal arguments give
        equal arrays, which is what makes a resumed run repeat an uninterrupted one.

        Returns
        -------
        x : np.ndarray
            (N_train, L) float32.
        y : np.ndarray
            (N_train, 2) float32, network units.
        """
        n = len(self.x_train)
        if self.tissue_ranges is not None:
            x, y_ms = fresh_training_set(self.sequence, n, seed=[config.seed, 2, epoch], **self.tissue_ranges)
            y = self.label_scaling.transform(y_ms)
        else:
            order = epoch_order(n, config.seed, epoch)
            x, y = self.x_train[order], self.y_train[order]
        if config.noise_snr_db is not None:
            x = noisy_training_inputs(x, config.noise_snr_db, config.seed, epoch)
        return x, y


# --------------------------------------------------------------------------- steps of train()
def resolve_config(dictionary: Any, config: TrainingConfig | None) -> TrainingConfig:
    """``config``, or the paper's recipe and network for the dictionary's length L when None."""
    if config is None:
        return TrainingConfig(network=paper_config(int(np.asarray(dictionary.atoms).shape[-1])))
    if not isinstance(config, TrainingConfig):
        raise ValueError(f"config must be a TrainingConfig, got {type(config).__name__}")
    return config


def validation_batch_size(batch_size: int) -> int:
    """Rows per validation batch: ``max(batch_size, 1024)`` (validation needs no gradients, so larger batches)."""
    return max(int(batch_size), 1024)


def _compile(model: keras.Model, config: TrainingConfig, scaling: LabelScaling, gpu: bool) -> None:
    opt: Any = keras.optimizers.Adam(learning_rate=config.learning_rate)
    if config.mixed_precision and gpu:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    metrics = [
        ParameterRMSE(j, scaling.scale[j], name=f"{name}_rmse_ms")
        for j, name in enumerate(("t1", "t2")[: config.network.n_outputs])
    ]
    model.compile(optimizer=opt, loss=rmse_loss, metrics=metrics, jit_compile=config.jit_compile)


def new_or_continued_model(
    config: TrainingConfig,
    scaling: LabelScaling,
    info: dict[str, Any],
    initial_model: str | os.PathLike | None = None,
    reset_optimizer: bool = False,
) -> keras.Model:
    """A compiled model to start a run from: random weights seeded by ``config.seed``, or ``initial_model``.

    With ``initial_model`` its weights and Adam state (or, with ``reset_optimizer``, its weights
    and a new Adam optimizer); ValueError if the file holds no optimizer state to continue.
    """
    keras.utils.set_random_seed(config.seed)
    if initial_model is not None:
        model = keras.saving.load_model(Path(initial_model), compile=not reset_optimizer,
                                        custom_objects=CUSTOM_OBJECTS)
        if reset_optimizer:
            _compile(model, config, scaling, is_gpu(info))
        elif getattr(model, "optimizer", None) is None:
            raise ValueError(
                f"initial_model {str(initial_model)!r} holds no optimizer state (saved uncompiled, e.g. by "
                "scripts/strip_optimizer.py), so its run cannot be continued where it stopped; use the file "
                "train() wrote, with its Adam state, or reset_optimizer=True to fine-tune from its weights"
            )
        return model
    policy = mixed_precision_policy(is_gpu(info)) if config.mixed_precision else None
    model = build_from_config(config.network, dtype_policy=policy)
    _compile(model, config, scaling, is_gpu(info))
    return model


def copy_with_new_optimizer(model: keras.Model, learning_rate: float) -> keras.Model:
    """A copy of ``model`` (same weights) compiled with a new Adam and the RMSE loss, ready to fine-tune.

    The original is left untouched. Used by :func:`mrfbook.analysis.studies.fine_tune`, which
    trains the copy with :func:`fit_one_epoch`.

    Explained in chapter 10, book/10_beyond.md.
    """
    from mrfbook.nn.network import weights_only_copy

    copy = weights_only_copy(model)
    copy.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=rmse_loss)
    return copy


def fit_one_epoch(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None,
    batch_size: int,
    learning_rate: float,
    *,
    epoch: int = 0,
) -> dict[str, float]:
    """One epoch of Adam steps over ``(x, y)`` in the given order: the body of every training loop.

    :func:`train` (new runs, resumed runs, continuations, fine-tuning with a new optimizer) and
    :func:`mrfbook.analysis.studies.fine_tune` (chapter 10) all train through this function.

    Parameters
    ----------
    model : keras.Model
        Compiled; trained in place.
    x : np.ndarray
        (N, L) float32 inputs, in the order the batches take them (no shuffling here).
    y : np.ndarray
        (N, n_outputs) float32 labels in network units.
    validation : (x_val, y_val) or None
        Evaluated after the epoch (``val_`` entries of the record); None: none.
    batch_size : int
        Rows per optimiser step (>= 1; the last batch may be smaller).
    learning_rate : float
        Adam learning rate for this epoch (set on ``model.optimizer``).
    epoch : int
        0-based epoch number Keras reports; it changes no number.

    Returns
    -------
    dict of str -> float
        The epoch's mean ``loss`` and compiled metrics (and their ``val_`` versions).

    Explained in chapter 7, book/07_training.md.
    """
    model.optimizer.learning_rate = learning_rate
    extra: dict[str, Any] = {}
    if validation is not None:
        extra = {"validation_data": validation, "validation_batch_size": validation_batch_size(batch_size)}
    h = model.fit(x, y, batch_size=int(batch_size), epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                  verbose=0, **extra)
    return {k: float(v[-1]) for k, v in h.history.items() if k != "learning_rate"}


class _EpochBar:
    """tqdm bar over epochs with the latest losses (no bar when ``progress`` is False or nothing is left)."""

    def __init__(self, first: int, total: int, progress: bool) -> None:
        self.bar = None
        if progress and first < total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=first, desc="training", unit="epoch")

    def update(self, record: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", val_loss=f"{record['val_loss']:.4f}",
                                 lr=f"{record['lr']:.0e}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- train()
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
    dictionary : mrfbook.physics.dictionary.Dictionary
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
        With ``config.data_parallel``, ``runtime["distribution"]`` records the devices
        (``{"kind": "DataParallel", "devices": ["gpu:0", ...]}``); the run folder's
        provenance carries it.

    Raises
    ------
    ValueError
        Besides the checks above: ``config.data_parallel`` under a backend other than JAX
        (naming ``data_parallel``), or batches that do not split evenly over the devices
        (naming ``batch_size`` or the split, see
        :func:`mrfbook.nn.distribution.check_even_batches`).

    Explained in chapter 7, book/07_training.md.
    """
    clock = Stopwatch().start()
    config = resolve_config(dictionary, config)
    if reset_optimizer and initial_model is None:
        raise ValueError("reset_optimizer=True needs an initial_model whose weights the run starts from")
    if config.data_parallel:
        check_data_parallel_backend()
    data = TrainingData.build(dictionary, config)
    distribution = None
    if config.data_parallel:
        distribution = data_parallel_distribution()
        check_even_batches(distribution.device_mesh.devices.size, batch_size=config.batch_size,
                           n_train=len(data.x_train), n_val=len(data.x_val),
                           validation_batch_size=validation_batch_size(config.batch_size))
    seq_dict, seq_digest = _sequence_info(dictionary)
    info = runtime_info()
    if distribution is not None:
        info["distribution"] = distribution_record(distribution)
    run_key = {
        # where the steps run (data_parallel) is not part of what the run computes: resumable either way
        "config": {k: v for k, v in config.to_dict().items() if k not in ("epochs", "data_parallel")},
        "sequence_digest": seq_digest,
        "n_atoms": data.n_atoms,
        "label_scaling": data.label_scaling.to_dict(),
    }
    start_info = None
    if initial_model is not None:
        start_info = _check_initial_model(Path(initial_model), config, data.label_scaling, seq_digest,
                                          getattr(dictionary, "sequence", None))
        run_key["initial_model_sha256"] = start_info["sha256"]
        if reset_optimizer:
            run_key["reset_optimizer"] = True
    run = RunFiles(checkpoint_dir, log_path, run_key, sequence=seq_dict, runtime=info,
                   log_fields={"n_train": len(data.x_train), "n_val": len(data.x_val)})

    # a continuation draws the batch orders (and noise, tissues) of the epochs after the initial model's
    epoch_offset = int((start_info or {}).get("epochs_completed") or 0)
    with training_scope(distribution):  # variables built (or loaded) and trained on every device
        resumed = run.resume()
        if resumed is not None:
            model, history, start_epoch = resumed
        else:
            model = new_or_continued_model(config, data.label_scaling, info, initial_model, reset_optimizer)
            history, start_epoch = {}, 0
        bar = _EpochBar(start_epoch, config.epochs, progress)
        try:
            for epoch in range(start_epoch, config.epochs):
                lr = config.learning_rate_at(epoch)
                with Stopwatch() as epoch_clock:
                    x_epoch, y_epoch = data.epoch_inputs(config, epoch + epoch_offset)
                    record = fit_one_epoch(model, x_epoch, y_epoch, data.validation, config.batch_size, lr,
                                           epoch=epoch)
                record.update(lr=lr, seconds=epoch_clock.seconds)
                run.after_epoch(epoch, record, model, history)
                bar.update(record)
        finally:
            bar.close()
    return TrainingResult(
        model=model, history=history, config=config, label_scaling=data.label_scaling, sequence=seq_dict,
        sequence_digest=seq_digest, n_atoms=data.n_atoms, resumed_from_epoch=start_epoch, runtime=info,
        initial_model=start_info, reset_optimizer=bool(reset_optimizer), seconds=clock.stop(),
    )


def _check_initial_model(path: Path, config: TrainingConfig, scaling: LabelScaling, seq_digest: str | None,
                         sequence: Any = None) -> dict[str, Any]:
    """Check that a run can continue from the model file ``path``; return what :attr:`TrainingResult.initial_model` records."""
    meta = read_model_metadata(path)  # FileNotFoundError / ValueError name the path
    earlier = meta.get("training") or {}
    same = sequence is not None and sequence.matches(meta.get("sequence"))  # up to round-off
    if meta.get("sequence_digest") != seq_digest and not same:
        raise ValueError(
            f"initial_model {str(path)!r} was trained on another sequence than the dictionary's "
            f"(digest {str(meta.get('sequence_digest'))[:12]}… vs {str(seq_digest)[:12]}…)"
        )
    if meta.get("network") != config.network.to_dict():
        raise ValueError(
            f"initial_model {str(path)!r} has network {meta.get('network')}, config.network is {config.network.to_dict()}"
        )
    for name in ("seed", "validation_fraction", "label_scaling"):
        if name in earlier and earlier[name] != getattr(config, name):
            raise ValueError(
                f"config.{name} must equal the initial_model's ({earlier[name]!r}) so the continuation sees the "
                f"same split and labels, got {getattr(config, name)!r}"
            )
    if meta.get("label_scaling") != json.loads(json.dumps(scaling.to_dict())):
        raise ValueError(
            f"initial_model {str(path)!r} has label scaling {meta.get('label_scaling')}, this run {scaling.to_dict()}"
        )
    return {"path": str(path), "sha256": file_sha256(path), "epochs_completed": meta.get("epochs_completed"),
            "training": earlier}
