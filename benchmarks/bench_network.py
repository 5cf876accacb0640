"""CPU speed of the residual 1-D CNN: inference of a 128x128 map and training time per epoch.

Usage (from the repository root; takes ~10 min on the 2-core machine)::

    .venv/bin/python benchmarks/bench_network.py [--repeats 5] [--out benchmarks/results/bench_network.txt]

Inference: 16,384 random signatures (one 128x128 map) of 200 time points through
``model.predict`` for the paper network and the compact variant
(``mrfbook.nn.network.compact_config``), batch sizes 256 / 1024 / 4096 / 16384, with
and without XLA compilation (``jit_compile``). Each cell: one warm-up call (tracing /
compilation excluded), then the median of ``--repeats`` timed calls. The paper network with jit
is timed at batch 4096 only by default (``--paper-jit-batch-sizes``): XLA is ~3x slower than the
default path on this CPU and each call takes about a minute. Weights are
random: the cost does not depend on their values. Baseline for the ratios: the paper
network at batch 1024 without jit (Keras' usual way of running it).

Training: one epoch of the paper recipe (Adam, RMSE, batch 256, 20 % validation)
on a random subset of ``--train-subset`` signatures (after one warm-up epoch), median
of 3 epochs, scaled linearly to the full paper dictionary of 80,100 signatures
(64,080 training + 16,020 validation).

Brain slice: the same networks on the tissue pixels of the book's 128x128 brain phantom only
(what ``mrfbook.nn.inference.predict_maps`` evaluates; background pixels carry no signal), with the
effective arithmetic throughput.

Prints a table and ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mrfbook.nn.model import LabelScaling
from mrfbook.nn.network import build_from_config, compact_config, multiply_adds, paper_config, parameter_count  # noqa: E402
from mrfbook.nn.runs import runtime_info  # noqa: E402
from mrfbook.nn.training import TrainingConfig, _compile
from mrfbook.physics.phantom import brain_phantom  # noqa: E402
from mrfbook.utils.timing import time_calls  # noqa: E402

N_MAP = 128 * 128
N_FULL = 80_100


def time_inference(cfg, batch_size: int, jit: bool, x: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU seconds of ``model.predict`` on ``x``."""
    model = build_from_config(cfg)
    model.compile(jit_compile=jit)
    model.predict(x[: min(len(x), 2 * batch_size)], batch_size=batch_size, verbose=0)  # warm-up / trace
    if len(x) % batch_size:
        model.predict(x[-(len(x) % batch_size):], batch_size=batch_size, verbose=0)  # partial-batch shape
    t = time_calls(lambda: model.predict(x, batch_size=batch_size, verbose=0), repeats)
    return t.median, t.median_cpu


def time_training_epoch(cfg, n_subset: int, rng: np.random.Generator) -> float:
    tc = TrainingConfig(network=cfg)
    x = rng.normal(size=(n_subset, cfg.n_timepoints)).astype("float32")
    y = rng.uniform(0, 1, size=(n_subset, 2)).astype("float32")
    n_val = int(round(0.2 * n_subset))
    model = build_from_config(cfg)
    _compile(model, tc, LabelScaling.fixed(), gpu=False)
    kw = dict(batch_size=tc.batch_size, validation_data=(x[:n_val], y[:n_val]), verbose=0, shuffle=False)
    model.fit(x[n_val:], y[n_val:], epochs=1, **kw)  # warm-up (tracing)
    return time_calls(lambda: model.fit(x[n_val:], y[n_val:], epochs=1, **kw), 3).median * N_FULL / n_subset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per cell (median), >= 1")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--paper-jit-batch-sizes", type=int, nargs="*", default=[4096],
                    help="batch sizes timed for the paper network WITH jit (XLA convolutions are slow on CPU: "
                         "~3x slower than without, ~1 min per call, so by default only one cell)")
    ap.add_argument("--train-subset", type=int, default=6400, help="signatures used to time a training epoch")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    info = runtime_info()
    load0 = os.getloadavg()
    say(f"# bench_network  {dt.datetime.now().isoformat(timespec='seconds')}")
    say(f"# command: {shlex.join([sys.executable, *sys.argv])}")
    say(f"# machine: {info['cpu']}, {platform.platform()}; device {info['device']}; backend {info['backend']}")
    say(f"# versions: {json.dumps(info['versions'])}")
    say(f"# load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} (shared machine: timings are noisy)")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_MAP, 200)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)

    configs = {"paper": paper_config(), "compact": compact_config()}
    say("# parameters: " + ", ".join(f"{k} {parameter_count(build_from_config(c)):,}" for k, c in configs.items()))
    say()
    say(f"Inference of {N_MAP:,} signatures (128x128 map), median of {args.repeats}: "
        "wall-clock s (process CPU s, all threads; less sensitive to other users of the machine)")
    say(f"{'network':<9}{'jit':>5}" + "".join(f"{'batch ' + str(b):>16}" for b in args.batch_sizes))
    results: dict[tuple[str, bool, int], float] = {}
    cpu_s: dict[tuple[str, bool, int], float] = {}
    for name, cfg in configs.items():
        for jit in (False, True):
            row = f"{name:<9}{str(jit):>5}"
            for bs in args.batch_sizes:
                if name == "paper" and jit and bs not in args.paper_jit_batch_sizes:
                    row += f"{'-':>16}"
                    continue
                t, c = time_inference(cfg, bs, jit, x, args.repeats)
                results[(name, jit, bs)] = t
                cpu_s[(name, jit, bs)] = c
                row += f"{t:>8.2f} ({c:5.1f})"
            say(row)
    base_key = ("paper", False, 1024 if 1024 in args.batch_sizes else args.batch_sizes[0])
    base = results[base_key]
    best = {n: min((v, k) for k, v in results.items() if k[0] == n) for n in configs}
    say()
    say(f"baseline: paper network, batch {base_key[2]}, no jit = {base:.2f} s")
    for n, (t, k) in best.items():
        say(f"best {n:<8}: {t:.2f} s (jit={k[1]}, batch {k[2]}) -> {base / t:.1f}x the baseline; "
            f"{N_MAP / t:,.0f} signatures/s")

    # What a map of the brain slice costs in practice: predict_maps only runs the tissue pixels.
    n_slice = int(brain_phantom(128).tissue_mask.sum())
    say()
    say(f"Brain slice: the {n_slice:,} tissue pixels of mrfbook.physics.phantom.brain_phantom(128) (what predict_maps "
        f"evaluates), best batch above, no jit, median of {args.repeats}; effective throughput = 2 x multiply-adds "
        "x signatures / wall time")
    slice_s: dict[str, float] = {}
    for name, cfg in configs.items():
        bs = best[name][1][2]
        slice_s[name], c = time_inference(cfg, bs, False, x[:n_slice], args.repeats)
        gflops = 2 * multiply_adds(cfg) * n_slice / slice_s[name] / 1e9
        say(f"{name:<9} batch {bs:>5}: {slice_s[name]:6.2f} s wall ({c:5.1f} CPU s), {gflops:6.1f} GFLOP/s, "
            f"{multiply_adds(cfg) / 1e6:.1f} M multiply-adds per signature")

    epoch = {}
    if not args.skip_training:
        say()
        say(f"Training, one epoch of the paper recipe (batch 256), timed on {args.train_subset:,} signatures "
            f"and scaled to {N_FULL:,} (64,080 train + 16,020 validation); median of 3 [s]")
        for name, cfg in configs.items():
            epoch[name] = time_training_epoch(cfg, args.train_subset, rng)
            say(f"{name:<9} {epoch[name]:8.1f} s/epoch  -> 50 epochs {50 * epoch[name] / 3600:.2f} h")
    load1 = os.getloadavg()
    say(f"# load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    summary = {
        "bench": "network",
        "n_signatures": N_MAP,
        "paper_b1024_nojit_s": round(base, 3),
        "paper_best_s": round(best["paper"][0], 3),
        "paper_best_batch": best["paper"][1][2],
        "paper_best_jit": best["paper"][1][1],
        "compact_best_s": round(best["compact"][0], 3),
        "compact_best_batch": best["compact"][1][2],
        "compact_best_jit": best["compact"][1][1],
        "paper_b1024_nojit_cpu_s": round(cpu_s[base_key], 2),
        "compact_best_cpu_s": round(cpu_s[best["compact"][1]], 2),
        "speedup_paper_best_vs_baseline": round(base / best["paper"][0], 2),
        "speedup_compact_best_vs_baseline": round(base / best["compact"][0], 2),
        "target_2s_met_paper": best["paper"][0] <= 2.0,
        "target_2s_met_compact": best["compact"][0] <= 2.0,
        "n_slice_tissue": n_slice,
        "paper_slice_s": round(slice_s["paper"], 3),
        "compact_slice_s": round(slice_s["compact"], 3),
        "target_2s_met_paper_slice": slice_s["paper"] <= 2.0,
        "target_2s_met_compact_slice": slice_s["compact"] <= 2.0,
        "train_epoch_full_paper_s": round(epoch["paper"], 1) if epoch else None,
        "train_epoch_full_compact_s": round(epoch["compact"], 1) if epoch else None,
        "backend": info["backend"],
        "cpus": os.cpu_count(),
        "load_avg_start": round(load0[0], 2),
        "load_avg_end": round(load1[0], 2),
    }
    say(json.dumps(summary))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
