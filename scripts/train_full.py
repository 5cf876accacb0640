"""Train the paper's network on the full 80,100-atom dictionary and evaluate it on the shifted test grid.

A thin wrapper of ``python -m mrfbook train --paper-dictionary --test-grid --run-dir OUT
--checkpoint-dir OUT/checkpoints`` (mrfbook/cli/train.py); every option other than ``--out``
and ``--no-progress`` is passed to that command unchanged (see ``python -m mrfbook train --help``).

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

Other options: --batch-size, --seed, --paper-exact, --mixed-precision, --cache-dir DIR.

Resumable: checkpoints go to ``<out>/checkpoints`` after every epoch; running the same command
again continues after the last completed epoch (a larger ``--epochs`` extends a finished run).

Writes the run folder ``--out`` (default ``models/paper_resnet``; see
:func:`mrfbook.nn.runs.write_run_folder`):

- ``model.keras`` + ``model.json``     trained network with its sequence, label scaling, configs
- ``training_log.jsonl``               one JSON record per epoch (loss, val_loss, RMSEs, lr, seconds, device...)
- ``history.json``, ``config.json``    the per-epoch history and the TrainingConfig
- ``provenance.json``                  device, backend, versions, date, command, git commit, time per
                                       epoch, and the test-grid RMSE / R^2 next to the paper's figures
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mrfbook.cli import main as cli_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Every other option goes to 'python -m mrfbook train' (see its --help): --epochs, --batch-size, "
        "--learning-rate, --lr-decay-every, --paper-exact, --seed, --compact, --mixed-precision, --noise-snr LO HI, "
        "--max-atoms, --cache-dir, --init-from, --reset-optimizer, --fresh-tissues.",
    )
    ap.add_argument("--out", type=Path, default=Path("models/paper_resnet"), help="output run folder")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (progress lines stay)")
    args, rest = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Runs started before this script wrapped the CLI logged into OUT itself; the CLI keeps the
    # log beside the checkpoint while training, so a resumed old run carries its earlier epochs over.
    old_log, ckpt_log = args.out / "training_log.jsonl", args.out / "checkpoints" / "training_log.jsonl"
    if old_log.is_file() and (args.out / "checkpoints" / "state.json").is_file() and not ckpt_log.exists():
        shutil.copyfile(old_log, ckpt_log)
    cli_argv = ["train", "--paper-dictionary", "--test-grid", "--run-dir", str(args.out),
                "--checkpoint-dir", str(args.out / "checkpoints"), *rest]
    if args.no_progress:
        cli_argv.append("--no-progress-bar")
    return cli_main(cli_argv)


if __name__ == "__main__":
    raise SystemExit(main())
