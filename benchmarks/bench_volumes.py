"""Benchmark: mapping a volume several times larger than the workers' memory, with Dask.

Workload: a (128, 128, D, 200) float32 volume written to a ``.npy`` file slice by slice (the
writer never holds more than one slice). Slice d is the brain phantom
(:func:`mrfbook.physics.phantom.brain_phantom`, 128 x 128) at one of 24 heights between -40 and
60 mm (d mod 24), its fingerprints simulated with :func:`mrfbook.physics.epg.simulate_fisp` for
the paper's 200-point sequence, scaled by PD x (1 + 0.001 d); background pixels are exactly 0.
Method: dictionary matching against the paper's 80,100-atom dictionary
(:func:`mrfbook.analysis.volumes.map_volume`, default settings: one slice per task, the
volume's no-signal rule, so two reads of the file), on a ``LocalCluster`` of ``--workers``
processes x 1 thread (numba and BLAS threads per worker: 1) with ``--memory-limit`` per worker
(Dask pauses a worker at 80 % of it and restarts it at 95 %). The volume is ``--times`` x the
memory all workers together may use.

Measured: wall time of the mapping (cluster start and file writing excluded; the per-worker
search index build included), pixels/s (signal pixels, i.e. the ones matched; and all pixels)
per worker (wall) and per worker CPU second (psutil CPU times of the worker processes: less
sensitive to other jobs on the machine), peak resident memory (RSS, psutil, sampled every 0.1 s)
of each worker process and of this (client) process while mapping. Checks: three slices mapped in this process with
:func:`mrfbook.recon.matching.match_maps` on the pixels the volume's rule resolved equal the volume's maps
exactly. A serial baseline maps ``--baseline-slices`` slices in this process, one numba thread,
with no Dask: the per-worker throughput it would reach without any overhead. Prints a table and
ends with ONE JSON line. Run by hand (about 2-3 minutes on 2 cores; writes D x 13 MB to --dir):

    python benchmarks/bench_volumes.py [--workers 2] [--memory-limit 640MiB] [--times 4] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import psutil

from mrfbook.analysis.volumes import NpyVolume, map_volume, volume_cluster
from mrfbook.physics.dictionary import cached_dictionary
from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.phantom import brain_phantom
from mrfbook.recon.matching import match_maps
from mrfbook.utils.timing import Stopwatch

SIZE = 128
HEIGHTS_MM = np.linspace(-40.0, 60.0, 24)


def write_volume(path: Path, depth: int, dictionary) -> np.ndarray:
    """Write the (SIZE, SIZE, depth, L) float32 volume; returns the (SIZE, SIZE, depth) tissue mask."""
    seq = dictionary.sequence
    slices = []
    for z in HEIGHTS_MM:
        ph = brain_phantom(SIZE, slice_mm=float(z))
        m = ph.tissue_mask
        stack = np.zeros((SIZE, SIZE, seq.n_timepoints), dtype=np.float32)
        stack[m] = ph.pd[m, None] * simulate_fisp(seq, ph.t1_ms[m], ph.t2_ms[m], dtype=np.float64)
        slices.append(stack)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(SIZE, SIZE, depth, seq.n_timepoints))
    tissue = np.zeros((SIZE, SIZE, depth), dtype=bool)
    for d in range(depth):
        s = slices[d % len(slices)] * np.float32(1.0 + 0.001 * d)
        out[:, :, d, :] = s
        tissue[:, :, d] = np.any(s != 0, axis=-1)
        if d % 32 == 31:
            out.flush()
    out.flush()
    del out
    return tissue


class RssSampler:
    """Peak RSS of some processes, sampled every ``interval`` s in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.1) -> None:
        self.procs = {k: psutil.Process(p) for k, p in pids.items()}
        self.peak = {k: 0 for k in pids}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for k, proc in self.procs.items():
                try:
                    self.peak[k] = max(self.peak[k], proc.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="640MiB", help="per worker (dask size string)")
    ap.add_argument("--times", type=float, default=4.0, help="volume size / (workers x memory limit)")
    ap.add_argument("--baseline-slices", type=int, default=8)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    from dask.utils import parse_bytes

    limit = parse_bytes(args.memory_limit)
    load0 = os.getloadavg()
    dictionary = cached_dictionary()
    length = dictionary.n_timepoints
    slice_bytes = SIZE * SIZE * length * 4
    depth = int(np.ceil(args.times * args.workers * limit / slice_bytes))
    path = args.dir / f"bench_volumes_{os.getpid()}.npy"
    print(f"... writing a {SIZE}x{SIZE}x{depth}x{length} float32 volume "
          f"({depth * slice_bytes / 2**30:.2f} GiB) to {path}", file=sys.stderr, flush=True)
    try:
        with Stopwatch() as write_clock:
            tissue = write_volume(path, depth, dictionary)
        n_tissue = int(tissue.sum())

        # serial baseline: this process, one numba thread, no Dask
        import numba

        numba.set_num_threads(1)
        vol = NpyVolume(path)  # explicit reads, no memory map: this process's RSS stays its own
        match_maps(vol.read(0, 1)[:, :, 0], dictionary)  # warm-up: compilation + search index
        n_base = min(args.baseline_slices, depth)
        with Stopwatch() as base_clock:
            base_px = sum(int(match_maps(vol.read(d, d + 1)[:, :, 0], dictionary).valid.sum()) for d in range(n_base))
        base_rate = base_px / base_clock.seconds

        print("... starting the cluster", file=sys.stderr, flush=True)
        with Stopwatch() as start_clock:
            client = volume_cluster(args.workers, threads_per_worker=1, memory_limit=limit)
        try:
            pids = client.run(os.getpid)
            rss0 = {k: psutil.Process(p).memory_info().rss for k, p in pids.items()}
            cpu0 = {k: sum(psutil.Process(p).cpu_times()[:2]) for k, p in pids.items()}
            print("... mapping", file=sys.stderr, flush=True)
            with RssSampler({**pids, "client": os.getpid()}) as sampler:
                result = map_volume(path, dictionary=dictionary, client=client)
            cpu = {k: sum(psutil.Process(p).cpu_times()[:2]) - cpu0[k] for k, p in pids.items()}
            after = client.run(os.getpid)
            restarted = sum(1 for k, p in pids.items() if after.get(k) != p)
        finally:
            client.close()
            client.cluster.close()

        # exactness: three slices mapped here with the volume's signal mask
        checked = [0, depth // 2, depth - 1]
        exact = True
        for d in checked:
            stack = vol.read(d, d + 1)[:, :, 0]
            keep = np.ascontiguousarray(result.resolvable[:, :, d])  # the volume's rule, decided once for all slices
            ref = match_maps(stack, dictionary, mask=keep, min_snr=0.0)
            exact &= all(np.array_equal(a, b[:, :, d]) for a, b in ((ref.t1_ms, result.t1_ms), (ref.t2_ms, result.t2_ms),
                                                                    (ref.pd, result.pd), (ref.valid, result.mapped)))
        del vol
    finally:
        path.unlink(missing_ok=True)

    n_mapped = int(result.mapped.sum())
    n_all = SIZE * SIZE * depth
    per_worker = n_mapped / result.seconds / result.n_workers
    match_s = result.seconds - result.reference_seconds
    per_cpu = n_mapped / sum(cpu.values())
    client_peak = sampler.peak.pop("client") / 2**20
    peak = {k: v / 2**20 for k, v in sampler.peak.items()}
    volume_gib = depth * slice_bytes / 2**30
    print("# benchmarks/bench_volumes.py")
    print(f"# volume: {SIZE}x{SIZE}x{depth}x{length} float32 = {volume_gib:.2f} GiB .npy on disk "
          f"({volume_gib * 2**30 / (args.workers * limit):.1f}x the {args.workers} x {limit / 2**20:.0f} MiB the workers "
          f"may use); written in {write_clock.seconds:.1f} s")
    print(f"# dictionary: {dictionary.n_atoms} atoms x {length} time points (paper grid); matching, one slice per task, "
          "volume no-signal rule (two reads of the file)")
    print(f"# cluster: LocalCluster, {args.workers} worker processes x 1 thread, memory_limit {limit / 2**20:.0f} MiB "
          f"per worker; started in {start_clock.seconds:.1f} s; python {platform.python_version()}")
    print(f"# load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} (shared machine: timings are noisy)")
    hdr = f"{'what':38} {'value':>14}"
    print(hdr)
    print("-" * len(hdr))
    rows = [
        ("slices", f"{depth}"),
        ("pixels (all / matched)", f"{n_all:,} / {n_mapped:,}"),
        ("mapping wall s (pass 1: largest norm)", f"{result.seconds:.1f} ({result.reference_seconds:.1f})"),
        ("matched px/s per worker", f"{per_worker:,.0f}"),
        ("  same, pass 2 (matching) only", f"{n_mapped / match_s / result.n_workers:,.0f}"),
        ("matched px per worker CPU s", f"{per_cpu:,.0f}"),
        ("all px/s per worker", f"{n_all / result.seconds / result.n_workers:,.0f}"),
        ("read MiB/s (2 passes, all workers)", f"{2 * volume_gib * 1024 / result.seconds:,.0f}"),
        ("serial baseline px/s (1 thread)", f"{base_rate:,.0f}"),
        ("per worker / serial baseline", f"{per_worker / base_rate:.2f}"),
        ("worker CPU s (sum) / wall s", f"{sum(cpu.values()) / result.seconds:.2f}"),
    ]
    for k in sorted(peak):
        rows.append((f"peak RSS MiB, worker {k[-5:]}", f"{peak[k]:.0f} (idle {rss0[k] / 2**20:.0f})"))
    rows.append(("peak RSS MiB, client (while mapping)", f"{client_peak:.0f}"))
    rows.append(("workers restarted (memory)", str(restarted)))
    rows.append(("3 slices equal in-process maps", str(bool(exact))))
    for name, value in rows:
        print(f"{name:38} {value:>14}")
    print("-" * len(hdr))
    record = {
        "benchmark": "bench_volumes", "shape": [SIZE, SIZE, depth, length], "dtype": "float32",
        "volume_gib": round(volume_gib, 3), "workers": args.workers, "threads_per_worker": 1,
        "memory_limit_mib_per_worker": round(limit / 2**20), "volume_over_memory": round(volume_gib * 2**30 /
                                                                                        (args.workers * limit), 2),
        "n_atoms": dictionary.n_atoms, "n_pixels": n_all, "n_tissue": n_tissue, "n_mapped": n_mapped,
        "map_s": round(result.seconds, 2), "reference_pass_s": round(result.reference_seconds, 2),
        "px_per_s_per_worker_matched": round(per_worker),
        "px_per_s_per_worker_matching_pass": round(n_mapped / match_s / result.n_workers),
        "px_per_worker_cpu_s": round(per_cpu), "worker_cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "px_per_s_per_worker_all": round(n_all / result.seconds / result.n_workers),
        "serial_px_per_s_1_thread": round(base_rate), "peak_rss_mib_per_worker": {k: round(v) for k, v in peak.items()},
        "idle_rss_mib_per_worker": {k: round(v / 2**20) for k, v in rss0.items()},
        "client_peak_rss_mib_while_mapping": round(client_peak), "cluster_start_s": round(start_clock.seconds, 2),
        "write_s": round(write_clock.seconds, 2), "exact_on_3_slices": bool(exact),
        "workers_restarted": restarted,
        "load_average_1min_start": round(load0[0], 2),
    }
    print(json.dumps(record))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
