"""Benchmark: building, storing and compressing the paper's 80,100-atom dictionary.

Run by hand:  python benchmarks/bench_dictionary.py [--repeats N]

Measures (medians over ``--repeats`` runs, after one warm-up so numba compilation is excluded):
- EPG build of the full dictionary (mrfbook.physics.dictionary.build_dictionary);
- save to / load from an uncompressed float32 .npz (size on disk);
- row normalisation;
- the temporal SVD basis: mrfbook.physics.compression.svd_basis (float64 Gram matrix + eigh) against the
  strongest plain baseline, LAPACK's thin SVD ``np.linalg.svd(atoms, full_matrices=False)`` on
  the same float32 matrix, with the agreement of the leading singular values.
Prints a table and ends with one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from mrfbook.physics.compression import rank_for_energy, svd_basis
from mrfbook.physics.dictionary import Dictionary, build_dictionary
from mrfbook.physics.sequence import paper_sequence
from mrfbook.utils.timing import median_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per step (median)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    sequence = paper_sequence()
    build_dictionary(sequence, [1000.0], [100.0])  # compile / load the numba kernel
    build_s, dictionary = median_time(lambda: build_dictionary(sequence), args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dictionary.npz"
        save_s, _ = median_time(lambda: dictionary.save(path), args.repeats)
        disk_mb = path.stat().st_size / 1e6
        load_s, _ = median_time(lambda: Dictionary.load(path, expected_sequence=sequence),
                                args.repeats)

    def normalise():
        dictionary._normalised = None  # force recomputation
        return dictionary.normalised()

    norm_s, atoms = median_time(normalise, args.repeats)
    gram_s, basis = median_time(lambda: svd_basis(atoms, energy=0.999), args.repeats)
    lapack_s, (_, s_ref, _) = median_time(
        lambda: np.linalg.svd(atoms, full_matrices=False), args.repeats)
    top = 20
    sv_rel_diff = float(np.max(np.abs(basis.singular_values[:top] - s_ref[:top]) / s_ref[:top]))
    ranks = {f: rank_for_energy(basis.singular_values, f) for f in (0.99, 0.999, 0.9999)}

    rows = [
        ("EPG build, 80,100 x 200", build_s),
        ("save .npz (float32)", save_s),
        ("load .npz", load_s),
        ("normalise rows", norm_s),
        ("svd_basis (Gram + eigh)", gram_s),
        ("np.linalg.svd thin (LAPACK, baseline)", lapack_s),
    ]
    print(f"{'step':42s} {'median s':>9s}")
    for name, seconds in rows:
        print(f"{name:42s} {seconds:9.3f}")
    print(f"svd speed-up over LAPACK thin SVD: {lapack_s / gram_s:.1f}x; "
          f"max relative difference of the top {top} singular values: {sv_rel_diff:.1e}")
    print(f"memory {dictionary.nbytes / 1e6:.1f} MB, disk {disk_mb:.1f} MB, "
          f"ranks for 99 / 99.9 / 99.99 % energy: {ranks[0.99]} / {ranks[0.999]} / {ranks[0.9999]}")
    print(json.dumps({
        "benchmark": "dictionary",
        "repeats": args.repeats,
        "n_atoms": dictionary.n_atoms,
        "n_timepoints": dictionary.n_timepoints,
        "build_s": round(build_s, 4),
        "save_s": round(save_s, 4),
        "load_s": round(load_s, 4),
        "normalise_s": round(norm_s, 4),
        "svd_gram_s": round(gram_s, 4),
        "svd_lapack_s": round(lapack_s, 4),
        "svd_speedup": round(lapack_s / gram_s, 2),
        "svd_top20_max_rel_diff": sv_rel_diff,
        "memory_mb": round(dictionary.nbytes / 1e6, 2),
        "disk_mb": round(disk_mb, 2),
        "rank_99": ranks[0.99],
        "rank_999": ranks[0.999],
        "rank_9999": ranks[0.9999],
    }))


if __name__ == "__main__":
    main()
