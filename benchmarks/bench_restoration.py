"""Benchmark: restoring a 128 x 128 x 200 brain image stack from 15 % of k-space.

Times, on this machine, for the brain phantom (:func:`mrfbook.physics.phantom.brain_phantom`)
and the paper's sequence, variable-density line masks at 15 % (seed 0), no noise, in one run:

* zero filling (``F_u^H Y``);
* **before**: the low-rank restoration as it ran before the factored engine, eq. 2 of the paper
  (:func:`mrfbook.recon.lowrank.lowrank_restore` with ``engine="dense"``, lam = 5, mu = 1,
  tol = 1e-4, max 300 iterations, no continuation), ISTA and FISTA, run to convergence;
* the same FISTA iterations on the factored k-space engine (``engine="factored"``, the
  library default): the engine's speed-up alone, same iterates;
* **after, fixed weight**: :func:`mrfbook.recon.weights.restore` with ``lam=5.0`` (FISTA,
  continuation, ALS blocks, tol = 1e-4), and with the weight the search chose (``lam=<chosen>``);
* **after, chosen weight**: ``restore(kspace, op)`` (``lam="auto"``: k-space hold-out search,
  then the final restoration warm-started), end to end; the search time is reported apart;
* FLOR (:func:`mrfbook.recon.flor.flor_restore`, 30 iterations as the authors) on both engines;
* the baseline: the dense proximal gradient with a plain full SVD per iteration
  (``numpy.linalg.svd(full_matrices=False)``, ``svt_method="svd"``). Running it to
  convergence would take many minutes, so its *per-iteration* cost is measured
  (``--baseline-iters`` iterations, median of ``--repeats``) and its time to convergence
  is extrapolated with the old FISTA iteration count (stated as such). The baseline is timed
  with OpenBLAS's default threads and with one thread; the faster counts. The threshold
  alone is also timed on the first iterate (the highest-rank one), Gram-eigh vs full SVD.

Every time is the median wall time of ``--repeats`` runs after a warm-up. NRMSE =
||X_hat - X||_F / ||X||_F over the whole (H, W, L) stack. "CPU s" is the process CPU time (all
threads) of the same runs: on a shared machine the wall time grows with the other jobs' load, the
CPU time much less. The load average (1 min) is printed at the start and the end.
Prints a table and ends with ONE JSON line; also writes everything to
benchmarks/results/bench_restoration.txt (date, machine, command). Run by hand:

    python benchmarks/bench_restoration.py [--repeats 3] [--size 128] [--pattern lines]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
from contextlib import redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from mrfbook.physics.dictionary import cached_dictionary
from mrfbook.physics.phantom import brain_phantom
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.acquisition import UndersampledFourier, image_stack, variable_density_masks, zero_filled
from mrfbook.recon.flor import flor_restore
from mrfbook.recon.lowrank import data_scale, lowrank_restore, svt
from mrfbook.recon.weights import choose_weight, restore
from mrfbook.utils.timing import time_calls

RESULTS = Path(__file__).resolve().parent / "results" / "bench_restoration.txt"


def nrmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def run(args: argparse.Namespace) -> dict:
    size, n_t = args.size, args.frames
    maps = brain_phantom(size)
    seq = paper_sequence(n_t)
    x = image_stack(maps, seq)
    masks = variable_density_masks((size, size), n_t, args.ratio, pattern=args.pattern, seed=0)
    op = UndersampledFourier(masks)
    y = op.forward(x)
    dictionary = cached_dictionary(seq)
    load_start = os.getloadavg()[0]
    print(f"problem: brain phantom {size}x{size}, L = {n_t}, {args.pattern} masks, "
          f"sampled fraction {masks.mean():.4f}, lam = {args.lam}, tol = {args.tol}, "
          f"FFT workers = {op.workers}")

    # warm-up: numba kernels, FFT plans, BLAS
    lowrank_restore(y, op, lam=args.lam, max_iter=3, tol=None, fista=True, engine="dense")
    restore(y, op, lam=args.lam, max_iter=20)
    choose_weight(y, op, candidates=[args.lam, args.lam / 2, args.lam / 4], max_iter=10)
    flor_restore(y, op, dictionary, n_iter=2)
    flor_restore(y, op, dictionary, n_iter=2, engine="dense")

    rows = []

    def add(name, times, res, **extra):
        med = times.median
        n_iter = res.n_iter if res is not None and hasattr(res, "n_iter") else 0
        images = res.images if hasattr(res, "images") else res
        row = dict(method=name, median_s=med, n_iter=n_iter, per_iter_s=med / n_iter if n_iter else float("nan"),
                   converged=getattr(res, "converged", True), nrmse=nrmse(images, x), times=times)
        row.update(extra)
        rows.append(row)
        return row

    zf_t = time_calls(lambda: zero_filled(y, op), args.repeats)
    add("zero-filled", zf_t, zf_t.result)

    old = dict(lam=args.lam, tol=args.tol, max_iter=args.max_iter, engine="dense")
    t = time_calls(lambda: lowrank_restore(y, op, fista=False, **old), args.repeats)
    ista_old = add("before: ISTA lam 5 (dense)", t, t.result)
    t = time_calls(lambda: lowrank_restore(y, op, fista=True, **old), args.repeats)
    fista_old = add("before: FISTA lam 5 (dense)", t, t.result)
    fista_old_res = t.result
    t = time_calls(lambda: lowrank_restore(y, op, fista=True, lam=args.lam, tol=args.tol, max_iter=args.max_iter),
                   args.repeats)
    fista_fact = add("FISTA lam 5, factored engine", t, t.result)
    t = time_calls(lambda: restore(y, op, lam=args.lam), args.repeats)
    new_fixed = add(f"after: restore(lam={args.lam:g})", t, t.result)
    t = time_calls(lambda: restore(y, op), args.repeats)
    auto_res = t.result
    choice = auto_res.extra["weight_choice"]
    auto = add("after: restore(lam='auto')", t, auto_res)
    search_s = float(np.median([choice.seconds]))
    t = time_calls(lambda: restore(y, op, lam=choice.lam), args.repeats)
    chosen_fixed = add(f"after: restore(lam={choice.lam:.3g})", t, t.result)

    t = time_calls(lambda: flor_restore(y, op, dictionary, lam=args.lam, engine="dense"), args.repeats)
    fres = t.result
    flor_old = add(f"before: FLOR (k = {fres.extra['basis'].shape[1]}, dense)", t, fres)
    t = time_calls(lambda: flor_restore(y, op, dictionary, lam=args.lam), args.repeats)
    flor_new = add(f"FLOR (k = {fres.extra['basis'].shape[1]}, factored)", t, t.result)

    # baseline: same loop, full SVD per iteration (per-iteration cost, extrapolated). Plain
    # numpy uses OpenBLAS's default threads; on a busy 2-core machine one thread can be
    # faster, so both are timed and the faster is the baseline.
    def baseline_run():
        return lowrank_restore(y, op, lam=args.lam, tol=None, fista=True, engine="dense",
                               max_iter=args.baseline_iters, svt_method="svd")

    b_default = time_calls(baseline_run, args.repeats)
    with threadpool_limits(1):
        b_single = time_calls(baseline_run, args.repeats)
    b_times = min(b_default, b_single, key=lambda t: t.median)
    baseline_threads = "default" if b_times is b_default else "1"
    g_times = time_calls(lambda: lowrank_restore(y, op, lam=args.lam, tol=None, fista=True, engine="dense",
                                                 max_iter=args.baseline_iters), args.repeats)
    base_per_iter = b_times.median / args.baseline_iters
    gram_per_iter_first = g_times.median / args.baseline_iters
    base_total = base_per_iter * fista_old_res.n_iter
    rows.append(dict(method="baseline: FISTA + full SVD", median_s=base_total, n_iter=fista_old_res.n_iter,
                     per_iter_s=base_per_iter, converged=False, nrmse=float("nan"), times=b_times,
                     note=f"extrapolated: {args.baseline_iters} iterations timed, "
                          f"BLAS threads {baseline_threads}"))

    # the threshold alone on the first iterate
    s = data_scale(y, op)
    z0 = (op.adjoint_frames(y) / np.float32(s)).astype(np.complex64)
    svd_default = time_calls(lambda: svt(z0, args.lam, method="svd"), args.repeats)
    with threadpool_limits(1):
        svd_single = time_calls(lambda: svt(z0, args.lam, method="svd"), args.repeats)
    svd_t = min(svd_default, svd_single, key=lambda t: t.median)
    gram_t = time_calls(lambda: svt(z0, args.lam, method="gram"), args.repeats)
    _, _, rank0 = gram_t.result
    svt_svd, svt_gram = svd_t.median, gram_t.median
    load_end = os.getloadavg()[0]

    width = 34
    print(f"{'method':<{width}} {'median s':>9} {'CPU s':>7} {'iters':>6} {'s/iter':>8} {'conv':>5} "
          f"{'NRMSE':>8}  note")
    print("-" * 100)
    for r in rows:
        per = "" if not np.isfinite(r["per_iter_s"]) else f"{r['per_iter_s']:.4f}"
        err = "" if not np.isfinite(r["nrmse"]) else f"{r['nrmse']:.4f}"
        note = r.get("note", f"runs {', '.join(f'{t:.2f}' for t in r['times'].seconds)} s")
        cpu = r["times"].median_cpu * (r["median_s"] / r["times"].median)
        print(f"{r['method']:<{width}} {r['median_s']:>9.3f} {cpu:>7.2f} {r['n_iter']:>6d} {per:>8} "
              f"{str(r['converged']):>5} {err:>8}  {note}")
    print("-" * 100)
    print(f"weight search (lam='auto'): {choice.candidates.size} candidates "
          f"{', '.join(f'{v:.3g}' for v in choice.candidates)}; hold-out RMS error "
          f"{', '.join(f'{v:.3g}' for v in choice.holdout_error)}; iterations "
          f"{', '.join(str(int(v)) for v in choice.iterations)}")
    print(f"chosen lam = {choice.lam:.4g} (normalised units), search {search_s:.2f} s of "
          f"{auto['median_s']:.2f} s end to end; error level {auto_res.extra['error_level']:.3g} "
          f"(true RMS error per sample {float(np.sqrt(np.mean(np.abs(auto_res.images - x) ** 2))):.3g})")
    print(f"fixed weight lam = {args.lam:g}: before (dense FISTA) {fista_old['median_s']:.2f} s -> "
          f"factored engine {fista_fact['median_s']:.2f} s ({fista_old['median_s'] / fista_fact['median_s']:.1f}x) "
          f"-> restore(lam={args.lam:g}) {new_fixed['median_s']:.2f} s "
          f"({fista_old['median_s'] / new_fixed['median_s']:.1f}x), NRMSE {fista_old['nrmse']:.4f} -> "
          f"{new_fixed['nrmse']:.4f} ({100 * (new_fixed['nrmse'] / fista_old['nrmse'] - 1):+.1f} %)")
    print(f"chosen weight: restore(lam='auto') {auto['median_s']:.2f} s "
          f"({auto['median_s'] / fista_old['median_s']:.2f}x the old fixed-weight FISTA's time), "
          f"NRMSE {auto['nrmse']:.4f} against {fista_old['nrmse']:.4f} ({fista_old['nrmse'] / auto['nrmse']:.1f}x lower)")
    print(f"SVT of the first iterate (rank {rank0} after threshold): full SVD {svt_svd:.3f} s, "
          f"Gram-eigh {svt_gram:.4f} s -> {svt_svd / svt_gram:.1f}x")
    print(f"per iteration (first {args.baseline_iters}, highest rank): full-SVD loop "
          f"{base_per_iter:.3f} s vs dense Gram loop {gram_per_iter_first:.3f} s -> "
          f"{base_per_iter / gram_per_iter_first:.1f}x")
    summary = {
        "benchmark": "bench_restoration",
        "size": size, "n_timepoints": n_t, "pattern": args.pattern,
        "sampling_fraction": round(float(masks.mean()), 4), "lam": args.lam, "tol": args.tol,
        "repeats": args.repeats,
        "zero_filled_nrmse": round(rows[0]["nrmse"], 4),
        "old_ista_s": round(ista_old["median_s"], 3), "old_ista_iters": ista_old["n_iter"],
        "old_ista_nrmse": round(ista_old["nrmse"], 4),
        "old_fista_s": round(fista_old["median_s"], 3), "old_fista_cpu_s": round(fista_old["times"].median_cpu, 3),
        "old_fista_iters": fista_old["n_iter"], "old_fista_s_per_iter": round(fista_old["per_iter_s"], 4),
        "old_fista_nrmse": round(fista_old["nrmse"], 4),
        "factored_fista_s": round(fista_fact["median_s"], 3), "factored_fista_iters": fista_fact["n_iter"],
        "factored_fista_s_per_iter": round(fista_fact["per_iter_s"], 4),
        "factored_fista_nrmse": round(fista_fact["nrmse"], 4),
        "new_fixed_s": round(new_fixed["median_s"], 3), "new_fixed_cpu_s": round(new_fixed["times"].median_cpu, 3),
        "new_fixed_iters": new_fixed["n_iter"], "new_fixed_nrmse": round(new_fixed["nrmse"], 4),
        "new_fixed_speedup": round(fista_old["median_s"] / new_fixed["median_s"], 1),
        "new_fixed_nrmse_change_pct": round(100 * (new_fixed["nrmse"] / fista_old["nrmse"] - 1), 2),
        "auto_s": round(auto["median_s"], 3), "auto_cpu_s": round(auto["times"].median_cpu, 3),
        "auto_runs_s": [round(v, 3) for v in auto["times"].seconds],
        "auto_search_s": round(search_s, 3), "auto_lam": round(float(choice.lam), 5),
        "auto_candidates": [round(float(v), 5) for v in choice.candidates],
        "auto_holdout_error": [float(f"{v:.4g}") for v in choice.holdout_error],
        "auto_final_iters": auto["n_iter"], "auto_nrmse": round(auto["nrmse"], 4),
        "auto_error_level": float(f"{auto_res.extra['error_level']:.4g}"),
        "auto_time_ratio_vs_old_fista": round(auto["median_s"] / fista_old["median_s"], 3),
        "chosen_fixed_s": round(chosen_fixed["median_s"], 3), "chosen_fixed_nrmse": round(chosen_fixed["nrmse"], 4),
        "old_flor_s": round(flor_old["median_s"], 3), "flor_s": round(flor_new["median_s"], 3),
        "flor_iters": flor_new["n_iter"], "flor_nrmse": round(flor_new["nrmse"], 4),
        "flor_subspace_rank": int(fres.extra["basis"].shape[1]),
        "baseline_full_svd_s_per_iter": round(base_per_iter, 3),
        "baseline_blas_threads": baseline_threads,
        "dense_s_per_iter_first_iters": round(gram_per_iter_first, 4),
        "svt_speedup_first_iterate": round(svt_svd / svt_gram, 1),
        "baseline_to_convergence_s_extrapolated": round(base_total, 1),
        "load_average_1min_start": round(load_start, 2),
        "load_average_1min_end": round(load_end, 2),
    }
    print(json.dumps(summary))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--ratio", type=float, default=0.15)
    ap.add_argument("--pattern", default="lines", choices=["lines", "points"])
    ap.add_argument("--lam", type=float, default=5.0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--baseline-iters", type=int, default=3)
    ap.add_argument("--output", type=Path, default=RESULTS, help="results file ('-' = none)")
    args = ap.parse_args()

    buf = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, s):  # noqa: D401 - print to the terminal and keep a copy
            sys.__stdout__.write(s)
            buf.write(s)
            return len(s)

    header = [
        "# benchmarks/bench_restoration.py results",
        f"# date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
        f"# machine: nproc={os.cpu_count()}, {platform.processor() or platform.machine()}, "
        f"{_cpu_name()}, load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        "# note: the machine may be shared with other jobs; timings are wall-clock under that load",
        f"# command: {Path(sys.executable).name} {' '.join(sys.argv)}",
        "",
    ]
    with redirect_stdout(Tee()):
        print("\n".join(header))
        run(args)
    if str(args.output) != "-":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(buf.getvalue())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu: unknown"


if __name__ == "__main__":
    main()
