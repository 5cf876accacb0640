"""Train the paper's network on the full 80,100-atom dictionary and evaluate it on the shifted test grid.

Run from the repository root (on a GPU machine for the full run: ~2.2 h per 50 epochs on the
2-core CPU, minutes on a GPU)::

    .venv/bin/python scripts/train_full.py                      # paper recipe, 50 epochs
    KERAS_BACKEND=jax .venv/bin/python scripts/train_full.py    # same under JAX (if installed)
    .venv/bin/python scripts/train_full.py --max-atoms 2000 --epochs 1 --out /tmp/smoke   # smoke test
    .venv/bin/python scripts/train_full.py --compact --noise-snr 10 40 --out models/compact_resnet_noise
                                                                # noise augmentation (chapter 10)
    .venv/bin/python scripts/train_full.py --init-from RUN/model.keras \
        --learning-rate 1e-5 --epochs 20 --out RUN_continued
                                                                # continue a finished run (chapter 7)
    .venv/bin/python scripts/train_full.py --init-from models/paper_resnet_continued/model.keras \
        --reset-optimizer --fresh-tissues --learning-rate 1e-5 --lr-decay-every 6 --epochs 12 \
        --out models/paper_resnet_fresh                         # fine-tune on off-grid tissues (chapter 7)

Resumable: checkpoints go to ``<out>/checkpoints`` after every epoch; running the same command
again continues after the last completed epoch (a larger ``--epochs`` extends a finished run).

Writes into ``--out`` (default ``models/paper_resnet``):

- ``model.keras`` + ``model.json``     trained network with its sequence, label scaling, configs
- ``training_log.jsonl``               one JSON record per epoch (loss, val_loss, RMSEs, lr, seconds, device...)
- ``history.json``, ``config.json``    the per-epoch history and the TrainingConfig
- ``provenance.json``                  device, backend, versions, date, command, git commit, time per
                                       epoch, and the test-grid RMSE / R^2 next to the paper's figures
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mrfbook.physics.dictionary import cached_dictionary  # noqa: E402
from mrfbook.nn.network import compact_config, paper_config, parameter_count  # noqa: E402
from mrfbook.physics.sequence import paper_sequence  # noqa: E402
from mrfbook.nn.training import TrainingConfig, train
from mrfbook.analysis.experiments import evaluate_on_dictionary
from mrfbook.nn.data import random_subset
from mrfbook.nn.runs import runtime_info

PAPER_TEST = {"t1_rmse_ms": 0.659, "t2_rmse_ms": 0.491, "t1_r2": 0.99999986, "t2_r2": 0.99999963}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    commit_at_start = _git_commit()  # the code that trains is the code checked out now, not at the end
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("models/paper_resnet"), help="output folder")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--learning-rate", type=float, default=None,
                    help="initial Adam learning rate (default: TrainingConfig's, 1e-3; 1e-2 with --paper-exact)")
    ap.add_argument("--paper-exact", action="store_true",
                    help="the paper's published setting: Adam 1e-2 on labels in ms (TrainingConfig.paper_exact())")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compact", action="store_true", help="the compact network instead of the paper's")
    ap.add_argument("--mixed-precision", action="store_true")
    ap.add_argument("--noise-snr", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                    help="noise augmentation: fresh complex Gaussian noise every epoch at a per-signature SNR "
                         "drawn uniformly in [LO, HI] dB (TrainingConfig.noise_snr_db; default: clean atoms)")
    ap.add_argument("--max-atoms", type=int, default=None,
                    help="train and test on seeded random subsets of this many atoms (smoke tests)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="dictionary cache (default $MRFBOOK_CACHE)")
    ap.add_argument("--init-from", type=Path, default=None, metavar="MODEL",
                    help="continue a finished run: start from this model.keras (weights and optimizer state) "
                         "instead of random weights; --epochs and --learning-rate then describe the continuation "
                         "(e.g. --init-from RUN/model.keras --learning-rate 1e-5 --epochs 20; the model.keras train() wrote, with its Adam state, not a stripped copy)")
    ap.add_argument("--reset-optimizer", action="store_true",
                    help="with --init-from: start from the model's weights with a new Adam optimizer (fine-tuning; "
                         "weights-only copies such as the shipped models work)")
    ap.add_argument("--fresh-tissues", action="store_true",
                    help="train every epoch on new random tissues drawn uniformly from the training grid's (T1, T2) "
                         "region instead of the grid atoms (TrainingConfig.fresh_tissues, chapter 7)")
    ap.add_argument("--lr-decay-every", type=int, default=None,
                    help="epochs between the x0.1 learning-rate steps (default: TrainingConfig's, 10)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    sequence = paper_sequence()
    t0 = time.perf_counter()
    dictionary = cached_dictionary(sequence, grid="paper", cache_dir=args.cache_dir, progress=progress)
    test = cached_dictionary(sequence, grid="test", cache_dir=args.cache_dir, progress=progress)
    if args.max_atoms is not None:
        dictionary = random_subset(dictionary, min(args.max_atoms, dictionary.n_atoms), seed=args.seed)
        test = random_subset(test, min(args.max_atoms, test.n_atoms), seed=args.seed + 1)
    print(f"dictionaries ready in {time.perf_counter() - t0:.1f} s: train {dictionary.n_atoms:,} atoms, "
          f"test {test.n_atoms:,} atoms, L = {dictionary.n_timepoints}", flush=True)

    network = compact_config(dictionary.n_timepoints) if args.compact else paper_config(dictionary.n_timepoints)
    changes = dict(network=network, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                   mixed_precision=args.mixed_precision)
    if args.learning_rate is not None:
        changes["learning_rate"] = args.learning_rate
    if args.noise_snr is not None:
        changes["noise_snr_db"] = tuple(args.noise_snr)
    if args.fresh_tissues:
        changes["fresh_tissues"] = True
    if args.lr_decay_every is not None:
        changes["lr_decay_every"] = args.lr_decay_every
    if args.reset_optimizer and args.init_from is None:
        ap.error("--reset-optimizer needs --init-from MODEL")
    try:
        config = TrainingConfig.paper_exact(**changes) if args.paper_exact else TrainingConfig(**changes)
    except ValueError as exc:
        ap.error(str(exc))
    t_train = time.perf_counter()
    result = train(dictionary, config, checkpoint_dir=out / "checkpoints",
                   log_path=out / "training_log.jsonl", progress=progress, initial_model=args.init_from,
                   reset_optimizer=args.reset_optimizer)
    train_seconds = time.perf_counter() - t_train
    model_path = result.save(out / "model.keras")
    (out / "history.json").write_text(json.dumps(result.history, indent=1))
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))

    trained = result.trained_model()
    test_metrics = evaluate_on_dictionary(trained, test)
    print(f"test grid ({test.n_atoms:,} atoms): RMSE T1 {test_metrics['t1_rmse_ms']:.3f} ms, "
          f"T2 {test_metrics['t2_rmse_ms']:.3f} ms; R^2 {test_metrics['t1_r2']:.8f} / {test_metrics['t2_r2']:.8f}",
          flush=True)
    secs = result.history.get("seconds", [])
    info = runtime_info()
    provenance = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "git_commit": commit_at_start,
        **info,
        "model_file": str(model_path),
        "parameters": parameter_count(result.model),
        "n_train_atoms": dictionary.n_atoms,
        "n_test_atoms": test.n_atoms,
        "subset": args.max_atoms is not None,
        "sequence_digest": sequence.digest,
        "noise_snr_db": list(config.noise_snr_db) if config.noise_snr_db is not None else None,
        "continued_from": result.initial_model,
        "reset_optimizer": bool(args.reset_optimizer),
        "fresh_tissues": bool(config.fresh_tissues),
        "epochs_completed": result.epochs_completed,
        "resumed_from_epoch": result.resumed_from_epoch,
        "seconds_this_call": train_seconds,
        "seconds_per_epoch_median": float(np.median(secs)) if secs else None,
        "seconds_per_epoch_all": secs,
        "final_val_loss": result.history["val_loss"][-1] if result.history.get("val_loss") else None,
        "test": test_metrics,
        "paper_test": PAPER_TEST,
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=1))
    print(f"wrote {model_path}, provenance.json, history.json, config.json to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
