"""Compare training settings of the paper network on a random subset of the paper dictionary.

Runs, one after the other, the same short training (paper network, batch 256, learning rate x0.1
every ``--decay-every`` epochs) with

- ``scaled-1e-2``: labels T1/5000, T2/2000 ms at Adam 1e-2 (the paper's rate on scaled labels),
- ``ms-1e-2``:     labels in ms at 1e-2 (``TrainingConfig.paper_exact()``, the published setting),
- ``scaled-1e-3``: labels T1/5000, T2/2000 ms at 1e-3 (``TrainingConfig()``, the library default),

and prints the validation RMSE of T1 and T2 per epoch next to the spread of the labels (the
error of always predicting the mean). On the 2-core CPU the default (6,000 atoms, 8 epochs)
takes about 5 minutes per setting. This is the evidence behind the default learning rate
(chapter 7, book/07_training.md).

    .venv/bin/python scripts/compare_learning_rates.py [--atoms 6000] [--epochs 8] [--decay-every 4]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mrfbook.nn.data import random_subset  # noqa: E402
from mrfbook.nn.training import TrainingConfig, train
from mrfbook.physics.dictionary import cached_dictionary  # noqa: E402
from mrfbook.physics.sequence import paper_sequence  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--decay-every", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    dictionary = random_subset(cached_dictionary(paper_sequence(), grid="paper"), args.atoms, seed=args.seed)
    spread = (float(dictionary.t1_ms.std()), float(dictionary.t2_ms.std()))
    settings = {
        "scaled-1e-2": TrainingConfig(learning_rate=1e-2),
        "ms-1e-2": TrainingConfig.paper_exact(),
        "scaled-1e-3": TrainingConfig(),
    }
    print(f"{dictionary.n_atoms:,} atoms; label spread (RMSE of predicting the mean): "
          f"T1 {spread[0]:.0f} ms, T2 {spread[1]:.0f} ms")
    summary = {}
    for name, base in settings.items():
        cfg = TrainingConfig.from_dict({**base.to_dict(), "epochs": args.epochs,
                                        "lr_decay_every": args.decay_every, "seed": args.seed})
        h = train(dictionary, cfg, progress=False).history
        print(f"{name:>12}  val RMSE T1 (ms): {np.round(h['val_t1_rmse_ms'], 0).tolist()}")
        print(f"{'':>12}  val RMSE T2 (ms): {np.round(h['val_t2_rmse_ms'], 0).tolist()}")
        summary[name] = {"t1": round(h["val_t1_rmse_ms"][-1], 1), "t2": round(h["val_t2_rmse_ms"][-1], 1)}
    print(json.dumps({"atoms": dictionary.n_atoms, "epochs": args.epochs, "spread_ms": spread, "final_val_rmse_ms": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
