"""``python -m mrfbook train``: train the residual 1-D CNN on a dictionary file (or the paper's dictionary).

Writes a model file (``--output MODEL.keras`` + its sidecar) and/or a full run folder
(``--run-dir DIR``: weights, log, history, configuration and provenance, see
:func:`mrfbook.nn.runs.write_run_folder`), optionally with the accuracy on the paper's
shifted test grid (``--test-grid``). ``scripts/train_full.py`` is this command on the paper's
dictionary. ``--data-parallel`` spreads each batch over every device present (JAX backend only,
:mod:`mrfbook.nn.distribution`); ``--mixed-precision`` computes in 16-bit floats.

Explained in book/cli.md; the training itself in chapter 7, book/07_training.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from mrfbook.cli.common import (
    Reporter,
    check_output_file,
    fraction,
    load_dictionary,
    positive,
)
from mrfbook.cli.inputs import InputError
from mrfbook.utils.timing import Stopwatch

__all__ = ["add_train_parser"]

#: TrainingConfig field -> the option that sets it (to name the option in a refusal).
_OPTION_OF_FIELD = {
    "noise_snr_db": "--noise-snr LO HI",
    "min_learning_rate": "--learning-rate",
    "learning_rate": "--learning-rate",
    "lr_decay_every": "--lr-decay-every",
    "batch_size": "--batch-size",
    "epochs": "--epochs",
    "validation_fraction": "--validation-fraction",
    "seed": "--seed",
    "data_parallel": "--data-parallel",
}


def _warn(message: str) -> None:
    """A warning: printed even with --quiet."""
    print(f"mrfbook train: warning: {message}", file=sys.stderr, flush=True)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--seed must be an integer >= 0, got {text!r}")
    return value


def _command_line() -> str:
    """The command line of this process as provenance records it (``python -m mrfbook ...`` when run so)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "mrfbook":
        argv = ["-m", "mrfbook", *argv[1:]]
    return shlex.join([sys.executable, *argv])


def _config_from_args(args: argparse.Namespace, n_timepoints: int):
    from mrfbook.nn.network import compact_config, paper_config
    from mrfbook.nn.training import TrainingConfig

    network = compact_config(n_timepoints) if args.compact else paper_config(n_timepoints)
    changes = {"network": network, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
               "fresh_tissues": args.fresh_tissues, "mixed_precision": args.mixed_precision,
               "data_parallel": args.data_parallel}
    if args.validation_fraction is not None:
        changes["validation_fraction"] = args.validation_fraction
    if args.learning_rate is not None:
        changes["learning_rate"] = args.learning_rate
        changes["min_learning_rate"] = min(1e-6, args.learning_rate)
    if args.lr_decay_every is not None:
        changes["lr_decay_every"] = args.lr_decay_every
    if args.noise_snr is not None:
        changes["noise_snr_db"] = tuple(args.noise_snr)
    try:
        return TrainingConfig.paper_exact(**changes) if args.paper_exact else TrainingConfig(**changes)
    except ValueError as exc:
        field = str(exc).split(" ", 1)[0]
        raise InputError(f"{_OPTION_OF_FIELD.get(field, 'train')}: {exc}") from exc


def _data_parallel_note(config) -> str:
    """``", data-parallel over 2 devices (cpu:0, cpu:1)"`` for a data-parallel run, else ``""``."""
    if not config.data_parallel:
        return ""
    from mrfbook.nn.distribution import data_parallel_devices

    devices = data_parallel_devices()
    return f", data-parallel over {len(devices)} device{'s' if len(devices) > 1 else ''} ({', '.join(devices)})"


def _check_args(args: argparse.Namespace) -> Path | None:
    """Refuse inconsistent options before anything is loaded; return the checked --output (or None)."""
    if (args.dictionary is None) == (not args.paper_dictionary):
        raise InputError("DICT.npz: give a dictionary file or --paper-dictionary (one of them)")
    if args.output is None and args.run_dir is None:
        raise InputError("--output/--run-dir: give a model file (--output MODEL.keras), a run folder (--run-dir DIR) "
                         "or both")
    output = check_output_file(args.output, "--output", ".keras") if args.output is not None else None
    if args.run_dir is not None:
        if args.run_dir.exists() and not args.run_dir.is_dir():
            raise InputError(f"--run-dir: {args.run_dir} exists and is not a folder")
        if not args.run_dir.parent.is_dir():
            raise InputError(f"--run-dir: folder {args.run_dir.parent} does not exist")
    if args.checkpoint_dir is not None and args.checkpoint_dir.exists() and not args.checkpoint_dir.is_dir():
        raise InputError(f"--checkpoint-dir: {args.checkpoint_dir} exists and is not a folder")
    if args.reset_optimizer and args.init_from is None:
        raise InputError("--reset-optimizer: needs --init-from MODEL (the weights the run starts from)")
    if args.init_from is not None and not args.init_from.is_file():
        raise InputError(f"--init-from: file not found: {args.init_from}")
    if args.cache_dir is not None and args.cache_dir.exists() and not args.cache_dir.is_dir():
        raise InputError(f"--cache-dir: {args.cache_dir} exists and is not a folder")
    if args.data_parallel:
        from mrfbook.nn.distribution import check_data_parallel_backend

        try:
            check_data_parallel_backend(option="--data-parallel")
        except ValueError as exc:
            raise InputError(str(exc)) from exc
    return output


def _subset(dictionary, max_atoms: int | None, seed: int, what: str):
    from mrfbook.nn.data import random_subset

    if max_atoms is None:
        return dictionary
    if max_atoms > dictionary.n_atoms:
        _warn(f"--max-atoms {max_atoms} is more than the {dictionary.n_atoms:,} atoms of the {what}; using all")
    return random_subset(dictionary, min(max_atoms, dictionary.n_atoms), seed=seed)


def _cmd_train(args: argparse.Namespace, say: Reporter) -> int:
    from mrfbook.nn.runs import source_commit

    commit_at_start = source_commit()  # the code that trains is the code checked out now, not at the end
    output = _check_args(args)
    bars = say.progress and not args.no_progress_bar
    clock = Stopwatch().start()
    if args.paper_dictionary:
        from mrfbook.physics.dictionary import cached_dictionary
        from mrfbook.physics.sequence import paper_sequence

        dictionary = cached_dictionary(paper_sequence(), grid="paper", cache_dir=args.cache_dir, progress=bars)
    else:
        dictionary = load_dictionary(args.dictionary, option="DICT.npz")
    dictionary = _subset(dictionary, args.max_atoms, args.seed, "dictionary")
    config = _config_from_args(args, dictionary.n_timepoints)
    n_val = int(round(dictionary.n_atoms * config.validation_fraction))
    if n_val < 1 or dictionary.n_atoms - n_val < 1:
        raise InputError(
            f"DICT.npz: {dictionary.n_atoms} atoms are too few to hold out a validation fraction of "
            f"{config.validation_fraction:g}; simulate a finer grid"
        )
    if args.fresh_tissues and getattr(dictionary, "b1_scale", None) is not None:
        raise InputError("--fresh-tissues: supports (T1, T2) dictionaries only; this one has a B1 axis")
    test = None
    if args.test_grid:
        from mrfbook.physics.dictionary import cached_dictionary

        test = cached_dictionary(dictionary.sequence, grid="test", cache_dir=args.cache_dir, progress=bars)
        test = _subset(test, args.max_atoms, args.seed + 1, "test grid")
    say(f"dictionaries ready in {clock.elapsed:.1f} s: train {dictionary.n_atoms:,} atoms"
        + (f", test {test.n_atoms:,} atoms" if test is not None else "") + f", L = {dictionary.n_timepoints}")

    from mrfbook.nn.model import save_trained_model, sidecar_path
    from mrfbook.nn.runs import CheckpointMismatchError, write_run_folder
    from mrfbook.nn.training import train

    say(f"training the {'compact' if args.compact else 'paper'} network on {dictionary.n_atoms:,} signatures "
        f"of {dictionary.n_timepoints} time points: {config.epochs} epoch{'s' if config.epochs > 1 else ''}, "
        f"batch {config.batch_size}" + (f", from {args.init_from}" if args.init_from is not None else "")
        + (", mixed precision" if config.mixed_precision else "") + _data_parallel_note(config))
    # Everything is written under temporary names beside the outputs and renamed into place only
    # when complete. Without a checkpoint folder, a run folder's log is kept here while training.
    staging_parent = (output.parent if output is not None else args.run_dir.parent)
    staging = Path(tempfile.mkdtemp(prefix=".mrfbook-train.", dir=staging_parent))
    try:
        log_path = None
        if args.run_dir is not None and args.checkpoint_dir is None:
            log_path = staging / "training_log.jsonl"
        training_clock = Stopwatch().start()
        try:
            result = train(dictionary, config, checkpoint_dir=args.checkpoint_dir, progress=bars, log_path=log_path,
                           initial_model=args.init_from, reset_optimizer=args.reset_optimizer)
        except CheckpointMismatchError as exc:
            raise InputError(f"--checkpoint-dir: {exc}") from exc
        except ValueError as exc:
            if args.init_from is not None and "initial_model" in str(exc):
                raise InputError(f"--init-from: {exc}") from exc
            if args.data_parallel and ("data_parallel" in str(exc) or "batch_size" in str(exc)):
                raise InputError(f"--data-parallel: {exc}") from exc
            raise
        train_seconds = training_clock.stop()
        if result.resumed_from_epoch:
            say(f"resumed after epoch {result.resumed_from_epoch} from {args.checkpoint_dir}")
        test_metrics = None
        if test is not None:
            from mrfbook.analysis.experiments import evaluate_on_dictionary
            from mrfbook.paper import paper_value

            test_metrics = evaluate_on_dictionary(result.trained_model(), test)
            say(f"test grid ({test.n_atoms:,} atoms): RMSE T1 {test_metrics['t1_rmse_ms']:.3f} ms, "
                f"T2 {test_metrics['t2_rmse_ms']:.3f} ms; R^2 {test_metrics['t1_r2']:.8f} / "
                f"{test_metrics['t2_r2']:.8f} (paper: {paper_value('synthetic', 't1_rmse_ms')} / "
                f"{paper_value('synthetic', 't2_rmse_ms')} ms)")
        if output is not None:
            written = save_trained_model(result.trained_model(), staging / output.name)
            os.replace(sidecar_path(written), sidecar_path(output))
            os.replace(written, output)
        if args.run_dir is not None:
            if log_path is None:
                log_path = Path(args.checkpoint_dir) / "training_log.jsonl"
            write_run_folder(result, args.run_dir, log_path=log_path if log_path.is_file() else None,
                             test_metrics=test_metrics, command=_command_line(), git_commit=commit_at_start,
                             subset=args.max_atoms is not None, seconds_this_call=train_seconds)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    final = {k: v[-1] for k, v in result.history.items() if v}
    summary = ", ".join(f"{k} {final[k]:.4g}" for k in ("val_t1_rmse_ms", "val_t2_rmse_ms") if k in final)
    wrote = [f"{output} and {sidecar_path(output).name}"] if output is not None else []
    if args.run_dir is not None:
        wrote.append(f"the run folder {args.run_dir}")
    say(f"wrote {' and '.join(wrote)} in {clock.elapsed:.1f} s"
        + (f" (validation RMSE in ms: {summary})" if summary else ""))
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` command to the parser of ``python -m mrfbook``."""
    p = subparsers.add_parser(
        "train",
        help="train the residual 1-D CNN on a dictionary",
        description="Train the network (mrfbook.nn.training.train) on the atoms of a dictionary file "
        "written by 'simulate' (or on the paper's dictionary). The saved model records the dictionary's "
        "sequence, so 'map' refuses data from another sequence.",
    )
    p.add_argument("dictionary", type=Path, nargs="?", default=None, metavar="DICT.npz",
                   help="dictionary file from 'simulate' (or give --paper-dictionary)")
    p.add_argument("--paper-dictionary", action="store_true",
                   help="train on the paper's dictionary instead of a file: the paper's sequence on its grid, "
                   "80,100 atoms (simulated once, then read from the cache, see --cache-dir)")
    p.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="dictionary cache of --paper-dictionary and --test-grid (default: $MRFBOOK_CACHE or "
                   "~/.cache/mrfbook)")
    out = p.add_argument_group("output (one or both)")
    out.add_argument("-o", "--output", type=Path, default=None, metavar="MODEL.keras",
                     help="output model file (.keras); its sidecar MODEL.json (sequence, label scaling, "
                     "training record) is written beside it")
    out.add_argument("--run-dir", type=Path, default=None, metavar="DIR",
                     help="write a run folder here (created if missing; its run files are replaced): model.keras + "
                     "model.json, training_log.jsonl, history.json, config.json, provenance.json (date, command, git "
                     "commit, device, versions, seconds per epoch, test metrics next to the paper's)")
    out.add_argument("--test-grid", action="store_true",
                     help="evaluate the trained network on the paper's shifted test grid (80,100 atoms, 5 ms off the "
                     "training grid) simulated with the dictionary's sequence; printed and recorded in provenance.json")
    p.add_argument("--epochs", type=positive(int, "--epochs"), default=50, help="epochs (default: 50, the paper's)")
    p.add_argument("--batch-size", type=positive(int, "--batch-size"), default=256,
                   help="batch size (default: 256, the paper's)")
    p.add_argument("--validation-fraction", type=fraction, default=None, metavar="F",
                   help="share of the atoms held out for validation (default: the library's, 0.2 as in the paper)")
    p.add_argument("--learning-rate", type=positive(float, "--learning-rate"), default=None, metavar="LR",
                   help="initial learning rate, divided by 10 every --lr-decay-every epochs (default: the "
                   "library's, 1e-3 for its scaled labels; 1e-2 with --paper-exact, see chapter 7)")
    p.add_argument("--lr-decay-every", type=positive(int, "--lr-decay-every"), default=None, metavar="N",
                   help="epochs between the x0.1 learning-rate steps (default: the library's, 10)")
    p.add_argument("--paper-exact", action="store_true",
                   help="the paper's published setting: Adam 1e-2 on labels in ms (TrainingConfig.paper_exact())")
    p.add_argument("--noise-snr", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="noise augmentation: fresh complex Gaussian noise every epoch at a per-signature SNR drawn "
                   "uniformly in [LO, HI] dB, LO <= HI (TrainingConfig.noise_snr_db, chapter 10; default: clean atoms)")
    p.add_argument("--fresh-tissues", action="store_true",
                   help="train every epoch on new random tissues drawn uniformly over the (T1, T2) range of the "
                   "dictionary's atoms (T1 >= T2) instead of the atoms themselves; validation stays on held-out "
                   "atoms (TrainingConfig.fresh_tissues, chapter 7)")
    p.add_argument("--compact", action="store_true",
                   help="the compact network (mrfbook.nn.network.compact_config): ~20x fewer parameters, CPU-friendly")
    p.add_argument("--mixed-precision", action="store_true",
                   help="compute in float16 (GPU) / bfloat16 (CPU); weights stay float32")
    p.add_argument("--data-parallel", action="store_true",
                   help="data-parallel training over every device present (all GPUs, else the CPU devices) through "
                   "keras.distribution.DataParallel: the same global --batch-size split evenly over the devices; "
                   "needs KERAS_BACKEND=jax (TrainingConfig.data_parallel, mrfbook.nn.distribution)")
    p.add_argument("--max-atoms", type=positive(int, "--max-atoms"), default=None, metavar="N",
                   help="train (and test) on seeded random subsets of N atoms (quick runs and smoke tests)")
    p.add_argument("--init-from", type=Path, default=None, metavar="MODEL",
                   help="continue a finished run: start from this model.keras (weights and Adam state, as train wrote "
                   "it) instead of random weights; --epochs and --learning-rate then describe the continuation")
    p.add_argument("--reset-optimizer", action="store_true",
                   help="with --init-from: start from the model's weights with a new Adam optimizer (fine-tuning; "
                   "weights-only copies such as the shipped models work)")
    p.add_argument("--checkpoint-dir", type=Path, default=None, metavar="DIR",
                   help="save a checkpoint after every epoch here and resume from the latest one")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed, >= 0 (default: 0)")
    p.add_argument("--no-progress-bar", action="store_true", help="no progress bars (the progress lines stay)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (warnings still show)")
    p.set_defaults(func=_cmd_train)
