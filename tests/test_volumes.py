"""Volumes (H, W, D, L) mapped on a two-worker Dask cluster equal the slice-by-slice maps exactly.

A small 3-D phantom: five 24 x 24 slices of the brain phantom at different heights (L = 50,
complex with a receive phase), the last one scaled to 1e-8 of the others (a slice of "noise":
under the volume's resolvability rule it cannot be resolved, under the slice's it is mapped). A
~500-atom dictionary and a random 2-layer network. The cluster runs its two workers as threads
of this process (fast to start); the command-line test starts one worker process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from mrfbook.analysis.volumes import NpyVolume, map_volume, open_volume  # noqa: E402
from mrfbook.physics.dictionary import build_dictionary, paper_grid  # noqa: E402
from mrfbook.physics.epg import simulate_fisp  # noqa: E402
from mrfbook.physics.noise import ZERO_TOL, dictionary_subspace, resolvable, sequence_subspace  # noqa: E402
from mrfbook.physics.phantom import brain_phantom  # noqa: E402
from mrfbook.physics.sequence import paper_sequence  # noqa: E402
from mrfbook.recon.matching import match_maps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
L = 50
SIZE = 24
HEIGHTS_MM = (0.0, 10.0, 18.0, 30.0)


@pytest.fixture(scope="module")
def sequence():
    return paper_sequence(L)


@pytest.fixture(scope="module")
def dictionary(sequence):
    return build_dictionary(sequence, *paper_grid(step_ms=100.0, t2_max_ms=1000.0))


@pytest.fixture(scope="module")
def volume(sequence) -> np.ndarray:
    slices = []
    for z in HEIGHTS_MM:
        ph = brain_phantom(SIZE, slice_mm=z)
        stack = np.zeros((SIZE, SIZE, L), dtype=np.complex64)
        m = ph.tissue_mask
        atoms = simulate_fisp(sequence, ph.t1_ms[m], ph.t2_ms[m], dtype=np.float64)
        stack[m] = ph.pd[m, None] * atoms * np.exp(0.7j)
        slices.append(stack)
    slices.append(slices[1] * np.complex64(1e-8))  # a slice far below the volume's signal
    return np.stack(slices, axis=2)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


def global_signal(vol: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.sum(np.abs(vol.astype(np.complex128)) ** 2, axis=-1))
    return (norms > ZERO_TOL * norms.max()) & (norms > 0)


def per_slice_matching(vol, dictionary, masks, **rule):
    maps = [match_maps(vol[:, :, d], dictionary, mask=masks[:, :, d], **rule) for d in range(vol.shape[2])]
    return {key: np.stack([getattr(m, key) for m in maps], axis=2) for key in ("t1_ms", "t2_ms", "pd", "valid")}


def assert_same(result, expected) -> None:
    for key in ("t1_ms", "t2_ms", "pd"):
        np.testing.assert_array_equal(getattr(result, key), expected[key], err_msg=key)
    np.testing.assert_array_equal(result.mapped, expected["valid"] if "valid" in expected else expected["mapped"])


def volume_rule(vol, basis, mask=None):
    """The resolvability rule of one call on all the (masked) pixels of the volume."""
    flat = vol.reshape(-1, vol.shape[-1])
    keep = np.ones(flat.shape[0], bool) if mask is None else mask.ravel()
    return resolvable(flat[keep], basis)


def test_matching_equals_slice_by_slice_whatever_the_chunking(volume, dictionary, client, tmp_path):
    signal = global_signal(volume)
    assert signal[:, :, :4].any() and not signal[:, :, 4].any()
    noise = volume_rule(volume, dictionary_subspace(dictionary)).noise_level
    expected = per_slice_matching(volume, dictionary, signal, noise_level=noise)
    np.save(tmp_path / "vol.npy", volume)
    import dask.array as da

    sources = [volume, tmp_path / "vol.npy", np.load(tmp_path / "vol.npy", mmap_mode="r"),
               da.from_array(volume, chunks=(SIZE, SIZE, 2, L))]
    for source, per_task in zip(sources, (1, 2, 5, 3)):
        result = map_volume(source, dictionary=dictionary, client=client, slices_per_task=per_task)
        assert_same(result, expected)
        np.testing.assert_array_equal(result.resolvable, expected["valid"])
        assert result.n_not_mapped == volume.shape[0] * volume.shape[1] * volume.shape[2] - signal.sum()
        np.testing.assert_array_equal(result.noise_levels, noise)  # the volume's, exactly
        assert result.reference_norm == pytest.approx(np.sqrt((np.abs(volume.astype(np.complex128)) ** 2)
                                                              .sum(-1)).max(), rel=1e-12)
    # The volume rule is the rule of ONE call on all the volume's pixels: same pixels, same atoms.
    whole = match_maps(volume.reshape(SIZE, SIZE * 5, L), dictionary)
    np.testing.assert_array_equal(whole.valid.reshape(SIZE, SIZE, 5), result.mapped)
    np.testing.assert_array_equal(whole.t1_ms.reshape(SIZE, SIZE, 5), result.t1_ms)
    assert whole.resolvability.noise_level == noise


def test_the_volume_rule_leaves_out_a_slice_of_noise(volume, dictionary, client):
    """Noise only in a slice: the volume's rule (noise measured over the volume) leaves it out."""
    rng = np.random.default_rng(0)
    noisy = volume.copy()
    sigma = 0.01
    noise = sigma / np.sqrt(2) * (rng.standard_normal(volume.shape) + 1j * rng.standard_normal(volume.shape))
    noisy += noise.astype(np.complex64)
    noisy[:, :, 4] = noise[:, :, 4]  # the last slice: noise only
    result = map_volume(noisy, dictionary=dictionary, client=client)
    assert not result.resolvable[:, :, 4].any()
    assert 0.8 * sigma < result.noise_levels[0] < 1.2 * sigma
    tissue = brain_phantom(SIZE, slice_mm=HEIGHTS_MM[1]).tissue_mask
    assert result.resolvable[:, :, 1][tissue].mean() > 0.95
    assert result.n_resolvable == int(result.resolvable.sum()) < noisy[..., 0].size
    loose = map_volume(noisy, dictionary=dictionary, client=client, min_snr=0)
    assert loose.resolvable.all()


def test_slice_reference_equals_mapping_each_slice_alone(volume, dictionary, client):
    every = np.ones(volume.shape[:3], dtype=bool)
    expected = per_slice_matching(volume, dictionary, every)
    assert expected["valid"][:, :, 4].any()  # alone, the faint slice counts as signal
    mask = brain_phantom(SIZE).tissue_mask | (np.arange(SIZE)[:, None] < 3)
    result = map_volume(volume, dictionary=dictionary, client=client, signal_reference="slice", slices_per_task=2)
    assert_same(result, expected)
    assert result.reference_norm is None
    masked = map_volume(volume, dictionary=dictionary, mask=mask, client=client, signal_reference="slice")
    assert_same(masked, per_slice_matching(volume, dictionary, np.repeat(mask[:, :, None], 5, axis=2)))


@pytest.fixture(scope="module")
def model_path(sequence, tmp_path_factory) -> Path:
    keras = pytest.importorskip("keras")
    from mrfbook.nn.model import LabelScaling, TrainedModel, save_trained_model

    keras.utils.set_random_seed(3)
    inputs = keras.Input((L,))
    hidden = keras.layers.Dense(16, activation="tanh")(inputs)
    net = keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid")(hidden))
    path = tmp_path_factory.mktemp("net") / "net.keras"
    save_trained_model(TrainedModel(net, LabelScaling.fixed(), sequence.to_dict(), sequence.digest, {}), path)
    return path


def trained_sequence(trained):
    from mrfbook.physics.sequence import FispSequence

    return FispSequence.from_dict(trained.sequence)


def test_network_equals_slice_by_slice(volume, model_path, client):
    from mrfbook.nn.inference import network_maps
    from mrfbook.nn.model import load_trained_model

    trained = load_trained_model(model_path)
    signal = global_signal(volume)
    noise = volume_rule(volume, sequence_subspace(trained_sequence(trained))).noise_level
    maps = [network_maps(trained, volume[:, :, d], signal[:, :, d], pd=True, noise_level=noise) for d in range(5)]
    expected = {key: np.stack([getattr(m, key) for m in maps], axis=2) for key in ("t1_ms", "t2_ms", "pd", "mapped")}
    assert np.ptp(expected["t1_ms"][signal]) > 0
    for per_task in (1, 3):
        result = map_volume(volume, model=model_path, client=client, slices_per_task=per_task)
        assert_same(result, expected)
    assert result.mapped.sum() == signal.sum()


def test_bad_input_is_refused(volume, dictionary, model_path, client, tmp_path):
    cases = [
        (dict(volume=volume[:, :, 0]), "4-D volume"),
        (dict(volume=volume.astype(str)), "dtype"),
        (dict(volume=volume, model=model_path), "exactly one"),
        (dict(volume=volume[..., :40]), "L = 40"),
        (dict(volume=volume, mask=np.ones((SIZE, SIZE))), "mask must be a bool"),
        (dict(volume=volume, signal_reference="pixel"), "signal_reference"),
        (dict(volume=volume, slices_per_task=0), "slices_per_task"),
        (dict(volume=volume, min_snr=-1.0), "min_snr"),
        (dict(volume=volume, min_snr=np.inf), "min_snr"),
        (dict(volume=volume, error_level=-0.5), "error_level"),
        (dict(volume=tmp_path / "missing.npy"), "file not found"),
    ]
    for kwargs, message in cases:
        kwargs.setdefault("dictionary", dictionary)
        if "model" in kwargs and kwargs["model"] is None:
            del kwargs["model"]
        with pytest.raises(ValueError, match=message):
            map_volume(client=client, **kwargs)
    with pytest.raises(ValueError, match="L = 40"):
        map_volume(volume[..., :40], model=model_path, client=client)
    bad = volume.copy()
    bad[1, 2, 3, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"NaN or infinite \(first at index \(1, 2, 3, 4\)\)"):
        map_volume(tmp_path / "nan.npy", dictionary=dictionary, client=client)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(volume))
    with pytest.raises(ValueError, match="Fortran order"):
        open_volume(tmp_path / "fortran.npy")


def test_npy_volume_reads_slabs_exactly(volume, tmp_path):
    np.save(tmp_path / "v.npy", volume)
    source = NpyVolume(tmp_path / "v.npy")
    assert source.shape == volume.shape and source.dtype == volume.dtype
    for d0, d1 in ((0, 1), (1, 4), (0, 5), (4, 5)):
        np.testing.assert_array_equal(source.read(d0, d1), volume[:, :, d0:d1])
    assert len(__import__("pickle").dumps(source)) < 1000


def test_command_line_maps_a_4d_volume(volume, dictionary, tmp_path):
    dictionary.save(tmp_path / "dict.npz")
    np.save(tmp_path / "vol.npy", volume[:, :, :3])
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, "-m", "mrfbook", "map", "--images", "vol.npy", "--dictionary", "dict.npz", "--workers", "1",
         "--memory-limit", "2GiB", "--slices-per-task", "2", "--out", "maps"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "maps"
    noise = volume_rule(volume[:, :, :3], dictionary_subspace(dictionary)).noise_level
    expected = per_slice_matching(volume[:, :, :3], dictionary, global_signal(volume[:, :, :3]), noise_level=noise)
    for key, name in (("t1_ms", "t1"), ("t2_ms", "t2"), ("pd", "pd")):
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), expected[key])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shape"] == [SIZE, SIZE, 3] and summary["n_workers"] == 1
    assert summary["n_pixels_in_mask"] == SIZE * SIZE * 3
    assert summary["n_pixels_mapped"] == summary["n_pixels_resolvable"] == int(expected["valid"].sum())
    assert summary["n_pixels_not_resolvable"] == SIZE * SIZE * 3 - summary["n_pixels_resolvable"]
    assert summary["resolvability"]["noise_level"] == noise
    np.testing.assert_array_equal(np.load(out / "resolvable.npy"), expected["valid"])
    # options of volumes are refused with a 3-D stack, and a scheduler with local-cluster options
    np.save(tmp_path / "one.npy", volume[:, :, 0])
    for args, message in ((["--images", "one.npy", "--workers", "2"], "--workers: only used with a 4-D"),
                          (["--images", "vol.npy", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"],
                           "--workers: not used with --scheduler")):
        result = subprocess.run([sys.executable, "-m", "mrfbook", "map", *args, "--dictionary", "dict.npz",
                                 "--out", "refused"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert not (tmp_path / "refused").exists()
