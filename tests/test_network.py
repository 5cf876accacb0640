"""Tests for mrfbook.nn.network: architecture, parameter count, receptive field, sizes."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from mrfbook.nn.network import (
    NetworkConfig,
    block_channels,
    build_from_config,
    build_resnet1d,
    compact_config,
    expected_parameter_count,
    layer_table,
    model_size_bytes,
    multiply_adds,
    paper_config,
    parameter_count,
    receptive_field,
    saved_model_size_bytes,
)


@pytest.fixture(scope="module")
def paper_model():
    return build_resnet1d()


def test_paper_architecture_shapes(paper_model):
    m = paper_model
    assert tuple(m.input.shape) == (None, 200)
    assert tuple(m.output.shape) == (None, 2)
    shapes = {row["layer"]: row["output_shape"] for row in layer_table(m)}
    assert shapes["stem_conv1"] == (None, 200, 32)
    assert shapes["stem_conv2"] == (None, 200, 32)
    for b, (length, ch) in enumerate([(100, 64), (50, 128), (25, 256), (12, 512)], start=1):
        assert shapes[f"block{b}_pool"][1] == length
        assert shapes[f"block{b}_conv1"] == (None, length, ch)
        assert shapes[f"block{b}_conv2"] == (None, length, ch)
        assert shapes[f"block{b}_add"] == (None, length, ch)
    assert shapes["global_avg_pool"] == (None, 512)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds.count("Conv1D") == 2 + 4 * 3  # stem + (2 conv + 1 projection) per block
    assert kinds.count("MaxPooling1D") == 4 and kinds.count("Dense") == 1
    assert "BatchNormalization" not in kinds


def test_paper_parameter_count_matches_formula_and_reference(paper_model):
    n = parameter_count(paper_model)
    assert n == expected_parameter_count(paper_config())
    # By hand: stem 256 + 7,200; blocks 45,248 / 180,608 / 721,664 / 2,885,120; dense 1,026.
    assert n == 256 + 7200 + 45248 + 180608 + 721664 + 2885120 + 1026 == 3_841_122
    assert model_size_bytes(paper_model) == 4 * n
    # the .keras file is the float32 weights plus a small header / config
    size = saved_model_size_bytes(paper_model)
    assert 4 * n < size < 4 * n * 1.05


@pytest.mark.parametrize(
    "cfg",
    [
        compact_config(),
        NetworkConfig(batch_norm=True),
        NetworkConfig(n_timepoints=64, stem_channels=8, n_blocks=5, max_channels=32, kernel_size=3),
        NetworkConfig(n_timepoints=50, n_blocks=0, n_outputs=3),
    ],
)
def test_parameter_formula_other_configs(cfg):
    m = build_from_config(cfg)
    assert parameter_count(m) == expected_parameter_count(cfg)
    assert tuple(m.output.shape) == (None, cfg.n_outputs)
    y = np.asarray(m(np.random.default_rng(0).normal(size=(3, cfg.n_timepoints)).astype("float32")))
    assert y.shape == (3, cfg.n_outputs) and np.all(np.isfinite(y))


def test_channels_capped_and_no_projection_when_unchanged():
    cfg = NetworkConfig(n_timepoints=64, stem_channels=8, n_blocks=5, max_channels=32)
    assert block_channels(cfg) == [16, 32, 32, 32, 32]
    names = [layer.name for layer in build_from_config(cfg).layers]
    assert "block1_shortcut" in names and "block2_shortcut" in names
    assert not any(f"block{b}_shortcut" in names for b in (3, 4, 5))


def test_compact_variant_is_smaller_and_runs_under_tensorflow():
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        assert keras.backend.backend() == "tensorflow"  # default backend of the project environment
    cfg = compact_config()
    m = build_from_config(cfg)
    assert block_channels(cfg) == [32, 64, 64, 64]
    assert parameter_count(m) == 173_618
    assert parameter_count(m) * 20 < expected_parameter_count(paper_config())
    assert multiply_adds(cfg) * 10 < multiply_adds(paper_config())
    x = np.random.default_rng(1).normal(size=(5, 200)).astype("float32")
    y1 = np.asarray(m.predict(x, verbose=0))
    y2 = np.asarray(m(x, training=False))
    np.testing.assert_allclose(y1, y2, rtol=1e-4, atol=1e-5)


def test_build_resnet1d_arguments_reach_the_model():
    m = build_resnet1d(100, n_outputs=3, stem_channels=4, n_blocks=2, kernel_size=5, max_channels=8, name="small")
    assert m.name == "small" and tuple(m.output.shape) == (None, 3)
    conv = m.get_layer("block2_conv2")
    assert conv.filters == 8 and conv.kernel_size == (5,)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(kernel_size=4), "kernel_size"),
        (dict(n_timepoints=8, n_blocks=4), "n_timepoints"),
        (dict(stem_channels=0), "stem_channels"),
        (dict(n_blocks=-1), "n_blocks"),
        (dict(batch_norm=1), "batch_norm"),
    ],
)
def test_bad_config_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NetworkConfig(**kwargs)


def test_config_dict_roundtrip():
    cfg = compact_config(150)
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        NetworkConfig.from_dict({**cfg.to_dict(), "depth": 3})


def test_multiply_adds_by_hand():
    cfg = NetworkConfig(n_timepoints=8, stem_channels=2, n_blocks=1, kernel_size=3, max_channels=4)
    # stem 8*3*1*2 + 8*3*2*2; block (n=4): 4*3*2*4 + 4*3*4*4 + shortcut 4*2*4; dense 4*2
    assert multiply_adds(cfg) == 48 + 96 + 96 + 192 + 32 + 8


def test_receptive_field_formula_values():
    rows = receptive_field(paper_config())
    rf = {r["layer"]: r["receptive_field"] for r in rows}
    assert rf["stem_conv1"] == 7 and rf["stem_conv2"] == 13
    assert rf["block1_pool"] == 14 and rf["block1_conv2"] == 38
    assert rf["block4_conv2"] == 388  # > 200: the last block sees the whole fingerprint
    assert [r["length"] for r in rows if r["layer"].endswith("pool")] == [100, 50, 25, 12]


@pytest.mark.parametrize("layer", ["stem_conv2", "block1_conv2", "block2_conv2", "block3_conv2"])
def test_receptive_field_matches_measured_dependence(layer):
    """Independent check: which input samples change one output sample of a layer.

    All weights are set positive so every ReLU stays active and every max-pool
    passes a change; the set of inputs that move the central output sample
    then spans the receptive field (within the pooling alignment: the formula
    is the maximum over output positions, a given position sees at least
    formula - (jump - 1) samples).
    """
    n = 1024
    cfg = NetworkConfig(n_timepoints=n, stem_channels=2, max_channels=4, kernel_size=5)
    m = build_from_config(cfg)
    for w in m.weights:
        w.assign(np.full(w.shape, 0.05, dtype="float32"))
    sub = keras.Model(m.input, m.get_layer(layer).output)
    expected = {r["layer"]: r for r in receptive_field(cfg)}[layer]
    length = expected["length"]
    centre = length // 2
    base = np.ones((1, n), dtype="float32")
    batch = np.repeat(base, n, axis=0) + np.eye(n, dtype="float32")
    out = np.asarray(sub.predict(np.concatenate([base, batch]), batch_size=1025, verbose=0))
    changed = np.abs(out[1:, centre, 0] - out[0, centre, 0]) > 1e-6
    idx = np.flatnonzero(changed)
    span = idx.max() - idx.min() + 1
    assert span == idx.size  # contiguous
    assert expected["receptive_field"] - (expected["jump"] - 1) <= span <= expected["receptive_field"]
