"""A trained network and what is needed to use it: label scaling, training sequence, model file.

:class:`TrainedModel` bundles a Keras model with the affine map between its outputs and
milliseconds (:class:`LabelScaling`) and the sequence it was trained on; its ``predict`` is the
one place where signatures become (T1, T2). The model file is a ``.keras`` zip that carries the
metadata inside (``mrfbook.json``), plus a readable JSON sidecar. Keras is imported only where a
model is loaded, so :func:`read_model_metadata` (used by ``map --model`` to check the sequence
first) and :class:`LabelScaling` are cheap to import.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrfbook.nn.inputs import normalise_signatures
from mrfbook.utils.checks import check_int
from mrfbook.utils.provenance import atomic_write_json

if TYPE_CHECKING:  # Keras is imported only where a model is loaded, so metadata reads stay light
    import keras

__all__ = [
    "LabelScaling",
    "make_label_scaling",
    "TrainedModel",
    "SequenceMismatchError",
    "save_trained_model",
    "load_trained_model",
    "read_model_metadata",
    "sidecar_path",
    "read_network_metadata",
    "load_network",
]


SIDECAR_FORMAT = "mrfbook-trained-model/1"


EMBEDDED_METADATA = "mrfbook.json"


LABEL_SCALINGS = ("fixed", "standardise", "none")


class SequenceMismatchError(ValueError):
    """A trained model is used with a sequence other than the one it was trained on."""


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
        """Plain JSON-able dict (offset, scale, method)."""
        return {"offset": list(self.offset), "scale": list(self.scale), "method": self.method}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabelScaling":
        """Inverse of :meth:`to_dict`."""
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

    def predict(
        self,
        signatures: np.ndarray,
        *,
        batch_size: int = 4096,
        complex_mode: str = "dephase",
        phase_reference: np.ndarray | None = None,
    ) -> np.ndarray:
        """Tissue parameters for each signature: normalise, check length, run the network, back to ms.

        Parameters
        ----------
        signatures : ndarray, (N, L), real or complex
            Signatures in any units (each is L2-normalised here, see
            :func:`mrfbook.nn.inputs.normalise_signatures`).
        batch_size : int
            Signatures per forward pass (>= 1).
        complex_mode, phase_reference
            How complex input becomes real, see :func:`mrfbook.nn.inputs.real_signatures`.

        Returns
        -------
        ndarray, (N, n_outputs), float64
            Parameters in ms (columns T1, T2). Rows whose signature is all zeros (no signal) are NaN.

        Explained in chapter 7, book/07_training.md.
        """
        batch_size = check_int("batch_size", batch_size, 1)
        x, norms = normalise_signatures(signatures, complex_mode=complex_mode, phase_reference=phase_reference)
        n_in = int(self.model.inputs[0].shape[-1])
        if x.shape[1] != n_in:
            raise ValueError(f"signatures must have {n_in} time points (the model's input length), got {x.shape[1]}")
        if x.shape[0] == 0:
            return np.zeros((0, int(self.model.outputs[0].shape[-1])))
        raw = np.asarray(self.model.predict(x, batch_size=int(batch_size), verbose=0), dtype=np.float64)
        out = self.label_scaling.inverse(raw)
        out[norms == 0] = np.nan
        return out

    def check_sequence(self, expected_sequence: Any) -> None:
        """Raise SequenceMismatchError unless ``expected_sequence`` is the training sequence."""
        if expected_sequence is None:
            return
        if self.sequence_digest is None:
            raise SequenceMismatchError(
                "this model records no training sequence, so it cannot be checked against expected_sequence"
            )
        if expected_sequence.digest != self.sequence_digest and not expected_sequence.matches(self.sequence):
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
        atomic_write_json(sidecar_path(p), meta)
    return p


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata stored in a model file by :func:`save_trained_model` (sidecar as fallback).

    Reads the ``.keras`` zip without importing Keras. Raises FileNotFoundError for a missing file and
    ValueError for a file that is not a model or records no (or another format of) metadata.

    Explained in chapter 7, book/07_training.md.
    """
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
    from mrfbook.nn.backend import keras

    meta = read_model_metadata(path)
    from mrfbook.nn.losses import CUSTOM_OBJECTS  # the registered names compile configs record

    model = keras.saving.load_model(Path(path), compile=compile, custom_objects=CUSTOM_OBJECTS)
    trained = TrainedModel(
        model=model,
        label_scaling=LabelScaling.from_dict(meta["label_scaling"]),
        sequence=meta.get("sequence"),
        sequence_digest=meta.get("sequence_digest"),
        metadata=meta,
    )
    trained.check_sequence(expected_sequence)
    return trained


def read_network_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of any network file of the book, without importing Keras.

    A ``.npz`` path is a refined network (:mod:`mrfbook.nn.refined`, metadata in the ``.json``
    next to it); anything else is read by :func:`read_model_metadata`. Raises FileNotFoundError
    for a missing file, ValueError for a file that is not a network.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    p = Path(path)
    if p.suffix.lower() != ".npz":
        return read_model_metadata(p)
    from mrfbook.nn.refined import REFINED_FORMAT

    if not p.is_file():
        raise FileNotFoundError(f"no model file at path={str(p)!r}")
    side = p.with_suffix(".json")
    if not side.is_file():
        raise ValueError(f"refined network {str(p)!r} has no metadata sidecar {str(side)!r}")
    meta = json.loads(side.read_text())
    if meta.get("format") != REFINED_FORMAT:
        raise ValueError(f"{str(side)!r} has format {meta.get('format')!r}, expected {REFINED_FORMAT!r}")
    return meta


def load_network(path: str | os.PathLike, expected_sequence: Any = None) -> Any:
    """Load any network file of the book: a refined network (``.npz``) or a Keras one (``.keras``).

    Both returned types offer ``predict(signatures)`` in ms, ``sequence``, ``sequence_digest`` and
    ``check_sequence``; ``expected_sequence`` is checked as in :func:`load_trained_model`.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    if Path(path).suffix.lower() == ".npz":
        from mrfbook.nn.refined import load_refined_network

        return load_refined_network(path, expected_sequence)
    return load_trained_model(path, expected_sequence)
