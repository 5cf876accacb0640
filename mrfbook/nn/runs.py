"""Run folders: what a training run writes next to its weights, and the networks shipped in ``models/``.

A run folder holds ``model.keras`` + ``model.json`` (weights and metadata, see
:func:`mrfbook.nn.model.save_trained_model`), ``training_log.jsonl`` (one record per epoch),
``history.json`` (the per-epoch history), ``config.json`` (the ``TrainingConfig``) and
``provenance.json`` (how, where and when it was produced, and its test-grid accuracy next to the
paper's). :func:`write_run_folder` writes one, :func:`read_run_folder` reads one back. While a
run trains, :class:`RunFiles` keeps its checkpoint (``checkpoint.keras`` + ``state.json``) and
its log.

Explained in chapter 7, book/07_training.md; the shipped networks are evaluated in chapter 8,
book/08_evaluation.md.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mrfbook.nn.backend import keras
from mrfbook.nn.losses import CUSTOM_OBJECTS
from mrfbook.nn.model import load_network, read_network_metadata
from mrfbook.nn.network import NetworkConfig, paper_config, parameter_count
from mrfbook.paper import paper_value
from mrfbook.utils.provenance import atomic_write_json, utc_now

__all__ = [
    "LOG_NAME",
    "CHECKPOINT_MODEL",
    "CHECKPOINT_STATE",
    "RUN_FILES",
    "CheckpointMismatchError",
    "RunFiles",
    "read_log",
    "runtime_info",
    "is_gpu",
    "source_commit",
    "paper_test_figures",
    "write_run_folder",
    "RunRecord",
    "read_run_record",
    "read_run_folder",
    "NETWORK_FOLDERS",
    "default_models_dir",
    "model_file",
    "ShippedNetwork",
    "shipped_networks",
    "network_configs",
]


LOG_NAME = "training_log.jsonl"
CHECKPOINT_MODEL = "checkpoint.keras"
CHECKPOINT_STATE = "state.json"
#: The files of a run folder, in the order :func:`write_run_folder` moves them into place (weights last).
RUN_FILES = ("training_log.jsonl", "history.json", "config.json", "provenance.json", "model.json", "model.keras")


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


def is_gpu(info: dict[str, Any]) -> bool:
    """Whether :func:`runtime_info` found a GPU."""
    return info["device"].startswith("gpu")


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSON-lines training log (one dict per epoch)."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------- checkpoints while training
class CheckpointMismatchError(ValueError):
    """A checkpoint directory holds a run with another configuration or dictionary."""


class RunFiles:
    """The files a run keeps while it trains: checkpoint (model + state) and JSON-lines log.

    Parameters
    ----------
    checkpoint_dir : path or None
        After every epoch ``checkpoint.keras`` (model with optimizer state) and ``state.json``
        (epochs done, history, run key, sequence) are written here; None: no checkpoint.
    log_path : path or None
        JSON-lines log, one record per epoch. Default ``training_log.jsonl`` in
        ``checkpoint_dir`` when that is given, else no log.
    run_key : dict
        What identifies the run (configuration without ``epochs``, sequence digest, atoms,
        label scaling, start model): a checkpoint with another key is not resumed.
    sequence : dict or None
        Recorded in ``state.json``.
    runtime : dict
        :func:`runtime_info`; its device, CPU, backend and versions go into every log line.
    log_fields : dict
        Further fields of every log line (e.g. ``n_train``, ``n_val``).

    Explained in chapter 7, book/07_training.md.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike | None, log_path: str | os.PathLike | None,
                 run_key: dict[str, Any], *, sequence: dict[str, Any] | None = None,
                 runtime: dict[str, Any] | None = None, log_fields: dict[str, Any] | None = None) -> None:
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if log_path is None and self.checkpoint_dir is not None:
            log_path = self.checkpoint_dir / LOG_NAME
        self.log_path = Path(log_path) if log_path is not None else None
        self.run_key = run_key
        self.sequence = sequence
        self.runtime = runtime if runtime is not None else runtime_info()
        self.log_fields = dict(log_fields or {})

    def resume(self) -> tuple[keras.Model, dict[str, list[float]], int] | None:
        """``(model, history, epochs_completed)`` of the checkpoint, or None when there is none.

        Raises :class:`CheckpointMismatchError` (naming the differing parts of the run key) when
        the checkpoint holds another run.
        """
        ckpt = self.checkpoint_dir
        if ckpt is None or not (ckpt / CHECKPOINT_STATE).is_file() or not (ckpt / CHECKPOINT_MODEL).is_file():
            return None
        state = json.loads((ckpt / CHECKPOINT_STATE).read_text())
        saved_key = state.get("run_key")
        key = json.loads(json.dumps(self.run_key))
        if saved_key != key:
            diff = sorted(k for k in key if key[k] != (saved_key or {}).get(k))
            raise CheckpointMismatchError(
                f"checkpoint_dir {str(ckpt)!r} holds a run with a different {', '.join(diff) or 'setup'}; "
                "use another checkpoint_dir or delete it to start afresh"
            )
        model = keras.saving.load_model(ckpt / CHECKPOINT_MODEL, compile=True, custom_objects=CUSTOM_OBJECTS)
        history = {k: list(v) for k, v in state["history"].items()}
        return model, history, int(state["epochs_completed"])

    def after_epoch(self, epoch: int, record: dict[str, float], model: keras.Model,
                    history: dict[str, list[float]]) -> None:
        """Add ``record`` to ``history``, stop a diverged run, then write the checkpoint and the log line.

        Raises FloatingPointError when the epoch's loss is not finite (before anything is written).
        """
        for k, v in record.items():
            history.setdefault(k, []).append(v)
        if not np.isfinite(record["loss"]):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss={record['loss']}); lower learning_rate")
        ckpt = self.checkpoint_dir
        if ckpt is not None:
            ckpt.mkdir(parents=True, exist_ok=True)
            tmp = ckpt / ("tmp_" + CHECKPOINT_MODEL)
            model.save(tmp)
            os.replace(tmp, ckpt / CHECKPOINT_MODEL)
            atomic_write_json(
                ckpt / CHECKPOINT_STATE,
                {"epochs_completed": epoch + 1, "history": history, "run_key": self.run_key,
                 "sequence": self.sequence, "updated": utc_now()},
            )
        if self.log_path is not None:
            info = self.runtime
            line = {"epoch": epoch + 1, **record, "time": utc_now(), **self.log_fields,
                    "device": info["device"], "cpu": info["cpu"], "backend": info["backend"],
                    "versions": info["versions"]}
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(line) + "\n")


# --------------------------------------------------------------------------- the run folder
def source_commit() -> str | None:
    """Git commit checked out where the ``mrfbook`` package lives (None outside a git checkout).

    Read it when a run starts: the code that trains is the code checked out then.
    """
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def paper_test_figures() -> dict[str, float]:
    """The paper's test-set RMSE (ms) and R^2 of T1 and T2 (from :mod:`mrfbook.paper`), as provenance records them."""
    return {k: paper_value("synthetic", k) for k in ("t1_rmse_ms", "t2_rmse_ms", "t1_r2", "t2_r2")}


def _log_records(result: Any) -> list[dict[str, Any]]:
    """Log lines rebuilt from a result's history (for a run trained without a log file)."""
    hist = result.history
    n = len(hist.get("loss", []))
    info = result.runtime or {}
    return [{"epoch": i + 1, **{k: v[i] for k, v in hist.items() if i < len(v)},
             **{k: info[k] for k in ("device", "cpu", "backend", "versions") if k in info}} for i in range(n)]


def write_run_folder(
    result: Any,
    folder: str | os.PathLike,
    *,
    log_path: str | os.PathLike | None = None,
    test_metrics: Mapping[str, Any] | None = None,
    command: str | None = None,
    git_commit: str | None = None,
    subset: bool = False,
    seconds_this_call: float | None = None,
) -> Path:
    """Write a finished run as a run folder: weights, log, history, configuration, provenance.

    Every file is first written into a temporary folder and moved into ``folder`` only when all
    are complete (the weights last), so a failure leaves no half-written run folder. An existing
    ``folder`` (e.g. holding the run's ``checkpoints/``) is kept; its run files are replaced.

    Parameters
    ----------
    result : mrfbook.nn.training.TrainingResult
        What :func:`mrfbook.nn.training.train` returned.
    folder : path
        The run folder (created if missing).
    log_path : path, optional
        The run's JSON-lines log (``train(log_path=...)``, or ``training_log.jsonl`` in its
        checkpoint folder), copied as ``training_log.jsonl``. Without one, the log is rebuilt
        from ``result.history`` and ``result.runtime``.
    test_metrics : mapping, optional
        Test-set accuracy (e.g. :func:`mrfbook.analysis.experiments.evaluate_on_dictionary` on
        the shifted test grid: ``n``, ``t1_rmse_ms``, ``t1_r2``, ...), recorded as ``test`` next
        to the paper's figures (``paper_test``). The library's network layer does not evaluate;
        the caller does.
    command : str, optional
        The command line that produced the run (default: this process's ``sys.argv``).
    git_commit : str, optional
        Commit of the code that trained (default: :func:`source_commit` now; read it when the
        run starts instead if the checkout may change while it trains).
    subset : bool
        The run trained (and tested) on a random subset of the dictionary (``--max-atoms``).
    seconds_this_call : float, optional
        Wall-clock seconds of the training call (default ``result.seconds``).

    Returns
    -------
    pathlib.Path
        ``folder / "model.keras"``.

    Explained in chapter 7, book/07_training.md.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} exists and is not a folder")
    if log_path is not None and not Path(log_path).is_file():
        raise FileNotFoundError(f"no training log at log_path={str(log_path)!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.writing-", dir=folder if folder.is_dir() else folder.parent))
    try:
        result.save(staging / "model.keras")
        if log_path is not None:
            shutil.copyfile(log_path, staging / LOG_NAME)
        else:
            (staging / LOG_NAME).write_text("".join(json.dumps(r) + "\n" for r in _log_records(result)))
        (staging / "history.json").write_text(json.dumps(result.history, indent=1))
        (staging / "config.json").write_text(json.dumps(result.config.to_dict(), indent=1))
        secs = list(result.history.get("seconds", []))
        config = result.config
        provenance = {
            "date": utc_now(),
            "command": command if command is not None else shlex.join([sys.executable, *sys.argv]),
            "git_commit": git_commit if git_commit is not None else source_commit(),
            **(result.runtime or runtime_info()),
            "model_file": str(folder / "model.keras"),
            "parameters": parameter_count(result.model),
            "n_train_atoms": result.n_atoms,
            "n_test_atoms": (test_metrics or {}).get("n"),
            "subset": bool(subset),
            "sequence_digest": result.sequence_digest,
            "noise_snr_db": list(config.noise_snr_db) if config.noise_snr_db is not None else None,
            "continued_from": result.initial_model,
            "reset_optimizer": bool(getattr(result, "reset_optimizer", False)),
            "fresh_tissues": bool(config.fresh_tissues),
            "epochs_completed": result.epochs_completed,
            "resumed_from_epoch": result.resumed_from_epoch,
            "seconds_this_call": float(seconds_this_call if seconds_this_call is not None
                                       else getattr(result, "seconds", 0.0)),
            "seconds_per_epoch_median": float(np.median(secs)) if secs else None,
            "seconds_per_epoch_all": secs,
            "final_val_loss": result.history["val_loss"][-1] if result.history.get("val_loss") else None,
            "test": dict(test_metrics) if test_metrics is not None else None,
            "paper_test": paper_test_figures(),
        }
        (staging / "provenance.json").write_text(json.dumps(provenance, indent=1))
        if not folder.exists():
            os.replace(staging, folder)
        else:
            for name in RUN_FILES:
                os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / "model.keras"


#: Shipped model folders under ``models/`` and the names the book uses for them, in display order.
NETWORK_FOLDERS: dict[str, str] = {"paper_resnet": "paper network", "compact_resnet": "compact network"}


def model_file(folder: str | os.PathLike) -> Path:
    """The network file of a run folder: ``model.npz`` (a refined network) or ``model.keras``.

    Raises FileNotFoundError when the folder holds neither.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    folder = Path(folder)
    for name in ("model.npz", "model.keras"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no model.npz or model.keras in folder={str(folder)!r}")


def default_models_dir() -> Path:
    """The repository's ``models/`` folder (next to the ``mrfbook`` package in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "models"


@dataclass
class ShippedNetwork:
    """A run folder read back (:func:`read_run_folder`): a trained network with its training record.

    The networks shipped under ``models/`` are read as these (:func:`shipped_networks`).

    Attributes
    ----------
    model : mrfbook.nn.model.TrainedModel
        The network, its label scaling and training sequence.
    folder : pathlib.Path
        Its folder (``model.keras``, ``training_log.jsonl``, ``provenance.json``...).
    log : list of dict
        One record per training epoch (``seconds``, ``device``, ``backend``, losses...).
    provenance : dict
        How the run was produced and its test-grid accuracy as recorded then.
    config : dict
        ``TrainingConfig.to_dict()`` of the run (``config.json``, else the model's metadata);
        ``mrfbook.nn.training.TrainingConfig.from_dict`` rebuilds it.
    history : dict of str -> list of float
        Per-epoch history (``history.json``; empty when missing).
    """

    model: Any
    folder: Path
    log: list[dict[str, Any]]
    provenance: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """Weights, size on disk (MB), training device/backend, epochs and median seconds per epoch."""
        secs = [float(r["seconds"]) for r in self.log]
        last = self.log[-1] if self.log else {}
        weights = (self.model.parameter_count() if hasattr(self.model, "parameter_count")
                   else parameter_count(self.model.model))
        return {
            "folder": self.folder.name,
            "weights": int(weights),
            "file_mb": model_file(self.folder).stat().st_size / 1e6,
            "epochs": len(self.log),
            "seconds_per_epoch": float(np.median(secs)) if secs else float("nan"),
            "train_device": str(last.get("device", "?")),
            "train_cpu": str(last.get("cpu", "")),
            "train_backend": str(last.get("backend", "?")),
            "trained": str(self.provenance.get("date", "?"))[:10],
            "recorded_test": dict(self.provenance.get("test", {})),
        }


def network_configs(networks: Mapping[str, ShippedNetwork]) -> dict[str, Any]:
    """Architectures to tabulate: the paper's (always, even without weights) and every shipped network's.

    Returns
    -------
    dict
        ``{name: NetworkConfig}``, "paper network" first.

    Explained in chapter 8, book/08_evaluation.md.
    """
    configs = {name: NetworkConfig.from_dict(s.model.metadata["network"]) for name, s in networks.items()}
    return {"paper network": configs.get("paper network", paper_config()), **configs}


def shipped_networks(sequence: Any, models_dir: str | os.PathLike | None = None) -> dict[str, ShippedNetwork]:
    """Load every shipped network in :data:`NETWORK_FOLDERS` whose ``model.keras`` exists.

    Parameters
    ----------
    sequence : mrfbook.physics.sequence.FispSequence
        The sequence the models must have been trained for (a mismatch raises
        :class:`mrfbook.nn.model.SequenceMismatchError`).
    models_dir : path, optional
        Default :func:`default_models_dir`.

    Returns
    -------
    dict
        ``{display name: ShippedNetwork}`` in the order of :data:`NETWORK_FOLDERS`.

    Explained in chapter 8, book/08_evaluation.md.
    """
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    return {name: read_run_folder(root / folder, expected_sequence=sequence)
            for folder, name in NETWORK_FOLDERS.items() if (root / folder / "model.keras").is_file()}


@dataclass
class RunRecord:
    """What a run folder records about its training, without loading the network (:func:`read_run_record`).

    Attributes
    ----------
    folder : pathlib.Path
    log : list of dict
        ``training_log.jsonl``: one record per epoch (empty when missing).
    provenance : dict
        ``provenance.json`` (empty when missing).
    config : dict
        ``config.json``, else the training configuration in the model file's metadata.
    history : dict of str -> list of float
        ``history.json`` (empty when missing).

    Explained in chapter 7, book/07_training.md.
    """

    folder: Path
    log: list[dict[str, Any]]
    provenance: dict[str, Any]
    config: dict[str, Any]
    history: dict[str, list[float]]


def read_run_record(folder: str | os.PathLike) -> RunRecord:
    """Read the log, provenance, configuration and history of a run folder (the network is not loaded).

    Parameters
    ----------
    folder : path
        A folder written by :func:`write_run_folder` (or shipped under ``models/``), holding ``model.keras``.

    Returns
    -------
    RunRecord

    Explained in chapter 7, book/07_training.md.
    """
    folder = Path(folder)
    path = model_file(folder)

    def _json(name: str) -> Any:
        p = folder / name
        return json.loads(p.read_text()) if p.is_file() else None

    config = _json("config.json")
    if config is None:
        config = read_network_metadata(path).get("training") or {}
    return RunRecord(folder=folder, log=read_log(folder / LOG_NAME) if (folder / LOG_NAME).is_file() else [],
                     provenance=_json("provenance.json") or {}, config=config, history=_json("history.json") or {})


def read_run_folder(folder: str | os.PathLike, expected_sequence: Any = None) -> ShippedNetwork:
    """Read a run folder written by :func:`write_run_folder` (or shipped under ``models/``): network and record.

    Parameters
    ----------
    folder : path
        Holds ``model.keras``; ``training_log.jsonl``, ``provenance.json``, ``config.json`` and
        ``history.json`` are read when present (empty when missing), see :func:`read_run_record`.
    expected_sequence : FispSequence, optional
        The model must have been trained for it, else
        :class:`mrfbook.nn.model.SequenceMismatchError`.

    Returns
    -------
    ShippedNetwork

    Explained in chapter 7, book/07_training.md.
    """
    record = read_run_record(folder)
    return ShippedNetwork(
        model=load_network(model_file(record.folder), expected_sequence=expected_sequence),
        folder=record.folder, log=record.log, provenance=record.provenance, config=record.config,
        history=record.history,
    )
