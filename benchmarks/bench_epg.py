"""Benchmark: EPG simulation of the full paper dictionary (80,100 tissues x 200 points).

Times, on this machine:

* the compiled EPG (:func:`mrfbook.physics.epg.simulate_fisp`, numba, parallel over
  tissues, all states = exact): median of ``--repeats`` runs after a warm-up;
  compile time measured separately in a fresh process with an empty numba
  cache, and the time to load the cached compiled code;
* the same with the authors' 20-state truncation;
* the strongest honest baseline, the same EPG in vectorised NumPy
  (:func:`mrfbook.physics.epg.simulate_fisp_numpy`, identical pruning of unreachable
  orders); ``--quick`` times it on every 10th tissue and scales by the
  tissue count (stated in the output); also the NumPy EPG without pruning;
* the isochromat Bloch reference (:func:`mrfbook.physics.bloch.simulate_fisp_isochromats`)
  per tissue.

Peak memory: tracemalloc peak of NumPy allocations during one compiled run,
and the whole process's peak resident set size after the compiled runs.
Prints a table and ends with ONE JSON line.  Run by hand:

    python benchmarks/bench_epg.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import tracemalloc

import numpy as np

from mrfbook.physics.bloch import simulate_fisp_isochromats
from mrfbook.physics.dictionary import paper_grid
from mrfbook.physics.epg import simulate_fisp, simulate_fisp_numpy
from mrfbook.physics.sequence import paper_sequence
from mrfbook.utils.timing import time_calls


def grid() -> tuple[np.ndarray, np.ndarray]:
    """The paper's 80,100 (T1, T2) pairs in ms."""
    return paper_grid()




_FIRST_CALL = (
    "import time, numpy as np; t0 = time.perf_counter(); "
    "from mrfbook.physics.epg import simulate_fisp; from mrfbook.physics.sequence import paper_sequence; "
    "s = paper_sequence(); t1 = time.perf_counter(); simulate_fisp(s, np.array([800.0]), np.array([80.0])); "
    "t2 = time.perf_counter(); simulate_fisp(s, np.array([800.0]), np.array([80.0])); "
    "t3 = time.perf_counter(); print((t2 - t1) - (t3 - t2))"
)


def first_call_seconds(cache_dir: str | None) -> float:
    """First-call overhead of simulate_fisp in a fresh process (compile or cache load)."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    res = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="time NumPy baselines on every 10th tissue and scale")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of the compiled EPG (median)")
    ap.add_argument("--numpy-repeats", type=int, default=1, help="timed runs of the NumPy baseline")
    args = ap.parse_args()

    seq = paper_sequence()
    t1, t2 = grid()
    n = t1.size
    rows: list[tuple[str, float, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        compile_s = first_call_seconds(tmp)  # empty cache: real compilation
    cache_load_s = first_call_seconds(None)  # the package's on-disk cache
    rows.append(("numba compile (fresh cache, 1 tissue)", compile_s, "once per install"))
    rows.append(("numba cached first call", cache_load_s, "once per process"))

    simulate_fisp(seq, t1[:100], t2[:100])  # warm-up
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    numba_times = time_calls(lambda: simulate_fisp(seq, t1, t2), args.repeats).seconds
    rss_after_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    atoms = simulate_fisp(seq, t1, t2)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    numba_med = float(np.median(numba_times))
    rows.append((f"EPG numba, all states, {n} tissues (median of {args.repeats})", numba_med,
                 f"min {min(numba_times):.3f} s, max {max(numba_times):.3f} s"))
    t20 = time_calls(lambda: simulate_fisp(seq, t1, t2, n_states=20), args.repeats).seconds
    rows.append((f"EPG numba, 20 states (authors' truncation, median of {args.repeats})", float(np.median(t20)), ""))

    sub = slice(None, None, 10) if args.quick else slice(None)
    frac = n / t1[sub].size
    np_times = time_calls(lambda: simulate_fisp_numpy(seq, t1[sub], t2[sub]), args.numpy_repeats).seconds
    numpy_s = float(np.median(np_times)) * frac
    how = f"{t1[sub].size} tissues x {frac:.2f} (scaled)" if args.quick else "full run"
    rows.append((f"EPG numpy baseline, same pruning (median of {args.numpy_repeats})", numpy_s, how))
    check = simulate_fisp_numpy(seq, t1[::997], t2[::997])
    max_diff = float(np.abs(check - atoms[::997]).max())
    sub_naive = slice(None, None, 10)
    naive_s = time_calls(lambda: simulate_fisp_numpy(
        seq, t1[sub_naive], t2[sub_naive], light_cone=False), 1).median * n / t1[sub_naive].size
    rows.append(("EPG numpy, no pruning (all orders)", naive_s, f"{t1[sub_naive].size} tissues, scaled"))

    bt1 = np.array([300.0, 800.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 5000.0])
    bt2 = np.array([30.0, 80.0, 60.0, 100.0, 200.0, 500.0, 1000.0, 2000.0])
    simulate_fisp_isochromats(seq, bt1[:1], bt2[:1])
    b_one = time_calls(lambda: simulate_fisp_isochromats(seq, bt1[:1], bt2[:1]), 3).median
    b_many = time_calls(lambda: simulate_fisp_isochromats(seq, bt1, bt2), 3).median / bt1.size
    rows.append(("Bloch isochromats (N = 2L+2 = 402), one tissue", b_one, ""))
    rows.append((f"Bloch isochromats, per tissue in a batch of {bt1.size}", b_many,
                 f"full dictionary ~ {b_many * n / 60:.0f} min"))

    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>10}  note")
    print("-" * (width + 40))
    for what, sec, note in rows:
        print(f"{what:<{width}}  {sec:>10.4f}  {note}")
    print("-" * (width + 40))
    print(f"speed-up of compiled EPG over the numpy baseline: {numpy_s / numba_med:.1f}x "
          f"(over unpruned numpy: {naive_s / numba_med:.1f}x)")
    print(f"tracemalloc peak during one compiled run: {traced_peak / 2**20:.1f} MiB "
          f"(output {atoms.nbytes / 2**20:.1f} MiB float32)")
    print(f"process peak RSS: {rss_before_mb:.0f} MiB before, {rss_after_mb:.0f} MiB after the compiled runs")
    print(f"max |numba - numpy| on {check.shape[0]} tissues: {max_diff:.2e}")
    print(json.dumps({
        "benchmark": "bench_epg",
        "n_tissues": int(n),
        "n_timepoints": seq.n_timepoints,
        "numba_all_states_median_s": round(numba_med, 4),
        "numba_runs_s": [round(x, 4) for x in numba_times],
        "numba_20_states_median_s": round(float(np.median(t20)), 4),
        "numba_compile_s": round(compile_s, 3),
        "numba_cache_load_s": round(cache_load_s, 3),
        "numpy_baseline_s": round(numpy_s, 3),
        "numpy_baseline_scaled_from_subset": bool(args.quick),
        "numpy_unpruned_s_scaled": round(naive_s, 3),
        "speedup_vs_numpy": round(numpy_s / numba_med, 2),
        "tracemalloc_peak_mib": round(traced_peak / 2**20, 1),
        "peak_rss_mib": round(rss_after_mb, 1),
        "bloch_one_tissue_s": round(b_one, 4),
        "bloch_per_tissue_batched_s": round(b_many, 4),
        "max_abs_diff_numba_numpy": max_diff,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
