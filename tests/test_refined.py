"""Tests for chapter 11's network for real inputs and what it is trained on.

mrfbook.physics.manifold (the interpolated signal model and its Gauss-Newton fit),
mrfbook.nn.refined (proposal network + fit + gated correction, its .npz/.json files),
mrfbook.nn.model.read_network_metadata / load_network, mrfbook.nn.inference.network_maps with a
RefinedNetwork, mrfbook.nn.train_refined (synthetic signatures, resumable training),
mrfbook.physics.phantom.random_phantom and mrfbook.analysis.training_inputs; last, the shipped
model ``models/refined_network/model.npz``.

Almost everything runs on a 40-point paper-style sequence (EPG and training are then fast); the
shipped model is checked on the paper sequence and the full shifted test grid.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from mrfbook.metrics import rmse
from mrfbook.nn.model import SequenceMismatchError, load_network, read_network_metadata
from mrfbook.nn.refined import (
    DEFAULT_MIN_CORRELATION,
    REFINED_FORMAT,
    RefinedNetwork,
    encode,
    from_log_labels,
    is_refined_model_path,
    load_refined_network,
    noise_gate,
    signature_noise_level,
    to_log_labels,
)
from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.manifold import MANIFOLD_FORMAT, SignalManifold, build_manifold
from mrfbook.physics.phantom import random_phantom
from mrfbook.physics.sequence import FispSequence, paper_sequence
from mrfbook.recon.flor import FLOR_MIN_CORRELATION

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_REFINED = ROOT / "models" / "refined_network" / "model.npz"
L_SHORT = 40
RANK = 8

# Off-grid tissues (T1 >= T2) spread over the box, with the scale each signature is given.
T1_TRUE = np.array([850.0, 1234.5, 333.3, 2100.7, 60.2, 3900.0, 15.7])
T2_TRUE = np.array([51.3, 97.1, 44.4, 180.9, 30.3, 1500.2, 4.3])
SCALES = np.array([1.0, 2.5, 0.3, 7.0, 1.0, 0.05, 12.0])

# Tissues close to one another, for networks whose proposal is (almost) a constant near them.
T1_NEAR = np.array([820.0, 905.5, 1000.3, 1111.1, 1240.0, 960.0])
T2_NEAR = np.array([72.0, 81.3, 90.7, 99.9, 108.2, 77.7])
NEAR_CENTRE = (1000.0, 90.0)


@pytest.fixture(scope="module")
def seq():
    return paper_sequence(L_SHORT)


@pytest.fixture(scope="module")
def manifold(seq):
    return build_manifold(seq, rank=RANK, n_t1=56, n_t2=48)


def _cells(m: SignalManifold) -> tuple[float, float]:
    return float(m.log_t1[1] - m.log_t1[0]), float(m.log_t2[1] - m.log_t2[0])


# ============================================================================ SignalManifold
def test_manifold_shapes_and_orthonormal_basis(manifold, seq):
    m = manifold
    assert (m.rank, m.n_timepoints) == (RANK, L_SHORT)
    assert m.basis.shape == (L_SHORT, RANK) and m.coefficients.shape == (56, 48, RANK)
    np.testing.assert_allclose(m.basis.T @ m.basis, np.eye(RANK), atol=1e-12)
    assert m.t1_range_ms == (1.0, 5000.0) and m.t2_range_ms == (1.0, 2000.0)
    assert m.sequence_digest == seq.digest
    # the table reaches beyond the box by the margin (0.35 in ln T) on each side
    assert m.log_t1[0] == pytest.approx(np.log(1.0) - 0.35) and m.log_t1[-1] == pytest.approx(np.log(5000.0) + 0.35)
    assert m.log_t2[0] == pytest.approx(-0.35) and m.log_t2[-1] == pytest.approx(np.log(2000.0) + 0.35)
    np.testing.assert_allclose(np.diff(m.log_t1), m.log_t1[1] - m.log_t1[0], rtol=1e-9)


def test_manifold_signal_interpolates_the_table(manifold, seq):
    """At table nodes the spline is the projected unit-norm atom; between nodes it stays within 1e-4 of it."""
    m = manifold
    i, j = np.array([5, 17, 30, 44]), np.array([3, 12, 25, 40])
    t1n, t2n = np.exp(m.log_t1[i]), np.exp(m.log_t2[j])
    atoms = np.asarray(simulate_fisp(seq, t1n, t2n, dtype=np.float64))
    exact = m.project(atoms / np.linalg.norm(atoms, axis=1, keepdims=True))
    np.testing.assert_allclose(m.signal(t1n, t2n), exact, atol=1e-10)
    atoms = np.asarray(simulate_fisp(seq, T1_TRUE, T2_TRUE, dtype=np.float64))
    exact = m.project(atoms / np.linalg.norm(atoms, axis=1, keepdims=True))
    assert np.max(np.linalg.norm(m.signal(T1_TRUE, T2_TRUE) - exact, axis=1)) < 1e-4


def test_manifold_fit_recovers_off_grid_tissues(manifold, seq):
    m = manifold
    hu, hv = _cells(m)
    # nowhere near a node: the fit has to interpolate
    for grid, vals in ((m.log_t1, T1_TRUE), (m.log_t2, T2_TRUE)):
        frac = (np.log(vals) - grid[0]) / (grid[1] - grid[0]) % 1.0
        assert np.all(np.minimum(frac, 1 - frac) > 0.05), frac
    x = np.asarray(simulate_fisp(seq, T1_TRUE, T2_TRUE, dtype=np.float64)) * SCALES[:, None]
    z = m.project(x)
    # start three cells above in T1 and two below in T2
    fit = m.fit(z, T1_TRUE * np.exp(3 * hu), T2_TRUE * np.exp(-2 * hv), n_iter=12)
    np.testing.assert_allclose(fit["t1_ms"], T1_TRUE, rtol=1e-3)
    np.testing.assert_allclose(fit["t2_ms"], T2_TRUE, rtol=1e-3)
    # the amplitude is the signature's own scale (its norm: the unit-norm signal times it)
    np.testing.assert_allclose(fit["amplitude"], np.linalg.norm(x, axis=1), rtol=1e-4)
    assert np.all(fit["residual"] < 1e-4 * fit["amplitude"])
    # ... and scales linearly with it
    fit2 = m.fit(3.0 * z, T1_TRUE * np.exp(3 * hu), T2_TRUE * np.exp(-2 * hv), n_iter=12)
    np.testing.assert_allclose(fit2["amplitude"], 3.0 * fit["amplitude"], rtol=1e-9)
    np.testing.assert_allclose(fit2["t1_ms"], fit["t1_ms"], rtol=1e-9)


def test_manifold_fit_with_no_steps_returns_the_clipped_start(manifold, seq):
    m = manifold
    z = m.project(np.asarray(simulate_fisp(seq, T1_TRUE[:3], T2_TRUE[:3], dtype=np.float64)))
    fit = m.fit(z, np.array([900.0, 0.01, 9e4]), np.array([1e4, 30.0, 50.0]), n_iter=0)
    # T1 clipped into [1, 5000]; T2 into [1, 2000] and to <= T1
    np.testing.assert_allclose(fit["t1_ms"], [900.0, 1.0, 5000.0])
    np.testing.assert_allclose(fit["t2_ms"], [900.0, 1.0, 50.0])
    assert np.all(fit["residual"] > 1e-3)  # not the tissues' signals


def test_manifold_fit_stays_in_the_box(manifold, seq):
    """A tissue outside the box (T2 = 3000 ms > 2000) is fitted to the box's edge, never beyond it."""
    m = manifold
    z = m.project(np.asarray(simulate_fisp(seq, [4000.0], [3000.0], dtype=np.float64)))
    fit = m.fit(z, [1000.0], [100.0], n_iter=30)
    assert 1.0 <= fit["t1_ms"][0] <= 5000.0 and 1.0 <= fit["t2_ms"][0] <= 2000.0 * (1 + 1e-12)
    assert fit["t2_ms"][0] <= fit["t1_ms"][0] * (1 + 1e-12)


@pytest.mark.parametrize("kwargs, name", [
    (dict(rank=L_SHORT + 1), "rank"),
    (dict(rank=0), "rank"),
    (dict(n_t1=7), "n_t1"),
    (dict(n_t2=7), "n_t2"),
    (dict(n_t1=20.0), "n_t1"),
    (dict(t1_range_ms=(100.0, 10.0)), "t1_range_ms"),
    (dict(t1_range_ms=(0.0, 10.0)), "t1_range_ms"),
    (dict(t2_range_ms=(1.0, np.inf)), "t2_range_ms"),
    (dict(margin=0.0), "margin"),
])
def test_build_manifold_bad_inputs_name_the_parameter(seq, kwargs, name):
    with pytest.raises(ValueError, match=name):
        build_manifold(seq, **{"rank": 4, "n_t1": 16, "n_t2": 16, **kwargs})


def test_manifold_fit_bad_inputs_name_the_parameter(manifold):
    z = np.ones((2, RANK))
    start = np.array([100.0, 200.0])
    with pytest.raises(ValueError, match="coefficients"):
        manifold.fit(np.ones((2, RANK + 1)), start, start)
    with pytest.raises(ValueError, match="coefficients"):
        manifold.fit(np.ones(RANK), start[:1], start[:1])
    with pytest.raises(ValueError, match="n_iter"):
        manifold.fit(z, start, start, n_iter=-1)
    with pytest.raises(ValueError, match="n_iter"):
        manifold.fit(z, start, start, n_iter=2.5)
    for bad in (0.0, -0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="max_step"):
            manifold.fit(z, start, start, max_step=bad)
    with pytest.raises(ValueError, match="t1_start_ms"):
        manifold.fit(z, start[:1], start)
    with pytest.raises(ValueError, match="signatures"):
        manifold.project(np.ones((2, L_SHORT + 1)))


def test_manifold_save_load_round_trip(manifold, seq, tmp_path):
    path = manifold.save(tmp_path / "manifold.npz")
    back = SignalManifold.load(path)
    for name in ("log_t1", "log_t2", "basis", "coefficients"):
        np.testing.assert_array_equal(getattr(back, name), getattr(manifold, name))
    assert (back.t1_range_ms, back.t2_range_ms, back.sequence_digest) == (
        manifold.t1_range_ms, manifold.t2_range_ms, manifold.sequence_digest)
    hu, hv = _cells(manifold)
    z = manifold.project(np.asarray(simulate_fisp(seq, T1_TRUE, T2_TRUE, dtype=np.float64)))
    a = manifold.fit(z, T1_TRUE * np.exp(2 * hu), T2_TRUE * np.exp(hv * 0.5), n_iter=6)
    b = back.fit(z, T1_TRUE * np.exp(2 * hu), T2_TRUE * np.exp(hv * 0.5), n_iter=6)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    np.savez(tmp_path / "other.npz", format=np.array("something-else/1"))
    with pytest.raises(ValueError, match=MANIFOLD_FORMAT):
        SignalManifold.load(tmp_path / "other.npz")


# ============================================================================ RefinedNetwork
def _dense_layers(rng, sizes, *, last_scale, last_bias):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        w = rng.normal(0.0, last_scale if last else 1.0 / np.sqrt(a), (a, b)).astype(np.float32)
        bias = (np.asarray(last_bias) if last else rng.normal(0.0, 0.1, b)).astype(np.float32)
        layers.append((w, bias))
    return layers


def _network(manifold, seq, *, seed=0, width=16, hidden=2, last_scale=1e-3, centre=NEAR_CENTRE, n_iter=12,
             correction=None, metadata=None):
    """A RefinedNetwork with random weights whose proposal is about ``centre`` (last kernel ~ last_scale)."""
    rng = np.random.default_rng(seed)
    bias = to_log_labels(np.array([centre[0]]), np.array([centre[1]]))[0]
    weights = _dense_layers(rng, [manifold.rank] + [width] * hidden + [2], last_scale=last_scale, last_bias=bias)
    return RefinedNetwork(weights, manifold, n_iter, seq.to_dict(), seq.digest, dict(metadata or {}),
                          list(correction or []))


def _constant_correction(k, value=0.5, width=8):
    """Correction layers whose output is ``value`` on both labels, whatever the input."""
    return [(np.zeros((k + 3, width), np.float32), np.zeros(width, np.float32)),
            (np.zeros((width, 2), np.float32), np.full(2, value, np.float32))]


def _numpy_forward(layers, x):
    h = np.asarray(x, dtype=np.float32)
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = h / (1.0 + np.exp(-h))
    return h.astype(np.float64)


def test_log_labels_round_trip():
    t1 = np.array([1.0, 37.5, 1000.0, 5000.0])
    t2 = np.array([1.0, 2.0, 100.0, 2000.0])
    y = to_log_labels(t1, t2)
    assert y.dtype == np.float32 and y.shape == (4, 2)
    np.testing.assert_allclose(y[[0, -1]], [[0.0, 0.0], [1.0, 1.0]], atol=1e-7)
    b1, b2 = from_log_labels(y)
    np.testing.assert_allclose(b1, t1, rtol=1e-5)
    np.testing.assert_allclose(b2, t2, rtol=1e-5)


def test_refined_predict_shapes_and_zero_rows(manifold, seq):
    net = _network(manifold, seq)
    x = np.asarray(simulate_fisp(seq, T1_NEAR, T2_NEAR, dtype=np.float64))
    x = np.concatenate([x[:3], np.zeros((2, L_SHORT)), x[3:]])
    pred = net.predict(x)
    assert pred.shape == (len(x), 2) and pred.dtype == np.float64
    zero = np.array([False, False, False, True, True] + [False] * (len(T1_NEAR) - 3))
    assert np.all(np.isnan(pred[zero])) and np.all(np.isfinite(pred[~zero]))
    est = net.estimate(x)
    for key in ("t1_ms", "t2_ms", "t1_proposed_ms", "t2_proposed_ms", "t1_fit_ms", "t2_fit_ms", "residual"):
        assert est[key].shape == (len(x),) and np.all(np.isnan(est[key][zero])), key
    np.testing.assert_allclose(est["norm"], np.linalg.norm(x, axis=1))
    assert net.predict(np.zeros((0, L_SHORT))).shape == (0, 2)
    with pytest.raises(ValueError, match="time points"):
        net.predict(np.ones((2, L_SHORT + 3)))
    with pytest.raises(ValueError, match="batch_size"):
        net.predict(x, batch_size=0)


def test_refined_without_steps_returns_the_proposal(manifold, seq):
    """n_iter = 0: the estimate is the proposal network's output, computed here independently."""
    net = _network(manifold, seq, seed=3, last_scale=0.3)
    x = np.asarray(simulate_fisp(seq, T1_TRUE, T2_TRUE, dtype=np.float64)) * SCALES[:, None]
    est = net.estimate(x, n_iter=0)
    np.testing.assert_array_equal(est["t1_ms"], est["t1_proposed_ms"])
    np.testing.assert_array_equal(est["t2_ms"], est["t2_proposed_ms"])
    xn = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    z = xn.astype(np.float64) @ manifold.basis
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(encode(xn, manifold), z, rtol=1e-12)
    y = _numpy_forward(net.weights, z)
    # labels are ln T over [ln 1, ln 5000] and [ln 1, ln 2000] mapped onto [0, 1]
    np.testing.assert_allclose(est["t1_proposed_ms"], 5000.0 ** y[:, 0], rtol=1e-5)
    np.testing.assert_allclose(est["t2_proposed_ms"], 2000.0 ** y[:, 1], rtol=1e-5)
    # the random proposal is far from the truth, so the refinement has something to do
    assert np.max(np.abs(est["t1_ms"] / T1_TRUE - 1)) > 0.1


def test_refined_refinement_lands_on_the_truth(manifold, seq):
    """Proposal near the tissues (constant + small random part): the fit makes it exact."""
    net = _network(manifold, seq, seed=1, last_scale=0.02)
    x = np.asarray(simulate_fisp(seq, T1_NEAR, T2_NEAR, dtype=np.float64)) * np.linspace(0.5, 3.0, 6)[:, None]
    est = net.estimate(x)
    assert np.max(np.abs(est["t1_proposed_ms"] / T1_NEAR - 1)) > 0.05  # the proposal alone is off
    pred = net.predict(x)
    np.testing.assert_allclose(pred[:, 0], T1_NEAR, rtol=1e-3)
    np.testing.assert_allclose(pred[:, 1], T2_NEAR, rtol=1e-3)
    assert np.all(est["residual"] < 1e-4)
    # other random weights, same basin: same answer
    other = _network(manifold, seq, seed=2, last_scale=0.02).predict(x)
    np.testing.assert_allclose(other, pred, rtol=1e-5)


def test_refined_declines_what_no_single_tissue_explains(manifold, seq):
    """Correlation with the fit below min_correlation: NaN (not mapped); clean fingerprints are kept."""
    net = _network(manifold, seq, seed=1, last_scale=0.02)
    net.min_correlation = FLOR_MIN_CORRELATION
    clean = np.asarray(simulate_fisp(seq, T1_NEAR, T2_NEAR, dtype=np.float64))
    rng = np.random.default_rng(0)
    junk = rng.standard_normal(clean.shape)  # white: most of it outside the subspace
    est = net.estimate(np.concatenate([clean, junk]))
    n = len(clean)
    assert np.all(est["correlation"][:n] > 0.999) and np.all(est["correlation"][n:] < 0.9)
    assert np.all(np.isfinite(est["t1_ms"][:n])) and np.all(np.isnan(est["t1_ms"][n:]))
    assert np.all(np.isnan(est["t2_ms"][n:])) and np.all(np.isfinite(est["t1_fit_ms"][n:]))
    # the correlation is the plain one of the real signature and its fitted signal
    fitted = manifold.signal(est["t1_fit_ms"], est["t2_fit_ms"]) @ manifold.basis.T
    plain = np.abs(np.sum(junk * fitted[n:], 1)) / np.linalg.norm(junk, axis=1) / np.linalg.norm(fitted[n:], axis=1)
    np.testing.assert_allclose(est["correlation"][n:], plain, rtol=1e-3)
    net.min_correlation = 0.0
    assert np.all(np.isfinite(net.predict(junk)))
    with pytest.raises(ValueError, match="min_correlation"):
        RefinedNetwork(net.weights, manifold, 4, None, None, min_correlation=1.5)


def test_refined_maps_every_signature_by_default(manifold, seq):
    """The decline rule is off unless asked for: white junk still gets an estimate."""
    assert DEFAULT_MIN_CORRELATION == 0.0
    net = _network(manifold, seq, seed=1, last_scale=0.02)
    assert net.min_correlation == 0.0
    junk = np.random.default_rng(0).standard_normal((4, seq.n_timepoints))
    est = net.estimate(junk)
    assert np.all(est["correlation"] < FLOR_MIN_CORRELATION) and np.all(np.isfinite(est["t1_ms"]))


def test_refined_correction_is_gated_by_the_noise_level(manifold, seq):
    """Correction network with a large constant output: a clean signature (its level outside the
    subspace at most clean_level) keeps the fit, a noisy one is moved by gate x output."""
    net = _network(manifold, seq, seed=1, correction=_constant_correction(RANK, 0.5))
    clean = np.asarray(simulate_fisp(seq, T1_NEAR, T2_NEAR, dtype=np.float64))
    net.clean_level = 1.1 * float(net.estimate(clean)["noise_level"].max())
    est = net.estimate(clean)
    np.testing.assert_array_equal(est["t1_ms"], est["t1_fit_ms"])
    np.testing.assert_array_equal(est["t2_ms"], est["t2_fit_ms"])
    np.testing.assert_allclose(est["t1_ms"], T1_NEAR, rtol=1e-3)

    rng = np.random.default_rng(7)
    rms = np.linalg.norm(clean, axis=1, keepdims=True) / np.sqrt(L_SHORT)
    noisy = clean + 0.1 * rms * rng.standard_normal(clean.shape)
    est = net.estimate(noisy)
    # white noise of 0.1 x the RMS is 0.1 / sqrt(L) of the norm per sample, measured outside the subspace
    np.testing.assert_allclose(est["noise_level"], 0.1 / np.sqrt(L_SHORT), rtol=0.35)
    gate = noise_gate(est["noise_level"], net.clean_level)
    assert np.all(gate > 0.9), gate
    np.testing.assert_allclose(gate, np.clip(1 - (net.clean_level / est["noise_level"]) ** 2, 0, 1))
    np.testing.assert_allclose(est["t1_ms"], est["t1_fit_ms"] * 5000.0 ** (0.5 * gate), rtol=1e-5)
    np.testing.assert_allclose(est["t2_ms"], est["t2_fit_ms"] * 2000.0 ** (0.5 * gate), rtol=1e-5)
    assert np.all(est["t1_ms"] > 40 * est["t1_fit_ms"])
    # a clean level above the noise closes the gate: the fit is kept
    net.clean_level = 1.0
    est = net.estimate(noisy)
    np.testing.assert_array_equal(est["t1_ms"], est["t1_fit_ms"])
    assert np.all(noise_gate(np.array([0.0, 1e-5, 2e-5]), 1e-5) == [0.0, 0.0, 0.75])
    with pytest.raises(ValueError, match="clean_level"):
        RefinedNetwork(net.weights, manifold, 4, None, None, clean_level=-1.0)


def test_signature_noise_level_is_the_energy_outside_the_subspace(manifold, seq):
    from mrfbook.physics.noise import outside_energy

    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, L_SHORT))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expect = np.sqrt(outside_energy(x, manifold.basis) / (L_SHORT - RANK))
    np.testing.assert_allclose(signature_noise_level(x, manifold), expect, rtol=1e-9)
    np.testing.assert_allclose(signature_noise_level(x, manifold, manifold.project(x)), expect, rtol=1e-9)

def test_refined_multiply_adds(manifold, seq):
    net = _network(manifold, seq, width=16, hidden=2, n_iter=5, correction=_constant_correction(RANK, width=8))
    macs = net.multiply_adds()
    assert macs["encode"] == L_SHORT * RANK + RANK + L_SHORT  # projection, norm, noise level
    assert macs["propose"] == RANK * 16 + 16 * 16 + 16 * 2
    assert macs["refine"] == 6 * 56 * RANK
    assert macs["correct"] == (RANK + 3) * 8 + 8 * 2
    assert macs["total"] == sum(v for k, v in macs.items() if k != "total")


def test_refined_save_load_round_trip(manifold, seq, tmp_path):
    meta = {"note": "test network", "accuracy": {"shifted_grid": {"t1_rmse_ms": 1.5}}}
    net = _network(manifold, seq, seed=4, correction=_constant_correction(RANK, 0.01), metadata=meta)
    net.clean_level = 2e-3
    path = net.save(tmp_path / "sub" / "model.npz")
    assert path == tmp_path / "sub" / "model.npz" and is_refined_model_path(path)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["format"] == REFINED_FORMAT and side["sequence_digest"] == seq.digest
    assert side["sequence"] == seq.to_dict() and side["n_iter"] == 12 and side["model_file"] == "model.npz"
    assert side["multiply_adds"] == net.multiply_adds() and side["note"] == "test network"
    back = load_refined_network(path, seq)
    assert isinstance(back, RefinedNetwork)
    assert back.n_iter == 12 and back.clean_level == 2e-3 and back.sequence_digest == seq.digest
    assert back.min_correlation == net.min_correlation == side["min_correlation"]
    assert back.metadata["note"] == "test network" and back.metadata["accuracy"] == meta["accuracy"]
    assert len(back.weights) == len(net.weights) and len(back.correction) == 2
    for (w, b), (w2, b2) in zip(net.weights + net.correction, back.weights + back.correction):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)
    rng = np.random.default_rng(0)
    x = np.asarray(simulate_fisp(seq, T1_NEAR, T2_NEAR, dtype=np.float64))
    x = x + 0.02 * rng.standard_normal(x.shape) * np.abs(x).mean()
    np.testing.assert_array_equal(back.predict(x), net.predict(x))
    # the metadata the caller gave is not modified by save
    assert set(net.metadata) == {"note", "accuracy"}
    with pytest.raises(ValueError, match="npz"):
        net.save(tmp_path / "model.keras")


def test_refined_load_checks_sequence_sidecar_and_format(manifold, seq, tmp_path):
    path = _network(manifold, seq).save(tmp_path / "model.npz")
    load_refined_network(path)  # no expected sequence: no check
    d = seq.to_dict()
    ulp = FispSequence.from_dict(dict(d, tr_ms=np.nextafter(seq.tr_ms, 0.0).tolist()))
    assert ulp.digest != seq.digest and load_refined_network(path, ulp).sequence_digest == seq.digest
    with pytest.raises(SequenceMismatchError):
        load_refined_network(path, paper_sequence(L_SHORT, te_ms=2.5))
    with pytest.raises(SequenceMismatchError):
        load_network(path, paper_sequence())
    with pytest.raises(FileNotFoundError):
        load_refined_network(tmp_path / "missing.npz")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(path, lonely / "model.npz")
    with pytest.raises(ValueError, match="sidecar"):
        load_refined_network(lonely / "model.npz")
    with pytest.raises(ValueError, match="sidecar"):
        read_network_metadata(lonely / "model.npz")
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "model.npz", format=np.array("not-a-network/1"))
    shutil.copy(path.with_suffix(".json"), bad / "model.json")
    with pytest.raises(ValueError, match="format|not a"):
        load_refined_network(bad / "model.npz")
    # a sidecar of another format is refused by read_network_metadata
    side = json.loads(path.with_suffix(".json").read_text())
    (bad / "model.json").write_text(json.dumps({**side, "format": "something/2"}))
    with pytest.raises(ValueError, match="format"):
        read_network_metadata(bad / "model.npz")


def test_load_network_and_metadata_dispatch_on_the_suffix(manifold, seq, tmp_path):
    net = _network(manifold, seq, metadata={"note": "dispatch"})
    path = net.save(tmp_path / "model.npz")
    meta = read_network_metadata(path)
    assert meta == json.loads(path.with_suffix(".json").read_text())
    assert meta["note"] == "dispatch" and meta["format"] == REFINED_FORMAT
    loaded = load_network(path, seq)
    assert isinstance(loaded, RefinedNetwork)
    x = np.asarray(simulate_fisp(seq, T1_NEAR, T2_NEAR, dtype=np.float64))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    with pytest.raises(FileNotFoundError):
        read_network_metadata(tmp_path / "nothing.npz")
    # a Keras network goes to load_trained_model / read_model_metadata
    from mrfbook.nn.model import TrainedModel, read_model_metadata

    keras_path = ROOT / "models" / "compact_resnet" / "model.keras"
    assert read_network_metadata(keras_path) == read_model_metadata(keras_path)
    assert isinstance(load_network(keras_path, paper_sequence()), TrainedModel)
    assert not is_refined_model_path(keras_path)


# ============================================================================ network_maps
def test_network_maps_accepts_a_refined_network(manifold, seq):
    from mrfbook.nn.inference import network_maps
    from mrfbook.nn.model import LabelScaling

    net = _network(manifold, seq, seed=1)
    h, w = 2, 3
    rng = np.random.default_rng(5)
    pd = np.linspace(0.4, 1.6, h * w)
    fp = np.asarray(simulate_fisp(seq, T1_NEAR, T2_NEAR, dtype=np.float64)) * pd[:, None]
    stack = (fp * np.exp(1j * rng.uniform(-np.pi, np.pi, h * w))[:, None]).reshape(h, w, L_SHORT)
    mask = np.ones((h, w), dtype=bool)
    mask[1, 2] = False
    maps = network_maps(net, stack, mask, pd=False, fill_value=-1.0)
    np.testing.assert_array_equal(maps.mapped, mask)
    assert maps.n_not_mapped == 0 and maps.pd is None
    np.testing.assert_allclose(maps.t1_ms[mask], T1_NEAR[mask.ravel()], rtol=1e-3)
    np.testing.assert_allclose(maps.t2_ms[mask], T2_NEAR[mask.ravel()], rtol=1e-3)
    assert maps.t1_ms[1, 2] == -1.0 and maps.t2_ms[1, 2] == -1.0
    # with PD: the phase is removed and the sign resolved, so PD comes back positive and right
    maps = network_maps(net, stack, None, pd=True)
    np.testing.assert_allclose(maps.pd.ravel(), pd, rtol=1e-3)
    with pytest.raises(ValueError, match="label_scaling"):
        network_maps(net, stack, mask, pd=False, label_scaling=LabelScaling.fixed())
    with pytest.raises(SequenceMismatchError):
        network_maps(net, stack, mask, pd=False, sequence=paper_sequence(L_SHORT, te_ms=2.5))


# ============================================================================ synthetic_signatures
def test_synthetic_signatures_shapes_ranges_and_seed(seq):
    from mrfbook.nn.train_refined import synthetic_signatures

    x, t1, t2 = synthetic_signatures(seq, 3000, 4)
    assert x.shape == (3000, L_SHORT) and x.dtype == np.float64 and t1.shape == t2.shape == (3000,)
    assert np.all(np.isfinite(x)) and np.all(np.linalg.norm(x, axis=1) > 0)
    assert t1.min() >= 1.0 and t1.max() <= 5000.0 and t2.min() >= 1.0 and t2.max() <= 2000.0
    assert np.all(t1 >= t2)
    # both halves of the draw: a good share of short T1 (log-uniform) and of long T1 (uniform)
    assert 0.1 < np.mean(t1 < 100.0) < 0.5 and np.mean(t1 > 2500.0) > 0.2
    x2, t1b, t2b = synthetic_signatures(seq, 3000, 4)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(t1b, t1)
    np.testing.assert_array_equal(t2b, t2)
    x3, t1c, _ = synthetic_signatures(seq, 3000, 5)
    assert not np.array_equal(t1c, t1)
    with pytest.raises(ValueError, match="n"):
        synthetic_signatures(seq, 0, 4)
    with pytest.raises(ValueError, match="seed"):
        synthetic_signatures(seq, 10, -1)


def test_synthetic_pure_signatures_are_the_fingerprints_of_their_labels(seq):
    from mrfbook.nn.train_refined import synthetic_signatures

    x, t1, t2 = synthetic_signatures(seq, 500, 1, mix_fraction=0.0, noise_fraction=0.0)
    np.testing.assert_allclose(x, simulate_fisp(seq, t1, t2, dtype=np.float64), rtol=1e-12, atol=1e-15)


def test_synthetic_mixtures_are_labelled_with_the_rate_mix(seq):
    """Recompute the draws: mixed rows are wa f(A) + wb f(B), labelled (wa + wb) / (wa / T_A + wb / T_B)."""
    from mrfbook.nn.train_refined import _tissues, synthetic_signatures

    n, seed = 2000, 2
    x, r1, r2 = synthetic_signatures(seq, n, seed, mix_fraction=0.3, noise_fraction=0.0)
    rng = np.random.default_rng([seed, 3])
    t1, t2 = _tissues(rng, n)
    mix = np.flatnonzero(rng.random(n) < 0.3)
    s1, s2 = _tissues(rng, mix.size)
    w = rng.uniform(0.05, 0.95, mix.size)
    wa = w * rng.uniform(0.3, 1.0, mix.size)
    wb = (1.0 - w) * rng.uniform(0.3, 1.0, mix.size)
    assert 0.25 < mix.size / n < 0.35
    pure = np.setdiff1d(np.arange(n), mix)
    np.testing.assert_array_equal(r1[pure], t1[pure])
    np.testing.assert_array_equal(r2[pure], t2[pure])
    np.testing.assert_allclose(r1[mix], (wa + wb) / (wa / t1[mix] + wb / s1), rtol=1e-12)
    np.testing.assert_allclose(r2[mix], (wa + wb) / (wa / t2[mix] + wb / s2), rtol=1e-12)
    i = mix[:5]
    expect = (wa[:5, None] * simulate_fisp(seq, t1[i], t2[i], dtype=np.float64)
              + wb[:5, None] * simulate_fisp(seq, s1[:5], s2[:5], dtype=np.float64))
    np.testing.assert_allclose(x[i], expect, rtol=1e-10, atol=1e-14)
    # a mixture's label lies between its two tissues'
    lo, hi = np.minimum(t1[mix], s1), np.maximum(t1[mix], s1)
    assert np.all((r1[mix] >= lo * (1 - 1e-12)) & (r1[mix] <= hi * (1 + 1e-12)))


def test_synthetic_noise_has_the_requested_snr(seq):
    from mrfbook.nn.train_refined import synthetic_signatures

    clean, c1, c2 = synthetic_signatures(seq, 600, 3, noise_fraction=0.0)
    noisy, n1, n2 = synthetic_signatures(seq, 600, 3, noise_fraction=1.0, snr_db=(20.0, 20.0))
    np.testing.assert_array_equal(n1, c1)
    np.testing.assert_array_equal(n2, c2)
    ratio = np.linalg.norm(noisy - clean, axis=1) / np.linalg.norm(clean, axis=1)  # ~ 10^(-20/20) = 0.1
    assert 0.095 < ratio.mean() < 0.105 and np.all((ratio > 0.04) & (ratio < 0.16))
    half, _, _ = synthetic_signatures(seq, 600, 3, noise_fraction=0.5, snr_db=(30.0, 30.0))
    share = np.mean(np.any(half != clean, axis=1))
    assert 0.4 < share < 0.6


# ============================================================================ train_refined
TINY_KW = dict(rank=6, width=16, depth=1, correction_width=8, correction_depth=1, n_iter=4, n_synthetic=2000,
               epochs=2, correction_epochs=2, batch_size=256, n_correction=3000)


def _read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_refined_config_round_trip():
    from mrfbook.nn.train_refined import RefinedConfig

    cfg = RefinedConfig(**TINY_KW, snr_db=(15.0, 45.0))
    assert RefinedConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="no_such_field"):
        RefinedConfig.from_dict({**cfg.to_dict(), "no_such_field": 1})


def test_build_dense_shapes():
    from mrfbook.nn.train_refined import _dense_weights, build_dense

    model = build_dense(7, 12, 2, "probe")
    assert model.name == "probe" and model.output_shape == (None, 2)
    layers = _dense_weights(model)
    assert [w.shape for w, _ in layers] == [(7, 12), (12, 12), (12, 2)]
    assert [w.shape for w, _ in _dense_weights(build_dense(7, 12, 0, "linear"))] == [(7, 2)]
    # the NumPy forward pass of RefinedNetwork is Keras's (SiLU hidden, linear out)
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    np.testing.assert_allclose(_numpy_forward(layers, x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="width"):
        build_dense(7, 0, 1, "bad")


def test_train_refined_writes_resumes_and_refuses_another_config(seq, tmp_path):
    from mrfbook.nn.train_refined import STAGE_FILES, RefinedConfig, synthetic_signatures, train_refined

    cfg = RefinedConfig(**TINY_KW)
    folder = tmp_path / "run"
    xr, r1, r2 = synthetic_signatures(seq, 100, 99, mix_fraction=0.0, noise_fraction=0.0)
    restored = {"x": xr, "t1_ms": r1, "t2_ms": r2}
    net = train_refined(seq, folder, cfg, restored=restored, verbose=0)
    assert isinstance(net, RefinedNetwork)
    for name in STAGE_FILES + ("model.npz", "model.json", "config.json", "training_log.jsonl",
                               "proposal.checkpoint.keras", "proposal.state.json"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "config.json").read_text()) == {**cfg.to_dict(), "sequence_digest": seq.digest,
                                                                "n_restored": 100}
    assert json.loads((folder / "proposal.state.json").read_text())["epochs_done"] == 2
    assert net.manifold.rank == 6 and net.n_iter == 4 and net.sequence_digest == seq.digest
    assert [w.shape for w, _ in net.weights] == [(6, 16), (16, 2)]
    assert [w.shape for w, _ in net.correction] == [(6 + 3, 8), (8, 2)]
    assert net.metadata["config"] == cfg.to_dict()
    assert net.metadata["n_training"] == 2100 and net.metadata["n_restored"] == 100
    assert net.clean_level > 0 and json.loads((folder / "model.json").read_text())["clean_level"] == net.clean_level
    log = _read_log(folder / "training_log.jsonl")
    assert [(r["stage"], r["epoch"]) for r in log] == [("proposal", 1), ("proposal", 2),
                                                       ("correction", 1), ("correction", 2)]
    for r in log:
        assert {"stage", "epoch", "loss", "val_loss", "seconds", "time"} <= set(r), r
        assert np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) and r["seconds"] >= 0
    loaded = load_refined_network(folder / "model.npz", seq)
    x = np.asarray(simulate_fisp(seq, T1_TRUE, T2_TRUE, dtype=np.float64))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))

    # interrupted during the proposal's second epoch: the checkpoint says one epoch is done
    for name in ("proposal.keras", "correction.keras", "model.npz", "model.json", "correction.checkpoint.keras",
                 "correction.state.json"):
        (folder / name).unlink()
    (folder / "proposal.state.json").write_text(json.dumps({"epochs_done": 1}))
    net2 = train_refined(seq, folder, cfg, restored=restored, verbose=0)
    new = _read_log(folder / "training_log.jsonl")[len(log):]
    assert [(r["stage"], r["epoch"]) for r in new] == [("proposal", 2), ("correction", 1), ("correction", 2)]
    assert (folder / "model.npz").is_file() and (folder / "proposal.keras").is_file()
    assert json.loads((folder / "proposal.state.json").read_text())["epochs_done"] == 2
    np.testing.assert_array_equal(load_refined_network(folder / "model.npz", seq).predict(x), net2.predict(x))

    # everything done: a third call trains nothing and gives the same network
    n_lines = len(_read_log(folder / "training_log.jsonl"))
    net3 = train_refined(seq, folder, cfg, restored=restored, verbose=0)
    assert len(_read_log(folder / "training_log.jsonl")) == n_lines
    np.testing.assert_array_equal(net3.predict(x), net2.predict(x))

    with pytest.raises(ValueError, match="configuration"):
        train_refined(seq, folder, RefinedConfig(**{**TINY_KW, "epochs": 3}), restored=restored, verbose=0)
    with pytest.raises(ValueError, match="training inputs"):
        train_refined(seq, folder, cfg, verbose=0)  # the same configuration without the restored signatures
    assert json.loads((folder / "config.json").read_text())["epochs"] == cfg.epochs  # left as it was


# ============================================================================ random_phantom
def test_random_phantom_is_seeded_and_well_formed():
    a = random_phantom(32, seed=3)
    b = random_phantom(32, seed=3)
    for name in ("t1_ms", "t2_ms", "pd", "tissue_mask", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.compartments.weight, b.compartments.weight)
    c = random_phantom(32, seed=4)
    assert not np.array_equal(a.t1_ms, c.t1_ms)
    for ph in (a, c, random_phantom(48, seed=11, variation=0.0)):
        m = ph.tissue_mask
        assert ph.shape in ((32, 32), (48, 48)) and m.dtype == bool
        assert 0.2 * m.size < m.sum() < 0.9 * m.size
        t1, t2, pd = ph.parameters()
        assert np.all(np.isfinite(t1)) and np.all(np.isfinite(t2)) and np.all(t1 > 0) and np.all(t2 > 0)
        assert np.all(t2 < t1) and np.all(pd > 0)
        # documented ranges: tissues' T1 in [250, 4500] ms (a rim 200-500 ms), scaled by 1 +- variation
        assert t1.min() > 200.0 * 0.95 and t1.max() < 4500.0 * 1.05
        assert np.all(ph.t1_ms[~m] == 0) and np.all(ph.pd[~m] == 0)
        comp = ph.compartments
        assert comp is not None and 3 <= comp.n_compartments <= 7
        assert set(comp.names) - {"rim"} == {f"tissue {k + 1}" for k in range(len(set(comp.names) - {"rim"}))}
        ref1, ref2, ref_pd = comp.reference_maps()
        np.testing.assert_allclose(ph.t1_ms[m], ref1[m], rtol=1e-12)
        np.testing.assert_allclose(ph.t2_ms[m], ref2[m], rtol=1e-12)
        np.testing.assert_allclose(ph.pd[m], ref_pd[m], rtol=1e-12)
        assert ph.labels is not None and np.all(ph.labels[m] >= 1) and np.all(ph.labels[~m] == 0)


@pytest.mark.parametrize("kwargs, name", [
    (dict(size=15), "size"),
    (dict(size=1025), "size"),
    (dict(size=32.0), "size"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(variation=0.21), "variation"),
    (dict(variation=-0.01), "variation"),
    (dict(variation=np.nan), "variation"),
])
def test_random_phantom_bad_inputs_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        random_phantom(**{"size": 32, **kwargs})


# ============================================================================ training_inputs
def _true_real_signatures(stack, sequence):
    """Phase removed and sign resolved, as the mapping path prepares a restored stack."""
    from mrfbook.nn.inference import resolve_sign, sign_reference
    from mrfbook.nn.inputs import real_signatures

    flat = np.asarray(stack).reshape(-1, stack.shape[-1])
    return resolve_sign(real_signatures(flat), sign_reference(sequence))


def test_restored_phantom_signatures_small(seq):
    from mrfbook.analysis.training_inputs import IMAGE_SNRS_DB, PATTERNS, SAMPLING_RATIOS, restored_phantom_signatures
    from mrfbook.nn.inference import resolve_sign, sign_reference

    r = restored_phantom_signatures(seq, 1, size=32)
    ph = random_phantom(32, seed=1)
    m = ph.tissue_mask
    assert r["x"].shape == (int(m.sum()), L_SHORT) and np.isrealobj(r["x"]) and np.all(np.isfinite(r["x"]))
    np.testing.assert_array_equal(r["t1_ms"], ph.t1_ms[m])
    np.testing.assert_array_equal(r["t2_ms"], ph.t2_ms[m])
    assert r["sampling_ratio"] in SAMPLING_RATIOS and r["pattern"] in PATTERNS and r["snr_db"] in IMAGE_SNRS_DB
    assert np.isfinite(r["error_level"]) and r["error_level"] > 0 and r["lam"] > 0
    np.testing.assert_array_equal(resolve_sign(r["x"], sign_reference(seq)), r["x"])  # already sign-resolved
    # the restored time courses are close to the pixels' true signals
    from mrfbook.recon.acquisition import image_stack

    truth = _true_real_signatures(image_stack(ph, seq), seq)[m.ravel()]
    rel = np.linalg.norm(r["x"] - truth, axis=1) / np.linalg.norm(truth, axis=1)
    assert np.median(rel) < 0.1  # measured 0.016 (seed 1: 30 % sampling, no noise)


def test_load_restored_training_set(tmp_path, seq):
    from mrfbook.analysis.training_inputs import load_restored_training_set

    rng = np.random.default_rng(0)
    sizes = {3: 5, 4: 7}
    for s, n in sizes.items():
        np.savez(tmp_path / f"phantom_{s:04d}.npz", x=rng.standard_normal((n, L_SHORT)).astype(np.float32),
                 t1_ms=rng.uniform(100, 2000, n), t2_ms=rng.uniform(10, 100, n), sequence_digest=seq.digest)
    d = load_restored_training_set(tmp_path, range(3, 5), seq.digest)
    assert d["x"].shape == (12, L_SHORT) and d["t1_ms"].shape == d["t2_ms"].shape == (12,)
    np.testing.assert_array_equal(d["phantom"], [3] * 5 + [4] * 7)
    with np.load(tmp_path / "phantom_0004.npz") as f:
        np.testing.assert_array_equal(d["t1_ms"][5:], f["t1_ms"])
    with pytest.raises(ValueError, match="another sequence"):
        load_restored_training_set(tmp_path, range(3, 5), paper_sequence().digest)
    with pytest.raises(FileNotFoundError):
        load_restored_training_set(tmp_path, range(3, 6), seq.digest)


# ============================================================================ another sequence
def test_train_refined_refuses_a_folder_of_another_sequence(seq, tmp_path):
    from mrfbook.nn.train_refined import RefinedConfig, train_refined

    cfg = RefinedConfig(**{**TINY_KW, "correction_depth": 0, "epochs": 1, "n_synthetic": 500})
    train_refined(seq, tmp_path, cfg, verbose=0)
    with pytest.raises(ValueError, match="sequence"):
        train_refined(paper_sequence(L_SHORT, te_ms=2.5), tmp_path, cfg, verbose=0)


# ============================================================================ the shipped model
def test_shipped_refined_network_reproduces_its_recorded_accuracy():
    """models/refined_network/model.npz: paper sequence, full shifted test grid, the targets of chapter 11."""
    from mrfbook.physics.dictionary import shifted_test_grid

    sequence = paper_sequence()
    net = load_refined_network(SHIPPED_REFINED, sequence)
    assert isinstance(net, RefinedNetwork)
    t1, t2 = shifted_test_grid()
    x = np.asarray(simulate_fisp(sequence, t1, t2, dtype=np.float64))
    pred = net.predict(x)
    assert pred.shape == (len(t1), 2) and np.all(np.isfinite(pred))
    now = {"t1_rmse_ms": rmse(pred[:, 0], t1), "t2_rmse_ms": rmse(pred[:, 1], t2)}
    recorded = net.metadata["accuracy"]["shifted_grid"]
    for key in ("t1_rmse_ms", "t2_rmse_ms"):
        assert now[key] == pytest.approx(recorded[key], rel=1e-2, abs=1e-3), (key, now[key], recorded[key])
    assert recorded["t1_rmse_ms"] <= 0.5 and recorded["t2_rmse_ms"] <= 0.3, recorded
    macs = net.multiply_adds()
    assert macs["total"] <= 67.6e6 / 10, macs
    assert read_network_metadata(SHIPPED_REFINED)["multiply_adds"] == macs


def test_shipped_refined_network_is_documented():
    rel = "models/refined_network/model.npz"
    assert rel in (ROOT / "README.md").read_text(), "README.md must point at the shipped refined network"
    assert rel in (ROOT / "book" / "cli.md").read_text(), "book/cli.md must point at the shipped refined network"


def test_coarse_start_is_cached_per_table_not_per_address(seq):
    """Each table keeps its own coarse nodes: a second table (another rank) never sees the first's."""
    for rank in (RANK, 3, RANK):
        m = build_manifold(seq, rank=rank, n_t1=16, n_t2=16)
        t1, t2 = np.array([300.0, 1200.0]), np.array([40.0, 90.0])
        z = m.project(np.asarray(simulate_fisp(seq, t1, t2, dtype=np.float64)))
        s1, s2 = m.coarse_start(z, 2)
        # the start is this table's best-correlated node among every 2nd node inside the box, T2 <= T1
        lo1, hi1, lo2, hi2 = np.log([*m.t1_range_ms, *m.t2_range_ms])
        uu, vv = np.meshgrid(m.log_t1[::2], m.log_t2[::2], indexing="ij")
        keep = (uu >= lo1) & (uu <= hi1) & (vv >= lo2) & (vv <= hi2) & (vv <= uu)
        f = m.signal(np.exp(uu[keep]), np.exp(vv[keep]))
        best = np.argmax(z @ (f / np.linalg.norm(f, axis=1, keepdims=True)).T, axis=1)
        np.testing.assert_allclose(s1, np.exp(uu[keep][best]), rtol=1e-12)
        np.testing.assert_allclose(s2, np.exp(vv[keep][best]), rtol=1e-12)
        del m


def test_map_command_accepts_the_same_sequence_up_to_round_off(manifold, seq, tmp_path):
    """The command line's model check (before any Keras import) uses FispSequence.matches too."""
    from mrfbook.cli.inputs import InputError
    from mrfbook.cli.map import _model_sequence

    path = _network(manifold, seq).save(tmp_path / "model.npz")
    ulp = FispSequence.from_dict(dict(seq.to_dict(), tr_ms=np.nextafter(seq.tr_ms, 0.0).tolist()))
    assert ulp.digest != seq.digest and _model_sequence(path, ulp) == seq
    with pytest.raises(InputError, match="another sequence"):
        _model_sequence(path, paper_sequence(L_SHORT, te_ms=2.5))


def test_second_start_only_where_the_fit_leaves_more_than_noise(manifold, seq, monkeypatch):
    """A fit from the proposal that explains the fingerprint down to its noise keeps; others get the coarse start."""
    from scipy.stats import chi2

    net = _network(manifold, seq, seed=1, last_scale=0.02)
    net.coarse_step = 4
    calls = []
    original = type(manifold).coarse_start
    monkeypatch.setattr(type(manifold), "coarse_start",
                        lambda self, z, step=4: calls.append(len(z)) or original(self, z, step))
    clean = np.asarray(simulate_fisp(seq, T1_NEAR, T2_NEAR, dtype=np.float64))
    est = net.estimate(clean)
    assert calls == [] and np.all(est["residual"] <= net.noise_residual(est["noise_level"], np.ones(len(clean))))
    np.testing.assert_allclose(est["t1_ms"], T1_NEAR, rtol=1e-3)
    # the bound: the 99.9th percentile of chi-squared with K - 3 degrees of freedom, times the level
    level = np.array([1e-3, 1e-6])
    net.clean_level = 1e-5
    expect = np.sqrt(chi2.ppf(0.999, RANK - 3)) * np.array([1e-3, 1e-5]) / 0.5
    np.testing.assert_allclose(net.noise_residual(level, np.array([0.5, 0.5])), expect)
    # a start in the wrong basin (the proposal pinned far off, no steps to walk there): the coarse start runs
    far = _network(manifold, seq, seed=1, last_scale=0.0, centre=(4000.0, 5.0), n_iter=1)
    far.coarse_step = 4
    far.estimate(clean)
    assert calls and calls[0] > 0
