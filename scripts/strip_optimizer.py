"""Write a copy of a trained model without its optimizer state (weights and metadata only).

A model saved by ``mrfbook.nn.training.train`` keeps Adam's two moment estimates per weight so its run
can be continued (``train(..., initial_model=...)``); for inference they are dead weight (about two
thirds of the file). This writes ``OUT`` with the same weights, architecture and embedded metadata
(sequence, label scaling, configurations), plus its readable sidecar, and checks that the copy
predicts exactly what the original does.

    .venv/bin/python scripts/strip_optimizer.py models/paper_resnet_continued/model.keras /tmp/model.keras
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mrfbook.nn.model import load_trained_model, save_trained_model  # noqa: E402
from mrfbook.utils.provenance import file_sha256


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model.keras written by mrfbook.nn.training")
    ap.add_argument("out", type=Path, help="where to write the copy (.keras); must differ from MODEL")
    args = ap.parse_args(argv)
    if args.out.resolve() == args.model.resolve():
        ap.error("out must differ from model (write to a temporary name, then move it)")
    trained = load_trained_model(args.model)  # compile=False: the optimizer is not restored
    meta = dict(trained.metadata)
    meta["optimizer_state"] = f"removed by scripts/strip_optimizer.py from {args.model.name}"
    meta["stripped_from_sha256"] = file_sha256(args.model)  # the file a continuation may have recorded
    trained.metadata = meta
    save_trained_model(trained, args.out)
    copy = load_trained_model(args.out)
    x = np.random.default_rng(0).standard_normal((64, int(trained.model.inputs[0].shape[-1])))
    np.testing.assert_array_equal(copy.predict(x), trained.predict(x))
    print(f"{args.model} ({args.model.stat().st_size / 1e6:.1f} MB) -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); "
          "predictions identical")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
