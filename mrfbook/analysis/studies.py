"""Studies beyond the paper: noise, network size, sequence mismatch and the cost of retraining.

Every study measures accuracy the way the paper does (RMSE and R^2 of T1 and T2 in ms
against the true values, :mod:`mrfbook.metrics`) on tissues of the shifted test grid, so
no test pair lies on the training grid.

- :func:`noise_study`: dictionary matching and trained networks on the same noisy
  signatures, image SNR by image SNR (one noise level for every signature, the book's noise
  definition: :func:`mrfbook.physics.noise.image_noise_sigma`, :func:`mrfbook.physics.noise.add_white_noise`).
- :func:`network_footprint`: weights, size on disk and CPU time for a parameter map.
- :func:`scale_flip_angles`, :func:`robustness_study`: a network trained on one sequence
  applied to signatures of another, next to matching with the wrong and the right dictionary.
- :func:`fine_tune`: continue training a network from its weights on a new dictionary.
- :func:`training_cost`: the time a shipped training run took, from its log.

Explained in chapter 10, book/10_beyond.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mrfbook import metrics
from mrfbook.physics.sequence import FispSequence
from mrfbook.utils.checks import check_int
from mrfbook.utils.timing import Stopwatch, time_calls

__all__ = [
    "accuracy",
    "noise_study",
    "network_footprint",
    "scale_flip_angles",
    "robustness_study",
    "FineTuneResult",
    "fine_tune",
    "training_cost",
]


def accuracy(estimate_ms: np.ndarray, t1_ms: np.ndarray, t2_ms: np.ndarray) -> dict[str, float]:
    """RMSE (ms) and R^2 of an (N, 2) [T1, T2] estimate against the true values.

    Parameters
    ----------
    estimate_ms : ndarray, (N, 2), float
        Estimated T1, T2 in ms (finite).
    t1_ms, t2_ms : ndarray, (N,), float
        True values in ms.

    Returns
    -------
    dict
        ``t1_rmse_ms``, ``t2_rmse_ms``, ``t1_r2``, ``t2_r2`` as Python floats.

    Explained in chapter 10, book/10_beyond.md.
    """
    return metrics.parameter_scores(estimate_ms, t1_ms, t2_ms, scores=("rmse", "r2"))


def _check_tissues(tissues: Any) -> None:
    for name in ("atoms", "t1_ms", "t2_ms"):
        if not hasattr(tissues, name):
            raise ValueError(f"tissues must be a Dictionary (atoms, t1_ms, t2_ms), it has no {name!r}")


def noise_study(
    tissues: Any,
    dictionary: Any,
    networks: Mapping[str, Any],
    snrs_db: Sequence[float],
    *,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Accuracy of dictionary matching and of networks as the image SNR falls.

    The test signatures are treated as the pixels of one image, each at proton density 1 (the
    raw atoms of ``tissues``), and the noise follows the book's one definition, at the image
    (:mod:`mrfbook.physics.noise`): at an image SNR of ``x`` dB, one noise level ``sigma``
    (:func:`mrfbook.physics.noise.image_noise_sigma` over all test signatures and all frames) is
    added to every sample of every signature (:func:`mrfbook.physics.noise.add_white_noise`,
    circular complex white Gaussian noise; ``inf`` = the clean atoms). As in a scan, a weak
    fingerprint (short T2, little signal) therefore gets a lower SNR of its own than a strong one.
    The *same* noisy signatures go to exact dictionary matching
    (:func:`mrfbook.recon.matching.match_signatures`) and to every network
    (:func:`mrfbook.nn.inference.predict_parameters`, default ``complex_mode="dephase"``).
    Every test signature carries signal, and the question is how far each estimate goes, so
    matching maps every one of them: the resolvability rule of :mod:`mrfbook.physics.noise`
    (which would leave signatures near the noise floor at 0) is switched off (``min_snr=0``),
    as the networks have no such rule.

    Parameters
    ----------
    tissues : Dictionary
        Test signatures (K, L) at proton density 1 and their true T1, T2 (ms), e.g. a random
        subset of the shifted test grid simulated with the networks' training sequence.
    dictionary : Dictionary
        Matching dictionary (same sequence).
    networks : mapping name -> TrainedModel
        Networks to evaluate (already checked against the sequence when loaded).
    snrs_db : sequence of float
        Image SNRs in dB; ``float("inf")`` for no noise. Finite values must be finite numbers.
    seed : int
        Noise at the i-th SNR is drawn from ``default_rng([seed, i])``.
    progress : bool
        tqdm bar over the SNRs.

    Returns
    -------
    list of dict
        One row per (SNR, method): ``snr_db`` (float, inf for clean), ``sigma`` (the noise level
        per complex sample, in the atoms' units; 0 when clean), ``method`` ("matching" or the
        network's name), ``seconds`` (wall time of the estimate), and the keys of :func:`accuracy`.

    Explained in chapter 10, book/10_beyond.md.
    """
    from mrfbook.nn.inference import predict_parameters
    from mrfbook.physics.noise import add_white_noise, image_noise_sigma
    from mrfbook.recon.matching import match_signatures

    _check_tissues(tissues)
    snrs = [float(s) for s in snrs_db]
    if not snrs or any(np.isnan(s) or s == -np.inf for s in snrs):
        raise ValueError(f"snrs_db must be a non-empty sequence of dB values (or inf for no noise), got {snrs_db!r}")
    atoms = np.asarray(tissues.atoms)
    t1, t2 = np.asarray(tissues.t1_ms, dtype=np.float64), np.asarray(tissues.t2_ms, dtype=np.float64)
    rows: list[dict[str, Any]] = []
    it: Any = list(enumerate(snrs))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="SNR", unit="level")
    for i, snr in it:
        if np.isinf(snr):
            x, sigma = atoms, 0.0
        else:
            sigma = image_noise_sigma(atoms[:, None, :], snr)  # the signatures as the pixels of one image
            x = add_white_noise(atoms, sigma, seed=[seed, i])
        with Stopwatch() as watch:
            res = match_signatures(x, dictionary, min_snr=0.0)
        est = np.stack([res.t1_ms, res.t2_ms], axis=1)
        rows.append({"snr_db": snr, "sigma": sigma, "method": "matching", "seconds": watch.seconds,
                     **accuracy(est, t1, t2)})
        for name, net in networks.items():
            with Stopwatch() as watch:
                est = predict_parameters(net, x)
            rows.append({"snr_db": snr, "sigma": sigma, "method": str(name), "seconds": watch.seconds,
                         **accuracy(est, t1, t2)})
    return rows


def network_footprint(model: Any, stack: np.ndarray, mask: np.ndarray, *, repeats: int = 2) -> dict[str, Any]:
    """Weights, size on disk and CPU inference time of a network for one parameter map.

    Parameters
    ----------
    model : TrainedModel
        Carries the Keras model and its label scaling.
    stack : ndarray, (H, W, L), complex or real
        Image stack (e.g. :func:`mrfbook.recon.acquisition.image_stack` of the brain phantom).
    mask : ndarray, (H, W), bool
        Pixels to map.
    repeats : int
        Timed calls after one untimed warm-up call (graph tracing); the fastest is reported.

    Returns
    -------
    dict
        ``parameters`` (int), ``weights_bytes`` (int, 4 bytes per float32 weight),
        ``file_bytes`` (int, a ``.keras`` file of the architecture and weights, no optimizer
        state), ``map_seconds`` (float, fastest of ``repeats`` :func:`mrfbook.nn.inference.predict_maps`
        calls), ``n_pixels`` (int).

    Explained in chapter 10, book/10_beyond.md.
    """
    from mrfbook.nn.inference import predict_maps
    from mrfbook.nn.network import model_size_bytes, parameter_count, saved_model_size_bytes, weights_only_copy

    repeats = check_int("repeats", repeats, 1)
    kmodel = model.model
    file_bytes = saved_model_size_bytes(weights_only_copy(kmodel))  # uncompiled: no optimizer state
    predict_maps(model, stack, mask)  # warm-up
    best = time_calls(lambda: predict_maps(model, stack, mask), repeats).best
    return {
        "parameters": parameter_count(kmodel),
        "weights_bytes": model_size_bytes(kmodel),
        "file_bytes": int(file_bytes),
        "map_seconds": float(best),
        "n_pixels": int(np.asarray(mask).sum()),
    }


def scale_flip_angles(sequence: FispSequence, factor: float) -> FispSequence:
    """The same schedule with every flip angle multiplied by ``factor`` (a global B1 error).

    Parameters
    ----------
    sequence : FispSequence
    factor : float
        Flip-angle scale, finite and > 0; scaled angles must stay <= 180 degrees.

    Returns
    -------
    FispSequence
        Same TR, TE, RF phases and inversion.

    Explained in chapter 10, book/10_beyond.md.
    """
    if not isinstance(sequence, FispSequence):
        raise ValueError(f"sequence must be a FispSequence, got {type(sequence).__name__}")
    try:
        f = float(factor)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}") from exc
    top = float(np.max(sequence.flip_angles_deg)) if sequence.n_timepoints else 0.0
    if not (np.isfinite(f) and f > 0) or f * top > 180.0:
        raise ValueError(
            f"factor must be finite, > 0 and keep every flip angle <= 180 deg (<= {180.0 / max(top, 1e-12):.3g} "
            f"for this sequence), got {factor!r}"
        )
    return FispSequence(
        flip_angles_deg=sequence.flip_angles_deg * f,
        tr_ms=sequence.tr_ms,
        te_ms=sequence.te_ms,
        rf_phase_deg=sequence.rf_phase_deg,
        inversion=sequence.inversion,
        inversion_delay_ms=sequence.inversion_delay_ms,
    )


def robustness_study(
    tissues: Any,
    network: Any,
    trained_dictionary: Any,
    variants: Mapping[str, FispSequence],
    *,
    right_dictionaries: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A network and a dictionary made for one sequence, applied to signatures of others.

    For each variant sequence the tissues' signatures are simulated with it
    (:func:`mrfbook.physics.epg.simulate_fisp`, no noise) and estimated three ways: by ``network``
    (trained on the sequence of ``trained_dictionary``), by matching against
    ``trained_dictionary`` (the mismatched dictionary) and by matching against the variant's
    own dictionary (the right one: simulated here on the paper grid unless given).

    The network is applied to the raw signatures with
    :func:`mrfbook.nn.inference.predict_parameters`, which does not know their sequence: this
    deliberately bypasses :meth:`mrfbook.nn.model.TrainedModel.check_sequence`, which would
    refuse every variant (its digest differs) -- measuring what that refusal prevents is the
    point of the study.

    Parameters
    ----------
    tissues : Dictionary
        True T1, T2 (ms) of the test tissues (their atoms are not used).
    network : TrainedModel
    trained_dictionary : Dictionary
        The dictionary of the network's training sequence.
    variants : mapping name -> FispSequence
        Sequences the signatures are acquired with.
    right_dictionaries : mapping name -> Dictionary, optional
        Precomputed dictionaries of the variants (e.g. to reuse them for fine-tuning).

    Returns
    -------
    list of dict
        One row per (variant, method) with ``variant``, ``method`` ("network",
        "matching, trained dictionary", "matching, right dictionary"), ``seconds`` and the
        keys of :func:`accuracy`; the right-dictionary row adds ``build_seconds`` (EPG
        simulation of that dictionary, 0 if it was given).

    Explained in chapter 10, book/10_beyond.md.
    """
    from mrfbook.nn.inference import predict_parameters
    from mrfbook.physics.dictionary import build_dictionary
    from mrfbook.physics.epg import simulate_fisp
    from mrfbook.recon.matching import match_signatures

    _check_tissues(tissues)
    t1, t2 = np.asarray(tissues.t1_ms, dtype=np.float64), np.asarray(tissues.t2_ms, dtype=np.float64)
    given = dict(right_dictionaries or {})
    rows: list[dict[str, Any]] = []
    for name, seq in variants.items():
        if not isinstance(seq, FispSequence):
            raise ValueError(f"variants[{name!r}] must be a FispSequence, got {type(seq).__name__}")
        x = simulate_fisp(seq, t1, t2)
        with Stopwatch() as watch:
            est = predict_parameters(network, x)  # raw signatures: no sequence check (see docstring)
        rows.append({"variant": name, "method": "network", "seconds": watch.seconds, **accuracy(est, t1, t2)})
        with Stopwatch() as watch:
            res = match_signatures(x, trained_dictionary, min_snr=0.0)
        rows.append({"variant": name, "method": "matching, trained dictionary", "seconds": watch.seconds,
                     **accuracy(np.stack([res.t1_ms, res.t2_ms], axis=1), t1, t2)})
        build = 0.0
        right = given.get(name)
        if right is None:
            with Stopwatch() as watch:
                right = build_dictionary(seq)
            build = watch.seconds
        elif right.sequence != seq:
            raise ValueError(f"right_dictionaries[{name!r}] was simulated with another sequence than variants[{name!r}]")
        with Stopwatch() as watch:
            res = match_signatures(x, right, min_snr=0.0)
        rows.append({"variant": name, "method": "matching, right dictionary", "seconds": watch.seconds,
                     "build_seconds": build, **accuracy(np.stack([res.t1_ms, res.t2_ms], axis=1), t1, t2)})
    return rows


@dataclass
class FineTuneResult:
    """What :func:`fine_tune` returns.

    Attributes
    ----------
    model : TrainedModel
        The fine-tuned network, recording the new dictionary's sequence (so
        ``check_sequence`` accepts that sequence and refuses the old one).
    seconds, cpu_seconds : float
        Wall-clock and process CPU time of the training epochs.
    loss : list of float
        Mean training loss (RMSE, scaled label units) of each epoch.
    learning_rates : list of float
        Adam learning rate of each epoch.
    n_atoms : int
        Atoms trained on.
    """

    model: Any
    seconds: float
    cpu_seconds: float
    loss: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    n_atoms: int = 0


def fine_tune(
    trained: Any,
    dictionary: Any,
    *,
    learning_rates: Sequence[float] = (1e-3, 1e-3, 1e-4, 1e-4),
    batch_size: int = 256,
    n_atoms: int | None = None,
    seed: int = 0,
) -> FineTuneResult:
    """Continue training a network from its weights on another dictionary (e.g. a new sequence).

    A copy of the network is trained with the RMSE loss and Adam (fresh optimizer state),
    one epoch per entry of ``learning_rates``, on the atoms of ``dictionary`` (or a seeded
    random subset of ``n_atoms`` of them) with the network's own label scaling, inputs
    prepared as in :func:`mrfbook.nn.inputs.prepare_training_data`, batches in a seeded
    order per epoch, each epoch trained by :func:`mrfbook.nn.training.fit_one_epoch` (the
    loop body of :func:`mrfbook.nn.training.train`). ``trained`` is not modified.

    Parameters
    ----------
    trained : TrainedModel
    dictionary : Dictionary
        Atoms (K, L) with the same L as the network's input, T1, T2 in ms, and its sequence.
    learning_rates : sequence of float
        One learning rate (> 0) per epoch.
    batch_size : int
        >= 1.
    n_atoms : int, optional
        Train on a seeded random subset of this many atoms (1 <= n_atoms <= K).
    seed : int
        Seeds the subset and the batch order.

    Returns
    -------
    FineTuneResult

    Explained in chapter 10, book/10_beyond.md.
    """
    from mrfbook.nn.data import random_subset
    from mrfbook.nn.inputs import prepare_training_data
    from mrfbook.nn.model import TrainedModel
    from mrfbook.nn.training import copy_with_new_optimizer, fit_one_epoch

    lrs = [float(v) for v in learning_rates]
    if not lrs or not all(np.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"learning_rates must be a non-empty sequence of finite values > 0, got {learning_rates!r}")
    batch_size = check_int("batch_size", batch_size, 1)
    data = dictionary if n_atoms is None else random_subset(dictionary, n_atoms, seed=seed)
    x, y_ms = prepare_training_data(data)
    n_in = int(trained.model.inputs[0].shape[-1])
    if x.shape[1] != n_in:
        raise ValueError(f"dictionary must have {n_in} time points (the network's input length), got {x.shape[1]}")
    y = trained.label_scaling.transform(y_ms)
    model = copy_with_new_optimizer(trained.model, lrs[0])
    losses: list[float] = []
    with Stopwatch() as watch:
        for epoch, lr in enumerate(lrs):
            # the library's one epoch loop body, with this study's own seeded batch order
            order = np.random.default_rng([seed, 3, epoch]).permutation(len(x))
            losses.append(fit_one_epoch(model, x[order], y[order], None, batch_size, lr)["loss"])
    seconds, cpu = watch.seconds, watch.cpu_seconds
    seq = getattr(dictionary, "sequence", None)
    meta = dict(trained.metadata)
    meta["fine_tuned"] = {"from_sequence_digest": trained.sequence_digest, "learning_rates": lrs,
                          "batch_size": int(batch_size), "n_atoms": int(len(x)), "seed": int(seed)}
    tuned = TrainedModel(
        model=model,
        label_scaling=trained.label_scaling,
        sequence=None if seq is None else seq.to_dict(),
        sequence_digest=None if seq is None else seq.digest,
        metadata=meta,
    )
    return FineTuneResult(tuned, float(seconds), float(cpu), losses, lrs, int(len(x)))


def training_cost(log_path: str | os.PathLike) -> dict[str, Any]:
    """Time a training run took, from its ``training_log.jsonl``.

    Parameters
    ----------
    log_path : path
        JSON-lines log written by :func:`mrfbook.nn.training.train` (one record per epoch with
        ``seconds``, ``device``, ``cpu``).

    Returns
    -------
    dict
        ``epochs`` (int, distinct epochs logged), ``total_seconds`` and
        ``median_epoch_seconds`` (float, over those epochs), ``device`` and ``cpu`` (str, of the
        last record). An epoch logged twice (a run resumed from an older checkpoint repeats
        the epochs after it) counts once, with its last record.

    Explained in chapter 10, book/10_beyond.md.
    """
    from mrfbook.nn.runs import read_log

    p = Path(log_path)
    if not p.is_file():
        raise FileNotFoundError(f"no training log at log_path={str(p)!r}")
    log = read_log(p)
    if not log:
        raise ValueError(f"training log {str(p)!r} has no epochs")
    last = {int(r["epoch"]): r for r in log}
    secs = [float(last[e]["seconds"]) for e in sorted(last)]
    return {
        "epochs": len(secs),
        "total_seconds": float(np.sum(secs)),
        "median_epoch_seconds": float(np.median(secs)),
        "device": str(log[-1].get("device", "unknown")),
        "cpu": str(log[-1].get("cpu", "")),
    }
