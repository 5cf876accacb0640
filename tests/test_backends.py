"""Beyond one CPU: the JAX backend, data-parallel training and mixed precision (mrfbook/nn/distribution.py).

The network, the training loop, saving and loading run under Keras' JAX backend on the CPU, in
a subprocess (``KERAS_BACKEND`` is fixed per process) started with two virtual XLA host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``) and with ``import tensorflow`` blocked,
as on the GPU machine, which has no TensorFlow. That process trains once on one device through
the library, once data-parallel on both devices through scripts/gpu_check.py (``mrfbook train
--data-parallel`` into a run folder, then a timed map), and once with mixed precision; it
predicts with its own model and with a model trained here under TensorFlow. This process
(TensorFlow) loads the JAX model and compares.

Data: 400 atoms of a 50-time-point paper sequence (T1 200..2000 ms x T2 20..200 ms, 20 x 20),
the compact network, 2 epochs of batch 32 (10 steps per epoch).

Tolerances, from measurements on the 2-core machine (JAX 0.10.2, Keras 3.15.1, TF 2.21):

- Across backends, the same saved weights give the same T1 and T2 within 1e-5 of each column's
  largest value (float32 arithmetic in another order: the round-off follows the size of the
  activations, not of each output). Measured: at most 1.4e-6 of the column's largest value,
  median relative difference 1e-7 to 7e-7; element by element up to 1e-4, but only on outputs
  near zero (this barely trained network predicts T2 from -20 to 280 ms).
- Data-parallel on 2 devices vs one device, same global batch: final training and validation
  loss within rtol 1e-2. The two runs are deterministic and differ only by float summation
  order, but two epochs of fast early training amplify round-off: measured over seeds 0-3 of
  this run, the data-parallel final loss differs by 1.45e-3 (seed 0, the test's; validation
  2.5e-4) and by <= 2.7e-7 for the others, and multiplying the initial kernels by (1 + 2**-23),
  about one float32 ulp, moves seed 0's single-device final loss by the same 1.45e-3. So 1e-2 is 7x
  above round-off, while a wrong step is far outside: the same runs with half the batch (what
  one device alone would see) end 46-56 % away in loss.
- Mixed precision (bfloat16 compute, 8-bit mantissa, rounding 2**-9 = 0.2 % per operation):
  the same float32 weights run in a mixed_bfloat16 model give T1/T2 within a relative RMS of
  5e-2 of the float32 model (measured 9.0e-3 under JAX, 1.5e-2 under TF); a mixed run's
  first-epoch loss, from the same initial weights, is within 5 % of the float32 run's (measured
  0.9 % under JAX, 0.3 % under TF). Later epochs drift further apart (fast early training
  amplifies round-off), so they are only checked to be finite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from mrfbook.cli import main as cli_main
from mrfbook.nn.distribution import (
    batch_sizes,
    check_data_parallel_backend,
    check_even_batches,
    mixed_precision_policy,
)
from mrfbook.nn.model import load_trained_model
from mrfbook.nn.network import build_from_config, compact_config
from mrfbook.nn.training import TrainingConfig, train
from mrfbook.physics.dictionary import Dictionary, build_dictionary
from mrfbook.physics.sequence import paper_sequence

ROOT = Path(__file__).resolve().parents[1]
L = 50
EPOCHS, BATCH = 2, 32
CROSS_BACKEND_TOL = 1e-5
DATA_PARALLEL_LOSS_RTOL = 1e-2
MIXED_PREDICTION_REL_RMS = 5e-2
MIXED_FIRST_LOSS_RTOL = 5e-2


def config(**changes) -> TrainingConfig:
    """The run of these tests; the same as ``mrfbook train --compact --epochs 2 --batch-size 32`` (Adam 1e-3)."""
    return TrainingConfig(**{"network": compact_config(L), "epochs": EPOCHS, "batch_size": BATCH, **changes})


# The JAX side, run as ``python -c JAX_SIDE WORKDIR TESTS_DIR SCRIPTS_DIR`` with KERAS_BACKEND=jax and two
# host devices.
JAX_SIDE = textwrap.dedent('''
    import importlib.abc, json, sys
    from pathlib import Path

    attempts = []

    class NoTensorFlow(importlib.abc.MetaPathFinder):  # the GPU machine has no TensorFlow
        def find_spec(self, name, path, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    work = Path(sys.argv[1])
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    import keras
    import mrfbook.nn.training, mrfbook.nn.inference, mrfbook.nn.runs, mrfbook.nn.distribution
    from mrfbook.nn.runs import runtime_info
    info = runtime_info()
    out = {"backend": keras.backend.backend(), "devices": keras.distribution.list_devices(),
           "tf_attempts_at_import": list(attempts), "device": info["device"]}
    from test_backends import config
    from mrfbook.nn.model import load_trained_model
    from mrfbook.nn.network import build_from_config
    from mrfbook.nn.training import train
    from mrfbook.physics.dictionary import Dictionary

    d = Dictionary.load(work / "dict.npz")
    x = np.asarray(d.atoms)
    single = train(d, config(), progress=False)
    single.save(work / "jax.keras")
    np.save(work / "jax_pred.npy", single.trained_model().predict(x))
    out["single_loss"] = single.history["loss"]
    out["single_val_loss"] = single.history["val_loss"]
    # the model trained under TensorFlow, read here
    np.save(work / "tf_model_under_jax.npy", load_trained_model(work / "tf.keras").predict(x))
    # data-parallel over the two host devices through scripts/gpu_check.py, i.e. 'mrfbook train
    # DICT --compact --epochs 2 --batch-size 32 --data-parallel --run-dir ...' and a timed map
    sys.path.insert(0, sys.argv[3])
    import gpu_check
    out["dp_rc"] = gpu_check.main(["--dictionary", str(work / "dict.npz"), "--compact", "--epochs", "2",
                                   "--batch-size", "32", "--data-parallel", "--map-size", "8", "--repeats", "1",
                                   "--run-dir", str(work / "dp_run")])
    # mixed precision: the run, and the float32 run's weights computed in bfloat16
    mixed = train(d, config(mixed_precision=True), progress=False)
    out["mixed_loss"] = mixed.history["loss"]
    out["mixed_weight_dtypes"] = sorted({str(w.dtype) for w in mixed.model.weights})
    out["mixed_policies"] = sorted({layer.dtype_policy.name for layer in mixed.model.layers})
    out["mixed_raw_dtype"] = str(mixed.model.predict(x[:4].real.astype("float32"), verbose=0).dtype)
    out["mixed_pred_dtype"] = str(mixed.trained_model().predict(x[:4]).dtype)
    mixed.save(work / "jax_mixed.keras")
    m = build_from_config(single.config.network, dtype_policy="mixed_bfloat16")
    m.set_weights(single.model.get_weights())
    trained = single.trained_model()
    trained.model = m
    np.save(work / "jax_bf16_same_weights.npy", trained.predict(x))
    out["tf_modules"] = sorted(k for k in sys.modules if k.split(".")[0] == "tensorflow")
    (work / "jax_side.json").write_text(json.dumps(out))
''')


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("backends")
    t1, t2 = np.meshgrid(np.linspace(200.0, 2000.0, 20), np.linspace(20.0, 200.0, 20), indexing="ij")
    build_dictionary(paper_sequence(L), t1.ravel(), t2.ravel()).save(folder / "dict.npz")
    return folder


@pytest.fixture(scope="module")
def dictionary(work) -> Dictionary:
    return Dictionary.load(work / "dict.npz")


@pytest.fixture(scope="module")
def tf_run(work, dictionary):
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"this side of the comparison runs under TensorFlow; this process runs {keras.backend.backend()}")
    result = train(dictionary, config(), progress=False)
    result.save(work / "tf.keras")
    np.save(work / "tf_pred.npy", result.trained_model().predict(np.asarray(dictionary.atoms)))
    return result


@pytest.fixture(scope="module")
def jax_side(work, tf_run) -> dict:
    assert importlib.util.find_spec("jax") is not None, "jax is not installed: pip install -e '.[test]' (CPU wheel)"
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", JAX_SIDE, str(work), str(Path(__file__).parent), str(ROOT / "scripts")],
                          env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "jax_side.json").read_text())


# ----------------------------------------------------------------------------- JAX backend, both ways
def test_jax_side_ran_on_two_cpu_devices_without_tensorflow(jax_side):
    assert jax_side["backend"] == "jax"
    assert jax_side["devices"] == ["cpu:0", "cpu:1"]
    assert jax_side["device"].startswith("cpu")
    assert jax_side["tf_attempts_at_import"] == [], "importing mrfbook.nn under JAX tried to import tensorflow"
    assert jax_side["tf_modules"] == []
    for key in ("single_loss", "single_val_loss", "mixed_loss"):
        assert len(jax_side[key]) == EPOCHS and np.all(np.isfinite(jax_side[key]))
    assert jax_side["single_loss"][-1] < jax_side["single_loss"][0]


def test_model_trained_under_jax_predicts_the_same_under_tensorflow(jax_side, work, dictionary):
    here = load_trained_model(work / "jax.keras").predict(np.asarray(dictionary.atoms))
    there = np.load(work / "jax_pred.npy")
    assert here.dtype == np.float64 and np.all(np.isfinite(here))
    assert_same_predictions(here, there)


def test_model_trained_under_tensorflow_predicts_the_same_under_jax(jax_side, work):
    assert_same_predictions(np.load(work / "tf_model_under_jax.npy"), np.load(work / "tf_pred.npy"))


# ----------------------------------------------------------------------------- data parallel
def test_data_parallel_cli_run_matches_the_single_device_run(jax_side, work):
    assert jax_side["dp_rc"] == 0
    run = work / "dp_run"
    check = json.loads((run / "gpu_check.json").read_text())  # scripts/gpu_check.py's record
    assert check["device"] == "cpu: cpu (x2)" and check["backend"] == "jax" and check["data_parallel"] is True
    assert check["tensorflow_imported"] is False and check["map_pixels"] == 64
    assert len(check["epoch_seconds"]) == EPOCHS and check["predict_parameters_s"] > 0
    history = json.loads((run / "history.json").read_text())
    assert json.loads((run / "config.json").read_text())["data_parallel"] is True
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["backend"] == "jax"
    assert prov["distribution"] == {"kind": "DataParallel", "devices": ["cpu:0", "cpu:1"]}
    np.testing.assert_allclose(history["loss"][-1], jax_side["single_loss"][-1], rtol=DATA_PARALLEL_LOSS_RTOL)
    np.testing.assert_allclose(history["val_loss"][-1], jax_side["single_val_loss"][-1], rtol=DATA_PARALLEL_LOSS_RTOL)
    # the data-parallel model (variables replicated on both devices) saved and loads here
    pred = load_trained_model(run / "model.keras").predict(np.zeros((1, L)) + 1.0)
    assert pred.shape == (1, 2) and np.all(np.isfinite(pred))


def test_data_parallel_refused_under_tensorflow(dictionary):
    if keras.backend.backend() == "jax":
        pytest.skip("this process runs JAX, which can train data-parallel")
    with pytest.raises(ValueError, match=r"^data_parallel: .*KERAS_BACKEND=jax"):
        train(dictionary, config(data_parallel=True), progress=False)


def test_cli_data_parallel_refused_under_tensorflow(work, tmp_path, capsys):
    if keras.backend.backend() == "jax":
        pytest.skip("this process runs JAX, which can train data-parallel")
    try:
        rc = cli_main(["train", str(work / "dict.npz"), "--compact", "--epochs", "1", "--data-parallel",
                       "--run-dir", str(tmp_path / "run")])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and "--data-parallel: data-parallel training needs the JAX backend" in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_data_parallel_backend_check_names_the_option():
    assert check_data_parallel_backend("jax") == "jax"
    for backend in ("tensorflow", "torch"):
        with pytest.raises(ValueError, match=rf"^--data-parallel: .*{backend!r} backend"):
            check_data_parallel_backend(backend, option="--data-parallel")


def test_uneven_batches_are_refused_naming_the_cause():
    assert batch_sizes(160, 48) == [48, 16] and batch_sizes(40, 1024) == [40] and batch_sizes(64, 32) == [32]
    check_even_batches(2, batch_size=32, n_train=320, n_val=80, validation_batch_size=1024)
    with pytest.raises(ValueError, match=r"^batch_size must be a multiple of the 2 devices.*got 53"):
        check_even_batches(2, batch_size=53, n_train=320, n_val=80, validation_batch_size=1024)
    with pytest.raises(ValueError, match=r"training split of 321 rows in batches of 32 gives a batch of 1 rows"):
        check_even_batches(2, batch_size=32, n_train=321, n_val=80, validation_batch_size=1024)
    with pytest.raises(ValueError, match=r"validation split of 81 rows"):
        check_even_batches(2, batch_size=32, n_train=320, n_val=81, validation_batch_size=1024)


def test_config_field_backward_compatible():
    plain = config()
    assert "data_parallel" not in plain.to_dict()
    on = config(data_parallel=True)
    assert on.to_dict()["data_parallel"] is True
    assert TrainingConfig.from_dict(on.to_dict()) == on and TrainingConfig.from_dict(plain.to_dict()) == plain
    for name in ("data_parallel", "mixed_precision"):
        with pytest.raises(ValueError, match=rf"^{name} must be True or False"):
            config(**{name: 1})
    # the shipped run folders' configurations still load and match their own to_dict()
    from mrfbook.nn.train_refined import RefinedConfig

    for path in sorted((ROOT / "models").glob("*/config.json")):
        d = json.loads(path.read_text())
        if (path.parent / "model.npz").is_file():  # a refined network: RefinedConfig + what the run recorded
            d = {k: v for k, v in d.items() if k not in ("sequence_digest", "n_restored")}
            assert RefinedConfig.from_dict(d).to_dict() == d, path
        else:
            assert TrainingConfig.from_dict(d).to_dict() == d, path


# ----------------------------------------------------------------------------- mixed precision
def test_mixed_precision_under_jax(jax_side, work, dictionary):
    assert jax_side["mixed_weight_dtypes"] == ["float32"]
    assert "mixed_bfloat16" in jax_side["mixed_policies"]
    assert jax_side["mixed_raw_dtype"] == "float32" and jax_side["mixed_pred_dtype"] == "float64"
    np.testing.assert_allclose(jax_side["mixed_loss"][0], jax_side["single_loss"][0], rtol=MIXED_FIRST_LOSS_RTOL)
    f32, bf16 = np.load(work / "jax_pred.npy"), np.load(work / "jax_bf16_same_weights.npy")
    assert _rel_rms(bf16, f32) < MIXED_PREDICTION_REL_RMS
    # the mixed model trained under JAX loads under TensorFlow with its policy and predicts
    loaded = load_trained_model(work / "jax_mixed.keras")
    assert loaded.model.layers[2].dtype_policy.name == "mixed_bfloat16"
    assert np.all(np.isfinite(loaded.predict(np.asarray(dictionary.atoms)[:8])))


def test_mixed_precision_under_tensorflow(tf_run, dictionary):
    assert mixed_precision_policy(False) == "mixed_bfloat16" and mixed_precision_policy(True) == "mixed_float16"
    mixed = train(dictionary, config(mixed_precision=True), progress=False)
    assert {w.dtype for w in mixed.model.weights} == {"float32"}
    assert "mixed_bfloat16" in {layer.dtype_policy.name for layer in mixed.model.layers}
    x = np.asarray(dictionary.atoms)
    assert mixed.model.predict(x[:4].real.astype(np.float32), verbose=0).dtype == np.float32
    assert np.all(np.isfinite(mixed.history["loss"]))
    np.testing.assert_allclose(mixed.history["loss"][0], tf_run.history["loss"][0], rtol=MIXED_FIRST_LOSS_RTOL)
    same = build_from_config(tf_run.config.network, dtype_policy="mixed_bfloat16")
    same.set_weights(tf_run.model.get_weights())
    trained = tf_run.trained_model()
    f32 = trained.predict(x)
    trained.model = same
    assert _rel_rms(trained.predict(x), f32) < MIXED_PREDICTION_REL_RMS


def assert_same_predictions(actual: np.ndarray, desired: np.ndarray) -> None:
    """Every |actual - desired| within CROSS_BACKEND_TOL of its column's largest |desired| (see the module docstring)."""
    assert actual.shape == desired.shape and np.all(np.isfinite(actual))
    worst = np.max(np.abs(actual - desired), axis=0) / np.max(np.abs(desired), axis=0)
    assert np.all(worst <= CROSS_BACKEND_TOL), f"largest difference / column scale: {worst}"


def _rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    """Per column RMS of (a - b) over RMS of b, the larger of the two columns."""
    return float(np.max(np.sqrt(np.mean((a - b) ** 2, axis=0) / np.mean(b**2, axis=0))))


def test_tensorflow_load_notice_is_filtered_and_nothing_else():
    from mrfbook.nn.backend import is_load_notice

    assert is_load_notice("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert is_load_notice("I0000 00:00:1795879602.846783   13775 port.cc:153] oneDNN custom operations are on. "
                          "You may see slightly different numerical results")
    assert not is_load_notice("E0000 00:00:1795879602.846783   13775 cuda_dnn.cc:8310] Unable to register cuDNN factory")
    assert not is_load_notice("WARNING: something else")


def test_importing_the_network_under_tensorflow_writes_nothing_to_stderr():
    """A fresh process that loads mrfbook.nn (and so TensorFlow) prints no start-up noise."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    env["KERAS_BACKEND"] = "tensorflow"
    code = "import sys, mrfbook.nn.network, tensorflow; sys.stderr.write('done\\n')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr == "done\n", out.stderr[-3000:]
