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
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mrfbook.nn.data import (
    check_snr_range,
    epoch_order,
    fresh_tissue_ranges,
    fresh_training_set,
    noisy_training_inputs,
    split_indices,
)
from mrfbook.nn.inputs import prepare_training_data
from mrfbook.nn.losses import ParameterRMSE, rmse_loss
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
from mrfbook.nn.runs import LOG_NAME, is_gpu, runtime_info
from mrfbook.utils.provenance import atomic_write_json, file_sha256, utc_now

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "CheckpointMismatchError",
    "train",
]

CHECKPOINT_MODEL = "checkpoint.keras"
CHECKPOINT_STATE = "state.json"


class CheckpointMismatchError(ValueError):
    """A checkpoint directory holds a run with another configuration or dictionary."""


# --------------------------------------------------------------------------- labels


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
            object.__setattr__(self, "noise_snr_db", check_snr_range(self.noise_snr_db))
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


# --------------------------------------------------------------------------- loss / metrics


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- provenance


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
            "saved": utc_now(),
            **({"continued_from": self.initial_model} if self.initial_model is not None else {}),
        }

    def save(self, path: str | os.PathLike, *, sidecar: bool = True) -> Path:
        """Save as ``path`` (.keras, metadata inside) plus the sidecar ``<path stem>.json``; returns the path."""
        return save_trained_model(self.trained_model(), path, sidecar=sidecar)


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
    tissue_ranges = fresh_tissue_ranges(dictionary, y_ms[train_idx]) if config.fresh_tissues else None
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
            _compile(model, config, scaling, is_gpu(info))
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
            policy = "mixed_float16" if is_gpu(info) else "mixed_bfloat16"
        model = build_from_config(config.network, dtype_policy=policy)
        _compile(model, config, scaling, is_gpu(info))
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
                order = epoch_order(len(train_idx), config.seed, data_epoch)
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
                atomic_write_json(
                    ckpt / CHECKPOINT_STATE,
                    {"epochs_completed": epoch + 1, "history": history, "run_key": run_key,
                     "sequence": seq_dict, "updated": utc_now()},
                )
            if log_path is not None:
                line = {"epoch": epoch + 1, **rec, "time": utc_now(), "n_train": len(train_idx), "n_val": len(val_idx),
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
