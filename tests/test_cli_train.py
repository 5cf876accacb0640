"""Tests of ``python -m mrfbook train`` (mrfbook/cli/train.py) and of scripts/train_full.py, its wrapper.

In-process (``mrfbook.cli.main``) on a tiny dictionary: a 50-time-point sequence on a coarse grid,
the compact network, one or two epochs. Every refusal is checked for exit status 2, a message
naming the option and the absence of any new file.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from mrfbook.cli import main
from mrfbook.paper import paper_value
from mrfbook.physics.dictionary import build_dictionary
from mrfbook.physics.sequence import paper_sequence

ROOT = Path(__file__).resolve().parents[1]
L = 50


@pytest.fixture(scope="module")
def dict_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train_cli")
    t1, t2 = np.meshgrid(np.linspace(200.0, 2000.0, 12), np.linspace(20.0, 200.0, 10), indexing="ij")
    keep = t1 >= t2
    build_dictionary(paper_sequence(L), t1[keep], t2[keep]).save(folder / "dict.npz")
    return folder / "dict.npz"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def run(capsys, *args) -> tuple[int, str]:
    try:
        rc = main(["train", *map(str, args)])
    except SystemExit as exc:  # argparse refusals
        rc = exc.code
    return rc, capsys.readouterr().err


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


FAST = ["--compact", "--epochs", "1", "--batch-size", "32"]


@pytest.fixture(scope="module")
def first_run(dict_file, cache_dir, tmp_path_factory):
    """A run folder with checkpoints, test-grid metrics, noise and a subset (shared by later tests)."""
    folder = tmp_path_factory.mktemp("first")
    run_dir = folder / "run"
    rc = main(["train", str(dict_file), *FAST, "--run-dir", str(run_dir), "--checkpoint-dir", str(run_dir / "ckpt"),
               "--test-grid", "--cache-dir", str(cache_dir), "--max-atoms", "90", "--noise-snr", "20", "30",
               "--lr-decay-every", "3", "--no-progress-bar"])
    assert rc == 0
    return run_dir


def test_run_dir_holds_the_full_run_folder(first_run, dict_file):
    from mrfbook.nn.runs import read_run_folder

    files = listing(first_run)
    assert {"model.keras", "model.json", "training_log.jsonl", "history.json", "config.json",
            "provenance.json", "ckpt"} <= files
    assert not [n for n in files if Path(n).name.startswith(".")], "temporary files left behind"
    run = read_run_folder(first_run, expected_sequence=paper_sequence(L))
    prov = run.provenance
    assert prov["test"]["n"] == 90 and prov["n_test_atoms"] == 90 and prov["subset"] is True
    assert prov["n_train_atoms"] == 90 and prov["epochs_completed"] == 1
    assert prov["noise_snr_db"] == [20.0, 30.0] and prov["fresh_tissues"] is False
    assert prov["paper_test"]["t1_rmse_ms"] == paper_value("synthetic", "t1_rmse_ms")
    assert prov["paper_test"]["t2_r2"] == paper_value("synthetic", "t2_r2")
    assert np.isfinite(prov["test"]["t1_rmse_ms"]) and prov["sequence_digest"] == paper_sequence(L).digest
    assert run.config["lr_decay_every"] == 3 and run.config["noise_snr_db"] == [20.0, 30.0]
    assert [r["epoch"] for r in run.log] == [1] and len(run.history["loss"]) == 1


def test_continue_with_a_new_optimizer_on_fresh_tissues(first_run, dict_file, tmp_path, capsys):
    rc, err = run(capsys, dict_file, *FAST, "--max-atoms", "90", "--init-from", first_run / "model.keras",
                  "--reset-optimizer", "--fresh-tissues", "--learning-rate", "1e-4", "--noise-snr", "20", "30",
                  "--lr-decay-every", "3", "--run-dir", tmp_path / "tuned", "--output", tmp_path / "tuned.keras")
    assert rc == 0, err
    assert "from " + str(first_run / "model.keras") in err
    prov = json.loads((tmp_path / "tuned" / "provenance.json").read_text())
    assert prov["continued_from"]["path"] == str(first_run / "model.keras")
    assert prov["reset_optimizer"] is True and prov["fresh_tissues"] is True and prov["test"] is None
    assert json.loads((tmp_path / "tuned.json").read_text())["training"]["learning_rate"] == 1e-4
    # without a checkpoint folder the log still reaches the run folder
    assert [json.loads(x)["epoch"] for x in (tmp_path / "tuned" / "training_log.jsonl").read_text().splitlines()] == [1]
    assert listing(tmp_path) == {"tuned", "tuned.keras", "tuned.json"} | {f"tuned/{n}" for n in listing(tmp_path / "tuned")}


def test_quiet_hides_progress_but_not_warnings(dict_file, tmp_path, capsys):
    rc, err = run(capsys, dict_file, *FAST, "--max-atoms", "100000", "-o", tmp_path / "m.keras", "-q")
    assert rc == 0, err
    assert "warning: --max-atoms 100000 is more than the" in err
    assert "training the" not in err and "wrote" not in err
    assert listing(tmp_path) == {"m.keras", "m.json"}


@pytest.mark.parametrize("args, message", [
    (["-o", "m.keras", "--reset-optimizer"], "--reset-optimizer: needs --init-from"),
    (["-o", "m.keras", "--init-from", "missing.keras"], "--init-from: file not found"),
    (["-o", "m.keras", "--noise-snr", "40", "10"], "--noise-snr LO HI: noise_snr_db must be"),
    (["-o", "m.keras", "--noise-snr", "nan", "10"], "--noise-snr LO HI: noise_snr_db must be"),
    (["-o", "m.keras", "--lr-decay-every", "0"], "--lr-decay-every must be > 0"),
    (["-o", "m.keras", "--max-atoms", "0"], "--max-atoms must be > 0"),
    (["-o", "m.keras", "--seed", "-1"], "--seed must be an integer >= 0"),
    (["-o", "m.keras", "--learning-rate", "1e-3", "--paper-exact", "--epochs", "x"], "--epochs must be a int > 0"),
    ([], "--output/--run-dir: give a model file"),
    (["--run-dir", "afile"], "--run-dir: afile exists and is not a folder"),
    (["--run-dir", "nowhere/run"], "--run-dir: folder nowhere does not exist"),
    (["-o", "m.keras", "--paper-dictionary"], "give a dictionary file or --paper-dictionary"),
    (["-o", "m.keras", "--max-atoms", "1"], "too few to hold out a validation fraction"),
])
def test_refusals_name_the_option_and_write_nothing(dict_file, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    before = listing(tmp_path)
    rc, err = run(capsys, dict_file, *FAST, *args)
    assert rc == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert listing(tmp_path) == before, "output written despite the error"


def test_init_from_another_network_is_refused(first_run, dict_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the first run is the compact network; continuing it as the paper network is refused before training
    rc, err = run(capsys, dict_file, "--epochs", "1", "--max-atoms", "90", "--init-from", first_run / "model.keras",
                  "-o", "m.keras")
    assert rc == 2 and "--init-from: initial_model" in err and "network" in err, err
    assert listing(tmp_path) == set()


def _train_full_module():
    spec = importlib.util.spec_from_file_location("train_full", ROOT / "scripts" / "train_full.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_full_is_the_cli_on_the_paper_dictionary(tmp_path, monkeypatch):
    module = _train_full_module()
    seen = []
    monkeypatch.setattr(module, "cli_main", lambda argv: seen.append(argv) or 0)
    out = tmp_path / "runs" / "smoke"
    assert module.main(["--out", str(out), "--max-atoms", "2000", "--epochs", "1", "--compact",
                        "--noise-snr", "10", "40", "--no-progress"]) == 0
    assert seen == [["train", "--paper-dictionary", "--test-grid", "--run-dir", str(out), "--checkpoint-dir",
                     str(out / "checkpoints"), "--max-atoms", "2000", "--epochs", "1", "--compact",
                     "--noise-snr", "10", "40", "--no-progress-bar"]]
    assert (tmp_path / "runs").is_dir()
    # every documented option of the script is an option of the command
    from mrfbook.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {s for a in sub._actions for s in a.option_strings}
    for opt in ("--epochs", "--batch-size", "--max-atoms", "--init-from", "--reset-optimizer", "--fresh-tissues",
                "--learning-rate", "--lr-decay-every", "--noise-snr", "--compact", "--cache-dir", "--paper-exact",
                "--mixed-precision", "--seed"):
        assert opt in options, opt
