"""Benchmark: dictionary matching against the 80,100-atom paper dictionary.

Workloads (signatures simulated with :func:`mrfbook.physics.epg.simulate_fisp`, scaled by PD):

* ``slice``   -- the 128 x 128 brain phantom stack: 16,384 signatures, of which the
  tissue pixels carry signal (background is exactly zero; both methods skip it);
* ``tissue``  -- 16,384 tissue signatures (brain phantoms with seeds 1, 2, 3), real;
* ``noisy``   -- the same with a random phase per signature and complex Gaussian noise
  (sigma = 5 % of the RMS signal per time point), complex64;
* ``test80k`` -- 80,000 signatures of the shifted synthetic test grid (the size of the
  paper's matching timing, ``mrfbook.paper.PAPER["speed"]["matching_80k_s"]``), only with ``--with-80k``.

Methods:

* baseline -- :func:`mrfbook.recon.matching.brute_force_match`: one float32 BLAS product
  (chunk of 1,024 signatures x all unit atoms) plus ``argmax`` per chunk, the strongest
  honest simple method;
* ours -- :func:`mrfbook.recon.matching.match_signatures` (default SVD rank, exact
  branch-and-bound + float64 re-scoring); a rank sweep on ``tissue``.

Agreement is the fraction of signatures given the same atom as the exhaustive float64
search (:func:`brute_force_match` with ``dtype=float64``). Times are medians of
``--repeats`` runs after one warm-up (the warm-up also builds the cached search index,
timed separately). Memory: tracemalloc peak of one run. Prints a table and ends with
ONE JSON line. Run by hand:

    python benchmarks/bench_matching.py [--repeats 5] [--baseline-repeats 5] [--with-80k]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tracemalloc

import numpy as np

from mrfbook.paper import paper_value
from mrfbook.physics.dictionary import cached_dictionary, shifted_test_grid
from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.phantom import brain_phantom
from mrfbook.recon.matching import _INDEX_CACHE, DEFAULT_RANK, brute_force_match, match_signatures
from mrfbook.utils.timing import Stopwatch, time_calls


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def workloads(dictionary, with_80k: bool) -> dict[str, np.ndarray]:
    seq = dictionary.sequence
    ph = brain_phantom(128)
    m = ph.tissue_mask.ravel()
    slice_sig = np.zeros((m.size, seq.n_timepoints), np.float32)
    slice_sig[m] = simulate_fisp(seq, ph.t1_ms.ravel()[m], ph.t2_ms.ravel()[m]) * ph.pd.ravel()[m][:, None]
    params = [brain_phantom(128, seed=s).parameters() for s in (1, 2, 3)]
    t1, t2, pd = (np.concatenate([p[j] for p in params])[:16384] for j in range(3))
    tissue = (simulate_fisp(seq, t1, t2) * pd[:, None]).astype(np.float32)
    rng = np.random.default_rng(0)
    sigma = 0.05 * np.sqrt(np.mean(tissue**2))
    noisy = tissue * np.exp(1j * rng.uniform(0, 2 * np.pi, (len(tissue), 1)))
    noisy = (noisy + sigma * (rng.standard_normal(tissue.shape) + 1j * rng.standard_normal(tissue.shape)))
    out = {"slice": slice_sig, "tissue": tissue, "noisy": noisy.astype(np.complex64)}
    if with_80k:
        gt1, gt2 = shifted_test_grid()
        pick = np.random.default_rng(1).choice(gt1.size, 80_000, replace=False)
        out["test80k"] = simulate_fisp(seq, gt1[pick], gt2[pick]).astype(np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs of our method per workload")
    ap.add_argument("--baseline-repeats", type=int, default=5, help="runs of the baseline per workload")
    ap.add_argument("--with-80k", action="store_true", help="also time 80,000 signatures (baseline run once)")
    args = ap.parse_args()

    load0 = os.getloadavg()
    dictionary = cached_dictionary()
    data = workloads(dictionary, args.with_80k)

    # first-call cost: SVD basis + search tree (cached per dictionary and rank afterwards)
    _INDEX_CACHE.clear()
    with Stopwatch() as sw:
        match_signatures(data["tissue"][:10], dictionary)
    index_s = sw.seconds

    rows, record = [], {"benchmark": "bench_matching", "n_atoms": dictionary.n_atoms,
                        "n_timepoints": dictionary.n_timepoints, "default_rank": DEFAULT_RANK,
                        "index_build_s": round(index_s, 3)}
    for name, x in data.items():
        print(f"... {name}", file=sys.stderr, flush=True)
        n_signal = int(np.count_nonzero(np.abs(x).sum(axis=1)))
        exact = brute_force_match(x, dictionary, dtype=np.float64).index
        ours_res = match_signatures(x, dictionary)  # warm-up
        ours = time_calls(lambda: match_signatures(x, dictionary), args.repeats).seconds
        base_rep = 1 if name == "test80k" else args.baseline_repeats
        base_res = brute_force_match(x, dictionary)
        base = time_calls(lambda: brute_force_match(x, dictionary), base_rep).seconds
        agree_ours = float(np.mean(ours_res.index == exact))
        agree_base = float(np.mean(base_res.index == exact))
        mem_ours = peak_mib(lambda: match_signatures(x, dictionary))
        mem_base = peak_mib(lambda: brute_force_match(x, dictionary))
        med_o, med_b = float(np.median(ours)), float(np.median(base))
        rows.append((name, len(x), n_signal, med_b, base_rep, med_o, args.repeats, med_b / med_o,
                     agree_base, agree_ours, mem_base, mem_ours))
        record[name] = {"n": len(x), "n_signal": n_signal, "baseline_s": round(med_b, 3),
                        "baseline_runs_s": [round(t, 3) for t in base], "ours_s": round(med_o, 3),
                        "ours_runs_s": [round(t, 3) for t in ours], "speedup": round(med_b / med_o, 1),
                        "agree_baseline": agree_base, "agree_ours": agree_ours,
                        "peak_mib_baseline": round(mem_base, 1), "peak_mib_ours": round(mem_ours, 1)}

    sweep = {}
    x = data["tissue"]
    exact = brute_force_match(x, dictionary, dtype=np.float64).index
    for rank in (4, 8, 16, 24, 32, None):
        res = match_signatures(x, dictionary, rank=rank)  # builds this rank's index
        runs = time_calls(lambda: match_signatures(x, dictionary, rank=rank), args.repeats).seconds
        sweep[str(rank)] = {"s": round(float(np.median(runs)), 3), "agree": float(np.mean(res.index == exact))}

    print("# benchmarks/bench_matching.py")
    print(f"# dictionary: {dictionary.n_atoms} atoms x {dictionary.n_timepoints} time points (paper grid)")
    print(f"# load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    print(f"# search index build (SVD rank {DEFAULT_RANK} + tree), first call: {index_s:.2f} s")
    hdr = (f"{'workload':9} {'N':>6} {'signal':>6} {'baseline s':>11} {'ours s':>8} {'speed-up':>9} "
           f"{'agree base':>10} {'agree ours':>10} {'MiB base':>9} {'MiB ours':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r[0]:9} {r[1]:6d} {r[2]:6d} {r[3]:8.3f}/{r[4]:<2d} {r[5]:6.3f}/{r[6]:<1d} {r[7]:8.1f}x "
              f"{r[8]:10.5f} {r[9]:10.5f} {r[10]:9.1f} {r[11]:9.1f}")
    print("-" * len(hdr))
    print("(time = median over the runs after the '/'; agreement = same atom as exhaustive float64 search)")
    if "test80k" in record:
        print(f"the paper: {paper_value('speed', 'matching_80k_s')} s for 80,000 signatures (inner products)")
    print("rank sweep on 'tissue' (16,384 signatures):")
    for rank, v in sweep.items():
        print(f"  rank {rank:>4}: {v['s']:.3f} s, agreement {v['agree']:.5f}")
    record["rank_sweep_tissue"] = sweep
    record["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    record["load_average_1min_start"] = round(load0[0], 2)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
