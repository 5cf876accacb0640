"""Train and benchmark the network on an accelerator under Keras' JAX backend (TensorFlow not needed).

One run of ``python -m mrfbook train`` (mrfbook/cli/train.py) under ``KERAS_BACKEND=jax``
(set here before Keras is imported, whatever the environment says), writing the same run
folder as any training (``--run-dir``: model.keras + model.json, training_log.jsonl,
history.json, config.json, provenance.json, see :func:`mrfbook.nn.runs.write_run_folder`),
then a timing of the trained network on a 128 x 128 map (16,384 signatures):
:func:`mrfbook.nn.inference.predict_parameters` (normalisation + network) and
:func:`mrfbook.nn.inference.network_maps` without PD (signal test, phase, sign, network). It
prints the device, the seconds of every epoch (the first includes XLA's compilation) and
the map times as a table, writes them to ``RUN_DIR/gpu_check.json`` and ends with the same
record as one JSON line.

Defaults: the paper's dictionary (80,100 atoms, simulated once into ``--cache-dir``), the
paper network, 3 epochs of batch 256 (the paper's batch), the map of 128 x 128 pixels timed
as the median of 5 passes after one warm-up pass.

On this project's GPU machine (the ``nvidia-h200`` kind of the device tool, see
/work/.library/device/README.md and KINDS.md): its image has Python 3.12, JAX 0.11.2 with its
CUDA 13 plugin, NumPy, SciPy, Numba, h5py, rich, absl-py, ml-dtypes, tqdm and threadpoolctl,
but neither Keras nor TensorFlow, and nothing can be downloaded there. So three wheels
travel with the working tree in ``.whl/`` (ignored by git through ``.gitignore``): Keras
3.15.1 (the version the tests here run) and its two needs missing there, namex 0.1.0 and
optree 0.20.0 (a compiled cp312 manylinux wheel). ``scripts/gpu_check.sh fetch`` downloads
them here with ``pip download --no-deps --only-binary=:all: --python-version 3.12
--implementation cp --platform manylinux...``; ``scripts/gpu_check.sh run`` there installs
them with ``pip install --no-index --no-deps --target /tmp/site .whl/*.whl``, puts
``/tmp/site`` and the repository on ``PYTHONPATH`` and runs this script. The device call is::

    run(command="bash scripts/gpu_check.sh run --run-dir $OUT/run", carry=[".whl"], timeout_s=...)

(the run folder's seven files come back from ``$OUT/run``). mrfbook itself is imported from
the repository, not installed. This script has not yet been run on a GPU: no GPU figure of it
is claimed anywhere.

A quick check on a CPU (here; the JAX CPU wheel is in the project's ``test`` extra)::

    .venv/bin/python scripts/gpu_check.py --run-dir /tmp/gpu_check --max-atoms 2000 --compact --map-size 32

Here, with TensorFlow installed, the script blocks ``import tensorflow`` (an import hook that
raises ModuleNotFoundError, as on the GPU machine), so a run here proves the path needs none:
Keras only probes for it (``keras.utils.set_random_seed`` seeds TensorFlow too when present)
and carries on without it.
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import statistics
import sys
import time
from pathlib import Path

_previous_backend = os.environ.get("KERAS_BACKEND")
os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported anywhere
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Refuse ``import tensorflow`` as the GPU machine does (it has none installed)."""

    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (gpu_check runs without TensorFlow)", name=name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # mrfbook from the repository (not installed on the GPU machine)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="run folder to write (as 'mrfbook train --run-dir')")
    ap.add_argument("--dictionary", type=Path, default=None, metavar="DICT.npz",
                    help="dictionary file from 'mrfbook simulate' (default: the paper's dictionary)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="dictionary cache of the paper's dictionary")
    ap.add_argument("--epochs", type=_positive_int, default=3, help="epochs (default 3)")
    ap.add_argument("--batch-size", type=_positive_int, default=256, help="batch size (default 256, the paper's)")
    ap.add_argument("--max-atoms", type=_positive_int, default=None, help="train on a seeded subset of N atoms")
    ap.add_argument("--compact", action="store_true", help="the compact network instead of the paper's")
    ap.add_argument("--mixed-precision", action="store_true", help="passed to 'mrfbook train'")
    ap.add_argument("--data-parallel", action="store_true", help="passed to 'mrfbook train' (all devices present)")
    ap.add_argument("--map-size", type=_positive_int, default=128, help="side of the timed square map (default 128)")
    ap.add_argument("--repeats", type=_positive_int, default=5, help="timed map passes after one warm-up (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return ap


def _median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up: compiles the forward pass for these batch shapes
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"gpu_check: Keras runs the {keras.backend.backend()!r} backend; it was imported before "
                         "this script could set KERAS_BACKEND=jax")
    if _previous_backend not in (None, "jax"):
        print(f"gpu_check: KERAS_BACKEND={_previous_backend} in the environment, using jax", file=sys.stderr)
    devices = jax.devices()
    device = f"{devices[0].platform}: {getattr(devices[0], 'device_kind', '')} (x{len(devices)})"

    from mrfbook.cli import main as cli_main

    train_args = ["train", "--run-dir", str(args.run_dir), "--epochs", str(args.epochs),
                  "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--no-progress-bar"]
    train_args += [str(args.dictionary)] if args.dictionary is not None else ["--paper-dictionary"]
    if args.cache_dir is not None:
        train_args += ["--cache-dir", str(args.cache_dir)]
    if args.max_atoms is not None:
        train_args += ["--max-atoms", str(args.max_atoms)]
    for flag in ("compact", "mixed_precision", "data_parallel"):
        if getattr(args, flag):
            train_args.append("--" + flag.replace("_", "-"))
    t0 = time.perf_counter()
    rc = cli_main(train_args)
    train_seconds = time.perf_counter() - t0
    if rc != 0:
        return rc

    import numpy as np

    from mrfbook.nn.inference import network_maps, predict_parameters
    from mrfbook.nn.runs import read_run_folder

    run = read_run_folder(args.run_dir)
    trained = run.model
    epoch_seconds = [float(s) for s in run.history["seconds"]]
    if args.dictionary is not None:
        from mrfbook.physics.dictionary import Dictionary

        dictionary = Dictionary.load(args.dictionary)
    else:
        from mrfbook.physics.dictionary import cached_dictionary
        from mrfbook.physics.sequence import paper_sequence

        dictionary = cached_dictionary(paper_sequence(), grid="paper", cache_dir=args.cache_dir, progress=False)
    n_pixels = args.map_size * args.map_size
    rng = np.random.default_rng(args.seed)
    atoms = np.asarray(dictionary.atoms)[rng.integers(0, dictionary.n_atoms, n_pixels)]
    noise = rng.standard_normal(atoms.shape) + 1j * rng.standard_normal(atoms.shape)
    signatures = atoms + 0.01 * np.linalg.norm(atoms, axis=1, keepdims=True) / np.sqrt(atoms.shape[1]) * noise
    stack = signatures.reshape(args.map_size, args.map_size, -1)
    predict_s, predict_all = _median_seconds(lambda: predict_parameters(trained, signatures), args.repeats)
    maps_s, maps_all = _median_seconds(lambda: network_maps(trained, stack, pd=False), args.repeats)

    record = {
        "benchmark": "gpu_check",
        "device": device,
        "backend": keras.backend.backend(),
        "versions": {"jax": jax.__version__, "keras": keras.__version__, "numpy": np.__version__},
        "run_dir": str(args.run_dir),
        "network": "compact" if args.compact else "paper",
        "n_atoms": run.provenance.get("n_train_atoms"),
        "distribution": run.provenance.get("distribution"),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "mixed_precision": bool(args.mixed_precision),
        "data_parallel": bool(args.data_parallel),
        "epoch_seconds": epoch_seconds,
        "epoch_seconds_median_after_first": statistics.median(epoch_seconds[1:]) if len(epoch_seconds) > 1 else None,
        "train_call_seconds": train_seconds,
        "final_val_loss": run.history["val_loss"][-1],
        "map_pixels": n_pixels,
        "predict_parameters_s": predict_s,
        "predict_parameters_all_s": predict_all,
        "network_maps_no_pd_s": maps_s,
        "network_maps_no_pd_all_s": maps_all,
        "tensorflow_imported": "tensorflow" in sys.modules,  # blocked: False unless imported before the hook
    }
    (args.run_dir / "gpu_check.json").write_text(json.dumps(record, indent=1))
    print(f"device                              {device}")
    print(f"backend                             {record['backend']} (jax {jax.__version__}, keras {keras.__version__})")
    for i, s in enumerate(epoch_seconds, 1):
        print(f"epoch {i:<3d} seconds                   {s:10.3f}" + ("  (includes XLA compilation)" if i == 1 else ""))
    print(f"{args.map_size}x{args.map_size} predict_parameters s      {predict_s:10.4f}  (median of {args.repeats})")
    print(f"{args.map_size}x{args.map_size} network_maps (no PD) s    {maps_s:10.4f}  (median of {args.repeats})")
    print(f"tensorflow imported                 {record['tensorflow_imported']}")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
