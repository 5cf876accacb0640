"""Run folders: what a training run writes next to its weights, and the networks shipped in ``models/``.

A run folder holds ``model.keras`` (weights and metadata), ``training_log.jsonl`` (one record
per epoch), ``config.json`` and ``provenance.json`` (how, where and when it was produced).

Explained in chapter 7, book/07_training.md; the shipped networks are evaluated in chapter 8,
book/08_evaluation.md.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np

from mrfbook.nn.model import load_trained_model
from mrfbook.nn.network import NetworkConfig, paper_config, parameter_count

__all__ = [
    "LOG_NAME",
    "read_log",
    "runtime_info",
    "is_gpu",
    "NETWORK_FOLDERS",
    "default_models_dir",
    "ShippedNetwork",
    "shipped_networks",
    "network_configs",
]


LOG_NAME = "training_log.jsonl"


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
    return info["device"].startswith("gpu")


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSON-lines training log (one dict per epoch)."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


#: Shipped model folders under ``models/`` and the names the book uses for them, in display order.
NETWORK_FOLDERS: dict[str, str] = {"paper_resnet": "paper network", "compact_resnet": "compact network"}


def default_models_dir() -> Path:
    """The repository's ``models/`` folder (next to the ``mrfbook`` package in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "models"


@dataclass
class ShippedNetwork:
    """A trained network committed under ``models/``, with its training record.

    Attributes
    ----------
    model : mrfbook.nn.model.TrainedModel
        The network, its label scaling and training sequence.
    folder : pathlib.Path
        Its folder (``model.keras``, ``training_log.jsonl``, ``provenance.json``).
    log : list of dict
        One record per training epoch (``seconds``, ``device``, ``backend``, losses...).
    provenance : dict
        How the run was produced and its test-grid accuracy as recorded then.
    """

    model: Any
    folder: Path
    log: list[dict[str, Any]]
    provenance: dict[str, Any]

    def info(self) -> dict[str, Any]:
        """Weights, size on disk (MB), training device/backend, epochs and median seconds per epoch."""

        secs = [float(r["seconds"]) for r in self.log]
        last = self.log[-1] if self.log else {}
        return {
            "folder": self.folder.name,
            "weights": int(parameter_count(self.model.model)),
            "file_mb": (self.folder / "model.keras").stat().st_size / 1e6,
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
    out: dict[str, ShippedNetwork] = {}
    for folder, name in NETWORK_FOLDERS.items():
        path = root / folder / "model.keras"
        if path.is_file():
            log_path, prov_path = root / folder / "training_log.jsonl", root / folder / "provenance.json"
            out[name] = ShippedNetwork(
                model=load_trained_model(path, expected_sequence=sequence), folder=root / folder,
                log=read_log(log_path) if log_path.is_file() else [],
                provenance=json.loads(prov_path.read_text()) if prov_path.is_file() else {},
            )
    return out
