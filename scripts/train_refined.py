"""Train the refined network (chapter 11) on this machine's CPU and write its model folder.

Every stage resumes: the restored random phantoms (one file each), the manifold, the proposal and
the correction networks (Keras checkpoints every epoch) live in ``<out>/checkpoints/`` (ignored by
git); run the same command again after an interruption and it continues where it stopped. At the
end it measures the network on the shifted test grid (80,100 tissues) and writes, next to the
weights, ``model.json`` (metadata with that accuracy), ``training_log.jsonl``, ``config.json`` and
``provenance.json``.

    .venv/bin/python scripts/train_refined.py [--out models/refined_network] [--phantoms 0 120 ...]
        [--epochs 30] [--correction-epochs 16] [--n-synthetic 600000] [--proposal-from MODEL.npz] [-q]

``--proposal-from`` keeps the manifold and proposal network of an earlier refined network (its
training log and provenance are carried over) and trains only the noise correction.

On the 2-core CPU: about 10 s per restored phantom and 10 s per epoch of either network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mrfbook.analysis.experiments import evaluate_on_dictionary  # noqa: E402
from mrfbook.analysis.training_inputs import load_restored_training_set, restored_training_set  # noqa: E402
from mrfbook.nn.refined import load_refined_network  # noqa: E402
from mrfbook.nn.runs import paper_test_figures, runtime_info, source_commit  # noqa: E402
from mrfbook.nn.train_refined import RefinedConfig, train_correction, train_refined  # noqa: E402
from mrfbook.physics.dictionary import cached_dictionary  # noqa: E402
from mrfbook.physics.sequence import paper_sequence  # noqa: E402
from mrfbook.utils.provenance import atomic_write_json, utc_now  # noqa: E402


def _earlier_run(path: Path, sequence) -> tuple[dict, object]:
    """What a run that keeps ``path``'s proposal carries over (its log, phantoms and provenance), and its network."""
    folder = path.parent
    prov = json.loads((folder / "provenance.json").read_text())
    lines = [ln for ln in (folder / "training_log.jsonl").read_text().splitlines()
             if json.loads(ln)["stage"] == "proposal"]
    net = load_refined_network(path, sequence)  # made for this sequence, else SequenceMismatchError
    return {"log": "\n".join(lines) + "\n", "training_phantoms": prov["training_phantoms"],
            "record": {"model": str(path), "date": prov["date"], "command": prov["command"],
                       "git_commit": prov["git_commit"], "n_synthetic": prov["n_synthetic"],
                       "seconds_training_logged": prov["seconds_training_logged"],
                       # when that run itself kept an earlier proposal: the run that trained it
                       "proposal_from": prov.get("proposal_from")}}, net


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("models/refined_network"))
    p.add_argument("--phantoms", type=int, nargs="+", default=[0, 120], metavar="SEED",
                   help="seeds of the random phantoms restored for training, as ranges FIRST STOP [FIRST STOP ...] "
                   "(each FIRST..STOP-1)")
    defaults = RefinedConfig()
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--correction-epochs", type=int, default=defaults.correction_epochs)
    p.add_argument("--n-synthetic", type=int, default=defaults.n_synthetic)
    p.add_argument("--proposal-from", type=Path, default=None, metavar="MODEL.npz",
                   help="keep this refined network's manifold and proposal; train only the correction")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    bounds = args.phantoms
    if len(bounds) % 2 or any(not 0 <= a < b for a, b in zip(bounds[::2], bounds[1::2])):
        p.error(f"--phantoms: need pairs FIRST STOP with 0 <= FIRST < STOP, got {bounds}")
    seeds = sorted({s for a, b in zip(bounds[::2], bounds[1::2]) for s in range(a, b)})
    for name in ("epochs", "correction_epochs", "n_synthetic"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    sequence = paper_sequence()
    config = RefinedConfig(epochs=args.epochs, correction_epochs=args.correction_epochs, n_synthetic=args.n_synthetic)
    work = args.out / "checkpoints"
    t0 = time.perf_counter()
    earlier = None
    if args.proposal_from is not None:
        earlier, net = _earlier_run(args.proposal_from, sequence)
        run = work / "run_correction_only"
        run.mkdir(parents=True, exist_ok=True)
        net.correction, net.metadata = [], {}
        log_path = run / "training_log.jsonl"
        if not log_path.is_file():  # the proposal's epochs first, then this run's
            log_path.write_text(earlier["log"])
        train_correction(net, sequence, run, config, verbose=0 if args.quiet else 2)
        net.metadata = {"config": config.to_dict(), "n_correction": config.n_correction, "saved": utc_now()}
        t_data, restored = 0.0, None
    else:
        run = work / "run"
        restored_training_set(sequence, seeds, work / "restored", progress=not args.quiet)
        t_data = time.perf_counter() - t0
        restored = load_restored_training_set(work / "restored", seeds, sequence.digest)
        train_refined(sequence, run, config, restored=restored, verbose=0 if args.quiet else 2)
        net = load_refined_network(run / "model.npz", sequence)
    test, _ = evaluate_on_dictionary(net, cached_dictionary(sequence, grid="test"), return_predictions=True)
    log = [json.loads(line) for line in (run / "training_log.jsonl").read_text().splitlines()]
    info = runtime_info()
    net.metadata.update(
        accuracy={"shifted_grid": {k: test[k] for k in ("n", "t1_rmse_ms", "t2_rmse_ms", "t1_r2", "t2_r2")}},
        training_phantoms=earlier["training_phantoms"]["seed_ranges"] if earlier else bounds, n_parameters=net.parameter_count())
    args.out.mkdir(parents=True, exist_ok=True)
    net.save(args.out / "model.npz")
    shutil.copyfile(run / "training_log.jsonl", args.out / "training_log.jsonl")
    atomic_write_json(args.out / "config.json", config.to_dict())
    atomic_write_json(args.out / "provenance.json", {
        "date": utc_now(), "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "git_commit": source_commit(), "device": info.get("device"), "cpu": info.get("cpu"),
        "host": platform.node(), "platform": platform.platform(), "versions": info.get("versions"),
        "backend": info.get("backend"), "model_file": "model.npz", "parameters": net.parameter_count(),
        "multiply_adds": net.multiply_adds(), "sequence_digest": sequence.digest,
        "training_phantoms": earlier["training_phantoms"] if earlier else {
            "seed_ranges": bounds, "n_phantoms": len(seeds), "n_signatures": int(len(restored["t1_ms"]))},
        "proposal_from": earlier["record"] if earlier else None,
        "n_correction": config.n_correction if config.correction_depth else 0,
        "n_synthetic": config.n_synthetic,
        "seconds_restoring_this_call": t_data,
        "seconds_training_logged": float(sum(r["seconds"] for r in log)),
        "epochs": {stage: sum(r["stage"] == stage for r in log) for stage in ("proposal", "correction")},
        "test": test, "paper_test": paper_test_figures()})
    print(f"shifted grid: T1 RMSE {test['t1_rmse_ms']:.3f} ms, T2 RMSE {test['t2_rmse_ms']:.3f} ms "
          f"({test['n']:,} tissues); {net.multiply_adds()['total']:,} multiply-adds per signature; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
