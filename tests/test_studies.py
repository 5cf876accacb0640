"""Tests for mrfbook.analysis.studies (chapter 10): noise, footprint, sequence mismatch, fine-tuning, costs."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from mrfbook.analysis.studies import (
    accuracy,
    fine_tune,
    network_footprint,
    noise_study,
    robustness_study,
    scale_flip_angles,
    training_cost,
)
from mrfbook.nn.inference import predict_parameters
from mrfbook.nn.inputs import normalise_signatures
from mrfbook.nn.model import LabelScaling, TrainedModel
from mrfbook.nn.network import NetworkConfig, build_from_config, parameter_count
from mrfbook.nn.training import TrainingConfig, train
from mrfbook.physics.dictionary import build_dictionary
from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.sequence import paper_sequence

TINY_NET = NetworkConfig(stem_channels=4, n_blocks=2, max_channels=8, kernel_size=3)


@pytest.fixture(scope="module")
def sequence():
    return paper_sequence()


@pytest.fixture(scope="module")
def grid_dictionary(sequence):
    t1, t2 = np.meshgrid(np.arange(300.0, 2000.0, 50.0), np.arange(20.0, 200.0, 10.0), indexing="ij")
    return build_dictionary(sequence, t1.ravel(), t2.ravel())


@pytest.fixture(scope="module")
def on_grid_tissues(grid_dictionary):
    # tissues that are dictionary atoms: clean matching is exact
    idx = np.random.default_rng(0).choice(grid_dictionary.n_atoms, 120, replace=False)
    return build_dictionary(grid_dictionary.sequence, grid_dictionary.t1_ms[idx], grid_dictionary.t2_ms[idx])


@pytest.fixture(scope="module")
def tiny_network(sequence):
    keras.utils.set_random_seed(0)
    model = build_from_config(TINY_NET)
    return TrainedModel(model, LabelScaling.fixed(), sequence.to_dict(), sequence.digest)


def test_accuracy_matches_metrics():
    rng = np.random.default_rng(1)
    t1, t2 = rng.uniform(100, 3000, 50), rng.uniform(10, 300, 50)
    est = np.stack([t1 + rng.normal(0, 5, 50), t2 + rng.normal(0, 2, 50)], axis=1)
    a = accuracy(est, t1, t2)
    assert a["t1_rmse_ms"] == pytest.approx(np.sqrt(np.mean((est[:, 0] - t1) ** 2)))
    assert a["t2_r2"] == pytest.approx(1 - np.sum((est[:, 1] - t2) ** 2) / np.sum((t2 - t2.mean()) ** 2))
    assert all(type(v) is float for v in a.values())
    with pytest.raises(ValueError, match="estimate_ms"):
        accuracy(est[:, :1], t1, t2)


def test_noise_study_rows_exact_when_clean_and_worse_with_noise(on_grid_tissues, grid_dictionary, tiny_network):
    rows = noise_study(on_grid_tissues, grid_dictionary, {"tiny": tiny_network}, [np.inf, 30.0, 5.0], seed=3)
    assert [(r["snr_db"], r["method"]) for r in rows] == [
        (np.inf, "matching"), (np.inf, "tiny"), (30.0, "matching"), (30.0, "tiny"), (5.0, "matching"), (5.0, "tiny")]
    match = {r["snr_db"]: r for r in rows if r["method"] == "matching"}
    assert match[np.inf]["t1_rmse_ms"] == 0 and match[np.inf]["t2_rmse_ms"] == 0  # atoms match themselves
    assert match[5.0]["t1_rmse_ms"] > match[30.0]["t1_rmse_ms"] and match[5.0]["t2_rmse_ms"] > 0
    # the untrained network's clean row equals its prediction on the clean atoms
    pred = predict_parameters(tiny_network, on_grid_tissues.atoms)
    assert rows[1]["t1_rmse_ms"] == pytest.approx(np.sqrt(np.mean((pred[:, 0] - on_grid_tissues.t1_ms) ** 2)))
    again = noise_study(on_grid_tissues, grid_dictionary, {}, [np.inf, 30.0, 5.0], seed=3)
    assert [r["t2_rmse_ms"] for r in again] == [r["t2_rmse_ms"] for r in rows if r["method"] == "matching"]
    with pytest.raises(ValueError, match="snrs_db"):
        noise_study(on_grid_tissues, grid_dictionary, {}, [float("nan")])
    with pytest.raises(ValueError, match="tissues"):
        noise_study(object(), grid_dictionary, {}, [10.0])


def test_noise_study_one_noise_level_for_every_signature(on_grid_tissues, grid_dictionary):
    """Image SNR: one sigma from the power of all signatures (PD = 1), the same for weak and strong ones."""
    from mrfbook.physics.noise import add_white_noise, image_noise_sigma

    atoms = np.asarray(on_grid_tissues.atoms)
    rows = noise_study(on_grid_tissues, grid_dictionary, {}, [np.inf, 20.0], seed=5)
    assert rows[0]["sigma"] == 0.0
    power = np.mean(np.abs(atoms.astype(np.complex128)) ** 2)
    assert rows[1]["sigma"] == pytest.approx(np.sqrt(power / 10 ** 2.0), rel=1e-9)
    assert rows[1]["sigma"] == pytest.approx(image_noise_sigma(atoms[:, None, :], 20.0), rel=1e-12)
    # the study's noise is add_white_noise at that sigma, seeded [seed, i]: one level for every row
    noisy = add_white_noise(atoms, rows[1]["sigma"], seed=[5, 1])
    resid = noisy - atoms
    norms = np.linalg.norm(atoms, axis=1)
    weak, strong = norms < np.median(norms), norms >= np.median(norms)
    for part in (weak, strong):
        assert np.sqrt(np.mean(np.abs(resid[part]) ** 2)) == pytest.approx(rows[1]["sigma"], rel=0.05)


def test_network_footprint(tiny_network, on_grid_tissues):
    stack = on_grid_tissues.atoms[:100].reshape(10, 10, -1).astype(np.complex64)
    mask = np.ones((10, 10), bool)
    mask[0, :3] = False
    f = network_footprint(tiny_network, stack, mask, repeats=1)
    assert f["parameters"] == parameter_count(tiny_network.model)
    assert f["weights_bytes"] == 4 * f["parameters"]
    assert f["file_bytes"] > f["weights_bytes"]  # weights plus architecture; no optimizer state (< 3x)
    assert f["file_bytes"] < 3 * f["weights_bytes"] + 200_000
    assert f["n_pixels"] == 97 and 0 < f["map_seconds"] < 30
    with pytest.raises(ValueError, match="repeats"):
        network_footprint(tiny_network, stack, mask, repeats=0)


def test_scale_flip_angles_is_a_global_b1(sequence):
    s = scale_flip_angles(sequence, 0.9)
    np.testing.assert_allclose(s.flip_angles_deg, 0.9 * sequence.flip_angles_deg)
    np.testing.assert_array_equal(s.tr_ms, sequence.tr_ms)
    np.testing.assert_array_equal(s.te_ms, sequence.te_ms)
    assert s.digest != sequence.digest and scale_flip_angles(sequence, 1.0) == sequence
    t1, t2 = np.array([800.0, 1500.0, 4000.0]), np.array([70.0, 90.0, 1500.0])
    np.testing.assert_allclose(simulate_fisp(s, t1, t2), simulate_fisp(sequence, t1, t2, np.full(3, 0.9)), atol=1e-6)
    for bad in (0.0, -1.0, float("nan"), 3.0, "x"):
        with pytest.raises(ValueError, match="factor"):
            scale_flip_angles(sequence, bad)


def test_constant_te_only_scales_the_signature(sequence):
    """Why TE = 10 ms (the authors' code) vs 2 ms (the paper) does not matter after normalisation."""
    t1, t2 = np.array([300.0, 830.0, 1558.0, 4163.0]), np.array([40.0, 75.0, 83.0, 1650.0])
    a = simulate_fisp(sequence, t1, t2, dtype=np.float64)
    b = simulate_fisp(paper_sequence(te_ms=10.0), t1, t2, dtype=np.float64)
    np.testing.assert_allclose(b, a * np.exp(-8.0 / t2)[:, None], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(normalise_signatures(a)[0], normalise_signatures(b)[0], atol=1e-6)


def test_robustness_study(on_grid_tissues, grid_dictionary, tiny_network, sequence):
    low = scale_flip_angles(sequence, 0.8)
    right = build_dictionary(low, grid_dictionary.t1_ms, grid_dictionary.t2_ms)
    rows = robustness_study(on_grid_tissues, tiny_network, grid_dictionary, {"same": sequence, "low": low},
                            right_dictionaries={"same": grid_dictionary, "low": right})
    by = {(r["variant"], r["method"]): r for r in rows}
    assert len(rows) == 6
    for method in ("matching, trained dictionary", "matching, right dictionary"):
        assert by[("same", method)]["t1_rmse_ms"] == 0
    assert by[("low", "matching, right dictionary")]["t1_rmse_ms"] == 0  # tissues are atoms of the right dictionary
    assert by[("low", "matching, trained dictionary")]["t1_rmse_ms"] > 10
    assert by[("low", "matching, right dictionary")]["build_seconds"] == 0
    pred = predict_parameters(tiny_network, simulate_fisp(low, on_grid_tissues.t1_ms, on_grid_tissues.t2_ms))
    assert by[("low", "network")]["t2_rmse_ms"] == pytest.approx(
        np.sqrt(np.mean((pred[:, 1] - on_grid_tissues.t2_ms) ** 2)))
    with pytest.raises(ValueError, match="right_dictionaries"):
        robustness_study(on_grid_tissues, tiny_network, grid_dictionary, {"low": low},
                         right_dictionaries={"low": grid_dictionary})
    with pytest.raises(ValueError, match="variants"):
        robustness_study(on_grid_tissues, tiny_network, grid_dictionary, {"low": "paper"})


def test_fine_tune(grid_dictionary, sequence):
    cfg = TrainingConfig(network=TINY_NET, epochs=2, batch_size=32, learning_rate=3e-3, label_scaling="standardise")
    base = train(grid_dictionary, cfg, progress=False).trained_model()
    before = [w.copy() for w in base.model.get_weights()]
    low = scale_flip_angles(sequence, 0.8)
    new = build_dictionary(low, grid_dictionary.t1_ms, grid_dictionary.t2_ms)
    res = fine_tune(base, new, learning_rates=(3e-3, 3e-3, 1e-3, 1e-3), batch_size=32, n_atoms=400, seed=1)
    for a, b in zip(before, base.model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the original is untouched
    assert res.n_atoms == 400 and len(res.loss) == 4 and res.learning_rates == [3e-3, 3e-3, 1e-3, 1e-3]
    assert res.loss[-1] < res.loss[0] and res.seconds > 0 and res.cpu_seconds > 0
    assert res.model.sequence_digest == low.digest and res.model.label_scaling == base.label_scaling
    assert res.model.metadata["fine_tuned"]["from_sequence_digest"] == sequence.digest
    res.model.check_sequence(low)
    with pytest.raises(ValueError, match="expected_sequence"):
        res.model.check_sequence(sequence)
    for kwargs, name in ((dict(learning_rates=()), "learning_rates"), (dict(learning_rates=(-1.0,)), "learning_rates"),
                         (dict(batch_size=0), "batch_size"), (dict(n_atoms=0), "n_atoms")):
        with pytest.raises(ValueError, match=name):
            fine_tune(base, new, **kwargs)


def test_training_cost(tmp_path):
    log = tmp_path / "training_log.jsonl"
    recs = [{"epoch": i + 1, "seconds": s, "device": "cpu", "cpu": "X (2 logical cores)"} for i, s in
            enumerate([10.0, 30.0, 20.0])]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    c = training_cost(log)
    assert c == {"epochs": 3, "total_seconds": 60.0, "median_epoch_seconds": 20.0, "device": "cpu",
                 "cpu": "X (2 logical cores)"}
    # a resumed run that repeated epoch 3 counts it once, with its last record
    with open(log, "a") as fh:
        fh.write(json.dumps({**recs[2], "seconds": 25.0}) + "\n")
    c = training_cost(log)
    assert (c["epochs"], c["total_seconds"], c["median_epoch_seconds"]) == (3, 65.0, 25.0)
    with pytest.raises(FileNotFoundError, match="log_path"):
        training_cost(tmp_path / "missing.jsonl")
