"""The refined network against the paper's: map inference, accuracy, and the command line on one slice.

Usage (from the repository root; takes ~3-5 min on the 2-core machine)::

    .venv/bin/python benchmarks/bench_refined.py [--model models/refined_network/model.npz] [--repeats 5]
        [--paper-repeats 3] [--cli-repeats 3] [--out benchmarks/results/bench_refined.txt]

Map inference: 16,384 distinct (T1, T2) pairs (one 128x128 map) drawn with a fixed seed from
:func:`mrfbook.physics.dictionary.shifted_test_grid` (off the training grid), simulated clean with
:func:`mrfbook.physics.epg.simulate_fisp` (float64) for the paper sequence. Timed: ``predict`` of the
refined network (``--model``, NumPy only, :func:`mrfbook.nn.refined.load_refined_network`), the paper
network (``models/paper_resnet/model.keras``, Keras, batch 4096), the compact network
(``models/compact_resnet/model.keras``, batch 4096) and dictionary matching
(:func:`mrfbook.recon.matching.match_signatures`, ``min_snr=0``, against the cached 80,100-atom paper
dictionary: the strongest honest non-network baseline). Each: one warm-up call (numba compilation,
Keras tracing, matching's search index: excluded), then the median of ``--repeats`` timed calls
(``--paper-repeats`` for the paper network, ~10 s per call). Multiply-adds per signature:
``RefinedNetwork.multiply_adds()['total']`` and :func:`mrfbook.nn.network.multiply_adds` of the Keras
networks' configs; for matching, the search's mean number of scored atoms x the SVD rank plus the
L x rank projection (what the branch-and-bound actually computed, an underestimate of its work: it
also re-scores candidates at full length). Ratios are to the paper network (paper / method, > 1 =
cheaper or faster). Accuracy: RMSE (ms) of T1 and T2 against the true values of those signatures.
The refined network and matching are timed a second time on the same signatures with white noise at
an image SNR of 30 dB (:func:`mrfbook.physics.noise.image_noise_sigma`, the 16,384 signatures as one
image): there the refined network's noise correction runs on every signature (on clean ones its
gate is closed and it is skipped).

Command line on one slice: the book's 128x128 brain phantom as a 128x128x200 complex image stack
(:func:`mrfbook.recon.acquisition.image_stack`) and its tissue mask, written as .npy to a temporary
folder, mapped by ``python -m mrfbook map --images ... --mask ... --paper --model MODEL --out DIR -q``
in a child process (``sys.executable``, environment inherited) for the refined and the paper network.
Wall time includes interpreter start-up, imports, loading and writing the outputs (PNGs included): one
untimed warm-up run per model (fills the numba cache and the page cache; reported as "first"), then
the median of ``--cli-repeats`` runs (wall time polled at 5 ms resolution). Peak memory: the child
runs under GNU time (``/usr/bin/time -f %M``), which reports the maximum resident set size of that
one command. Not ``ru_maxrss`` of ``os.wait4`` / ``getrusage`` in this process: Linux carries the
pre-exec address space's high-water mark over ``execve``, and a child spawned from this process
(vfork / posix_spawn) would inherit this benchmark's own ~1.8 GB peak; ``time`` is a tiny process,
so its child starts clean. Without ``/usr/bin/time``: VmHWM of ``/proc/<pid>/status``, polled every
5 ms until the child exits.

Targets (reported next to the measurements): refined map of 16,384 signatures <= 0.5 s median, clean
and noisy; its
CLI run <= 5 s wall and <= 1 GiB peak; its multiply-adds <= 1/10 of the paper network's.

Prints a table and ends with ONE JSON line; ``--out`` gets the same text.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mrfbook.nn.model import load_trained_model  # noqa: E402
from mrfbook.nn.network import NetworkConfig, multiply_adds  # noqa: E402
from mrfbook.nn.refined import load_refined_network  # noqa: E402
from mrfbook.nn.runs import runtime_info  # noqa: E402
from mrfbook.physics.dictionary import cached_dictionary, shifted_test_grid  # noqa: E402
from mrfbook.physics.epg import simulate_fisp  # noqa: E402
from mrfbook.physics.noise import add_white_noise, image_noise_sigma  # noqa: E402
from mrfbook.physics.phantom import brain_phantom  # noqa: E402
from mrfbook.physics.sequence import paper_sequence  # noqa: E402
from mrfbook.recon.acquisition import image_stack  # noqa: E402
from mrfbook.recon.matching import DEFAULT_RANK, match_signatures  # noqa: E402
from mrfbook.utils.timing import time_calls  # noqa: E402

N_MAP = 128 * 128
#: The second, noisy timing of the refined network and matching (image SNR, dB).
NOISY_SNR_DB = 30.0
NOISY_REFINED, NOISY_MATCHING = "refined 30dB", "matching 30dB"
PAPER_MODEL = Path("models/paper_resnet/model.keras")
COMPACT_MODEL = Path("models/compact_resnet/model.keras")
TARGET_MAP_S = 0.5
TARGET_CLI_S = 5.0
TARGET_CLI_MIB = 1024.0
TARGET_MACS_FRACTION = 0.1


def rmse(est: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> tuple[float, float]:
    """RMSE (ms) of the T1 and T2 columns of ``est`` (N, 2); NaN rows count as failures (NaN)."""
    return (float(np.sqrt(np.mean((est[:, 0] - t1) ** 2))), float(np.sqrt(np.mean((est[:, 1] - t2) ** 2))))


GNU_TIME = Path("/usr/bin/time")


def _vm_hwm_kib(pid: int) -> int | None:
    """VmHWM (peak resident set of the process's current address space, KiB) from /proc, or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def run_child(cmd: list[str]) -> tuple[float, float, int, str]:
    """Run ``cmd``; wall seconds, the child's peak resident set (MiB), exit code, output tail.

    With GNU time (``/usr/bin/time -f %M``): the maximum RSS that time's own ``wait4`` reports for
    the command, forked from the small ``time`` process. Without it: VmHWM of ``/proc/<pid>/status``
    polled every 5 ms until the child exits (may miss a peak in its last 5 ms).
    """
    with tempfile.TemporaryDirectory() as tmp:
        log, rss_file = Path(tmp, "log"), Path(tmp, "maxrss")
        use_time = GNU_TIME.is_file()
        full = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *cmd] if use_time else cmd
        with open(log, "wb") as fh:
            t0 = time.perf_counter()
            proc = subprocess.Popen(full, stdout=fh, stderr=subprocess.STDOUT)
            hwm = 0
            while proc.poll() is None:
                if not use_time:
                    hwm = max(hwm, _vm_hwm_kib(proc.pid) or 0)
                time.sleep(0.005)
            wall = time.perf_counter() - t0
        if use_time:
            hwm = int(rss_file.read_text().split()[-1])
        tail = log.read_bytes().decode(errors="replace")[-2000:]
    return wall, hwm / 1024, proc.returncode, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/refined_network/model.npz"),
                    help="the refined network (.npz) to benchmark")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per method (median), >= 1")
    ap.add_argument("--paper-repeats", type=int, default=3,
                    help="timed calls of the paper network (~10 s each on 2 cores), >= 1")
    ap.add_argument("--cli-repeats", type=int, default=3, help="timed command-line runs per model (median), >= 1")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draw from the shifted test grid")
    ap.add_argument("--skip-cli", action="store_true", help="only the in-process map inference")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_refined.txt"),
                    help="also write the output to this file")
    args = ap.parse_args(argv)
    for name in ("repeats", "paper_repeats", "cli_repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.model.is_file():
        ap.error(f"--model {args.model} does not exist")

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    info = runtime_info()
    load0 = os.getloadavg()
    date = dt.datetime.now().isoformat(timespec="seconds")
    say(f"# bench_refined  {date}")
    say(f"# command: {shlex.join([sys.executable, *sys.argv])}")
    say(f"# machine: {info['cpu']}, {platform.platform()}; device {info['device']}; backend {info['backend']}")
    say(f"# versions: {json.dumps(info['versions'])}")
    say(f"# load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} (shared machine: timings are noisy)")
    say(f"# refined model: {args.model}")

    # ---- 1. map inference -------------------------------------------------------------------------
    seq = paper_sequence()
    gt1, gt2 = shifted_test_grid()
    pick = np.random.default_rng(args.seed).choice(gt1.size, N_MAP, replace=False)
    t1, t2 = gt1[pick], gt2[pick]
    x = simulate_fisp(seq, t1, t2, dtype=np.float64)
    x_noisy = add_white_noise(x, image_noise_sigma(x[:, None, :], NOISY_SNR_DB), seed=args.seed)

    refined = load_refined_network(args.model, seq)
    paper = load_trained_model(PAPER_MODEL, seq)
    compact = load_trained_model(COMPACT_MODEL, seq)
    dictionary = cached_dictionary(seq)

    macs = {"refined": refined.multiply_adds()["total"],
            "paper": multiply_adds(NetworkConfig.from_dict(paper.metadata["network"])),
            "compact": multiply_adds(NetworkConfig.from_dict(compact.metadata["network"]))}
    methods = {
        "refined": (lambda: refined.predict(x), args.repeats),
        "paper": (lambda: paper.predict(x, batch_size=4096), args.paper_repeats),
        "compact": (lambda: compact.predict(x, batch_size=4096), args.repeats),
        "matching": (lambda: match_signatures(x, dictionary, min_snr=0.0), args.repeats),
        NOISY_REFINED: (lambda: refined.predict(x_noisy), args.repeats),
        NOISY_MATCHING: (lambda: match_signatures(x_noisy, dictionary, min_snr=0.0), args.repeats),
    }
    macs[NOISY_REFINED] = macs["refined"]
    med, cpu, runs, err = {}, {}, {}, {}
    for name, (fn, rep) in methods.items():
        print(f"... {name}", file=sys.stderr, flush=True)
        fn()  # warm-up: numba compilation, Keras tracing, matching's search index
        t = time_calls(fn, rep)
        med[name], cpu[name], runs[name] = t.median, t.median_cpu, t.seconds
        res = t.result
        if name in ("matching", NOISY_MATCHING):
            macs[name] = int(round(float(np.mean(res.n_scored)) * DEFAULT_RANK + seq.n_timepoints * DEFAULT_RANK))
            res = np.stack([res.t1_ms, res.t2_ms], axis=1)
        err[name] = rmse(res, t1, t2)

    say()
    say(f"Map inference: {N_MAP:,} clean signatures of distinct shifted-test-grid pairs (seed {args.seed}), "
        "one warm-up call, then the median of the timed calls; ratios = paper / method")
    hdr = (f"{'method':<14}{'mult-adds/sig':>15}{'median s':>10}{'(runs)':>7}{'CPU s':>8}{'speed x':>9}"
           f"{'MACs x':>9}{'T1 RMSE ms':>12}{'T2 RMSE ms':>12}")
    say(hdr)
    say("-" * len(hdr))
    for name in methods:
        say(f"{name:<14}{macs[name]:>15,}{med[name]:>10.3f}{len(runs[name]):>7}{cpu[name]:>8.2f}"
            f"{med['paper'] / med[name]:>9.1f}{macs['paper'] / macs[name]:>9.1f}"
            f"{err[name][0]:>12.2f}{err[name][1]:>12.2f}")
    say("-" * len(hdr))
    say(f"(matching's multiply-adds: mean scored atoms x rank {DEFAULT_RANK} + projection, an underestimate; "
        f"'{NOISY_SNR_DB:.0f} dB': the same signatures with image noise)")
    say(f"refined breakdown: {json.dumps(refined.multiply_adds())}, n_iter {refined.n_iter}")

    # ---- 2. the command line on one slice ----------------------------------------------------------
    cli: dict[str, dict[str, float]] = {}
    if not args.skip_cli:
        ph = brain_phantom(128)
        stack = image_stack(ph, seq)
        with tempfile.TemporaryDirectory(prefix="bench_refined_") as tmp:
            images, mask = Path(tmp, "images.npy"), Path(tmp, "mask.npy")
            np.save(images, stack.astype(np.complex64))
            np.save(mask, ph.tissue_mask.astype(np.uint8))
            for name, model in (("refined", args.model), ("paper", PAPER_MODEL)):
                print(f"... cli {name}", file=sys.stderr, flush=True)
                cmd = [sys.executable, "-m", "mrfbook", "map", "--images", str(images), "--mask", str(mask),
                       "--paper", "--model", str(model), "--out", str(Path(tmp, f"out_{name}")), "-q"]
                walls, peaks = [], []
                for i in range(args.cli_repeats + 1):
                    wall, peak, rc, tail = run_child(cmd)
                    if rc != 0:
                        raise RuntimeError(f"{shlex.join(cmd)} failed with exit code {rc}:\n{tail}")
                    if i == 0:
                        first = wall
                    else:
                        walls.append(wall)
                        peaks.append(peak)
                summary = json.loads(Path(tmp, f"out_{name}", "summary.json").read_text())
                cli[name] = {"wall_s": statistics.median(walls), "first_s": first, "peak_mib": max(peaks),
                             "runs_s": walls, "summary": summary}
        n_tissue = int(ph.tissue_mask.sum())
        say()
        say(f"Command line, one 128x128x200 complex slice of brain_phantom(128) ({n_tissue:,} tissue pixels "
            f"in --mask): `python -m mrfbook map --images --mask --paper --model M --out D -q`; wall time of "
            f"the child process (start-up included), median of {args.cli_repeats} after one untimed first run; "
            "peak RSS of the child (" + ("/usr/bin/time %M)" if GNU_TIME.is_file() else "/proc VmHWM)"))
        say(f"{'model':<10}{'median s':>10}{'first s':>9}{'peak MiB':>10}  runs s")
        for name, c in cli.items():
            say(f"{name:<10}{c['wall_s']:>10.2f}{c['first_s']:>9.2f}{c['peak_mib']:>10.0f}  "
                + " ".join(f"{t:.2f}" for t in c["runs_s"]))
        for name, c in cli.items():
            if "seconds" in c["summary"]:
                say(f"{name:<10}stages in summary.json (s, last run): {json.dumps(c['summary']['seconds'])}")

    targets = {
        "target_map_0p5s_met": max(med["refined"], med[NOISY_REFINED]) <= TARGET_MAP_S,
        "target_macs_tenth_met": macs["refined"] <= TARGET_MACS_FRACTION * macs["paper"],
    }
    if cli:
        targets["target_cli_5s_met"] = cli["refined"]["wall_s"] <= TARGET_CLI_S
        targets["target_cli_1gib_met"] = cli["refined"]["peak_mib"] <= TARGET_CLI_MIB
    say()
    say("Targets (refined network):")
    say(f"  map of {N_MAP:,} signatures <= {TARGET_MAP_S} s: {med['refined']:.3f} s clean, "
        f"{med[NOISY_REFINED]:.3f} s at {NOISY_SNR_DB:.0f} dB -> "
        f"{'met' if targets['target_map_0p5s_met'] else 'NOT met'}")
    say(f"  multiply-adds <= 1/10 of the paper's ({macs['paper'] / 1e6:.1f} M): {macs['refined']:,} "
        f"(1/{macs['paper'] / macs['refined']:.0f}) -> {'met' if targets['target_macs_tenth_met'] else 'NOT met'}")
    if cli:
        say(f"  CLI wall <= {TARGET_CLI_S} s: {cli['refined']['wall_s']:.2f} s -> "
            f"{'met' if targets['target_cli_5s_met'] else 'NOT met'}")
        say(f"  CLI peak <= 1 GiB: {cli['refined']['peak_mib']:.0f} MiB -> "
            f"{'met' if targets['target_cli_1gib_met'] else 'NOT met'}")
    load1 = os.getloadavg()
    say(f"# load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")

    record = {
        "bench": "refined",
        "date": date,
        "machine": info["cpu"],
        "platform": platform.platform(),
        "backend": info["backend"],
        "model": str(args.model),
        "n_signatures": N_MAP,
        "methods": {n: {"median_s": round(med[n], 4), "cpu_s": round(cpu[n], 3), "runs": len(runs[n]),
                        "multiply_adds": int(macs[n]), "rmse_t1_ms": round(err[n][0], 3),
                        "rmse_t2_ms": round(err[n][1], 3), "speedup_vs_paper": round(med["paper"] / med[n], 2),
                        "macs_ratio_vs_paper": round(macs["paper"] / macs[n], 1)} for n in methods},
        "cli": {n: {"wall_s": round(c["wall_s"], 3), "first_s": round(c["first_s"], 3),
                    "peak_mib": round(c["peak_mib"], 1)} for n, c in cli.items()},
        **targets,
        "load_avg_start": round(load0[0], 2),
        "load_avg_end": round(load1[0], 2),
    }
    say(json.dumps(record))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
