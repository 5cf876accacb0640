"""End-to-end tests of ``python -m mrfbook`` (simulate, train, map) in a subprocess.

Small generated data only: a 50-time-point sequence, a coarse grid, 16x16 images.
Every refusal is checked for exit status 2, a message naming the problem and the
absence of any output file.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
L = 50
SIZE = 16
GRID = ["--t1-range", "50", "3000", "--t2-range", "10", "510", "--step", "50"]
# Tissues on the grid above (T1 50:50:3000, T2 10:50:510): matching must recover them exactly.
TISSUES = [(850.0, 60.0, 0.7), (1300.0, 110.0, 0.9), (400.0, 60.0, 1.0)]
HAVE_TRAINING = importlib.util.find_spec("mrfbook.nn.training") is not None
HAVE_WEIGHTS = importlib.util.find_spec("mrfbook.recon.weights") is not None
HAVE_MATCHING = importlib.util.find_spec("mrfbook.recon.matching") is not None
needs_matching = pytest.mark.skipif(not HAVE_MATCHING, reason="mrfbook.recon.matching not written yet")
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="mrfbook.recon.weights not written yet")
MAP_OUTPUTS = {"t1.npy", "t2.npy", "pd.npy", "mask.npy", "resolvable.npy", "t1.png", "t2.png", "pd.png", "summary.json"}


def run_cli(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run(
        [sys.executable, "-m", "mrfbook", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def write_sequence_csv(path: Path, sequence) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["flip_angle_deg", "tr_ms", "te_ms", "rf_phase_deg"])
        for row in zip(sequence.flip_angles_deg, sequence.tr_ms, sequence.te_ms, sequence.rf_phase_deg):
            writer.writerow([repr(float(v)) for v in row])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Sequence file, dictionary (made by the CLI), images, k-space and masks in one folder."""
    from mrfbook.physics.epg import simulate_fisp
    from mrfbook.physics.sequence import paper_sequence
    from mrfbook.recon.acquisition import UndersampledFourier

    folder = tmp_path_factory.mktemp("cli")
    sequence = paper_sequence(L)
    write_sequence_csv(folder / "seq.csv", sequence)
    other = paper_sequence(L, seed=1)  # same length, different TRs
    write_sequence_csv(folder / "other.csv", other)

    result = run_cli("simulate", "--sequence", "seq.csv", *GRID, "-o", "dict.npz", cwd=folder)
    assert result.returncode == 0, result.stderr

    yy, xx = np.mgrid[:SIZE, :SIZE]
    r = np.hypot(yy - SIZE / 2 + 0.5, xx - SIZE / 2 + 0.5)
    labels = np.select([r < 3, r < 5.5, r < 7.5], [1, 2, 3], 0)
    t1, t2, pd = (np.zeros((SIZE, SIZE)) for _ in range(3))
    for label, (a, b, c) in enumerate(TISSUES, start=1):
        t1[labels == label], t2[labels == label], pd[labels == label] = a, b, c
    mask = labels > 0
    atoms = simulate_fisp(sequence, np.array([t[0] for t in TISSUES]), np.array([t[1] for t in TISSUES]),
                          dtype=np.float64)
    images = np.zeros((SIZE, SIZE, L), dtype=np.complex64)
    for label, (_, _, c) in enumerate(TISSUES, start=1):
        # a constant receive phase, as a scanner would add
        images[labels == label] = c * atoms[label - 1] * np.exp(0.4j)
    np.save(folder / "images.npy", images)
    np.save(folder / "mask.npy", mask)
    full = UndersampledFourier(np.ones((L, SIZE, SIZE), dtype=bool))
    kspace = full.forward(images)
    np.save(folder / "kspace_lhw.npy", kspace)
    np.save(folder / "kspace_hwl.npy", np.moveaxis(kspace, 0, -1))
    return {"dir": folder, "t1": t1, "t2": t2, "pd": pd, "mask": mask, "images": images,
            "kspace": kspace, "sequence": sequence, "other": other}


def check_maps(out: Path, data: dict, *, t1_tol: float, t2_tol: float, pd_tol: float) -> None:
    assert MAP_OUTPUTS <= listing(out)
    assert not [n for n in listing(out) if n.startswith(".")], "temporary files left behind"
    mask = data["mask"]
    for key, tol in (("t1", t1_tol), ("t2", t2_tol), ("pd", pd_tol)):
        estimate = np.load(out / f"{key}.npy")
        assert estimate.shape == (SIZE, SIZE) and estimate.dtype == np.float64
        err = np.abs(estimate[mask] - data[key][mask])
        assert err.max() <= tol, f"{key}: max error {err.max():.4g} > {tol}"
        assert np.all(estimate[~mask] == 0)
    for png in ("t1.png", "t2.png", "pd.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sequence_digest"] == data["sequence"].digest
    n = int(mask.sum())
    assert summary["n_pixels_in_mask"] == summary["n_pixels_resolvable"] == summary["n_pixels_mapped"] == n
    assert summary["n_pixels_not_resolvable"] == 0
    np.testing.assert_array_equal(np.load(out / "resolvable.npy"), mask)
    rule = summary["resolvability"]
    assert rule["min_snr"] == 3.0 and rule["floor"] == pytest.approx(3.0 * rule["level"] * np.sqrt(L))
    assert set(summary["seconds"]) == {"reading", "restoration", "mapping", "writing", "total"}


# ------------------------------------------------------------------------------ help


@pytest.mark.parametrize("command", [[], ["simulate"], ["train"], ["map"]])
def test_help_on_every_command(command, tmp_path):
    result = run_cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m mrfbook" in result.stdout
    for word in {(): ["simulate", "train", "map"], ("simulate",): ["--t1-range", "--paper", "--sequence"],
                 ("train",): ["--epochs", "--compact", "--checkpoint-dir"],
                 ("map",): ["--kspace-layout", "--dictionary", "--model", "--restore"]}[tuple(command)]:
        assert word in result.stdout


def test_no_command_is_a_usage_error(tmp_path):
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "COMMAND" in result.stderr or "required" in result.stderr


# ------------------------------------------------------------------------------ simulate


def test_simulate_records_the_sequence_and_grid(data):
    from mrfbook.physics.dictionary import Dictionary

    dictionary = Dictionary.load(data["dir"] / "dict.npz", expected_sequence=data["sequence"])
    assert dictionary.n_timepoints == L
    assert dictionary.t1_ms.min() == 50 and dictionary.t1_ms.max() == 3000
    assert dictionary.t2_ms.min() == 10 and dictionary.t2_ms.max() == 510
    assert np.all(dictionary.t1_ms >= dictionary.t2_ms)


def test_simulate_paper_sequence_npy_and_npz_sequence_files_agree(data, tmp_path):
    seq = data["sequence"]
    table = np.stack([seq.flip_angles_deg, seq.tr_ms, seq.te_ms], axis=1)
    np.save(tmp_path / "seq.npy", table)
    np.savez(tmp_path / "seq.npz", flip_angle_deg=table[:, 0], tr_ms=table[:, 1], te_ms=table[:, 2])
    small = ["--t1-range", "100", "2000", "--t2-range", "20", "300", "--step", "200", "-q"]
    for name in ("seq.npy", "seq.npz"):
        result = run_cli("simulate", "--sequence", name, *small, "-o", f"{name}.npz", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # --quiet
    result = run_cli("simulate", "--paper", "--n-timepoints", str(L), *small, "-o", "paper.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    a, b, c = (np.load(tmp_path / f"{n}.npz") for n in ("seq.npy", "seq.npz", "paper"))
    assert str(a["sequence_digest"]) == str(b["sequence_digest"]) == str(c["sequence_digest"]) == seq.digest
    np.testing.assert_array_equal(a["atoms"], c["atoms"])


SIMULATE_FAILURES = {
    "missing sequence file": (["--sequence", "nope.csv"], "file not found"),
    "missing column": ("flip_angle_deg,tr_ms\n10,12\n", "te_ms"),
    "not a number": ("flip_angle_deg,tr_ms,te_ms\n10,12,2\nten,12,2\n", "'ten' is not a number"),
    "flip angle out of range": ("flip_angle_deg,tr_ms,te_ms\n10,12,2\n190,12,2\n", "flip_angles_deg"),
    "TE longer than TR": ("flip_angle_deg,tr_ms,te_ms\n10,12,2\n20,12,13\n", "te_ms"),
    "NaN in sequence": ("flip_angle_deg,tr_ms,te_ms\n10,12,2\nnan,12,2\n", "NaN"),
    "wrong output suffix": (["--paper", "-o", "dict.mat"], "must end in .npz"),
    "empty grid": (["--paper", "--t1-range", "10", "20", "--t2-range", "30", "40"], "T1 >= T2"),
    "bad step": (["--paper", "--step", "-5"], "--step"),
}


@pytest.mark.parametrize("case", sorted(SIMULATE_FAILURES))
def test_simulate_refuses_bad_input(case, tmp_path):
    spec, message = SIMULATE_FAILURES[case]
    if isinstance(spec, str):
        (tmp_path / "seq.csv").write_text(spec)
        args = ["--sequence", "seq.csv"]
    else:
        args = list(spec)
    if "-o" not in args:
        args += ["-o", "dict.npz"]
    before = listing(tmp_path)
    result = run_cli("simulate", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert listing(tmp_path) == before, "output written despite the error"


# ------------------------------------------------------------------------------ map


@needs_matching
def test_map_images_with_dictionary(data):
    result = run_cli("map", "--images", "images.npy", "--mask", "mask.npy", "--dictionary", "dict.npz",
                     "--sequence", "seq.csv", "--out", "maps_images", cwd=data["dir"])
    assert result.returncode == 0, result.stderr
    assert "matching" in result.stderr  # progress is reported
    check_maps(data["dir"] / "maps_images", data, t1_tol=1e-6, t2_tol=1e-6, pd_tol=1e-3)


@needs_matching
@pytest.mark.parametrize("layout", ["LHW", "HWL"])
def test_map_kspace_layouts_and_mat_files(data, layout, tmp_path):
    from scipy.io import savemat

    kspace = np.load(data["dir"] / f"kspace_{layout.lower()}.npy")
    savemat(tmp_path / "scan.mat", {"kspace": kspace, "roi": data["mask"].astype(np.uint8)})
    result = run_cli("map", "--kspace", "scan.mat:kspace", "--kspace-layout", layout, "--mask", "scan.mat:roi",
                     "--dictionary", data["dir"] / "dict.npz", "--out", "maps", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_maps(tmp_path / "maps", data, t1_tol=1e-6, t2_tol=1e-6, pd_tol=1e-3)


@pytest.fixture(scope="module")
def undersampled(data) -> dict:
    """The phantom's k-space at 50 % per frame (variable density), with its sampling masks, in one .npz."""
    from mrfbook.recon.acquisition import UndersampledFourier, variable_density_masks

    masks = variable_density_masks((SIZE, SIZE), L, sampling_ratio=0.5, seed=3)
    op = UndersampledFourier(masks)
    kspace = op.forward(data["images"])
    np.savez(data["dir"] / "scan_u.npz", kspace=kspace, sampling=masks)
    return {"kspace": kspace, "masks": masks, "op": op}


@needs_matching
@needs_weights
def test_map_undersampled_kspace_at_the_defaults(data, undersampled, tmp_path):
    """Undersampled k-space at the defaults: low-rank restoration with the weight chosen from the data."""
    from mrfbook.physics.dictionary import Dictionary
    from mrfbook.recon.matching import match_maps
    from mrfbook.recon.weights import restore

    result = run_cli("map", "--kspace", data["dir"] / "scan_u.npz:kspace", "--kspace-layout", "LHW",
                     "--sampling-mask", data["dir"] / "scan_u.npz:sampling", "--mask", data["dir"] / "mask.npy",
                     "--dictionary", data["dir"] / "dict.npz", "--max-iter", "40", "--out", "maps", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "low-rank" in result.stderr and "hold-out" in result.stderr
    out = tmp_path / "maps"
    assert MAP_OUTPUTS <= listing(out)
    summary = json.loads((out / "summary.json").read_text())
    rec = summary["restoration"]
    assert summary["restore"] == rec["method"] == "lowrank"
    assert rec["weight_chosen_by"] == "k-space hold-out"
    search = rec["weight_search"]
    assert rec["weight"] in search["candidates"] and len(search["holdout_errors"]) == len(search["candidates"])
    assert rec["weight"] == search["candidates"][int(np.argmin(search["holdout_errors"]))]
    assert rec["iterations"] >= 1 and isinstance(rec["converged"], bool) and rec["error_level"] > 0
    assert summary["resolvability"]["error_level"] == rec["error_level"]
    assert summary["seconds"]["restoration"] > 0
    # The command is a thin wrapper: the same restoration + matching in-process gives the same maps.
    mask = data["mask"]
    dictionary = Dictionary.load(data["dir"] / "dict.npz")
    restored = restore(undersampled["kspace"], undersampled["op"], method="lowrank", lam="auto", max_iter=40)
    assert restored.lam == rec["weight"] and restored.extra["error_level"] == pytest.approx(rec["error_level"])
    expected = match_maps(restored.images, dictionary, mask=mask, error_level=restored.extra["error_level"])
    t1 = np.load(out / "t1.npy")
    assert np.mean(t1[mask] == expected.t1_ms[mask]) > 0.95
    # ... and the restoration helps: T1 is closer to the truth than after a zero-filled reconstruction.
    op = undersampled["op"]
    zero_filled = match_maps(op.adjoint(undersampled["kspace"]), dictionary, mask=mask, min_snr=0)
    error = np.abs(t1[mask] - data["t1"][mask]).mean()
    assert error < 0.7 * np.abs(zero_filled.t1_ms[mask] - data["t1"][mask]).mean()


@needs_weights
def test_help_states_the_restorations_iteration_cap(tmp_path):
    from mrfbook.cli.map import RESTORATION_MAX_ITER
    from mrfbook.recon.weights import DEFAULT_MAX_ITER

    assert RESTORATION_MAX_ITER == DEFAULT_MAX_ITER


@needs_matching
@needs_weights
def test_map_with_a_given_weight_and_flor(data, undersampled, tmp_path):
    common = ["--kspace", data["dir"] / "scan_u.npz:kspace", "--kspace-layout", "LHW", "--sampling-mask",
              data["dir"] / "scan_u.npz:sampling", "--mask", data["dir"] / "mask.npy", "--dictionary",
              data["dir"] / "dict.npz", "-q"]
    result = run_cli("map", *common, "--restore", "lowrank", "--lam", "20", "--max-iter", "30", "--out", "lr",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rec = json.loads((tmp_path / "lr" / "summary.json").read_text())["restoration"]
    assert rec["weight"] == 20.0 and rec["weight_chosen_by"] == "given" and "weight_search" not in rec
    assert rec["max_iter"] == 30 and rec["iterations"] <= 30
    result = run_cli("map", *common, "--restore", "flor", "--max-iter", "10", "--out", "flor", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "flor" / "summary.json").read_text())
    assert summary["restore"] == "flor" and summary["restoration"]["iterations"] <= 10
    t1 = np.load(tmp_path / "flor" / "t1.npy")[data["mask"]]
    assert np.median(np.abs(t1 - data["t1"][data["mask"]])) <= 100


@needs_matching
def test_one_mapping_path_for_every_input_form(data, tmp_path):
    """Image stack, full k-space LHW and HWL, and k-space with an all-ones sampling mask: the same maps."""
    folder = data["dir"]
    np.save(tmp_path / "ones.npy", np.ones((SIZE, SIZE), dtype=np.uint8))
    forms = {
        "images": ["--images", folder / "images.npy"],
        "lhw": ["--kspace", folder / "kspace_lhw.npy", "--kspace-layout", "LHW"],
        "hwl": ["--kspace", folder / "kspace_hwl.npy", "--kspace-layout", "HWL"],
        "ones": ["--kspace", folder / "kspace_lhw.npy", "--kspace-layout", "LHW", "--sampling-mask", "ones.npy",
                 "--restore", "none"],
    }
    # without --mask: the background (0 in the stack, FFT round-off in k-space) must not become tissue
    outs = {}
    for name, args in forms.items():
        result = run_cli("map", *args, "--dictionary", folder / "dict.npz", "--out", name, "-q", cwd=tmp_path)
        assert result.returncode == 0, (name, result.stderr)
        assert result.stderr == "", (name, result.stderr)  # -q; no mask given: background is no warning
        outs[name] = {key: np.load(tmp_path / name / f"{key}.npy") for key in ("t1", "t2", "pd", "resolvable")}
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["restore"] == "none" and summary["restoration"] is None
        assert summary["n_pixels_resolvable"] == int(data["mask"].sum())
    reference = outs["images"]
    np.testing.assert_array_equal(reference["resolvable"], data["mask"])
    for name, maps in outs.items():
        np.testing.assert_array_equal(maps["resolvable"], reference["resolvable"], err_msg=name)
        np.testing.assert_array_equal(maps["t1"], reference["t1"], err_msg=name)  # the same atoms
        np.testing.assert_array_equal(maps["t2"], reference["t2"], err_msg=name)
        np.testing.assert_allclose(maps["pd"], reference["pd"], rtol=1e-5, atol=0, err_msg=name)  # float32 round-off


@needs_matching
def test_quiet_hides_progress_but_not_warnings(data, tmp_path):
    every = np.ones((SIZE, SIZE), dtype=bool)  # a mask that claims the background too
    np.save(tmp_path / "every.npy", every)
    args = ["map", "--images", data["dir"] / "images.npy", "--mask", "every.npy", "--dictionary",
            data["dir"] / "dict.npz"]
    result = run_cli(*args, "--out", "maps", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    n_out = int((~data["mask"]).sum())
    assert len(lines) == 1 and lines[0].startswith("mrfbook map: warning: ") and f"{n_out:,} of the" in lines[0]
    resolvable = np.load(tmp_path / "maps" / "resolvable.npy")
    np.testing.assert_array_equal(resolvable, data["mask"])
    summary = json.loads((tmp_path / "maps" / "summary.json").read_text())
    assert summary["n_pixels_in_mask"] == SIZE * SIZE and summary["n_pixels_not_resolvable"] == n_out
    # --min-snr 0 keeps only the round-off guard: the background is exactly 0, still not resolvable
    result = run_cli(*args, "--min-snr", "0", "--out", "loose", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loose = json.loads((tmp_path / "loose" / "summary.json").read_text())
    assert loose["resolvability"]["min_snr"] == 0 and loose["resolvability"]["floor"] == 0
    assert loose["n_pixels_not_resolvable"] == n_out
    # noise in the background: the rule leaves it out; with --min-snr 0 it is mapped as if it were tissue
    rng = np.random.default_rng(0)
    noisy = data["images"] + 0.01 * (rng.standard_normal(data["images"].shape)
                                     + 1j * rng.standard_normal(data["images"].shape))
    np.save(tmp_path / "noisy.npy", noisy.astype(np.complex64))
    for min_snr, expected in (("3", data["mask"]), ("0", every)):
        result = run_cli("map", "--images", "noisy.npy", "--dictionary", data["dir"] / "dict.npz",
                         "--min-snr", min_snr, "--out", f"noisy{min_snr}", "-q", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        np.testing.assert_array_equal(np.load(tmp_path / f"noisy{min_snr}" / "resolvable.npy"), expected)


def _bad_files(folder: Path, data: dict) -> None:
    """Write the malformed inputs used by the failure cases."""
    images = data["images"]
    np.save(folder / "flat.npy", images[:, :, 0])
    np.save(folder / "text.npy", np.array([["a", "b"], ["c", "d"]]))
    nan = images.copy()
    nan[3, 4, 5] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "short.npy", images[:, :, :40])
    np.save(folder / "mask_small.npy", np.ones((8, 8), bool))
    np.save(folder / "mask_values.npy", np.full((SIZE, SIZE), 2))
    np.savez(folder / "two.npz", a=images, b=images)
    (folder / "broken.npz").write_bytes(b"not a zip file")


MAP_FAILURES = {
    "missing images": (["--images", "nothere.npy"], "file not found: nothere.npy"),
    "missing dictionary": (["--images", "images.npy", "--dictionary", "nothere.npz"], "--dictionary: file not found"),
    "2-D images": (["--images", "flat.npy"], "expected a 3-D image stack"),
    "text dtype": (["--images", "text.npy"], "dtype <U1 is not allowed"),
    "NaN values": (["--images", "nan.npy"], "NaN or infinite"),
    "sequence length disagrees": (["--images", "short.npy"], "L = 40 time points"),
    "mask shape": (["--images", "images.npy", "--mask", "mask_small.npy"], "--mask: shape (8, 8)"),
    "mask values": (["--images", "images.npy", "--mask", "mask_values.npy"], "only 0/1"),
    "ambiguous npz": (["--images", "two.npz"], "holds several arrays"),
    "unknown key": (["--images", "two.npz:c"], "no array named 'c'"),
    "unreadable file": (["--images", "broken.npz"], "cannot read"),
    "unsupported type": (["--images", "seq.csv"], "unsupported file type '.csv'"),
    "kspace without layout": (["--kspace", "kspace_hwl.npy"], "--kspace-layout: required"),
    "kspace wrong layout": (["--kspace", "kspace_hwl.npy", "--kspace-layout", "LHW"], "L = 16 time points"),
    "restore needs kspace": (["--images", "images.npy", "--restore", "lowrank"], "--restore"),
    "flor needs kspace": (["--images", "images.npy", "--restore", "flor"], "--restore flor: restoration needs k-space"),
    "restore needs sampling mask": (["--kspace", "kspace_lhw.npy", "--kspace-layout", "LHW", "--restore", "lowrank"],
                                    "--sampling-mask: required"),
    "unknown restoration": (["--images", "images.npy", "--restore", "wavelet"], "invalid choice: 'wavelet'"),
    "negative weight": (["--kspace", "kspace_lhw.npy", "--kspace-layout", "LHW", "--lam", "-1"],
                        "--lam: must be 'auto' or a number >= 0"),
    "weight not a number": (["--kspace", "kspace_lhw.npy", "--kspace-layout", "LHW", "--lam", "big"],
                            "--lam: must be 'auto' or a number >= 0"),
    "infinite weight": (["--kspace", "kspace_lhw.npy", "--kspace-layout", "LHW", "--lam", "inf"], "--lam: must be"),
    "weight with images": (["--images", "images.npy", "--lam", "5"], "--lam: only used to restore k-space"),
    "weight without restoration": (["--kspace", "kspace_lhw.npy", "--kspace-layout", "LHW", "--lam", "5"],
                                   "--lam: only used with a restoration, and the k-space is fully sampled"),
    "zero iterations": (["--kspace", "kspace_lhw.npy", "--kspace-layout", "LHW", "--max-iter", "0"],
                        "--max-iter: must be an integer >= 1"),
    "fractional iterations": (["--kspace", "kspace_lhw.npy", "--kspace-layout", "LHW", "--max-iter", "2.5"],
                              "--max-iter: must be an integer >= 1"),
    "negative min-snr": (["--images", "images.npy", "--min-snr", "-1"], "--min-snr: must be a number >= 0"),
    "NaN min-snr": (["--images", "images.npy", "--min-snr", "nan"], "--min-snr: must be a number >= 0"),
    "text min-snr": (["--images", "images.npy", "--min-snr", "high"], "--min-snr: must be a number >= 0"),
    "dictionary of another sequence": (["--images", "images.npy", "--sequence", "other.csv"],
                                       "another sequence: "),
    "no method": (["--images", "images.npy", "--dictionary", None], "one of the arguments --dictionary --model"),
    "out is a file": (["--images", "images.npy", "--out", "seq.csv"], "not a folder"),
}


@pytest.mark.parametrize("case", sorted(MAP_FAILURES))
def test_map_refuses_bad_input(case, data):
    folder = data["dir"]
    if not (folder / "flat.npy").exists():
        _bad_files(folder, data)
    spec, message = MAP_FAILURES[case]
    args = list(spec)
    if "--dictionary" not in args and "--model" not in args:
        args += ["--dictionary", "dict.npz"]
    if None in args:  # drop an option on purpose
        i = args.index(None)
        del args[i - 1:i + 1]
    if "--out" not in args:
        args += ["--out", f"out_{case.replace(' ', '_')}"]
    before = listing(folder)
    result = run_cli("map", *args, cwd=folder)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert listing(folder) == before, "output written despite the error"


# ------------------------------------------------------------------------------ train


@pytest.mark.skipif(not HAVE_TRAINING, reason="mrfbook.nn.training not written yet")
def test_train_then_map_with_the_model(data, tmp_path):
    folder = data["dir"]
    result = run_cli("train", folder / "dict.npz", "--output", "model.keras", "--compact", "--epochs", "2",
                     "--batch-size", "64", "--checkpoint-dir", "ckpt", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert listing(tmp_path) >= {"model.keras", "model.json", "ckpt"}
    assert not [n for n in listing(tmp_path) if n.startswith(".")], "temporary files left behind"
    assert json.loads((tmp_path / "model.json").read_text())["sequence_digest"] == data["sequence"].digest

    result = run_cli("map", "--images", folder / "images.npy", "--mask", folder / "mask.npy",
                     "--model", "model.keras", "--out", "maps", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "maps"
    for key in ("t1", "t2", "pd"):
        values = np.load(out / f"{key}.npy")[data["mask"]]
        assert np.all(np.isfinite(values))
    # A 2-epoch network is not accurate, but its PD is a least-squares fit: positive in tissue.
    assert np.all(np.load(out / "pd.npy")[data["mask"]] > 0)

    # The model records its sequence: data from another sequence is refused, and so is a
    # sequence of another length.
    before = listing(tmp_path)
    for extra, message in ((["--sequence", folder / "other.csv"], "trained for another sequence"),
                           (["--paper", "--n-timepoints", "64"], "trained for another sequence")):
        result = run_cli("map", "--images", folder / "images.npy", "--model", "model.keras", *extra,
                         "--out", "refused", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert listing(tmp_path) == before
    np.save(tmp_path / "short.npy", data["images"][:, :, :40])
    before = listing(tmp_path)
    result = run_cli("map", "--images", "short.npy", "--model", "model.keras", "--out", "refused", cwd=tmp_path)
    assert result.returncode == 2
    assert "L = 40 time points" in result.stderr and "--model" in result.stderr
    assert listing(tmp_path) == before
    # The .keras file carries its metadata: without the sidecar the sequence is still checked
    # (a model file with no metadata at all is refused: tests/test_mapping.py).
    (tmp_path / "model.json").rename(tmp_path / "elsewhere.json")
    before = listing(tmp_path)
    result = run_cli("map", "--images", folder / "images.npy", "--model", "model.keras",
                     "--sequence", folder / "other.csv", "--out", "refused", cwd=tmp_path)
    assert result.returncode == 2
    assert "trained for another sequence" in result.stderr
    assert listing(tmp_path) == before


@pytest.mark.skipif(not HAVE_TRAINING, reason="mrfbook.nn.training not written yet")
def test_train_on_fresh_tissues(data, tmp_path):
    result = run_cli("train", data["dir"] / "dict.npz", "--output", "fresh.keras", "--compact", "--epochs", "1",
                     "--batch-size", "64", "--fresh-tissues", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "fresh.json").read_text())
    assert meta["training"]["fresh_tissues"] is True, meta["training"]


def test_train_refuses_bad_input(data, tmp_path):
    folder = data["dir"]
    before = listing(tmp_path)
    for args, message in (
        (["nothere.npz", "-o", "m.keras"], "DICT.npz: file not found"),
        ([folder / "dict.npz", "-o", "m.h5"], "must end in .keras"),
        ([folder / "dict.npz", "-o", "m.keras", "--epochs", "0"], "--epochs must be > 0"),
        ([folder / "seq.csv", "-o", "m.keras"], "cannot use"),
    ):
        result = run_cli("train", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr, result.stderr
        assert listing(tmp_path) == before
