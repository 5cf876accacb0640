"""``python -m mrfbook map`` at its defaults on phantoms, as a new user would run it.

For the book's brain phantom and the head phantom (nothing was tuned on it), each 128 x 128 with
partial volume as a sum of fingerprints, the script writes the fully sampled image stack, its full
k-space (LHW and HWL layouts) and 15 % variable-density line k-space with its sampling mask, then
runs the command line at its defaults with the tissue mask:

- 15 % k-space, ``--restore none`` (zero-filled) + matching;
- 15 % k-space at the defaults (low-rank restoration, weight chosen from the data) + matching,
  and + the shipped paper network;
- the fully sampled scan as an image stack, as full k-space (both layouts), + matching and + the
  paper network.

T1 / T2 SNR (dB, reference RMS over RMSE, :func:`mrfbook.metrics.snr_db`) and RMSE against the
apparent maps (:func:`mrfbook.analysis.experiments.evaluation_phantoms`) over all tissue pixels,
and over the pixels the command marked resolvable; the weight, iterations and seconds come from
each run's summary.json. Prints a table, ends with one JSON line.

    .venv/bin/python scripts/untuned_data_check.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mrfbook import metrics
from mrfbook.analysis.experiments import evaluation_phantoms
from mrfbook.physics.dictionary import cache_path, cached_dictionary
from mrfbook.recon.acquisition import UndersampledFourier, image_stack, variable_density_masks

MODEL = Path(__file__).resolve().parents[1] / "models" / "paper_resnet" / "model.keras"


def run_map(work: Path, name: str, data: list[str], method: list[str]) -> dict:
    out = work / name
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mrfbook", "map", *data, *method, "--mask", str(work / "mask.npy"),
                           "--out", str(out), "-q"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: {proc.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {"t1": np.load(out / "t1.npy"), "t2": np.load(out / "t2.npy"), "resolvable": np.load(out / "resolvable.npy"),
            "summary": summary, "wall_s": time.perf_counter() - start, "warnings": proc.stderr.strip()}


def scores(run: dict, ref) -> dict:
    tissue = ref.tissue_mask
    res = run["resolvable"] & tissue
    restoration = run["summary"].get("restoration") or {}
    out = {"n_resolvable": int(res.sum()), "weight": restoration.get("weight"),
           "iterations": restoration.get("iterations"), "seconds": run["summary"]["seconds"]["total"],
           "warnings": run["warnings"]}
    for key, est, truth in (("t1", run["t1"], ref.t1_ms), ("t2", run["t2"], ref.t2_ms)):
        out[f"{key}_snr_db"] = round(metrics.snr_db(est, truth, tissue), 2)
        out[f"{key}_rmse_ms"] = round(metrics.rmse(est, truth, tissue), 2)
        out[f"{key}_snr_resolvable_db"] = round(metrics.snr_db(est, truth, res), 2) if res.any() else None
    return out


def main() -> int:
    dictionary = cached_dictionary()
    dict_file = cache_path(dictionary.sequence, grid="paper")
    rows = []
    for phantom_name, ref in evaluation_phantoms(dictionary.sequence).items():
        with tempfile.TemporaryDirectory(prefix="mrfbook-check-") as tmp:
            work = Path(tmp)
            stack = image_stack(ref, dictionary.sequence)
            masks = variable_density_masks(stack.shape[:2], stack.shape[2], 0.15, seed=0)
            full = UndersampledFourier(np.ones_like(masks)).forward(stack)
            under = UndersampledFourier(masks).forward(stack)
            np.save(work / "mask.npy", ref.tissue_mask)
            np.save(work / "stack.npy", stack)
            np.save(work / "full_lhw.npy", full)
            np.save(work / "full_hwl.npy", np.ascontiguousarray(np.moveaxis(full, 0, 2)))
            np.save(work / "k15.npy", under)
            np.save(work / "s15.npy", masks)
            k15 = ["--kspace", str(work / "k15.npy"), "--kspace-layout", "LHW", "--sampling-mask", str(work / "s15.npy")]
            cases = {
                "15 %, zero-filled + matching": (k15 + ["--restore", "none"], ["--dictionary", str(dict_file)]),
                "15 %, defaults (restored) + matching": (k15, ["--dictionary", str(dict_file)]),
                "15 %, defaults (restored) + paper network": (k15, ["--model", str(MODEL)]),
                "full, image stack + matching": (["--images", str(work / "stack.npy")], ["--dictionary", str(dict_file)]),
                "full, k-space LHW + matching": (["--kspace", str(work / "full_lhw.npy"), "--kspace-layout", "LHW"],
                                                 ["--dictionary", str(dict_file)]),
                "full, image stack + paper network": (["--images", str(work / "stack.npy")], ["--model", str(MODEL)]),
                "full, k-space LHW + paper network": (["--kspace", str(work / "full_lhw.npy"), "--kspace-layout", "LHW"],
                                                      ["--model", str(MODEL)]),
                "full, k-space HWL + paper network": (["--kspace", str(work / "full_hwl.npy"), "--kspace-layout", "HWL"],
                                                      ["--model", str(MODEL)]),
            }
            for i, (case, (data, method)) in enumerate(cases.items()):
                s = scores(run_map(work, f"run{i}", data, method), ref)
                rows.append({"phantom": phantom_name, "case": case, **s})
                w = "" if s["weight"] is None else f"  lambda {s['weight']:.3g}, {s['iterations']} it"
                print(f"{phantom_name:6s} {case:44s} T1/T2 SNR {s['t1_snr_db']:6.2f} / {s['t2_snr_db']:6.2f} dB  "
                      f"RMSE {s['t1_rmse_ms']:8.2f} / {s['t2_rmse_ms']:7.2f} ms  resolvable {s['n_resolvable']:,}/"
                      f"{int(ref.tissue_mask.sum()):,} (SNR {s['t1_snr_resolvable_db']} / {s['t2_snr_resolvable_db']})"
                      f"  {s['seconds']:.1f} s{w}", flush=True)
                if s["warnings"]:
                    print(f"       warnings: {s['warnings']}", flush=True)
    print(json.dumps({"check": "untuned_data", "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
