"""``python -m mrfbook train``: train the residual 1-D CNN on a dictionary file.

Explained in book/cli.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


from mrfbook.cli.inputs import (
    InputError,
)

from mrfbook.cli.common import (
    Reporter,
    check_output_file,
    fraction,
    load_dictionary,
    positive,
)

__all__ = ['add_train_parser']


def _cmd_train(args: argparse.Namespace, say: Reporter) -> int:
    output = check_output_file(args.output, "--output", ".keras")
    dictionary = load_dictionary(args.dictionary, option="DICT.npz")
    if args.checkpoint_dir is not None and args.checkpoint_dir.exists() and not args.checkpoint_dir.is_dir():
        raise InputError(f"--checkpoint-dir: {args.checkpoint_dir} exists and is not a folder")
    from mrfbook.nn.model import save_trained_model, sidecar_path
    from mrfbook.nn.network import compact_config, paper_config
    from mrfbook.nn.training import TrainingConfig, train

    make_network = compact_config if args.compact else paper_config
    config_kwargs = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                     "fresh_tissues": args.fresh_tissues}
    if args.validation_fraction is not None:
        config_kwargs["validation_fraction"] = args.validation_fraction
    if args.learning_rate is not None:
        config_kwargs["learning_rate"] = args.learning_rate
        config_kwargs["min_learning_rate"] = min(1e-6, args.learning_rate)
    try:
        config = TrainingConfig(network=make_network(dictionary.n_timepoints), **config_kwargs)
    except ValueError as exc:
        raise InputError(f"train: {exc}") from exc
    n_val = int(round(dictionary.n_atoms * config.validation_fraction))
    if n_val < 1 or dictionary.n_atoms - n_val < 1:
        raise InputError(
            f"DICT.npz: {dictionary.n_atoms} atoms are too few to hold out a validation fraction of "
            f"{config.validation_fraction:g}; simulate a finer grid"
        )
    say(f"training the {'compact' if args.compact else 'paper'} network on {dictionary.n_atoms:,} signatures "
        f"of {dictionary.n_timepoints} time points: {config.epochs} epoch{'s' if config.epochs > 1 else ''}, "
        f"batch {config.batch_size}")
    start = time.perf_counter()
    result = train(dictionary, config, checkpoint_dir=args.checkpoint_dir, progress=say.progress)
    # The model (.keras) and its sidecar (.json: sequence, label scaling) are written into a
    # temporary folder beside the output and renamed into place only when both are complete.
    sidecar = sidecar_path(output)
    staging = Path(tempfile.mkdtemp(prefix=".mrfbook-train.", dir=output.parent))
    try:
        written = save_trained_model(result.trained_model(), staging / output.name)
        os.replace(sidecar_path(written), sidecar)
        os.replace(written, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    final = {k: v[-1] for k, v in result.history.items() if v}
    summary = ", ".join(f"{k} {final[k]:.4g}" for k in ("val_t1_rmse_ms", "val_t2_rmse_ms") if k in final)
    say(f"wrote {output} and {sidecar.name} in {time.perf_counter() - start:.1f} s"
        + (f" (validation RMSE in ms: {summary})" if summary else ""))
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` command to the parser of ``python -m mrfbook``."""
    p = subparsers.add_parser(
        "train",
        help="train the residual 1-D CNN on a dictionary",
        description="Train the network (mrfbook.nn.training.train) on the atoms of a dictionary file "
        "written by 'simulate'. The saved model records the dictionary's sequence, so 'map' refuses "
        "data from another sequence.",
    )
    p.add_argument("dictionary", type=Path, metavar="DICT.npz", help="dictionary file from 'simulate'")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.keras",
                   help="output model file (.keras); its sidecar MODEL.json (sequence, label scaling, "
                   "training record) is written beside it")
    p.add_argument("--epochs", type=positive(int, "--epochs"), default=50, help="epochs (default: 50, the paper's)")
    p.add_argument("--batch-size", type=positive(int, "--batch-size"), default=256,
                   help="batch size (default: 256, the paper's)")
    p.add_argument("--validation-fraction", type=fraction, default=None, metavar="F",
                   help="share of the atoms held out for validation (default: the library's, 0.2 as in the paper)")
    p.add_argument("--learning-rate", type=positive(float, "--learning-rate"), default=None, metavar="LR",
                   help="initial learning rate, divided by 10 every 10 epochs (default: the library's, "
                   "1e-3 for its scaled labels; the paper's 1e-2 was for labels in ms, see chapter 7)")
    p.add_argument("--fresh-tissues", action="store_true",
                   help="train every epoch on new random tissues drawn uniformly over the (T1, T2) range of the "
                   "dictionary's atoms (T1 >= T2) instead of the atoms themselves; validation stays on held-out "
                   "atoms (TrainingConfig.fresh_tissues, chapter 7)")
    p.add_argument("--compact", action="store_true",
                   help="the compact network (mrfbook.nn.network.compact_config): ~20x fewer parameters, CPU-friendly")
    p.add_argument("--checkpoint-dir", type=Path, default=None, metavar="DIR",
                   help="save a checkpoint after every epoch here and resume from the latest one")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)
