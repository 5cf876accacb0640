"""Tests for mrfbook.analysis.experiments: storage arithmetic, map scores, the synthetic test, the saved summary.

Small dictionaries and an untrained, tiny network only: no shipped model, no GPU.
"""

import json
import math
from types import SimpleNamespace

import keras  # noqa: E402  (mrfbook.nn.network needs it anyway)
import numpy as np
import pytest

from mrfbook.analysis import experiments as ev
from mrfbook.nn import runs
from mrfbook.nn.model import LabelScaling, TrainedModel  # noqa: E402
from mrfbook.nn.network import (
    NetworkConfig,
    block_channels,
    build_from_config,
    compact_config,
    expected_parameter_count,
    paper_config,
)
from mrfbook.physics.dictionary import build_dictionary, paper_grid, shifted_test_grid
from mrfbook.physics.sequence import paper_sequence

# coarse version of the paper grid (T1 1..2901, T2 1..501 ms, step 100 ms) and the same grid shifted
# by half a step: ~165 atoms each, built in about a second
GRID = dict(step_ms=100.0, t1_max_ms=3000.0, t2_max_ms=600.0)


@pytest.fixture(scope="module")
def sequence():
    return paper_sequence()


@pytest.fixture(scope="module")
def dictionaries(sequence):
    train = build_dictionary(sequence, *paper_grid(**GRID))
    test = build_dictionary(sequence, *shifted_test_grid(50.0, **GRID))
    return train, test


@pytest.fixture(scope="module")
def tiny_model(sequence):
    """An untrained 2-block network with 4..8 channels (a few hundred weights), as a TrainedModel."""
    cfg = NetworkConfig(n_timepoints=sequence.n_timepoints, stem_channels=4, n_blocks=2, max_channels=8)
    keras.utils.set_random_seed(0)
    model = build_from_config(cfg)
    return TrainedModel(model=model, label_scaling=LabelScaling.fixed(), sequence=None, sequence_digest=None,
                        metadata={"network": cfg.to_dict()})


# -- storage_comparison ----------------------------------------------------------------------------
def test_storage_dictionary_size_is_atoms_times_b1_times_length_times_4_bytes():
    rows = ev.storage_comparison(80_100, 200, {}, b1_counts=(1, 11, 41))
    assert [r["n_b1"] for r in rows] == [1, 11, 41]
    assert [r["dictionary_atoms"] for r in rows] == [80_100, 881_100, 3_284_100]
    for r in rows:
        assert r["dictionary_mb"] == pytest.approx(80_100 * r["n_b1"] * 200 * 4 / 1e6, rel=1e-12)
    assert rows[0]["dictionary_mb"] == pytest.approx(64.08)
    assert set(rows[0]) == {"n_b1", "dictionary_atoms", "dictionary_mb"}  # no network columns


@pytest.mark.parametrize("cfg", [paper_config(), compact_config(), NetworkConfig(n_timepoints=64, stem_channels=3,
                                                                                   n_blocks=0)])
def test_storage_network_gains_one_output_of_weights_when_b1_is_added(cfg):
    rows = ev.storage_comparison(100, 64, {"net": cfg}, b1_counts=(1, 2, 21))
    base = expected_parameter_count(cfg)
    last_hidden = block_channels(cfg)[-1] if cfg.n_blocks else cfg.stem_channels
    assert rows[0]["net_weights"] == base  # n_b1 = 1: no B1 output
    assert rows[1]["net_weights"] == base + last_hidden + 1  # one more column of the last Dense + bias
    assert rows[2]["net_weights"] == rows[1]["net_weights"]  # independent of the number of B1 values
    for r in rows:
        assert isinstance(r["net_weights"], int)
        assert r["net_mb"] == pytest.approx(r["net_weights"] * 4 / 1e6, rel=1e-12)


def test_storage_paper_network_numbers():
    rows = ev.storage_comparison(80_100, 200, {"paper network": paper_config()}, b1_counts=(1, 11))
    assert rows[0]["paper network_weights"] == 3_841_122
    assert rows[1]["paper network_weights"] == 3_841_122 + 513
    assert rows[0]["paper network_mb"] == pytest.approx(15.364488)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_atoms_t1t2=0), "n_atoms_t1t2"),
    (dict(n_atoms_t1t2=2.5), "n_atoms_t1t2"),
    (dict(n_atoms_t1t2=True), "n_atoms_t1t2"),
    (dict(n_timepoints=-1), "n_timepoints"),
    (dict(n_timepoints="200"), "n_timepoints"),
    (dict(b1_counts=(1, 0)), "b1_counts"),
    (dict(b1_counts=(True,)), "b1_counts"),
    (dict(b1_counts=(1.5,)), "b1_counts"),
])
def test_storage_rejects_bad_inputs_naming_the_parameter(kwargs, name):
    args = dict(n_atoms_t1t2=100, n_timepoints=200, network_configs={}, b1_counts=(1,))
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        ev.storage_comparison(**args)


def test_storage_accepts_numpy_integers():
    rows = ev.storage_comparison(np.int64(10), np.int32(20), {}, b1_counts=(np.int64(3),))
    assert rows[0]["dictionary_atoms"] == 30 and type(rows[0]["n_b1"]) is int


# -- network_configs -------------------------------------------------------------------------------
def _fake_shipped(cfg, folder=None):
    return runs.ShippedNetwork(model=SimpleNamespace(metadata={"network": cfg.to_dict()}), folder=folder, log=[],
                             provenance={})


def test_network_configs_always_lists_the_paper_network_first():
    assert runs.network_configs({}) == {"paper network": paper_config()}
    out = runs.network_configs({"compact network": _fake_shipped(compact_config())})
    assert list(out) == ["paper network", "compact network"]
    assert out["paper network"] == paper_config() and out["compact network"] == compact_config()
    # a shipped paper network's own config wins over the default and still comes first
    own = NetworkConfig(stem_channels=8)
    out = runs.network_configs({"compact network": _fake_shipped(compact_config()),
                              "paper network": _fake_shipped(own)})
    assert list(out) == ["paper network", "compact network"]
    assert out["paper network"] == own


# -- map_scores ------------------------------------------------------------------------------------
@pytest.fixture
def phantom():
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True  # 6 tissue pixels of 20
    t1 = np.where(mask, np.arange(20, dtype=float).reshape(4, 5) * 10 + 500, 0.0)
    t2 = np.where(mask, 60.0, 0.0)
    return SimpleNamespace(t1_ms=t1, t2_ms=t2, tissue_mask=mask)


def test_map_scores_perfect_estimate(phantom):
    s = ev.map_scores(ev.MethodMaps(phantom.t1_ms.copy(), phantom.t2_ms.copy(), 1.5, 0.25), phantom)
    for p in ("t1", "t2"):
        assert s[f"{p}_rmse_ms"] == 0.0 and s[f"{p}_paper_rmse_ms"] == 0.0
        assert s[f"{p}_snr_db"] == math.inf and s[f"{p}_paper_snr_db"] == math.inf
    assert (s["seconds"], s["restore_s"], s["map_s"]) == (1.75, 1.5, 0.25)


def test_map_scores_constant_error_in_tissue(phantom):
    m = phantom.tissue_mask
    est = ev.MethodMaps(phantom.t1_ms + 20.0 * m, phantom.t2_ms - 6.0 * m)
    s = ev.map_scores(est, phantom)
    frac = m.mean()  # 6 / 20
    rms_t1 = np.sqrt(np.mean(phantom.t1_ms[m] ** 2))
    assert s["t1_rmse_ms"] == pytest.approx(20.0)
    assert s["t2_rmse_ms"] == pytest.approx(6.0)
    assert s["t1_snr_db"] == pytest.approx(20 * np.log10(rms_t1 / 20.0))
    assert s["t2_snr_db"] == pytest.approx(20 * np.log10(60.0 / 6.0))  # = 20 dB
    # the authors' definition: all pixels (background counts as zero error), estimate in the numerator
    assert s["t1_paper_rmse_ms"] == pytest.approx(20.0 * np.sqrt(frac))
    assert s["t2_paper_rmse_ms"] == pytest.approx(6.0 * np.sqrt(frac))
    assert s["t2_paper_snr_db"] == pytest.approx(20 * np.log10(54.0 * np.sqrt(frac) / (6.0 * np.sqrt(frac))))
    assert s["seconds"] == 0.0


def test_map_scores_background_only_counts_for_the_authors_definition(phantom):
    m = phantom.tissue_mask
    est = ev.MethodMaps(phantom.t1_ms + 100.0 * ~m, phantom.t2_ms.copy())
    s = ev.map_scores(est, phantom)
    assert s["t1_rmse_ms"] == 0.0 and s["t1_snr_db"] == math.inf
    assert s["t1_paper_rmse_ms"] == pytest.approx(100.0 * np.sqrt((~m).mean()))
    assert np.isfinite(s["t1_paper_snr_db"])


def test_label_scores_split_the_error_by_tissue_class(phantom):
    m = phantom.tissue_mask
    labels = np.where(m, 1, 0).astype(np.int16)
    labels[1, 1:4] = 2  # row 1: "bone" (3 pixels), row 2: "grey matter" (3 pixels)
    ph = SimpleNamespace(**vars(phantom), labels=labels, label_names=("background", "grey matter", "bone"))
    t1 = phantom.t1_ms.copy()
    t1[1, 1:4] += 40.0  # every bone pixel 40 ms off
    t1[2, 1] += 30.0  # one grey-matter pixel 30 ms off
    resolvable = m.copy()
    resolvable[1, 1] = False
    s = ev.label_scores(ev.MethodMaps(t1, phantom.t2_ms.copy(), resolvable=resolvable), ph)
    assert sorted(s) == ["bone", "grey matter"]
    assert (s["bone"]["n"], s["bone"]["n_mapped"], s["grey matter"]["n_mapped"]) == (3, 2, 3)
    assert s["bone"]["t1_rmse_ms"] == pytest.approx(40.0)
    assert s["grey matter"]["t1_rmse_ms"] == pytest.approx(30.0 / np.sqrt(3))
    assert s["bone"]["t1_error_share"] == pytest.approx(3 * 1600 / (3 * 1600 + 900))
    assert s["bone"]["t1_error_share"] + s["grey matter"]["t1_error_share"] == pytest.approx(1.0)
    assert s["bone"]["t2_rmse_ms"] == 0.0 and s["bone"]["t2_error_share"] == 0.0
    assert ev.label_scores(ev.MethodMaps(t1, phantom.t2_ms), SimpleNamespace(**vars(phantom), labels=None)) == {}


def test_map_scores_on_resolvable_pixels_leave_out_only_what_the_method_did_not_map(phantom):
    m = phantom.tissue_mask
    est_t1 = phantom.t1_ms.copy()
    est_t1[1, 1] = 0.0  # one tissue pixel the method could not resolve: left at 0
    resolvable = m.copy()
    resolvable[1, 1] = False
    s = ev.map_scores(ev.MethodMaps(est_t1, phantom.t2_ms.copy(), resolvable=resolvable, info={"lam": 1.5}), phantom)
    assert (s["n_tissue"], s["n_resolvable"]) == (6, 5)
    assert s["t1_rmse_resolvable_ms"] == 0.0 and s["t1_snr_resolvable_db"] == math.inf
    assert s["t1_rmse_ms"] == pytest.approx(phantom.t1_ms[1, 1] / np.sqrt(6))  # the 0 counts over all tissue
    assert s["lam"] == 1.5
    none = ev.map_scores(ev.MethodMaps(est_t1, phantom.t2_ms.copy(), resolvable=np.zeros_like(m)), phantom)
    assert none["n_resolvable"] == 0 and math.isnan(none["t1_snr_resolvable_db"])


def test_authors_weight_follows_the_data_scale_and_the_phantoms_pd():
    from mrfbook.recon.acquisition import UndersampledFourier, variable_density_masks
    from mrfbook.recon.lowrank import data_scale

    rng = np.random.default_rng(0)
    op = UndersampledFourier(variable_density_masks((16, 16), 8, 0.3, seed=1))
    k = op.forward((rng.standard_normal((16, 16, 8)) + 1j * rng.standard_normal((16, 16, 8))).astype(np.complex64))
    lam = ev.authors_weight(k, op, pd_max=1.0)
    assert lam == pytest.approx(5.0 / (117.0 * data_scale(k, op)), rel=1e-5)
    # scaling the data and its PD together changes nothing: the weight is in the data's own units
    assert ev.authors_weight(10 * k, op, pd_max=10.0) == pytest.approx(lam, rel=1e-5)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="pd_max"):
            ev.authors_weight(k, op, pd_max=bad)


def test_method_maps_total_is_restore_plus_map():
    assert ev.MethodMaps(np.zeros((1, 1)), np.zeros((1, 1)), restore_s=2.0, map_s=0.5).total_s == 2.5


# -- synthetic_test --------------------------------------------------------------------------------
def test_synthetic_test_matching_only(dictionaries):
    train, test = dictionaries
    res = ev.synthetic_test({}, train, test, baseline_n=10_000)
    assert res.n == test.n_atoms
    np.testing.assert_array_equal(res.t1_ms, test.t1_ms)
    np.testing.assert_array_equal(res.t2_ms, test.t2_ms)
    assert list(res.estimates) == ["matching"] and list(res.seconds) == ["matching"]
    est = res.estimates["matching"]
    assert est.shape == (test.n_atoms, 2) and est.dtype == np.float64
    # matching can only answer grid values of the training dictionary; the shifted grid has none in common
    grid = set(zip(train.t1_ms.tolist(), train.t2_ms.tolist()))
    assert all(pair in grid for pair in zip(est[:, 0].tolist(), est[:, 1].tolist()))
    assert not grid & set(zip(test.t1_ms.tolist(), test.t2_ms.tolist()))
    # baseline: capped at n, exact brute force agrees with the fast exact matcher on noiseless atoms
    assert res.baseline_n == test.n_atoms
    assert res.baseline_agrees == 1.0  # the timed brute force is float64: the exact matcher's answers
    assert 0.0 <= res.baseline_float32_agrees <= 1.0  # float32 is run alongside, untimed
    assert res.baseline_seconds > 0 and res.seconds["matching"] > 0
    # scores are the metrics of those estimates
    s = res.scores()
    assert set(s) == {"matching"}
    assert set(s["matching"]) == {f"{p}_{k}" for p in ("t1", "t2") for k in ("rmse_ms", "r2", "max_abs_ms")}
    err = est - np.stack([test.t1_ms, test.t2_ms], axis=1)
    assert s["matching"]["t1_rmse_ms"] == pytest.approx(np.sqrt(np.mean(err[:, 0] ** 2)))
    assert s["matching"]["t2_max_abs_ms"] == pytest.approx(np.max(np.abs(err[:, 1])))
    assert s["matching"]["t2_max_abs_ms"] >= 50.0  # every test T2 is half a step (50 ms) off the grid
    assert 0.0 < s["matching"]["t1_r2"] < 1.0


def test_synthetic_test_baseline_subset(dictionaries):
    train, test = dictionaries
    res = ev.synthetic_test({}, train, test, baseline_n=7)
    assert res.baseline_n == 7
    assert res.baseline_agrees in {k / 7 for k in range(8)}


def test_fresh_network_is_read_from_its_folder_or_absent(tmp_path, sequence):
    assert ev.fresh_network(sequence, models_dir=tmp_path) == {}  # no models/paper_resnet_fresh there
    shipped = ev.fresh_network(sequence)  # the repository's
    if shipped:
        assert list(shipped) == [ev.FRESH_NETWORK] and shipped[ev.FRESH_NETWORK].folder.name == ev.FRESH_FOLDER


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "10", None])
def test_synthetic_test_rejects_bad_baseline_n(dictionaries, bad):
    train, test = dictionaries
    with pytest.raises(ValueError, match="baseline_n"):
        ev.synthetic_test({}, train, test, baseline_n=bad)


def test_synthetic_test_with_a_tiny_untrained_network(dictionaries, tiny_model):
    train, test = dictionaries
    res = ev.synthetic_test({"tiny": tiny_model}, train, test, baseline_n=5)
    assert list(res.estimates) == ["matching", "tiny"]
    est = res.estimates["tiny"]
    assert est.shape == (test.n_atoms, 2) and np.all(np.isfinite(est))
    np.testing.assert_allclose(est, tiny_model.predict(test.atoms)[:, :2])
    assert res.seconds["tiny"] > 0
    assert set(res.scores()) == {"matching", "tiny"}


# -- ShippedNetwork.info ---------------------------------------------------------------------------
def test_shipped_network_info(tmp_path, tiny_model):
    (tmp_path / "model.keras").write_bytes(b"\0" * 2_500_000)
    log = [{"seconds": 3.0, "device": "cpu"}, {"seconds": 100.0}, {"seconds": 5.0, "device": "GPU:0", "backend": "jax",
                                                                     "cpu": "Xeon"}]
    net = runs.ShippedNetwork(tiny_model, tmp_path, log, {"date": "2026-11-25T10:00:00+00:00", "test": {"t1": 1.0}})
    info = net.info()
    assert info["weights"] == expected_parameter_count(NetworkConfig(**tiny_model.metadata["network"]))
    assert info["file_mb"] == 2.5
    assert info["epochs"] == 3 and info["seconds_per_epoch"] == 5.0  # median, robust to the slow epoch
    assert (info["train_device"], info["train_backend"], info["train_cpu"]) == ("GPU:0", "jax", "Xeon")
    assert info["trained"] == "2026-11-25" and info["recorded_test"] == {"t1": 1.0}
    empty = runs.ShippedNetwork(tiny_model, tmp_path, [], {}).info()
    assert empty["epochs"] == 0 and math.isnan(empty["seconds_per_epoch"]) and empty["train_device"] == "?"


def test_shipped_networks_skips_missing_folders(tmp_path, sequence):
    assert runs.shipped_networks(sequence, models_dir=tmp_path) == {}


# -- summary: signature, save, load ----------------------------------------------------------------
def _fake_dict(digest, t1, t2):
    return SimpleNamespace(sequence=SimpleNamespace(digest=digest), t1_ms=np.asarray(t1, float),
                           t2_ms=np.asarray(t2, float))


@pytest.fixture
def signature_inputs(tmp_path):
    folder = tmp_path / "net_a"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"weights v1")
    nets = {"paper network": runs.ShippedNetwork(model=None, folder=folder, log=[], provenance={})}
    return nets, _fake_dict("seq1", [100, 200], [10, 20]), _fake_dict("seq1", [105, 205], [15, 25])


def test_inputs_signature_is_stable_and_tracks_every_input(tmp_path, signature_inputs):
    nets, d, td = signature_inputs
    sig = ev.inputs_signature(nets, d, td)
    assert len(sig) == 64 and int(sig, 16) >= 0
    assert ev.inputs_signature(nets, d, td) == sig
    # the same bytes elsewhere (e.g. another checkout) give the same signature
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "model.keras").write_bytes(b"weights v1")
    moved = {"paper network": runs.ShippedNetwork(model=None, folder=other, log=[], provenance={})}
    assert ev.inputs_signature(moved, d, td) == sig
    changed = []
    (other / "model.keras").write_bytes(b"weights v2")
    changed.append(ev.inputs_signature(moved, d, td))
    changed.append(ev.inputs_signature({"compact network": nets["paper network"]}, d, td))
    changed.append(ev.inputs_signature({}, d, td))
    changed.append(ev.inputs_signature(nets, _fake_dict("seq2", [100, 200], [10, 20]), td))
    changed.append(ev.inputs_signature(nets, d, _fake_dict("seq1", [105, 206], [15, 25])))
    changed.append(ev.inputs_signature(nets, td, d))  # the two dictionaries' roles matter
    assert len(set(changed) | {sig}) == len(changed) + 1


def test_summary_path_layout(tmp_path, monkeypatch):
    assert ev.summary_path(tmp_path) == tmp_path / "evaluation" / "reproduction.json"
    monkeypatch.setenv("MRFBOOK_CACHE", str(tmp_path / "cache"))
    assert ev.summary_path() == tmp_path / "cache" / "evaluation" / "reproduction.json"


def test_save_and_load_summary_round_trip(tmp_path, monkeypatch):
    summary = {"format": ev.SUMMARY_FORMAT, "signature": "abc", "x": {"snr": math.inf, "list": [1, 2.5]}}
    path = ev.save_summary(summary, tmp_path / "sub" / "r.json")
    assert path == tmp_path / "sub" / "r.json" and path.is_file()
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed
    assert ev.load_summary("abc", path) == summary  # inf survives
    assert ev.load_summary("abd", path) is None
    # default location follows $MRFBOOK_CACHE
    monkeypatch.setenv("MRFBOOK_CACHE", str(tmp_path / "cache"))
    assert ev.load_summary("abc") is None  # nothing saved there yet
    default = ev.save_summary(summary)
    assert default == tmp_path / "cache" / "evaluation" / "reproduction.json"
    assert ev.load_summary("abc") == summary


@pytest.mark.parametrize("text", [
    '{"format": "mrfbook-reproduction/0", "signature": "abc"}',  # other format
    '{"signature": "abc"}',  # no format
    '{"format": "mrfbook-reproduction/1", "signature": "ab',  # truncated
    "",
    "[1, 2]",  # valid JSON, not an object
    '"abc"',
])
def test_load_summary_rejects_stale_or_corrupt_files(tmp_path, text):
    p = tmp_path / "r.json"
    p.write_text(text)
    assert ev.load_summary("abc", p) is None


def test_load_summary_rejects_binary_garbage_and_folders(tmp_path):
    p = tmp_path / "r.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    assert ev.load_summary("abc", p) is None
    assert ev.load_summary("abc", tmp_path) is None  # a folder, not a file


def test_summarise_reproduction_builds_the_structure_chapter_9_reads(phantom):
    synth = ev.SyntheticTest(t1_ms=np.array([100.0, 200.0, 300.0]), t2_ms=np.array([10.0, 20.0, 40.0]),
                             estimates={"matching": np.array([[101.0, 10.0], [199.0, 20.0], [300.0, 41.0]])},
                             seconds={"matching": np.float64(0.5)}, baseline_seconds=9.0, baseline_n=3,
                             baseline_agrees=1.0)
    maps = ev.MethodMaps(phantom.t1_ms.copy(), phantom.t2_ms + 1.0 * phantom.tissue_mask, 0.0, 0.1)
    under = ev.UndersampledResult(truth=None, zero_filled=None, lowrank=None, flor=None, maps={"FLOR": maps},
                                  sampling_fraction=np.float32(0.15), lowrank_iterations=np.int64(12),
                                  flor_iterations=30)
    s = ev.summarise_reproduction(signature="sig", synthetic=synth, full={"matching": maps}, undersampled=under,
                                  phantom=phantom, storage=ev.storage_comparison(10, 20, {}), network_info={},
                                  machine={"cpu": "test"})
    text = json.dumps(s, allow_nan=True)  # plain Python types only
    assert json.loads(text)["signature"] == "sig"
    assert s["format"] == ev.SUMMARY_FORMAT
    assert s["synthetic"]["n"] == 3 and s["synthetic"]["baseline_seconds"] == 9.0
    assert s["synthetic"]["scores"]["matching"]["t1_rmse_ms"] == pytest.approx(np.sqrt(2 / 3))
    assert s["full_sampling"]["n_tissue"] == 6
    assert s["full_sampling"]["scores"]["matching"]["t2_rmse_ms"] == pytest.approx(1.0)
    assert type(s["undersampled"]["sampling_fraction"]) is float
    assert type(s["undersampled"]["lowrank_iterations"]) is int
    assert s["undersampled"]["scores"]["FLOR"]["seconds"] == pytest.approx(0.1)
