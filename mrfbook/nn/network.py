"""The residual 1-D convolutional network that maps a fingerprint to (T1, T2).

Architecture of Song et al. (ICASSP 2019, section 3.2): two stem convolutions
(32 channels, kernel 7), four residual blocks (max-pool by 2, two convolutions
of kernel 7, shortcut), channels doubling in every block up to 512, global
average pooling and one dense layer with one output per tissue parameter.

The model code uses only ``keras.layers`` / ``keras.ops`` so it runs under the
TensorFlow, JAX and PyTorch backends of Keras 3.

Explained in chapter 6, book/06_network.md.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, fields
from typing import Any

from mrfbook.nn.backend import keras
from mrfbook.utils.checks import check_int

__all__ = [
    "NetworkConfig",
    "paper_config",
    "compact_config",
    "build_resnet1d",
    "build_from_config",
    "block_channels",
    "expected_parameter_count",
    "multiply_adds",
    "parameter_count",
    "model_size_bytes",
    "saved_model_size_bytes",
    "receptive_field",
    "layer_table",
]


@dataclass(frozen=True)
class NetworkConfig:
    """Width, depth and kernel of the residual 1-D CNN.

    Attributes
    ----------
    n_timepoints : int
        Length L of the input fingerprint (time points), >= 2**n_blocks.
    n_outputs : int
        Number of regressed parameters (2: T1 and T2).
    stem_channels : int
        Channels of the two stem convolutions (paper: 32).
    n_blocks : int
        Number of residual blocks (paper: 4). Block ``b`` (1-based) has
        ``min(stem_channels * 2**b, max_channels)`` channels.
    kernel_size : int
        Kernel length of every non-shortcut convolution (paper: 7), odd.
    max_channels : int
        Cap on the channel count (paper: 512).
    batch_norm : bool
        Insert BatchNormalization after every convolution of the residual
        blocks. Default False: the paper mentions none and the authors'
        public follow-up code switches it off in its residual layers.

    Explained in chapter 6, book/06_network.md.
    """

    n_timepoints: int = 200
    n_outputs: int = 2
    stem_channels: int = 32
    n_blocks: int = 4
    kernel_size: int = 7
    max_channels: int = 512
    batch_norm: bool = False

    def __post_init__(self) -> None:
        minima = {"n_blocks": 0, "n_outputs": 1, "stem_channels": 1, "max_channels": 1, "kernel_size": 1}
        for name, minimum in minima.items():  # stored as Python ints, so to_dict() stays JSON-able
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum))
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be an odd integer >= 1, got {self.kernel_size}")
        object.__setattr__(self, "n_timepoints", check_int("n_timepoints", self.n_timepoints, max(2**self.n_blocks, 1)))
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be a bool, got {self.batch_norm!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary of the configuration."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetworkConfig":
        """Inverse of :meth:`to_dict` (unknown keys raise ValueError)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"NetworkConfig dict has unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)


def paper_config(n_timepoints: int = 200) -> NetworkConfig:
    """The network of the paper: stem 32, 4 blocks (64..512), kernel 7, no BatchNorm."""
    return NetworkConfig(n_timepoints=n_timepoints)


def compact_config(n_timepoints: int = 200, *, stem_channels: int = 16, max_channels: int = 64) -> NetworkConfig:
    """A compact variant: same depth, kernel and layout, channels 16 -> 32, 64, 64, 64.

    173,618 weights (22x fewer than :func:`paper_config`) and ~11x fewer
    multiply-adds per signature (:func:`multiply_adds`: 5.9 M vs 67.6 M), chosen so that a
    128x128 map is inferred in about a second on a 2-core CPU; used for CPU
    inference and for the short trainings inside the book and the tests.

    Explained in chapter 6, book/06_network.md.
    """
    return NetworkConfig(n_timepoints=n_timepoints, stem_channels=stem_channels, max_channels=max_channels)


def block_channels(config: NetworkConfig) -> list[int]:
    """Channel count of each residual block, e.g. [64, 128, 256, 512] for the paper."""
    return [min(config.stem_channels * 2 ** (b + 1), config.max_channels) for b in range(config.n_blocks)]


def build_resnet1d(
    n_timepoints: int = 200,
    *,
    n_outputs: int = 2,
    stem_channels: int = 32,
    n_blocks: int = 4,
    kernel_size: int = 7,
    max_channels: int = 512,
    batch_norm: bool = False,
    dtype_policy: str | None = None,
    name: str = "mrf_resnet1d",
) -> keras.Model:
    """Build the residual 1-D CNN (uncompiled).

    Parameters
    ----------
    n_timepoints : int
        Fingerprint length L. The model takes ``(N, L)`` float32 input (one
        real, L2-normalised signature per row) and returns ``(N, n_outputs)``.
    n_outputs, stem_channels, n_blocks, kernel_size, max_channels, batch_norm
        See :class:`NetworkConfig` (defaults = the paper's network).
    dtype_policy : str or None
        Keras dtype policy for the hidden layers, e.g. ``"mixed_bfloat16"``;
        the output layer always computes in float32. None = global default.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Functional model ``(N, L) -> (N, n_outputs)``, outputs in the (scaled)
        label units used at training time.

    Explained in chapter 6, book/06_network.md.
    """
    cfg = NetworkConfig(
        n_timepoints=n_timepoints,
        n_outputs=n_outputs,
        stem_channels=stem_channels,
        n_blocks=n_blocks,
        kernel_size=kernel_size,
        max_channels=max_channels,
        batch_norm=batch_norm,
    )
    return build_from_config(cfg, dtype_policy=dtype_policy, name=name)


def build_from_config(
    config: NetworkConfig, *, dtype_policy: str | None = None, name: str = "mrf_resnet1d"
) -> keras.Model:
    """Build the model described by ``config``; see :func:`build_resnet1d`."""
    layers = keras.layers
    dt = dtype_policy
    k = config.kernel_size

    def conv(ch: int, ksize: int, lname: str, activation: str | None = "relu"):
        return layers.Conv1D(
            ch, ksize, padding="same", activation=activation, kernel_initializer="he_normal",
            name=lname, dtype=dt,
        )

    inputs = keras.Input(shape=(config.n_timepoints,), name="signature")
    x = layers.Reshape((config.n_timepoints, 1), name="to_channels", dtype=dt)(inputs)
    x = conv(config.stem_channels, k, "stem_conv1")(x)
    x = conv(config.stem_channels, k, "stem_conv2")(x)
    ch_in = config.stem_channels
    for b, ch in enumerate(block_channels(config), start=1):
        x = layers.MaxPooling1D(2, name=f"block{b}_pool", dtype=dt)(x)
        if config.batch_norm:
            y = conv(ch, k, f"block{b}_conv1", activation=None)(x)
            y = layers.BatchNormalization(name=f"block{b}_bn1", dtype=dt)(y)
            y = layers.Activation("relu", name=f"block{b}_relu1", dtype=dt)(y)
            y = conv(ch, k, f"block{b}_conv2", activation=None)(y)
            y = layers.BatchNormalization(name=f"block{b}_bn2", dtype=dt)(y)
        else:
            y = conv(ch, k, f"block{b}_conv1")(x)
            y = conv(ch, k, f"block{b}_conv2", activation=None)(y)
        shortcut = x if ch == ch_in else conv(ch, 1, f"block{b}_shortcut", activation=None)(x)
        x = layers.Add(name=f"block{b}_add", dtype=dt)([shortcut, y])
        x = layers.Activation("relu", name=f"block{b}_out", dtype=dt)(x)
        ch_in = ch
    x = layers.GlobalAveragePooling1D(name="global_avg_pool", dtype=dt)(x)
    outputs = layers.Dense(config.n_outputs, name="parameters", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def expected_parameter_count(config: NetworkConfig) -> int:
    """Closed-form number of weights of :func:`build_from_config` (a check on the build).

    Conv1D(c_in -> c_out, k) has ``k*c_in*c_out + c_out`` weights; BatchNorm
    adds ``4*c_out`` (2 trainable + 2 moving statistics); Dense ``c_in*n_out + n_out``.
    """
    k = config.kernel_size
    c0 = config.stem_channels
    total = (k * 1 * c0 + c0) + (k * c0 * c0 + c0)
    ch_in = c0
    for ch in block_channels(config):
        total += k * ch_in * ch + ch + k * ch * ch + ch
        if config.batch_norm:
            total += 2 * 4 * ch
        if ch != ch_in:
            total += ch_in * ch + ch
        ch_in = ch
    total += ch_in * config.n_outputs + config.n_outputs
    return total


def multiply_adds(config: NetworkConfig) -> int:
    """Multiply-adds of one forward pass for one signature (convolutions, shortcuts, dense).

    A Conv1D(c_in -> c_out, k) on a length-n signal costs ``n*k*c_in*c_out``;
    pooling, additions and activations are not counted. This sets the CPU
    inference time, which is compute-bound.
    """
    k = config.kernel_size
    n = config.n_timepoints
    c0 = config.stem_channels
    total = n * k * 1 * c0 + n * k * c0 * c0
    ch_in = c0
    for ch in block_channels(config):
        n //= 2
        total += n * k * ch_in * ch + n * k * ch * ch
        if ch != ch_in:
            total += n * ch_in * ch
        ch_in = ch
    return total + ch_in * config.n_outputs


def parameter_count(model: keras.Model) -> int:
    """Total number of weights (trainable and not) of ``model``."""
    return int(sum(int(_prod(w.shape)) for w in model.weights))


def _prod(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def model_size_bytes(model: keras.Model) -> int:
    """Storage of the weights as float32: ``4 * parameter_count(model)`` bytes."""
    return 4 * parameter_count(model)


def weights_only_copy(model: keras.Model) -> keras.Model:
    """An uncompiled copy of ``model``: same architecture and weights, no optimizer state.

    Explained in chapter 10, book/10_beyond.md.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def saved_model_size_bytes(model: keras.Model) -> int:
    """Measured size in bytes of ``model`` saved as a ``.keras`` file.

    The file holds the architecture, the weights and, for a compiled model
    that has been trained, the optimizer state (Adam: two moments per weight,
    so about three times the weights).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        return os.path.getsize(path)


def receptive_field(config: NetworkConfig) -> list[dict[str, Any]]:
    """Receptive field, in time points, after every layer of the network.

    Uses the standard recursion: a layer of kernel ``k`` and stride ``s``
    applied where the cumulative stride ("jump") is ``j`` grows the receptive
    field by ``(k - 1) * j`` and multiplies the jump by ``s``. Shortcut
    convolutions (kernel 1) do not change it.

    Returns
    -------
    list of dict
        One row per layer: ``layer`` (name), ``kernel``, ``stride``,
        ``length`` (output length in time points), ``jump`` (input time points
        between neighbouring outputs) and ``receptive_field`` (time points of
        the input seen by one output sample).

    Explained in chapter 6, book/06_network.md.
    """
    rows: list[dict[str, Any]] = []
    rf, jump, length = 1, 1, config.n_timepoints

    def add(name: str, k: int, s: int) -> None:
        nonlocal rf, jump, length
        rf += (k - 1) * jump
        jump *= s
        length = length // s
        rows.append(dict(layer=name, kernel=k, stride=s, length=length, jump=jump, receptive_field=rf))

    add("stem_conv1", config.kernel_size, 1)
    add("stem_conv2", config.kernel_size, 1)
    for b in range(1, config.n_blocks + 1):
        add(f"block{b}_pool", 2, 2)
        add(f"block{b}_conv1", config.kernel_size, 1)
        add(f"block{b}_conv2", config.kernel_size, 1)
    return rows


def layer_table(model: keras.Model) -> list[dict[str, Any]]:
    """Rows (``layer``, ``type``, ``output_shape``, ``parameters``) describing ``model``'s layers."""
    rows = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):  # pragma: no cover
            shape = ()
        rows.append(
            dict(
                layer=layer.name,
                type=type(layer).__name__,
                output_shape=shape,
                parameters=int(sum(_prod(w.shape) for w in layer.weights)),
            )
        )
    return rows
