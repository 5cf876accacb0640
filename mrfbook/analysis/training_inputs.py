"""What the pipeline hands a network: restored fingerprints of random phantoms, with their truth.

The paper's network only ever saw clean dictionary atoms. Chapter 11's network is also trained on
the fingerprints it will meet: random slices (:func:`mrfbook.physics.phantom.random_phantom`, never
the book's evaluation phantoms) are simulated, optionally given white noise at the image, sampled
at a random ratio with a random mask pattern, and restored with the pipeline's own default
restoration (:func:`mrfbook.recon.weights.restore`, low-rank, weight chosen from the data). Each
tissue pixel's restored time course then goes through the mapping path's own preparation (phase
removal and sign, :mod:`mrfbook.nn.inference`) and is stored with the phantom's reference
(T1, T2) (the rate mix) and the restoration's error level.

Explained in chapter 11, book/11_real_inputs.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mrfbook.nn.inference import resolve_sign, sign_reference
from mrfbook.nn.inputs import real_signatures
from mrfbook.physics.noise import add_white_noise, image_noise_sigma
from mrfbook.physics.phantom import random_phantom
from mrfbook.recon.acquisition import UndersampledFourier, image_stack, variable_density_masks
from mrfbook.recon.weights import restore
from mrfbook.utils.checks import check_int

__all__ = ["restored_phantom_signatures", "restored_training_set", "load_restored_training_set"]

#: Sampling ratios, mask patterns and image SNRs (dB; inf = no noise) the random draws pick from.
SAMPLING_RATIOS = (0.1, 0.15, 0.2, 0.3)
PATTERNS = ("lines", "points")
IMAGE_SNRS_DB = (np.inf, np.inf, 50.0, 40.0, 30.0)


def restored_phantom_signatures(sequence: Any, seed: int, *, size: int = 128) -> dict[str, Any]:
    """Restore one random phantom as the pipeline would, and return its tissue pixels.

    Parameters
    ----------
    sequence : mrfbook.physics.sequence.FispSequence
    seed : int
        Seed (>= 0) of the phantom, the draw of ratio / pattern / SNR, the masks and the noise.
    size : int
        Matrix size of the phantom.

    Returns
    -------
    dict
        ``x`` (N, L) float64 real, sign-resolved restored signatures of the tissue pixels;
        ``t1_ms``, ``t2_ms`` (N,) the reference; ``error_level`` (float) the restoration's hold-out
        estimate of its per-sample error; ``sampling_ratio``, ``pattern``, ``snr_db``, ``lam``.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    seed = check_int("seed", seed, 0)
    rng = np.random.default_rng([seed, 5])
    ratio = float(rng.choice(SAMPLING_RATIOS))
    pattern = str(rng.choice(PATTERNS))
    snr = float(rng.choice(IMAGE_SNRS_DB))
    ph = random_phantom(size, seed=seed)
    truth = image_stack(ph, sequence)
    if np.isfinite(snr):
        truth = add_white_noise(truth.astype(np.complex128), image_noise_sigma(truth, snr, ph.tissue_mask),
                                seed=[seed, 6])
    h, w, n_t = truth.shape
    op = UndersampledFourier(variable_density_masks((h, w), n_t, ratio, seed=seed, pattern=pattern))
    result = restore(op.forward(truth), op, method="lowrank", lam="auto", estimate_error=True)
    x = real_signatures(np.asarray(result.images)[ph.tissue_mask])
    x = resolve_sign(x, sign_reference(sequence))
    return {"x": x, "t1_ms": ph.t1_ms[ph.tissue_mask], "t2_ms": ph.t2_ms[ph.tissue_mask],
            "error_level": float(result.extra.get("error_level") or 0.0), "sampling_ratio": ratio,
            "pattern": pattern, "snr_db": snr, "lam": float(result.lam)}


def restored_training_set(sequence: Any, seeds: Iterable[int], folder: str | os.PathLike, *,
                          progress: bool = True) -> Path:
    """Restore the random phantoms of ``seeds`` into ``folder`` (one .npz each; done ones are skipped).

    An interrupted run resumes where it stopped. Returns ``folder``.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in seeds if not (out / f"phantom_{s:04d}.npz").is_file()]
    it: Any = todo
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(todo, desc="restoring random phantoms", unit="phantom")
    for s in it:
        r = restored_phantom_signatures(sequence, s)
        tmp = out / f"phantom_{s:04d}.tmp.npz"
        np.savez(tmp, x=r["x"].astype(np.float32), t1_ms=r["t1_ms"], t2_ms=r["t2_ms"],
                 error_level=r["error_level"], sampling_ratio=r["sampling_ratio"], pattern=r["pattern"],
                 snr_db=r["snr_db"], lam=r["lam"], sequence_digest=sequence.digest)
        tmp.replace(out / f"phantom_{s:04d}.npz")
    return out


def load_restored_training_set(folder: str | os.PathLike, seeds: Iterable[int], sequence_digest: str) -> dict[str, np.ndarray]:
    """Concatenate the phantoms of ``seeds`` written by :func:`restored_training_set`.

    Returns
    -------
    dict
        ``x`` (N, L) float32, ``t1_ms``, ``t2_ms`` (N,) float64, ``phantom`` (N,) int seed of each row.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    parts = []
    for s in seeds:
        p = Path(folder) / f"phantom_{s:04d}.npz"
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: run restored_training_set for seeds {seeds}")
        with np.load(p) as d:
            if str(d["sequence_digest"]) != sequence_digest:
                raise ValueError(f"{p} was restored for another sequence")
            parts.append((d["x"], d["t1_ms"], d["t2_ms"], np.full(len(d["t1_ms"]), s)))
    return {"x": np.concatenate([p[0] for p in parts]), "t1_ms": np.concatenate([p[1] for p in parts]),
            "t2_ms": np.concatenate([p[2] for p in parts]), "phantom": np.concatenate([p[3] for p in parts])}
