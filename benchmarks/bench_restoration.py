"""Benchmark: restoring a 128 x 128 x 200 brain image stack from 15 % of k-space.

Times, on this machine, for the brain phantom (:func:`mrfbook.physics.phantom.brain_phantom`)
and the paper's sequence, variable-density line masks at 15 % (seed 0), no noise:

* zero filling (``F_u^H Y``);
* low-rank restoration, eq. 2 of the paper (:func:`mrfbook.recon.lowrank.lowrank_restore`,
  lam = 5, mu = 1, tol = 1e-4), ISTA and FISTA, run to convergence: median wall time of
  ``--repeats`` runs after a warm-up, iterations, time per iteration;
* FLOR (:func:`mrfbook.recon.flor.flor_restore`, 30 iterations as the authors);
* the baseline: the same proximal gradient with a plain full SVD per iteration
  (``numpy.linalg.svd(full_matrices=False)``, ``svt_method="svd"``). Running it to
  convergence would take many minutes, so its *per-iteration* cost is measured
  (``--baseline-iters`` iterations, median of ``--repeats``) and its time to convergence
  is extrapolated with the FISTA iteration count (stated as such). The baseline is timed
  with OpenBLAS's default threads and with one thread; the faster counts. The threshold
  alone is also timed on the first iterate (the highest-rank one), Gram-eigh vs full SVD.

NRMSE = ||X_hat - X||_F / ||X||_F over the whole (H, W, L) stack. "CPU s" is the process
CPU time (all threads) of the same runs: on a shared machine the wall time grows with the
other jobs' load, the CPU time much less; on an idle 2-core machine the wall time is at
most the CPU time (the FFTs use both cores).
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
    print(f"problem: brain phantom {size}x{size}, L = {n_t}, {args.pattern} masks, "
          f"sampled fraction {masks.mean():.4f}, lam = {args.lam}, tol = {args.tol}, "
          f"FFT workers = {op.workers}")

    # warm-up: numba kernels, FFT plans, BLAS
    lowrank_restore(y, op, lam=args.lam, max_iter=3, tol=None, fista=True)
    flor_restore(y, op, dictionary, n_iter=2)

    rows = []
    zf_t = time_calls(lambda: zero_filled(y, op), args.repeats)
    rows.append(dict(method="zero-filled", median_s=zf_t.median, n_iter=0,
                     per_iter_s=float("nan"), converged=True, nrmse=nrmse(zf_t.result, x), times=zf_t))

    results = {}
    for name, kwargs in [("low-rank ISTA", dict(fista=False)), ("low-rank FISTA", dict(fista=True))]:
        times = time_calls(lambda: lowrank_restore(y, op, lam=args.lam, tol=args.tol,
                                                   max_iter=args.max_iter, **kwargs), args.repeats)
        results[name] = res = times.result
        med = times.median
        rows.append(dict(method=name, median_s=med, n_iter=res.n_iter, per_iter_s=med / res.n_iter,
                         converged=res.converged, nrmse=nrmse(res.images, x), times=times,
                         final_rank=int(res.rank[-1]), objective=float(res.objective[-1])))

    times = time_calls(lambda: flor_restore(y, op, dictionary, lam=args.lam), args.repeats)
    fres, med = times.result, times.median
    rows.append(dict(method=f"FLOR (k = {fres.extra['basis'].shape[1]})", median_s=med,
                     n_iter=fres.n_iter, per_iter_s=med / fres.n_iter, converged=fres.converged,
                     nrmse=nrmse(fres.images, x), times=times, final_rank=int(fres.rank[-1])))

    # baseline: same loop, full SVD per iteration (per-iteration cost, extrapolated). Plain
    # numpy uses OpenBLAS's default threads; on a busy 2-core machine one thread can be
    # faster, so both are timed and the faster is the baseline.
    def baseline_run():
        return lowrank_restore(y, op, lam=args.lam, tol=None, fista=True,
                               max_iter=args.baseline_iters, svt_method="svd")

    b_default = time_calls(baseline_run, args.repeats)
    with threadpool_limits(1):
        b_single = time_calls(baseline_run, args.repeats)
    b_times = min(b_default, b_single, key=lambda t: t.median)
    baseline_threads = "default" if b_times is b_default else "1"
    g_times = time_calls(lambda: lowrank_restore(y, op, lam=args.lam, tol=None, fista=True,
                                                 max_iter=args.baseline_iters), args.repeats)
    base_per_iter = b_times.median / args.baseline_iters
    gram_per_iter_first = g_times.median / args.baseline_iters
    fista = results["low-rank FISTA"]
    fista_row = rows[2]
    base_total = base_per_iter * fista.n_iter
    rows.append(dict(method="baseline: FISTA + full SVD", median_s=base_total, n_iter=fista.n_iter,
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

    width = 30
    print(f"{'method':<{width}} {'median s':>9} {'CPU s':>7} {'iters':>6} {'s/iter':>8} {'conv':>5} "
          f"{'NRMSE':>8}  note")
    print("-" * 90)
    for r in rows:
        per = "" if not np.isfinite(r["per_iter_s"]) else f"{r['per_iter_s']:.4f}"
        err = "" if not np.isfinite(r["nrmse"]) else f"{r['nrmse']:.4f}"
        note = r.get("note", f"runs {', '.join(f'{t:.2f}' for t in r['times'].seconds)} s")
        cpu = r["times"].median_cpu * (r["median_s"] / r["times"].median)
        print(f"{r['method']:<{width}} {r['median_s']:>9.3f} {cpu:>7.2f} {r['n_iter']:>6d} {per:>8} "
              f"{str(r['converged']):>5} {err:>8}  {note}")
    print("-" * 90)
    print(f"SVT of the first iterate (rank {rank0} after threshold): full SVD {svt_svd:.3f} s, "
          f"Gram-eigh {svt_gram:.4f} s -> {svt_svd / svt_gram:.1f}x")
    print(f"per iteration (first {args.baseline_iters}, highest rank): full-SVD loop "
          f"{base_per_iter:.3f} s vs ours {gram_per_iter_first:.3f} s -> "
          f"{base_per_iter / gram_per_iter_first:.1f}x")
    print(f"time to convergence, FISTA: {fista_row['median_s']:.2f} s "
          f"({fista.n_iter} iterations) vs full-SVD baseline ~{base_total:.0f} s (extrapolated) -> "
          f"{base_total / fista_row['median_s']:.1f}x")
    summary = {
        "benchmark": "bench_restoration",
        "size": size, "n_timepoints": n_t, "pattern": args.pattern,
        "sampling_fraction": round(float(masks.mean()), 4), "lam": args.lam, "tol": args.tol,
        "repeats": args.repeats,
        "zero_filled_nrmse": round(rows[0]["nrmse"], 4),
        "ista_s": round(rows[1]["median_s"], 3), "ista_iters": rows[1]["n_iter"],
        "ista_s_per_iter": round(rows[1]["per_iter_s"], 4), "ista_nrmse": round(rows[1]["nrmse"], 4),
        "ista_cpu_s": round(rows[1]["times"].median_cpu, 3),
        "fista_s": round(rows[2]["median_s"], 3), "fista_cpu_s": round(rows[2]["times"].median_cpu, 3),
        "fista_iters": rows[2]["n_iter"],
        "fista_s_per_iter": round(rows[2]["per_iter_s"], 4), "fista_nrmse": round(rows[2]["nrmse"], 4),
        "flor_s": round(rows[3]["median_s"], 3), "flor_iters": rows[3]["n_iter"],
        "flor_nrmse": round(rows[3]["nrmse"], 4), "flor_subspace_rank": int(fres.extra["basis"].shape[1]),
        "baseline_full_svd_s_per_iter": round(base_per_iter, 3),
        "baseline_blas_threads": baseline_threads,
        "ours_s_per_iter_first_iters": round(gram_per_iter_first, 4),
        "per_iter_speedup_vs_full_svd": round(base_per_iter / gram_per_iter_first, 1),
        "svt_speedup_first_iterate": round(svt_svd / svt_gram, 1),
        "baseline_to_convergence_s_extrapolated": round(base_total, 1),
        "speedup_to_convergence_vs_full_svd": round(base_total / rows[2]["median_s"], 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
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
