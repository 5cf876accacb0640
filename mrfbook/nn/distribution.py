"""Where a training runs: data-parallel training over the devices present, and mixed precision.

Data parallelism goes through Keras' own distribution API: :func:`data_parallel_distribution`
builds a ``keras.distribution.DataParallel`` over the devices Keras lists
(``keras.distribution.list_devices()``: the GPUs or TPUs when there are any, else the CPU
devices), and :func:`training_scope` runs model building and ``model.fit`` inside its scope.
Every variable is then replicated on each device and each batch is split along its first axis,
one equal slice per device; the gradients of the slices are summed across devices before the
one Adam step. With the same global batch (``TrainingConfig.batch_size``) this is the same
stochastic gradient descent as on one device: the steps differ only in the order the
floating-point sums are taken.

Only the JAX backend implements this API (Keras' TensorFlow implementation is a prototype its
source marks "do not use"; the PyTorch backend has none), so :func:`check_data_parallel_backend`
refuses any other backend. JAX needs every batch to split evenly: :func:`check_even_batches`
refuses a batch size or a split whose batches do not.

Mixed precision (``TrainingConfig.mixed_precision``) computes the hidden layers in a 16-bit
float and keeps the weights, the optimizer state and the output layer in float32
(:func:`mixed_precision_policy`): bfloat16 on a CPU (no loss scaling needed: same exponent
range as float32), float16 with a loss-scaling optimizer on a GPU.

Explained in book/scaling.md.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

from mrfbook.nn.backend import keras
from mrfbook.utils.checks import check_int

__all__ = [
    "DATA_PARALLEL_BACKENDS",
    "check_data_parallel_backend",
    "data_parallel_devices",
    "data_parallel_distribution",
    "distribution_record",
    "batch_sizes",
    "check_even_batches",
    "training_scope",
    "mixed_precision_policy",
]

#: Keras backends whose distribution API runs ``keras.distribution.DataParallel``.
DATA_PARALLEL_BACKENDS = ("jax",)


def check_data_parallel_backend(backend: str | None = None, *, option: str = "data_parallel") -> str:
    """Refuse data-parallel training under a backend that cannot do it; return the backend's name.

    Parameters
    ----------
    backend : str, optional
        Keras backend name (default: the one this process runs, ``keras.backend.backend()``).
    option : str
        What the refusal names (``"data_parallel"`` for the library, ``"--data-parallel"`` for the CLI).

    Raises
    ------
    ValueError
        The backend is not one of :data:`DATA_PARALLEL_BACKENDS`; the message says how to switch
        (``KERAS_BACKEND=jax``, set before Keras is first imported).
    """
    backend = keras.backend.backend() if backend is None else str(backend)
    if backend not in DATA_PARALLEL_BACKENDS:
        raise ValueError(
            f"{option}: data-parallel training needs the JAX backend of Keras (set KERAS_BACKEND=jax before "
            f"Keras is imported); this process runs the {backend!r} backend, whose Keras distribution API "
            "cannot train data-parallel"
        )
    return backend


def data_parallel_devices() -> list[str]:
    """The devices a data-parallel run spreads over: ``keras.distribution.list_devices()``.

    Returns
    -------
    list of str
        Names such as ``"gpu:0"`` or ``"cpu:1"``: the accelerators when there are any, else the
        CPU devices (one, unless e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` was
        set before JAX started).
    """
    return [str(d) for d in keras.distribution.list_devices()]


def data_parallel_distribution(devices: Sequence[str] | None = None) -> Any:
    """A ``keras.distribution.DataParallel`` over ``devices`` (default: :func:`data_parallel_devices`).

    Raises
    ------
    ValueError
        Under a backend other than JAX (:func:`check_data_parallel_backend`), or ``devices`` empty.
    """
    check_data_parallel_backend()
    devices = data_parallel_devices() if devices is None else [str(d) for d in devices]
    if not devices:
        raise ValueError("devices must name at least one device, got an empty list")
    return keras.distribution.DataParallel(devices=devices)


def distribution_record(distribution: Any) -> dict[str, Any]:
    """What a run records of its distribution: ``{"kind": "DataParallel", "devices": [...]}``."""
    mesh = distribution.device_mesh
    return {"kind": type(distribution).__name__, "devices": [str(d) for d in mesh.devices.ravel()]}


def batch_sizes(n_rows: int, batch_size: int) -> list[int]:
    """The sizes of the batches ``model.fit`` forms from ``n_rows`` rows, in order-free form.

    Returns
    -------
    list of int
        ``[batch_size]`` when ``n_rows >= batch_size`` (plus the last, smaller batch
        ``n_rows % batch_size`` when it is not 0), or ``[n_rows]`` when fewer rows than a batch.
    """
    n_rows = check_int("n_rows", n_rows, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    if n_rows < batch_size:
        return [n_rows]
    return [batch_size] + ([n_rows % batch_size] if n_rows % batch_size else [])


def check_even_batches(
    n_devices: int, *, batch_size: int, n_train: int, n_val: int, validation_batch_size: int
) -> None:
    """Refuse a run whose training or validation batches do not split evenly over ``n_devices``.

    JAX shards each batch in equal slices along its first axis; a batch of, say, 53 rows on two
    devices is an error deep inside the step. This check names the cause first.

    Parameters
    ----------
    n_devices : int
        Devices of the data-parallel run (>= 1).
    batch_size : int
        Rows per training step (``TrainingConfig.batch_size``).
    n_train, n_val : int
        Rows of the training and validation splits.
    validation_batch_size : int
        Rows per validation batch.

    Raises
    ------
    ValueError
        Naming ``batch_size`` (or the split) whose batch does not divide by ``n_devices``.
    """
    n_devices = check_int("n_devices", n_devices, 1)
    if batch_size % n_devices:
        raise ValueError(
            f"batch_size must be a multiple of the {n_devices} devices of a data-parallel run (each step splits "
            f"its batch evenly over them), got {batch_size}"
        )
    for what, n, b in (("training", n_train, batch_size), ("validation", n_val, validation_batch_size)):
        odd = [s for s in batch_sizes(n, b) if s % n_devices]
        if odd:
            raise ValueError(
                f"data_parallel: the {what} split of {n} rows in batches of {b} gives a batch of {odd[0]} rows, "
                f"which does not split evenly over {n_devices} devices; choose a dictionary size (e.g. "
                f"--max-atoms) or validation_fraction whose splits are multiples of {n_devices}"
            )


@contextlib.contextmanager
def training_scope(distribution: Any | None) -> Iterator[None]:
    """``distribution.scope()``, or nothing when ``distribution`` is None (one device)."""
    if distribution is None:
        yield
    else:
        with distribution.scope():
            yield


def mixed_precision_policy(gpu: bool) -> str:
    """Keras dtype policy of a mixed-precision run: ``"mixed_float16"`` on a GPU, else ``"mixed_bfloat16"``.

    Either keeps the variables in float32 and computes the hidden layers in the 16-bit type; on
    a GPU the optimizer is wrapped in ``keras.optimizers.LossScaleOptimizer`` (float16 gradients
    underflow without loss scaling; bfloat16 has float32's exponent range and needs none).
    """
    return "mixed_float16" if gpu else "mixed_bfloat16"
