"""Tests for mrfbook.nn.training and mrfbook.nn.inference: recipe, scaling, a short real training,
checkpoint/resume, model files with their sequence, and the prediction helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from mrfbook.analysis.experiments import evaluate_on_dictionary
from mrfbook.nn.data import noisy_training_inputs, random_subset, split_indices
from mrfbook.nn.inference import predict_maps, predict_parameters
from mrfbook.nn.inputs import normalise_signatures, prepare_training_data, real_signatures
from mrfbook.nn.model import (
    LabelScaling,
    SequenceMismatchError,
    TrainedModel,
    load_trained_model,
    make_label_scaling,
    save_trained_model,
    sidecar_path,
)
from mrfbook.nn.network import NetworkConfig, compact_config, paper_config
from mrfbook.nn.runs import read_log
from mrfbook.nn.training import CheckpointMismatchError, TrainingConfig, train
from mrfbook.physics.dictionary import build_dictionary
from mrfbook.physics.noise import add_signature_noise
from mrfbook.physics.sequence import paper_sequence

# The short training of the tests: T1 100..2000 ms x T2 10..200 ms (100 x 20 = 2,000 atoms),
# paper sequence (200 time points), compact network, 6 epochs, batch 64, Adam 3e-3
# halved... (x0.1 after epoch 3), standardised labels. Measured: ~20-30 s on the 2-core machine.
SHORT = TrainingConfig(
    network=compact_config(),
    epochs=6,
    batch_size=64,
    learning_rate=3e-3,
    lr_decay_every=3,
    label_scaling="standardise",
    seed=0,
)
# Pass threshold: validation RMSE at least 5x below the RMSE of predicting the mean (the
# labels' standard deviation). An untrained or broken network scores a ratio of ~1.
MIN_IMPROVEMENT = 5.0


@pytest.fixture(scope="module")
def sequence():
    return paper_sequence()


@pytest.fixture(scope="module")
def small_dictionary(sequence):
    t1, t2 = np.meshgrid(np.linspace(100.0, 2000.0, 100), np.linspace(10.0, 200.0, 20), indexing="ij")
    return build_dictionary(sequence, t1.ravel(), t2.ravel())


@pytest.fixture(scope="module")
def tiny_dictionary(sequence):
    t1, t2 = np.meshgrid(np.linspace(200.0, 1500.0, 20), np.linspace(20.0, 150.0, 10), indexing="ij")
    return build_dictionary(sequence, t1.ravel(), t2.ravel())


@pytest.fixture(scope="module")
def short_run(small_dictionary, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("short_run")
    result = train(small_dictionary, SHORT, checkpoint_dir=ckpt, progress=False)
    return result, ckpt


# ----------------------------------------------------------------------------- recipe
def test_default_config_is_the_paper_recipe():
    c = TrainingConfig()
    assert c.network == paper_config()
    assert (c.epochs, c.batch_size, c.validation_fraction, c.label_scaling) == (50, 256, 0.2, "fixed")
    assert c.learning_rate == pytest.approx(1e-3)  # the one documented change (scaled labels)
    lrs = [c.learning_rate_at(e) for e in range(50)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-4) and lrs[20] == pytest.approx(1e-5)
    assert lrs[30] == pytest.approx(1e-6) and lrs[49] == pytest.approx(1e-6)  # floor
    p = TrainingConfig.paper_exact()
    assert (p.learning_rate, p.label_scaling) == (1e-2, "none")
    lrs = [p.learning_rate_at(e) for e in range(50)]
    assert lrs[0] == pytest.approx(1e-2) and lrs[9] == pytest.approx(1e-2)
    assert lrs[10] == pytest.approx(1e-3) and lrs[20] == pytest.approx(1e-4)
    assert lrs[30] == pytest.approx(1e-5) and lrs[49] == pytest.approx(1e-6)
    assert len(set(np.round(np.log10(lrs)).astype(int))) == 5


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(label_scaling="minmax"), "label_scaling"),
        (dict(jit_compile="yes"), "jit_compile"),
        (dict(network="paper"), "network"),
    ],
)
def test_bad_training_config_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TrainingConfig(**kwargs)


def test_config_dict_roundtrip():
    assert TrainingConfig.from_dict(json.loads(json.dumps(SHORT.to_dict()))) == SHORT


def test_label_scaling_roundtrip():
    rng = np.random.default_rng(0)
    y = np.stack([rng.uniform(1, 5000, 100), rng.uniform(1, 2000, 100)], axis=1)
    fixed = LabelScaling.fixed()
    s = fixed.transform(y)
    assert s.dtype == np.float32 and s.min() >= 0 and s.max() <= 1
    np.testing.assert_allclose(fixed.inverse(s), y, rtol=1e-6)
    none = make_label_scaling("none", y)
    np.testing.assert_allclose(none.inverse(none.transform(y)), y, rtol=1e-6)
    std = LabelScaling.standardised(y)
    z = std.transform(y)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(std.inverse(z), y, atol=1e-3)  # float32 network units
    assert LabelScaling.from_dict(json.loads(json.dumps(std.to_dict()))) == std
    with pytest.raises(ValueError, match="scale"):
        LabelScaling((0.0, 0.0), (1.0, 0.0))


def test_prepare_training_data(small_dictionary):
    x, y = prepare_training_data(small_dictionary)
    assert x.shape == (2000, 200) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(y[:, 0], small_dictionary.t1_ms)
    np.testing.assert_array_equal(y[:, 1], small_dictionary.t2_ms)
    # same direction as the raw atoms
    cos = np.sum(x * small_dictionary.atoms, axis=1) / np.linalg.norm(small_dictionary.atoms, axis=1)
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)


def test_split_is_seeded_disjoint_and_complete():
    tr, va = split_indices(1000, 0.2, seed=3)
    assert va.size == 200 and tr.size == 800
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == 1000
    tr2, va2 = split_indices(1000, 0.2, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, split_indices(1000, 0.2, seed=4)[1])
    assert va.max() > 900 and va.min() < 100  # random, not the tail of the (ordered) grid


# ----------------------------------------------------------------------------- short training
def test_short_training_learns(short_run, small_dictionary):
    result, _ = short_run
    _, y = prepare_training_data(small_dictionary)
    tr, va = split_indices(len(y), SHORT.validation_fraction, SHORT.seed)
    pred = predict_parameters(result.trained_model(), small_dictionary.atoms[va])
    rmse = np.sqrt(np.mean((pred - y[va]) ** 2, axis=0))
    baseline = y[va].std(axis=0)  # RMSE of predicting the mean
    assert np.all(baseline / rmse > MIN_IMPROVEMENT), (rmse, baseline)
    # the history agrees with an independent evaluation
    np.testing.assert_allclose(result.history["val_t1_rmse_ms"][-1], rmse[0], rtol=1e-3)
    np.testing.assert_allclose(result.history["val_t2_rmse_ms"][-1], rmse[1], rtol=1e-3)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.epochs_completed == SHORT.epochs and result.resumed_from_epoch == 0


def test_training_log_and_checkpoint_state(short_run):
    result, ckpt = short_run
    log = read_log(ckpt / "training_log.jsonl")
    assert [r["epoch"] for r in log] == list(range(1, SHORT.epochs + 1))
    assert [r["lr"] for r in log] == pytest.approx([SHORT.learning_rate_at(e) for e in range(SHORT.epochs)])
    for key in ("loss", "val_loss", "seconds", "device", "backend", "versions", "time"):
        assert key in log[0]
    assert log[0]["backend"] == keras.backend.backend() and "keras" in log[0]["versions"]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epochs_completed"] == SHORT.epochs


def test_save_load_roundtrip_and_sequence_check(short_run, small_dictionary, sequence, tmp_path):
    result, _ = short_run
    path = result.save(tmp_path / "model.keras")
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["sequence_digest"] == sequence.digest
    assert meta["network"] == compact_config().to_dict()
    loaded = load_trained_model(path, expected_sequence=sequence)
    x = small_dictionary.atoms[:50]
    np.testing.assert_allclose(loaded.predict(x), result.trained_model().predict(x), rtol=1e-5, atol=1e-3)
    other = paper_sequence(seed=1)
    with pytest.raises(SequenceMismatchError, match="expected_sequence") as info:
        load_trained_model(path, expected_sequence=other)
    assert "tr_ms" in str(info.value)
    # the metadata travels inside the .keras file: the model still loads without its sidecar
    moved = path.rename(tmp_path / "moved.keras")
    assert load_trained_model(moved, expected_sequence=sequence).sequence_digest == sequence.digest
    # sidecar=False writes the self-contained file only
    lone = result.save(tmp_path / "lone.keras", sidecar=False)
    assert not sidecar_path(lone).exists()
    assert load_trained_model(lone, expected_sequence=sequence).label_scaling == result.label_scaling
    # a plain Keras file without metadata is refused (sequence and scaling unknown)
    result.model.save(tmp_path / "plain.keras")
    with pytest.raises(ValueError, match="no training metadata"):
        load_trained_model(tmp_path / "plain.keras")


def test_random_subset_and_evaluation(short_run, small_dictionary):
    sub = random_subset(small_dictionary, 300, seed=2)
    assert sub.n_atoms == 300 and sub.sequence is small_dictionary.sequence
    assert np.all(np.diff(sub.t1_ms * 1e4 + sub.t2_ms) > 0)  # sorted, distinct grid order kept
    row = np.flatnonzero((small_dictionary.t1_ms == sub.t1_ms[7]) & (small_dictionary.t2_ms == sub.t2_ms[7]))
    np.testing.assert_array_equal(small_dictionary.atoms[row[0]], sub.atoms[7])
    with pytest.raises(ValueError, match="n_atoms"):
        random_subset(small_dictionary, 0)
    trained = short_run[0].trained_model()
    m = evaluate_on_dictionary(trained, sub)
    pred = trained.predict(sub.atoms)
    assert m["n"] == 300
    assert m["t1_rmse_ms"] == pytest.approx(np.sqrt(np.mean((pred[:, 0] - sub.t1_ms) ** 2)))
    assert m["t2_mae_ms"] == pytest.approx(np.mean(np.abs(pred[:, 1] - sub.t2_ms)))
    assert m["t2_max_abs_ms"] >= m["t2_rmse_ms"] >= m["t2_mae_ms"]
    assert 0.9 < m["t1_r2"] <= 1
    m2, pred2 = evaluate_on_dictionary(trained, sub, return_predictions=True)
    np.testing.assert_allclose(pred2, pred, rtol=1e-5)
    assert m2["t1_rmse_ms"] == pytest.approx(m["t1_rmse_ms"])


# ----------------------------------------------------------------------------- resume
TINY = TrainingConfig(
    network=NetworkConfig(stem_channels=4, n_blocks=2, max_channels=8, kernel_size=3),
    epochs=2, batch_size=32, learning_rate=3e-3, lr_decay_every=1, seed=1,
)


def test_resume_continues_at_the_right_epoch(tiny_dictionary, tmp_path):
    straight = train(tiny_dictionary, TINY, progress=False)
    ckpt = tmp_path / "ckpt"
    first = train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 1}),
                  checkpoint_dir=ckpt, progress=False)
    assert first.epochs_completed == 1
    resumed = train(tiny_dictionary, TINY, checkpoint_dir=ckpt, progress=False)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_completed == 2
    assert resumed.history["lr"] == pytest.approx([3e-3, 3e-4])
    iterations = [int(keras.ops.convert_to_numpy(r.model.optimizer.iterations)) for r in (resumed, straight)]
    assert iterations[0] == iterations[1] > 0
    # same batches, learning rates and optimizer state as the uninterrupted run
    np.testing.assert_allclose(resumed.history["loss"], straight.history["loss"], rtol=1e-4)
    for a, b in zip(resumed.model.get_weights(), straight.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert [r["epoch"] for r in read_log(ckpt / "training_log.jsonl")] == [1, 2]
    # a finished run is returned as is
    again = train(tiny_dictionary, TINY, checkpoint_dir=ckpt, progress=False)
    assert again.resumed_from_epoch == 2 and again.epochs_completed == 2
    # another configuration in the same folder is refused
    with pytest.raises(CheckpointMismatchError, match="config"):
        train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), "batch_size": 16}),
              checkpoint_dir=ckpt, progress=False)


def test_continuation_from_a_saved_model_equals_the_longer_run(tiny_dictionary, tmp_path):
    """train(initial_model=...) picks up weights, optimizer state and batch order where the saved run stopped."""
    straight = train(tiny_dictionary, TINY, progress=False)
    first = train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 1}), progress=False)
    saved = first.save(tmp_path / "first.keras")
    second = TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 1, "learning_rate": 3e-4})
    ckpt = tmp_path / "cont"
    continued = train(tiny_dictionary, second, initial_model=saved, checkpoint_dir=ckpt, progress=False)
    assert continued.history["lr"] == pytest.approx([3e-4])
    np.testing.assert_allclose(continued.history["loss"], straight.history["loss"][1:], rtol=1e-4)
    for a, b in zip(continued.model.get_weights(), straight.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert continued.initial_model["epochs_completed"] == 1
    assert len(continued.initial_model["sha256"]) == 64
    assert continued.metadata()["continued_from"]["path"] == str(saved)
    # the checkpoint key holds the start model: the same folder resumes, finished, without training again
    again = train(tiny_dictionary, second, initial_model=saved, checkpoint_dir=ckpt, progress=False)
    assert again.resumed_from_epoch == 1
    with pytest.raises(CheckpointMismatchError):
        train(tiny_dictionary, second, checkpoint_dir=ckpt, progress=False)


@pytest.mark.parametrize("change, name", [({"seed": 2}, "config.seed"), ({"label_scaling": "none"}, "label_scaling"),
                                           ({"validation_fraction": 0.3}, "config.validation_fraction")])
def test_continuation_refuses_another_split_or_scaling(tiny_dictionary, tmp_path, change, name):
    saved = train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 1}),
                  progress=False).save(tmp_path / "first.keras")
    with pytest.raises(ValueError, match=name):
        train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), **change}), initial_model=saved,
              progress=False)


def test_continuation_refuses_another_network_or_missing_file(tiny_dictionary, tmp_path):
    saved = train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 1}),
                  progress=False).save(tmp_path / "first.keras")
    with pytest.raises(ValueError, match="network"):
        train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), "network": compact_config().to_dict()}),
              initial_model=saved, progress=False)
    stripped = load_trained_model(saved)  # uncompiled: no optimizer state
    save_trained_model(stripped, tmp_path / "stripped.keras")
    with pytest.raises(ValueError, match="no optimizer state"):
        train(tiny_dictionary, TINY, initial_model=tmp_path / "stripped.keras", progress=False)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        train(tiny_dictionary, TINY, initial_model=tmp_path / "missing.keras", progress=False)


def test_train_refuses_wrong_input_length(tiny_dictionary):
    with pytest.raises(ValueError, match="n_timepoints"):
        train(tiny_dictionary, TrainingConfig(network=compact_config(100)), progress=False)


# ----------------------------------------------------------------------------- inference helpers
def test_complex_input_dephased_to_the_real_signal(small_dictionary):
    x = small_dictionary.atoms[::97].astype(np.float64)
    rng = np.random.default_rng(0)
    phase = rng.uniform(-1.5, 1.5, len(x))  # within (-pi/2, pi/2): recovered without a reference
    z = x * np.exp(1j * phase)[:, None]
    np.testing.assert_allclose(real_signatures(z), x, atol=1e-5)
    np.testing.assert_allclose(real_signatures(z, complex_mode="real"), x * np.cos(phase)[:, None], atol=1e-6)
    # a phase beyond 90 degrees flips the sign unless a reference is given
    z2 = x * np.exp(1j * (phase + np.pi))[:, None]
    np.testing.assert_allclose(real_signatures(z2), -x, atol=1e-5)
    ref = x.mean(axis=0)
    np.testing.assert_allclose(real_signatures(z2, phase_reference=ref), x, atol=1e-5)
    with pytest.raises(ValueError, match="complex_mode"):
        real_signatures(z, complex_mode="abs")


def test_normalisation_keeps_zero_rows_and_rejects_nan():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    xn, norms = normalise_signatures(x)
    np.testing.assert_allclose(xn, [[0.6, 0.8], [0, 0]])
    np.testing.assert_allclose(norms, [5, 0])
    with pytest.raises(ValueError, match="finite"):
        normalise_signatures(np.array([[np.nan, 1.0]]))


def test_predictions_scale_free_and_maps(short_run, small_dictionary):
    trained: TrainedModel = short_run[0].trained_model()
    x = small_dictionary.atoms[:64]
    p1 = predict_parameters(trained, x)
    p2 = predict_parameters(trained, 7.5 * x * np.exp(0.3j), batch_size=16)  # PD and phase do not matter
    np.testing.assert_allclose(p1, p2, rtol=1e-3, atol=0.5)
    stack = np.zeros((8, 10, 200), dtype=np.complex64)
    mask = np.zeros((8, 10), dtype=bool)
    mask[2:6, 1:9] = True
    stack[mask] = x[:32]
    t1, t2 = predict_maps(trained, stack, mask, fill_value=-1.0)
    np.testing.assert_allclose(t1[mask], p1[:32, 0], rtol=1e-3, atol=0.5)
    np.testing.assert_allclose(t2[mask], p1[:32, 1], rtol=1e-3, atol=0.5)
    assert np.all(t1[~mask] == -1.0)
    t1b, _ = predict_maps(trained, stack)  # no mask: non-zero pixels
    np.testing.assert_allclose(t1b[mask], t1[mask], rtol=1e-5)
    assert np.all(t1b[~mask] == 0)
    zero = predict_parameters(trained, np.zeros((2, 200)))
    assert np.all(np.isnan(zero))
    with pytest.raises(ValueError, match="label_scaling"):
        predict_parameters(trained.model, x)
    with pytest.raises(ValueError, match="time points"):
        predict_parameters(trained, x[:, :100])
    with pytest.raises(ValueError, match="mask"):
        predict_maps(trained, stack, mask[:4])


# ----------------------------------------------------------------------------- noise augmentation
REPO = Path(__file__).resolve().parents[1]
# A TrainingConfig dict written before noise_snr_db existed (the shipped compact network's).
OLD_CONFIG = REPO / "models" / "compact_resnet" / "config.json"


@pytest.mark.parametrize(
    "bad", [(40.0, 10.0), (10.0,), (10.0, 20.0, 30.0), "10 40", 20.0, (float("nan"), 10.0),
            (10.0, float("inf")), (True, 30.0)]
)
def test_bad_noise_snr_names_the_parameter(bad):
    with pytest.raises(ValueError, match="noise_snr_db"):
        TrainingConfig(noise_snr_db=bad)
    with pytest.raises(ValueError, match="noise_snr_db"):
        noisy_training_inputs(np.ones((3, 8)), bad, 0, 0)


def test_noise_field_roundtrip_and_absent_when_off():
    assert "noise_snr_db" not in TrainingConfig().to_dict()  # run keys of clean runs are unchanged
    noisy = TrainingConfig(noise_snr_db=(10, 40))
    assert noisy.noise_snr_db == (10.0, 40.0)
    d = json.loads(json.dumps(noisy.to_dict()))
    assert d["noise_snr_db"] == [10.0, 40.0]
    assert TrainingConfig.from_dict(d) == noisy


def test_old_config_without_noise_field_loads():
    old = json.loads(OLD_CONFIG.read_text())
    assert "noise_snr_db" not in old
    cfg = TrainingConfig.from_dict(old)
    assert cfg.noise_snr_db is None
    assert cfg.to_dict() == old  # written back identically


def test_old_style_checkpoint_state_resumes(tiny_dictionary, tmp_path):
    """A checkpoint whose run_key was written before noise_snr_db existed resumes with the new code."""
    old = json.loads(OLD_CONFIG.read_text())
    cfg = TrainingConfig.from_dict({**old, "network": {**old["network"], "stem_channels": 4, "max_channels": 8,
                                                        "n_blocks": 2}, "epochs": 1, "batch_size": 64})
    ckpt = tmp_path / "ckpt"
    train(tiny_dictionary, cfg, checkpoint_dir=ckpt, progress=False)
    state = json.loads((ckpt / "state.json").read_text())
    # rewrite the key exactly as the old code wrote it: the config dict with no noise_snr_db at all
    old_key_config = {k: v for k, v in {**old, "network": cfg.network.to_dict(), "batch_size": 64}.items()
                      if k != "epochs"}
    assert "noise_snr_db" not in old_key_config
    state["run_key"]["config"] = old_key_config
    (ckpt / "state.json").write_text(json.dumps(state))
    resumed = train(tiny_dictionary, TrainingConfig.from_dict({**cfg.to_dict(), "epochs": 2}),
                    checkpoint_dir=ckpt, progress=False)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_completed == 2
    # ... while a noisy configuration is a different run
    with pytest.raises(CheckpointMismatchError, match="config"):
        train(tiny_dictionary, TrainingConfig.from_dict({**cfg.to_dict(), "epochs": 3, "noise_snr_db": [10, 40]}),
              checkpoint_dir=ckpt, progress=False)


def test_signature_noise_has_the_stated_snr():
    rng = np.random.default_rng(5)
    s = rng.standard_normal((4000, 200)) * rng.uniform(0.1, 10.0, (4000, 1))  # rows of very different power
    snr = rng.uniform(10.0, 40.0, 4000)
    noisy = add_signature_noise(s, snr, 7)
    assert noisy.dtype == np.complex64 and noisy.shape == s.shape
    n = noisy.astype(np.complex128) - s
    measured = 10 * np.log10(np.mean(s**2, axis=1) / np.mean(np.abs(n) ** 2, axis=1))
    # per row: 200 complex samples -> the noise power estimate has ~0.3 dB spread; bias < 0.05 dB
    assert abs(np.mean(measured - snr)) < 0.05 and np.std(measured - snr) < 0.5
    # circular: real and imaginary parts carry half the variance each
    ratio = np.sum(n.real**2) / np.sum(n.imag**2)
    assert abs(ratio - 1.0) < 0.01
    np.testing.assert_array_equal(add_signature_noise(s, snr, 7), noisy)  # seeded
    assert np.all(add_signature_noise(np.zeros((2, 5)), 20.0, 0) == 0)  # no signal, no noise
    with pytest.raises(ValueError, match="snr_db"):
        add_signature_noise(s, snr[:10], 0)


def test_noisy_training_inputs_stated_snr_and_deterministic(small_dictionary):
    x, _ = prepare_training_data(small_dictionary)
    a = noisy_training_inputs(x, (20.0, 20.0), seed=3, epoch=4)
    np.testing.assert_array_equal(a, noisy_training_inputs(x, (20.0, 20.0), seed=3, epoch=4))
    assert not np.array_equal(a, noisy_training_inputs(x, (20.0, 20.0), seed=3, epoch=5))  # fresh every epoch
    assert not np.array_equal(a, noisy_training_inputs(x, (20.0, 20.0), seed=4, epoch=4))
    assert a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    # unit-norm clean rows (mean power 1/L) at 20 dB: sigma^2 = 1/(100 L); the real part keeps half,
    # and renormalisation removes the component along the signal: E||a - x||^2 = (L-1)/L * L sigma^2/2
    L = x.shape[1]
    expected = (L - 1) / L * L * (1 / (100 * L)) / 2
    err = np.mean(np.sum((a - x) ** 2, axis=1))
    assert err == pytest.approx(expected, rel=0.05)
    b = noisy_training_inputs(x, (10.0, 40.0), seed=3, epoch=4)
    err_b = np.sum((b - x) ** 2, axis=1)
    # uniform SNR in [10, 40] dB: the per-row error spans three decades
    assert err_b.max() / err_b.min() > 300 and err_b.max() < 0.1 * 1.5


def _assert_interrupted_run_resumes_identically(dictionary, config, straight, ckpt):
    """A run stopped after epoch 1 and resumed from ``ckpt`` repeats ``straight`` (losses and weights)."""
    train(dictionary, TrainingConfig.from_dict({**config.to_dict(), "epochs": 1}), checkpoint_dir=ckpt, progress=False)
    resumed = train(dictionary, config, checkpoint_dir=ckpt, progress=False)
    assert resumed.resumed_from_epoch == 1
    np.testing.assert_allclose(resumed.history["loss"], straight.history["loss"], rtol=1e-4)
    for a, b in zip(resumed.model.get_weights(), straight.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_noise_training_changes_inputs_keeps_validation_clean_and_resumes(tiny_dictionary, tmp_path):
    noisy_cfg = TrainingConfig.from_dict({**TINY.to_dict(), "noise_snr_db": [10.0, 20.0]})
    clean = train(tiny_dictionary, TINY, progress=False)
    straight = train(tiny_dictionary, noisy_cfg, progress=False)
    # same initial weights and batches: only the noise differs, so the first training loss differs
    assert straight.history["loss"][0] != pytest.approx(clean.history["loss"][0], rel=1e-6)
    # validation is computed on the clean atoms: re-evaluating the model on them gives val_loss
    x, y_ms = prepare_training_data(tiny_dictionary)
    _, va = split_indices(len(x), noisy_cfg.validation_fraction, noisy_cfg.seed)
    pred = straight.model.predict(x[va], verbose=0)
    val_loss = float(np.sqrt(np.mean((pred - straight.label_scaling.transform(y_ms[va])) ** 2)))
    assert straight.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-4)
    # interrupted after epoch 1 and resumed: the same noise, losses and weights as the straight run
    ckpt = tmp_path / "noisy"
    _assert_interrupted_run_resumes_identically(tiny_dictionary, noisy_cfg, straight, ckpt)
    assert json.loads((ckpt / "state.json").read_text())["run_key"]["config"]["noise_snr_db"] == [10.0, 20.0]


def test_fresh_tissue_training_uses_new_tissues_and_resumes(tiny_dictionary, tmp_path):
    fresh_cfg = TrainingConfig.from_dict({**TINY.to_dict(), "fresh_tissues": True})
    assert "fresh_tissues" not in TINY.to_dict() and fresh_cfg.to_dict()["fresh_tissues"] is True
    assert TrainingConfig.from_dict(fresh_cfg.to_dict()) == fresh_cfg
    with pytest.raises(ValueError, match="fresh_tissues"):
        TrainingConfig(fresh_tissues=1)
    on_grid = train(tiny_dictionary, TINY, progress=False)
    straight = train(tiny_dictionary, fresh_cfg, progress=False)
    # same initial weights, other training signatures: the first training loss differs
    assert straight.history["loss"][0] != pytest.approx(on_grid.history["loss"][0], rel=1e-6)
    # interrupted after epoch 1 and resumed: the same tissues, losses and weights as the straight run
    _assert_interrupted_run_resumes_identically(tiny_dictionary, fresh_cfg, straight, tmp_path / "fresh")
    b1_dict = build_dictionary(tiny_dictionary.sequence, tiny_dictionary.t1_ms, tiny_dictionary.t2_ms,
                               b1=np.ones(len(tiny_dictionary.t1_ms)))
    with pytest.raises(ValueError, match="B1"):
        train(b1_dict, fresh_cfg, progress=False)


def test_reset_optimizer_fine_tunes_a_weights_only_model(tiny_dictionary, tmp_path):
    first = train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 1}), progress=False)
    saved = first.save(tmp_path / "first.keras")
    save_trained_model(load_trained_model(saved), tmp_path / "stripped.keras")  # no optimizer state
    with pytest.raises(ValueError, match="initial_model"):
        train(tiny_dictionary, TINY, reset_optimizer=True, progress=False)
    # at a vanishing learning rate the fine-tuned weights are the stripped model's
    still = TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 1, "learning_rate": 1e-12,
                                      "min_learning_rate": 1e-12})
    tuned = train(tiny_dictionary, still, initial_model=tmp_path / "stripped.keras", reset_optimizer=True,
                  progress=False)
    for a, b in zip(tuned.model.get_weights(), first.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    assert tuned.initial_model["epochs_completed"] == 1
    # the optimizer is new: its iteration count restarts (the continued one carries the first run's steps)
    continued = train(tiny_dictionary, still, initial_model=saved, progress=False)
    assert int(tuned.model.optimizer.iterations) < int(continued.model.optimizer.iterations)


# ----------------------------------------------------------------------------- run folders
def test_run_folder_write_read_roundtrip(tiny_dictionary, sequence, tmp_path):
    from mrfbook.nn.runs import RUN_FILES, read_run_folder, write_run_folder
    from mrfbook.paper import paper_value

    folder = tmp_path / "run"
    result = train(tiny_dictionary, TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 1}),
                   checkpoint_dir=folder / "checkpoints", progress=False)
    metrics = {"n": 7, "t1_rmse_ms": 1.5, "t2_rmse_ms": 0.5, "t1_r2": 0.9, "t2_r2": 0.8}
    path = write_run_folder(result, folder, log_path=folder / "checkpoints" / "training_log.jsonl",
                            test_metrics=metrics, command="python train.py", git_commit="abc", subset=True)
    assert path == folder / "model.keras"
    assert {p.name for p in folder.iterdir()} == set(RUN_FILES) | {"checkpoints"}  # nothing temporary left
    run = read_run_folder(folder, expected_sequence=sequence)
    assert run.config == TINY.to_dict() | {"epochs": 1} and run.history == result.history
    assert run.log == read_log(folder / "checkpoints" / "training_log.jsonl")
    p = run.provenance
    assert (p["command"], p["git_commit"], p["subset"], p["test"], p["n_test_atoms"]) == (
        "python train.py", "abc", True, metrics, 7)
    assert p["paper_test"] == {k: paper_value("synthetic", k) for k in ("t1_rmse_ms", "t2_rmse_ms", "t1_r2", "t2_r2")}
    assert p["n_train_atoms"] == tiny_dictionary.n_atoms and p["epochs_completed"] == 1
    assert p["sequence_digest"] == sequence.digest and p["continued_from"] is None
    assert p["seconds_per_epoch_all"] == result.history["seconds"] and p["backend"] == keras.backend.backend()
    x = tiny_dictionary.atoms[:20]
    np.testing.assert_allclose(run.model.predict(x), result.trained_model().predict(x), rtol=1e-6)
    assert run.info()["epochs"] == 1 and run.info()["recorded_test"] == metrics
    # a result trained without a log: the log is rebuilt from the history; a new folder is created whole
    lone = write_run_folder(result, tmp_path / "lone")
    log = read_log(lone.parent / "training_log.jsonl")
    assert [r["epoch"] for r in log] == [1] and log[0]["loss"] == result.history["loss"][0]
    assert json.loads((lone.parent / "provenance.json").read_text())["test"] is None
    assert {p.name for p in tmp_path.iterdir()} == {"run", "lone"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="folder"):
        write_run_folder(result, tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="log_path"):
        write_run_folder(result, tmp_path / "other", log_path=tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="model.keras"):
        read_run_folder(tmp_path / "other")
    assert not (tmp_path / "other").exists()
