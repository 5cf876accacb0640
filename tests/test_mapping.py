"""One mapping path with a network: mrfbook.nn.inference.network_maps and ``map --model``.

Small networks with fixed or random weights (accuracy does not matter here, only that the
library and the command agree and that the conventions hold): a 50-time-point sequence, 12x12
images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mrfbook.nn.inference import (  # noqa: E402
    network_maps,
    predict_maps,
    predict_parameters,
    resolve_sign,
    sign_reference,
)
from mrfbook.nn.model import (  # noqa: E402
    EMBEDDED_METADATA,
    LabelScaling,
    TrainedModel,
    load_trained_model,
    save_trained_model,
)
from mrfbook.physics.epg import simulate_fisp  # noqa: E402
from mrfbook.physics.noise import ZERO_TOL, resolvable, sequence_subspace  # noqa: E402
from mrfbook.physics.sequence import paper_sequence  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
L = 50
SIZE = 12
TISSUES = [(850.0, 60.0, 0.7), (1300.0, 110.0, 0.9), (400.0, 60.0, 1.3)]


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run([sys.executable, "-m", "mrfbook", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sequence():
    return paper_sequence(L)


def _wrap(model, sequence) -> TrainedModel:
    return TrainedModel(model, LabelScaling.fixed(), sequence.to_dict(), sequence.digest, {})


@pytest.fixture(scope="module")
def random_net(sequence) -> TrainedModel:
    """Random weights, sigmoid outputs: (T1, T2) in (0, 5000) x (0, 2000) ms, depending on the input."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((L,))
    hidden = keras.layers.Dense(16, activation="tanh")(inputs)
    outputs = keras.layers.Dense(2, activation="sigmoid")(hidden)
    return _wrap(keras.Model(inputs, outputs), sequence)


def constant_net(sequence, t1_ms: float, t2_ms: float) -> TrainedModel:
    """A network that predicts (t1_ms, t2_ms) for every input."""
    inputs = keras.Input((L,))
    layer = keras.layers.Dense(2, kernel_initializer="zeros")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.zeros((L, 2), np.float32), np.array([t1_ms / 5000.0, t2_ms / 2000.0], np.float32)])
    return _wrap(model, sequence)


@pytest.fixture(scope="module")
def phantom(sequence) -> dict:
    """Three tissues in rings with a receive phase, background exactly 0."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    r = np.hypot(yy - SIZE / 2 + 0.5, xx - SIZE / 2 + 0.5)
    labels = np.select([r < 2, r < 3.5, r < 5.5], [1, 2, 3], 0)
    atoms = simulate_fisp(sequence, np.array([t[0] for t in TISSUES]), np.array([t[1] for t in TISSUES]),
                          dtype=np.float64)
    images = np.zeros((SIZE, SIZE, L), dtype=np.complex64)
    pd = np.zeros((SIZE, SIZE))
    for label, (_, _, c) in enumerate(TISSUES, start=1):
        images[labels == label] = c * atoms[label - 1] * np.exp(0.4j)
        pd[labels == label] = c
    return {"images": images, "mask": labels > 0, "labels": labels, "pd": pd, "atoms": atoms}


# ------------------------------------------------------------------------------ conventions


def test_the_network_applies_the_one_resolvability_rule(random_net, phantom, sequence):
    images = phantom["images"].copy()
    mask = phantom["mask"]
    rng = np.random.default_rng(1)
    noise = 0.02 * (rng.standard_normal(images.shape) + 1j * rng.standard_normal(images.shape))
    noisy = (images + noise).astype(np.complex64)  # background: noise only
    result = network_maps(random_net, noisy, pd=False)
    rule = resolvable(noisy.reshape(-1, L), sequence_subspace(sequence))
    np.testing.assert_array_equal(result.resolvable.ravel(), rule.mask)
    assert result.resolvability.noise_level == rule.noise_level
    assert 0.025 < rule.noise_level < 0.032  # the noise added: 0.02 x sqrt(2) per complex sample
    np.testing.assert_array_equal(result.resolvable, mask)  # tissue in, background noise out
    assert result.n_resolvable == int(mask.sum()) and result.n_not_mapped == int((~mask).sum())
    # min_snr = 0: only the round-off guard, the noise is mapped too
    loose = network_maps(random_net, noisy, pd=False, min_snr=0)
    assert loose.resolvable.all()
    # an external error level above the tissue's signal leaves nothing to map
    strict = network_maps(random_net, noisy, pd=False, error_level=10.0)
    assert not strict.mapped.any() and np.all(strict.t1_ms == 0)
    with pytest.raises(ValueError, match="min_snr"):
        network_maps(random_net, noisy, min_snr=-1)
    with pytest.raises(ValueError, match="error_level"):
        network_maps(random_net, noisy, error_level=np.nan)


def test_round_off_guard(random_net):
    x = np.zeros((1, 4, L))
    x[0, 0, 0] = 1.0
    x[0, 1, 0] = 0.5 * ZERO_TOL   # round-off: no signal
    x[0, 2, 0] = 2.0 * ZERO_TOL   # faint but above the guard
    result = network_maps(random_net, x, pd=False, min_snr=0)
    np.testing.assert_array_equal(result.resolvable[0], [True, False, True, False])


def test_phase_and_sign_do_not_change_t1_t2(random_net, phantom):
    images, mask = phantom["images"], phantom["mask"]
    ref = network_maps(random_net, images, mask, pd=False)
    assert ref.mapped.sum() == mask.sum() and ref.n_not_mapped == 0
    assert np.ptp(ref.t1_ms[mask]) > 0  # the random network does depend on its input
    for factor in (-1.0, np.exp(1.3j), np.exp(-2.9j), 1j, -3.0 * np.exp(0.2j)):
        other = network_maps(random_net, (images * factor).astype(np.complex64), mask, pd=False)
        np.testing.assert_allclose(other.t1_ms, ref.t1_ms, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(other.t2_ms, ref.t2_ms, rtol=1e-4, atol=1e-3)
    real = np.ascontiguousarray((images * np.exp(-0.4j)).real)
    for stack in (real, -real):
        other = network_maps(random_net, stack, mask, pd=False)
        np.testing.assert_allclose(other.t1_ms, ref.t1_ms, rtol=1e-4, atol=1e-3)


def test_sign_reference_picks_the_tissue_sign(sequence, phantom):
    atoms = phantom["atoms"]
    both = np.concatenate([atoms, -atoms])
    np.testing.assert_array_equal(resolve_sign(both, sign_reference(sequence)), np.concatenate([atoms, atoms]))
    assert sign_reference(sequence) is sign_reference(sequence)  # cached
    with pytest.raises(ValueError, match="sequence"):
        sign_reference("paper")


def test_pd_recovers_a_known_scale(sequence, phantom):
    images, labels = phantom["images"], phantom["labels"]
    for label, (t1, t2, c) in enumerate(TISSUES, start=1):
        net = constant_net(sequence, t1, t2)
        result = network_maps(net, images, labels == label)
        sel = labels == label
        np.testing.assert_allclose(result.t1_ms[sel], t1, rtol=1e-6)
        np.testing.assert_allclose(result.pd[sel], c, rtol=1e-5)
        assert np.all(result.pd[~sel] == 0) and np.all(result.t1_ms[~sel] == 0)
    # Sign and phase do not change PD either.
    net = constant_net(sequence, *TISSUES[0][:2])
    flipped = network_maps(net, -images * np.exp(0.7j), labels == 1)
    np.testing.assert_allclose(flipped.pd[labels == 1], TISSUES[0][2], rtol=1e-5)


def test_round_off_is_not_tissue(random_net, phantom):
    images, mask = phantom["images"].copy(), phantom["mask"]
    tissue_norm = np.linalg.norm(images[mask], axis=1).max()
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((SIZE, SIZE, L)) + 1j * rng.standard_normal((SIZE, SIZE, L))
    noise /= np.linalg.norm(noise, axis=2, keepdims=True)
    images[~mask] = (1e-7 * tissue_norm * noise[~mask]).astype(np.complex64)  # FFT round-off level
    result = network_maps(random_net, images, pd=True)  # no mask: every pixel considered
    np.testing.assert_array_equal(result.mapped, mask)
    assert result.n_not_mapped == int((~mask).sum())
    for m in (result.t1_ms, result.t2_ms, result.pd):
        assert np.all(m[~mask] == 0) and np.all(np.isfinite(m))
    # The tissue maps do not change because of the background.
    clean = network_maps(random_net, phantom["images"], mask)
    np.testing.assert_allclose(result.t1_ms[mask], clean.t1_ms[mask], rtol=1e-6)
    np.testing.assert_allclose(result.pd[mask], clean.pd[mask], rtol=1e-6)
    # predict_maps is network_maps without PD.
    t1, t2 = predict_maps(random_net, images, fill_value=-1.0)
    np.testing.assert_array_equal(t1[mask], result.t1_ms[mask])
    assert np.all(t1[~mask] == -1.0) and np.all(t2[~mask] == -1.0)


def test_maps_agree_with_predict_parameters_on_dephased_real_input(random_net, phantom):
    images, mask = phantom["images"], phantom["mask"]
    result = network_maps(random_net, images, mask, pd=False)
    params = predict_parameters(random_net, images[mask])  # phase ~0.4 rad: dephasing keeps the sign
    np.testing.assert_allclose(result.t1_ms[mask], params[:, 0], rtol=1e-6)


def test_bad_input(random_net, phantom, sequence):
    images, mask = phantom["images"], phantom["mask"]
    with pytest.raises(ValueError, match="mask"):
        network_maps(random_net, images, mask[:4])
    with pytest.raises(ValueError, match="stack"):
        network_maps(random_net, images[0])
    with pytest.raises(ValueError, match="complex_mode"):
        network_maps(random_net, images, complex_mode="abs")
    with pytest.raises(ValueError, match="time points"):
        network_maps(random_net, images[:, :, :40])
    with pytest.raises(ValueError, match="another|does not match"):
        network_maps(random_net, images, sequence=paper_sequence(L, seed=1))
    bare = random_net.model
    with pytest.raises(ValueError, match="pd=True needs the training sequence"):
        network_maps(bare, images, mask, label_scaling=LabelScaling.fixed())
    # Without a sequence: no sign resolution, no PD, but T1/T2 still come out.
    t1, _ = predict_maps(bare, images, mask, label_scaling=LabelScaling.fixed())
    assert np.all(np.isfinite(t1[mask]))


# ------------------------------------------------------------------------------ the command


def test_model_metadata_is_read_without_keras():
    code = ("import sys, mrfbook.nn.model, mrfbook.nn.inference, mrfbook.cli.map; "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'Keras imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr


def test_cli_and_library_give_the_same_maps(random_net, phantom, tmp_path):
    images, mask = phantom["images"].copy(), phantom["mask"]
    images[0, 0] = 1e-7 * np.linalg.norm(images[mask], axis=1).max() / np.sqrt(L)  # round-off pixel
    np.save(tmp_path / "images.npy", images)
    save_trained_model(random_net, tmp_path / "net.keras")
    result = run_cli("map", "--images", "images.npy", "--model", "net.keras", "--out", "maps", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    library = network_maps(load_trained_model(tmp_path / "net.keras"), images, np.ones((SIZE, SIZE), bool))
    for key, expected in (("t1", library.t1_ms), ("t2", library.t2_ms), ("pd", library.pd)):
        np.testing.assert_allclose(np.load(tmp_path / "maps" / f"{key}.npy"), expected, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(library.mapped, mask)
    np.testing.assert_array_equal(np.load(tmp_path / "maps" / "resolvable.npy"), library.resolvable)
    summary = json.loads((tmp_path / "maps" / "summary.json").read_text())
    assert summary["method"] == "network"
    assert summary["n_pixels_not_resolvable"] == int((~mask).sum())
    assert summary["resolvability"]["noise_level"] == library.resolvability.noise_level
    assert "cannot be resolved" in result.stderr  # a progress line (no --mask given: not a warning)


def test_one_mapping_path_for_every_input_form(random_net, phantom, tmp_path):
    """A network maps an image stack and the same data as full k-space (LHW, HWL, all-ones mask) alike."""
    from mrfbook.recon.acquisition import UndersampledFourier

    images, mask = phantom["images"], phantom["mask"]
    kspace = UndersampledFourier(np.ones((L, SIZE, SIZE), bool)).forward(images)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "k_lhw.npy", kspace)
    np.save(tmp_path / "k_hwl.npy", np.moveaxis(kspace, 0, -1))
    np.save(tmp_path / "ones.npy", np.ones((L, SIZE, SIZE), bool))
    np.save(tmp_path / "mask.npy", mask)
    save_trained_model(random_net, tmp_path / "net.keras")
    forms = {"images": ["--images", "images.npy"], "lhw": ["--kspace", "k_lhw.npy", "--kspace-layout", "LHW"],
             "hwl": ["--kspace", "k_hwl.npy", "--kspace-layout", "HWL"],
             "ones": ["--kspace", "k_lhw.npy", "--kspace-layout", "LHW", "--sampling-mask", "ones.npy"]}
    outs = {}
    for name, args in forms.items():
        result = run_cli("map", *args, "--model", "net.keras", "--out", name, "-q", cwd=tmp_path)
        assert result.returncode == 0, (name, result.stderr)
        outs[name] = {k: np.load(tmp_path / name / f"{k}.npy") for k in ("t1", "t2", "pd", "resolvable")}
    np.testing.assert_array_equal(outs["images"]["resolvable"], mask)
    for name, maps in outs.items():
        np.testing.assert_array_equal(maps["resolvable"], mask, err_msg=name)
        for key in ("t1", "t2", "pd"):  # float32 round-off of the FFTs, through the network
            np.testing.assert_allclose(maps[key], outs["images"][key], rtol=1e-4, atol=1e-3, err_msg=f"{name} {key}")
    # FLOR restores in a dictionary's subspace: refused with a network, before any output
    result = run_cli("map", "--kspace", "k_lhw.npy", "--kspace-layout", "LHW", "--sampling-mask", "ones.npy",
                     "--restore", "flor", "--model", "net.keras", "--out", "refused", cwd=tmp_path)
    assert result.returncode == 2 and "--restore flor: needs --dictionary" in result.stderr, result.stderr
    assert not (tmp_path / "refused").exists()


def test_cli_reads_the_sequence_from_the_model_file(random_net, phantom, tmp_path):
    np.save(tmp_path / "images.npy", phantom["images"])
    save_trained_model(random_net, tmp_path / "net.keras", sidecar=False)  # self-contained file
    result = run_cli("map", "--images", "images.npy", "--model", "net.keras", "--out", "maps", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # A .keras file that records no sequence at all is refused before any output.
    with zipfile.ZipFile(tmp_path / "net.keras") as src, zipfile.ZipFile(tmp_path / "bare.keras", "w") as dst:
        for item in src.infolist():
            if item.filename != EMBEDDED_METADATA:
                dst.writestr(item, src.read(item.filename))
    result = run_cli("map", "--images", "images.npy", "--model", "bare.keras", "--out", "refused", cwd=tmp_path)
    assert result.returncode == 2
    assert "--model" in result.stderr and "records no training metadata" in result.stderr
    assert not (tmp_path / "refused").exists()
