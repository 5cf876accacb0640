"""The trained networks committed under ``models/`` load under this backend and give their logged accuracy.

For every ``models/<name>/model.keras``: the file loads with the paper sequence as its expected
sequence, its metadata, log and provenance agree with each other, and the network, evaluated
now on the full shifted test grid, reproduces the RMSE and R² its training run recorded in
``provenance.json`` (0.1 % tolerance: the run may have used another backend or device).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrfbook.analysis.experiments import evaluate_on_dictionary
from mrfbook.nn.model import load_trained_model
from mrfbook.nn.runs import read_log
from mrfbook.physics.dictionary import cached_dictionary
from mrfbook.physics.sequence import paper_sequence

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = sorted(p.parent.name for p in MODELS.glob("*/model.keras"))


def test_at_least_one_model_is_shipped():
    assert {"paper_resnet", "compact_resnet"} <= set(SHIPPED), SHIPPED


@pytest.fixture(scope="module")
def test_grid():
    return cached_dictionary(paper_sequence(), grid="test")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_records_agree(name):
    folder = MODELS / name
    prov = json.loads((folder / "provenance.json").read_text())
    log = read_log(folder / "training_log.jsonl")
    config = json.loads((folder / "config.json").read_text())
    assert prov["epochs_completed"] == len(log) == config["epochs"], (prov["epochs_completed"], len(log))
    assert [r["epoch"] for r in log] == list(range(1, len(log) + 1))
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) for r in log)
    side = json.loads((folder / "model.json").read_text())
    # the paper's sequence, up to the round-off of the machine that generates it (FispSequence.matches)
    assert prov["sequence_digest"] == side["sequence_digest"] and paper_sequence().matches(side["sequence"])
    assert (folder / "README.md").is_file(), "every shipped model documents how it was produced"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_logged_accuracy(name, test_grid):
    folder = MODELS / name
    prov = json.loads((folder / "provenance.json").read_text())
    model = load_trained_model(folder / "model.keras", expected_sequence=paper_sequence())
    now = evaluate_on_dictionary(model, test_grid)
    assert now["n"] == prov["test"]["n"] == test_grid.n_atoms
    for key in ("t1_rmse_ms", "t2_rmse_ms"):
        assert now[key] == pytest.approx(prov["test"][key], rel=1e-3), key
    for key in ("t1_r2", "t2_r2"):
        assert now[key] == pytest.approx(prov["test"][key], abs=1e-6), key


def _compile_config(path: Path) -> dict:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("config.json")).get("compile_config") or {}


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("compile", [False, True])
def test_shipped_model_loads_with_and_without_compile(name, compile):
    """Every model file loads under the current code, also the ones whose compile config names the
    old module ``mrfbook.training`` for ``ParameterRMSE`` (found by its registered name)."""
    path = MODELS / name / "model.keras"
    model = load_trained_model(path, compile=compile).model
    recorded = _compile_config(path)
    if compile and recorded:
        assert model.compiled
        assert model.loss.__name__ == "rmse_loss"
        metrics = model._compile_config.config["metrics"]
        assert [type(m).__name__ for m in metrics] == ["ParameterRMSE", "ParameterRMSE"]
    assert model.output_shape[-1] == 2


def test_compile_true_needs_no_prior_import_of_the_losses():
    """A fresh interpreter that imports only :mod:`mrfbook.nn.model` restores every compile config
    (the registration must not depend on some other module having imported the losses first)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mrfbook.nn.model import load_trained_model\n"
        "assert 'mrfbook.nn.losses' not in sys.modules\n"
        f"for p in sorted(Path({str(MODELS)!r}).glob('*/model.keras')):\n"
        "    load_trained_model(p, compile=True)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
