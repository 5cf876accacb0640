"""The paper's experiments (section 4.2) as functions: synthetic test, phantom maps, speed, storage.

Chapter 8 runs them step by step and draws their figures; chapter 9 puts their summary next to
the paper's figures (:mod:`mrfbook.paper`). The summary of chapter 8's run is written to
``<cache>/evaluation/reproduction.json`` with a signature of its inputs (model files, dictionaries,
library source); chapter 9 uses it when the signature still matches and otherwise runs the same
experiments itself, so no number is ever typed in.

Timing conventions: wall-clock seconds (:class:`mrfbook.utils.timing.Stopwatch`) on whatever machine runs the book;
each network is warmed up on a few signatures first (graph tracing is a one-off cost), and the
matching search index (the SVD basis and search groups, built once per dictionary) is built before
timing. Restoration and mapping times are reported separately and summed.

Explained in chapter 8, book/08_evaluation.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mrfbook import metrics
from mrfbook.nn.inference import predict_parameters
from mrfbook.nn.runs import ShippedNetwork, network_configs
from mrfbook.physics.dictionary import default_cache_dir
from mrfbook.recon.acquisition import UndersampledFourier, image_stack, variable_density_masks, zero_filled
from mrfbook.recon.flor import flor_maps
from mrfbook.recon.lowrank import data_scale
from mrfbook.recon.matching import brute_force_match, match_maps, match_signatures, search_index
from mrfbook.utils.checks import check_int
from mrfbook.utils.timing import Stopwatch

__all__ = [
    "run_reproduction",
    "FRESH_NETWORK",
    "fresh_network",
    "reproduction_summary",
    "MethodMaps",
    "SyntheticTest",
    "synthetic_test",
    "full_sampling_maps",
    "UndersampledResult",
    "undersampled_maps",
    "UndersampledSetting",
    "SETTINGS",
    "undersampled_settings",
    "authors_weight",
    "evaluation_phantoms",
    "map_scores",
    "label_scores",
    "storage_comparison",
    "inputs_signature",
    "summarise_reproduction",
    "save_summary",
    "load_summary",
    "add_network_maps",
    "common_scores",
    "REFINED_NETWORK",
    "refined_network",
    "phantom_only_networks",
    "summary_path",
    "evaluate_on_dictionary",
]

SUMMARY_FORMAT = "mrfbook-reproduction/5"

#: Display name and folder of the paper network fine-tuned on fresh, off-grid tissues (chapter 7). It is
#: evaluated on the phantoms next to the paper network; the reproduction's network stays the paper
#: network, trained with the paper's recipe.
FRESH_NETWORK = "paper network, fresh tissues"
FRESH_FOLDER = "paper_resnet_fresh"


def fresh_network(sequence: Any, models_dir: str | os.PathLike | None = None) -> dict[str, ShippedNetwork]:
    """``{FRESH_NETWORK: ShippedNetwork}`` read from ``models/paper_resnet_fresh``, or ``{}`` if it is not there.

    Its accuracy on the shifted test grid is the one its training run recorded
    (``info()["recorded_test"]``, the same 80,100 tissues and metric as :func:`synthetic_test`).

    Explained in chapter 8, book/08_evaluation.md.
    """
    return _shipped_if_present(FRESH_NETWORK, FRESH_FOLDER, sequence, models_dir)


def _shipped_if_present(name: str, folder_name: str, sequence: Any,
                        models_dir: str | os.PathLike | None) -> dict[str, ShippedNetwork]:
    """``{name: ShippedNetwork}`` from ``<models>/<folder_name>``, or ``{}`` when it holds no network file."""
    from mrfbook.nn.runs import default_models_dir, model_file, read_run_folder

    folder = (Path(models_dir) if models_dir is not None else default_models_dir()) / folder_name
    try:
        model_file(folder)
    except FileNotFoundError:
        return {}
    return {name: read_run_folder(folder, expected_sequence=sequence)}


#: Display name and folder of the network for real inputs (chapter 11): a small network in the
#: dictionary's subspace proposes, a fit of the simulated signal refines; trained on off-grid, mixed,
#: noisy and restored fingerprints of random phantoms. Evaluated on the phantoms next to the paper network.
REFINED_NETWORK = "refined network"
REFINED_FOLDER = "refined_network"


def refined_network(sequence: Any, models_dir: str | os.PathLike | None = None) -> dict[str, ShippedNetwork]:
    """``{REFINED_NETWORK: ShippedNetwork}`` read from ``models/refined_network``, or ``{}`` if it is not there.

    Its accuracy on the shifted test grid is the one recorded when it was saved
    (``info()["recorded_test"]``, the same 80,100 tissues and metric as :func:`synthetic_test`).

    Explained in chapter 11, book/11_real_inputs.md.
    """
    return _shipped_if_present(REFINED_NETWORK, REFINED_FOLDER, sequence, models_dir)


def phantom_only_networks(sequence: Any, models_dir: str | os.PathLike | None = None) -> dict[str, ShippedNetwork]:
    """The networks chapter 8 evaluates on the phantoms only: :func:`fresh_network` and :func:`refined_network`.

    Explained in chapter 8, book/08_evaluation.md.
    """
    return {**fresh_network(sequence, models_dir), **refined_network(sequence, models_dir)}


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


def _warm_up(model: Any, n_timepoints: int) -> None:
    from mrfbook.nn.inference import predict_parameters

    rng = np.random.default_rng(0)
    predict_parameters(model, rng.standard_normal((8, n_timepoints)))


# --------------------------------------------------------------------------------------------------
# synthetic test (the paper's Fig. 3)
# --------------------------------------------------------------------------------------------------
@dataclass
class SyntheticTest:
    """Estimates on the shifted synthetic test grid.

    Attributes
    ----------
    t1_ms, t2_ms : numpy.ndarray
        (N,) float64 true parameters of the test tissues (ms).
    estimates : dict
        ``{method: (N, 2) float64}`` estimated (T1, T2) in ms; methods are "matching" and the
        network names.
    seconds : dict
        ``{method: wall seconds}`` to map all N signatures.
    baseline_seconds : float
        Brute-force matching (one inner product per atom, the paper's baseline, in float64 so that it
        gives the exact matcher's answers) measured on ``baseline_n`` signatures and scaled linearly to N.
    baseline_n : int
        Signatures the baseline was actually timed on.
    baseline_agrees : float
        Fraction of those signatures for which the brute-force matcher picks an atom with the same
        (T1, T2) as the fast exact matcher.
    baseline_float32_agrees : float
        The same fraction for a float32 brute force (scores rounded to float32: on the shifted grid
        the best atoms of a test tissue often differ by less than that rounding); NaN if not run.
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    estimates: dict[str, np.ndarray]
    seconds: dict[str, float]
    baseline_seconds: float
    baseline_n: int
    baseline_agrees: float
    baseline_float32_agrees: float = float("nan")

    @property
    def n(self) -> int:
        """Number of test signatures."""
        return int(self.t1_ms.size)

    def scores(self) -> dict[str, dict[str, float]]:
        """Per method: ``t1_rmse_ms``, ``t2_rmse_ms``, ``t1_r2``, ``t2_r2``, ``t1_max_abs_ms``, ``t2_max_abs_ms``."""
        return {name: metrics.parameter_scores(est, self.t1_ms, self.t2_ms, scores=("rmse", "r2", "max_abs"))
                for name, est in self.estimates.items()}


def synthetic_test(networks: Mapping[str, Any], dictionary: Any, test_dictionary: Any, *,
                   baseline_n: int = 16_384) -> SyntheticTest:
    """Map every atom of the shifted test grid with matching and with each network.

    Parameters
    ----------
    networks : mapping
        ``{name: TrainedModel}`` (e.g. :func:`shipped_networks`).
    dictionary : mrfbook.physics.dictionary.Dictionary
        The training dictionary (the paper's grid), searched by matching.
    test_dictionary : mrfbook.physics.dictionary.Dictionary
        The shifted test grid (no (T1, T2) pair in common with ``dictionary``).
    baseline_n : int
        Number of test signatures (>= 1) on which the brute-force matcher is timed (in float64,
        the exact matcher's answers; a float32 brute force is run on the same signatures, untimed,
        to show why float32 is not a valid reference here).

    Returns
    -------
    SyntheticTest

    Explained in chapter 8, book/08_evaluation.md.
    """
    from mrfbook.nn.inference import predict_parameters

    baseline_n = check_int("baseline_n", baseline_n, 1)
    x = np.asarray(test_dictionary.atoms)
    n = x.shape[0]
    estimates: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    search_index(dictionary)  # one-off index build, not part of the mapping time
    with Stopwatch() as sw:
        res = match_signatures(x, dictionary)
    seconds["matching"] = sw.seconds
    estimates["matching"] = np.stack([res.t1_ms, res.t2_ms], axis=1)
    for name, model in networks.items():
        _warm_up(model, x.shape[1])
        with Stopwatch() as sw:
            estimates[name] = predict_parameters(model, x)[:, :2]
        seconds[name] = sw.seconds
    m = min(baseline_n, n)
    rows = np.random.default_rng(0).choice(n, size=m, replace=False)
    with Stopwatch() as sw:
        brute = brute_force_match(x[rows], dictionary, dtype=np.float64)
    baseline_s = sw.seconds * n / m
    same = (brute.t1_ms == res.t1_ms[rows]) & (brute.t2_ms == res.t2_ms[rows])
    brute32 = brute_force_match(x[rows], dictionary, dtype=np.float32)
    same32 = (brute32.t1_ms == res.t1_ms[rows]) & (brute32.t2_ms == res.t2_ms[rows])
    return SyntheticTest(
        t1_ms=np.asarray(test_dictionary.t1_ms, dtype=np.float64),
        t2_ms=np.asarray(test_dictionary.t2_ms, dtype=np.float64),
        estimates=estimates, seconds=seconds, baseline_seconds=float(baseline_s), baseline_n=m,
        baseline_agrees=float(np.mean(same)), baseline_float32_agrees=float(np.mean(same32)),
    )


# --------------------------------------------------------------------------------------------------
# phantom maps (the paper's Figs. 4 and 5)
# --------------------------------------------------------------------------------------------------
@dataclass
class MethodMaps:
    """T1/T2 maps of one method on a phantom, with its time cost and the pixels it could resolve.

    Attributes
    ----------
    t1_ms, t2_ms : numpy.ndarray
        (H, W) float64 maps in ms; 0 where the method gives no estimate (background, pixels it
        could not resolve or rejected).
    restore_s : float
        Wall seconds of the image-stack restoration, weight search included (0 when there is none).
    map_s : float
        Wall seconds of the parameter mapping (matching or network) over the tissue pixels.
    resolvable : numpy.ndarray or None
        (H, W) bool, the tissue pixels the method mapped (the resolvability rule of
        :mod:`mrfbook.physics.noise`, and for FLOR also its correlation threshold).
    info : dict
        Extras (``lam``, ``lam_rule``, ``iterations``, ``converged``, ``valid_fraction``).

    Explained in chapter 8, book/08_evaluation.md.
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    restore_s: float = 0.0
    map_s: float = 0.0
    resolvable: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        """Restoration plus mapping, in seconds."""
        return self.restore_s + self.map_s


def _match(stack: np.ndarray, dictionary: Any, mask: np.ndarray, restore_s: float = 0.0, *,
           flor: bool = False, error_level: float | None = None, info: dict | None = None) -> MethodMaps:
    search_index(dictionary)
    with Stopwatch() as sw:
        if flor:
            pm = flor_maps(stack, dictionary, mask=mask, error_level=error_level)
        else:
            pm = match_maps(stack, dictionary, mask=mask, error_level=error_level)
    mapped = np.asarray(pm.valid) & mask
    return MethodMaps(pm.t1_ms, pm.t2_ms, restore_s, sw.seconds, mapped,
                      {**(info or {}), "valid_fraction": float(mapped[mask].mean())})


def _network(stack: np.ndarray, model: Any, mask: np.ndarray, restore_s: float = 0.0, *,
             error_level: float | None = None, info: dict | None = None) -> MethodMaps:
    from mrfbook.nn.inference import network_maps

    _warm_up(model, stack.shape[-1])
    with Stopwatch() as watch:
        nm = network_maps(model, stack, mask, pd=False, error_level=error_level)
    return MethodMaps(nm.t1_ms, nm.t2_ms, restore_s, watch.seconds, np.asarray(nm.mapped) & mask, dict(info or {}))


def full_sampling_maps(phantom: Any, dictionary: Any, networks: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, MethodMaps]]:
    """Maps from the fully sampled image stack of ``phantom`` (the paper's Fig. 4).

    Parameters
    ----------
    phantom : mrfbook.physics.phantom.TissueMaps
        Ground truth (T1, T2 in ms, PD, tissue mask), (H, W).
    dictionary : mrfbook.physics.dictionary.Dictionary
        Matching dictionary; its ``sequence`` simulates the image stack.
    networks : mapping
        ``{name: TrainedModel}``.

    Returns
    -------
    stack : numpy.ndarray
        (H, W, L) complex64 fully sampled image stack.
    maps : dict
        ``{"matching": MethodMaps, <network name>: MethodMaps, ...}`` over the tissue mask.

    Explained in chapter 8, book/08_evaluation.md.
    """
    stack = image_stack(phantom, dictionary.sequence)
    mask = phantom.tissue_mask
    maps = {"matching": _match(stack, dictionary, mask)}
    for name, model in networks.items():
        maps[name] = _network(stack, model, mask)
    return stack, maps


def evaluation_phantoms(sequence: Any, size: int = 128, names: tuple[str, ...] = ("brain", "head")) -> dict[str, Any]:
    """The phantoms chapters 8 and 9 evaluate on, scored against their apparent maps.

    Each phantom of :data:`mrfbook.physics.phantom.PHANTOMS` named in ``names`` is built at ``size``
    and its reference maps are replaced by the apparent single-compartment parameters of its
    noiseless signal under ``sequence`` (:func:`mrfbook.physics.reference.apparent_reference`): the
    best a single-compartment method can reach, so that a score measures the method and not the
    partial-volume convention. The compartments, and so the simulated signal, are unchanged.

    Parameters
    ----------
    sequence : mrfbook.physics.sequence.FispSequence
    size : int
        Matrix size (see the phantoms).
    names : tuple of str
        Phantom names, the first is the book's main phantom.

    Returns
    -------
    dict
        ``{name: TissueMaps}`` in the order of ``names``.

    Explained in chapter 8, book/08_evaluation.md.
    """
    from mrfbook.physics.phantom import phantom
    from mrfbook.physics.reference import apparent_reference

    return {name: apparent_reference(phantom(name, size), sequence) for name in names}


#: The authors' weight (eq. 2) in the absolute units of their phantom, and that phantom's largest PD.
AUTHORS_LAM = 5.0
AUTHORS_PD_MAX = 117.0


def authors_weight(kspace: np.ndarray, op: UndersampledFourier, pd_max: float) -> float:
    """The authors' lambda = 5 translated into the normalised units of :mod:`mrfbook.recon.lowrank`.

    Their phantom's PD reaches about 117 (absolute units) where the book's reaches about 1, so
    their weight, applied to our data scaled to their PD, is ``5 / data_scale(kspace * 117 / pd_max)``.

    Parameters
    ----------
    kspace : numpy.ndarray
        (L, H, W) complex undersampled k-space of a phantom.
    op : mrfbook.recon.acquisition.UndersampledFourier
    pd_max : float
        Largest PD of the phantom (> 0).

    Returns
    -------
    float
        The weight in normalised units (about 0.6 for the book's brain phantom).

    Explained in chapter 5, book/05_undersampling.md.
    """
    if not (np.isfinite(pd_max) and pd_max > 0):
        raise ValueError(f"pd_max must be a finite number > 0, got {pd_max!r}")
    return float(AUTHORS_LAM / data_scale(kspace * np.float32(AUTHORS_PD_MAX / pd_max), op))


@dataclass
class UndersampledResult:
    """The 15 %-k-space experiment: restored stacks and the maps of every method.

    Attributes
    ----------
    truth, zero_filled, lowrank, flor : numpy.ndarray
        (H, W, L) complex64 image stacks: fully sampled, zero-filled ``F_u^H Y``, low-rank (eq. 2)
        and FLOR restorations.
    maps : dict
        ``{method: MethodMaps}``: "zero-filled + matching" (Ma et al.), "FLOR" (its matching keeps a
        pixel only if the correlation exceeds 0.9), "low-rank + matching", and
        "low-rank + <network name>" for each network (the proposed method).
    sampling_fraction : float
        Fraction of k-space actually sampled.
    lowrank_iterations, flor_iterations : int
    lam_lowrank, lam_flor : float
        Weights used (normalised units).
    lam_rule : str
        How they were set: "data-chosen" (k-space hold-out) or "authors'" (their lambda = 5 in
        our units, :func:`authors_weight`).
    pattern : str
        "lines" or "points" (:func:`mrfbook.recon.acquisition.variable_density_masks`).

    Explained in chapter 8, book/08_evaluation.md.
    """

    truth: np.ndarray
    zero_filled: np.ndarray
    lowrank: np.ndarray
    flor: np.ndarray
    maps: dict[str, MethodMaps]
    sampling_fraction: float
    lowrank_iterations: int
    flor_iterations: int
    lam_lowrank: float = float("nan")
    lam_flor: float = float("nan")
    lam_rule: str = ""
    pattern: str = "lines"


def _restore(kspace, op, method: str, lam, dictionary) -> tuple[Any, float]:
    from mrfbook.recon.weights import restore

    with Stopwatch() as sw:
        result = restore(kspace, op, method=method, lam=lam, dictionary=dictionary, estimate_error=True)
    return result, sw.seconds


def undersampled_maps(phantom: Any, dictionary: Any, networks: Mapping[str, Any], *,
                      sampling_ratio: float = 0.15, lam: float | str = "auto", pattern: str = "lines",
                      seed: int = 0, truth: np.ndarray | None = None) -> UndersampledResult:
    """The paper's Fig. 5 experiment: 15 % of k-space per frame, four reconstructions.

    Variable-density Cartesian masks (a new one per frame, ``seed``), noiseless k-space, low-rank
    restoration and FLOR (:func:`mrfbook.recon.weights.restore`), each followed by matching or a
    network. Every method maps only the pixels it can resolve, with the restoration's hold-out
    error as the error floor (:mod:`mrfbook.physics.noise`).

    Parameters
    ----------
    phantom : mrfbook.physics.phantom.TissueMaps
    dictionary : mrfbook.physics.dictionary.Dictionary
    networks : mapping
        ``{name: TrainedModel}``.
    sampling_ratio : float
        Fraction of k-space per frame, in (0, 1].
    lam : "auto", "authors" or float
        Weight of both restorations: chosen from the data by k-space hold-out ("auto"), the
        authors' lambda = 5 in our units ("authors", :func:`authors_weight`), or a number >= 0
        (normalised units of :mod:`mrfbook.recon.lowrank`).
    pattern : {"lines", "points"}
        Whole k-space lines (a realisable 2-D scan) or single points (the authors' code).
    seed : int
        Seed of the masks.
    truth : numpy.ndarray, optional
        (H, W, L) fully sampled stack if already simulated.

    Returns
    -------
    UndersampledResult

    Explained in chapter 8, book/08_evaluation.md.
    """
    if truth is None:
        truth = image_stack(phantom, dictionary.sequence)
    mask = phantom.tissue_mask
    h, w, n_t = truth.shape
    masks = variable_density_masks((h, w), n_t, sampling_ratio, seed=seed, pattern=pattern)
    op = UndersampledFourier(masks)
    kspace = op.forward(truth)
    with Stopwatch() as sw:
        zf = zero_filled(kspace, op)
    zf_s = sw.seconds
    if isinstance(lam, str) and lam == "authors":
        weight, rule = authors_weight(kspace, op, float(phantom.pd.max())), "authors'"
    elif isinstance(lam, str):
        weight, rule = lam, "data-chosen"
    else:
        weight, rule = float(lam), "given"
    lr, lr_s = _restore(kspace, op, "lowrank", weight, None)
    fl, fl_s = _restore(kspace, op, "flor", weight, dictionary)
    lr_err, fl_err = lr.extra.get("error_level"), fl.extra.get("error_level")
    lr_info = {"lam": lr.lam, "lam_rule": rule, "iterations": lr.n_iter, "converged": lr.converged,
               "error_level": lr_err}
    fl_info = {"lam": fl.lam, "lam_rule": rule, "iterations": fl.n_iter, "converged": fl.converged,
               "error_level": fl_err}
    maps = {
        "zero-filled + matching": _match(zf, dictionary, mask, zf_s),
        "FLOR": _match(fl.images, dictionary, mask, fl_s, flor=True, error_level=fl_err, info=fl_info),
        "low-rank + matching": _match(lr.images, dictionary, mask, lr_s, error_level=lr_err, info=lr_info),
    }
    for name, model in networks.items():
        maps[f"low-rank + {name}"] = _network(lr.images, model, mask, lr_s, error_level=lr_err, info=lr_info)
    return UndersampledResult(truth=truth, zero_filled=zf, lowrank=lr.images, flor=fl.images, maps=maps,
                              sampling_fraction=float(masks.mean()), lowrank_iterations=int(lr.n_iter),
                              flor_iterations=int(fl.n_iter), lam_lowrank=float(lr.lam), lam_flor=float(fl.lam),
                              lam_rule=rule, pattern=pattern)


def add_network_maps(name: str, model: Any, phantoms: Mapping[str, Any],
                     settings: Mapping["UndersampledSetting", UndersampledResult], full: dict[str, MethodMaps],
                     truth: np.ndarray) -> None:
    """Map the stacks of finished experiments with one more network, in place.

    Adds ``full[name]`` (the fully sampled ``truth`` of the brain phantom) and, in every setting's
    result, ``maps["low-rank + <name>"]`` from the same low-rank restoration, with its error level
    and timing, exactly as :func:`undersampled_maps` would have.

    Explained in chapter 8, book/08_evaluation.md.
    """
    full[name] = _network(truth, model, phantoms["brain"].tissue_mask)
    for setting, result in settings.items():
        base = result.maps["low-rank + matching"]
        info = {k: v for k, v in base.info.items() if k != "valid_fraction"}
        result.maps[f"low-rank + {name}"] = _network(result.lowrank, model, phantoms[setting.phantom].tissue_mask,
                                                     base.restore_s, error_level=info.get("error_level"), info=info)


@dataclass(frozen=True)
class UndersampledSetting:
    """One setting of the 15 % experiment: which phantom, which masks, which weight.

    Explained in chapter 8, book/08_evaluation.md.
    """

    phantom: str
    pattern: str
    lam: str

    @property
    def label(self) -> str:
        """Words for tables, e.g. "brain, lines, data-chosen weight"."""
        weight = {"auto": "data-chosen weight", "authors": "authors' weight"}.get(self.lam, f"lambda {self.lam}")
        return f"{self.phantom}, {self.pattern}, {weight}"


#: The 15 % experiment's settings of chapter 8: the first is the main one (the book's phantom, line
#: masks, the weight chosen from the data); the others change one thing each, or the phantom.
SETTINGS: tuple[UndersampledSetting, ...] = (
    UndersampledSetting("brain", "lines", "auto"),
    UndersampledSetting("brain", "points", "auto"),
    UndersampledSetting("brain", "lines", "authors"),
    UndersampledSetting("brain", "points", "authors"),
    UndersampledSetting("head", "lines", "auto"),
    UndersampledSetting("head", "points", "auto"),
)


def undersampled_settings(phantoms: Mapping[str, Any], dictionary: Any, networks: Mapping[str, Any],
                          settings: tuple[UndersampledSetting, ...], *, sampling_ratio: float = 0.15,
                          truths: Mapping[str, np.ndarray] | None = None) -> dict[UndersampledSetting, UndersampledResult]:
    """Run :func:`undersampled_maps` for each setting (phantoms by name, stacks simulated once each).

    Explained in chapter 8, book/08_evaluation.md.
    """
    stacks = dict(truths or {})
    out = {}
    for s in settings:
        if s.phantom not in phantoms:
            raise ValueError(f"settings: phantom {s.phantom!r} is not one of {sorted(phantoms)}")
        if s.phantom not in stacks:
            stacks[s.phantom] = image_stack(phantoms[s.phantom], dictionary.sequence)
        out[s] = undersampled_maps(phantoms[s.phantom], dictionary, networks, sampling_ratio=sampling_ratio,
                                   lam=s.lam, pattern=s.pattern, truth=stacks[s.phantom])
    return out


def map_scores(maps: MethodMaps, phantom: Any) -> dict[str, float]:
    """Errors of a method's maps against the phantom, in both conventions and on resolvable pixels.

    Returns
    -------
    dict
        For ``p`` in t1, t2:

        - ``p_rmse_ms``, ``p_snr_db``: over every tissue pixel of the phantom (a pixel the method did
          not map counts with its 0), our SNR (reference RMS over RMSE, :func:`mrfbook.metrics.snr_db`);
        - ``p_rmse_resolvable_ms``, ``p_snr_resolvable_db``: over the tissue pixels the method mapped
          (``maps.resolvable``; the tissue mask when it is None); ``n_resolvable`` counts them;
        - ``p_paper_rmse_ms``, ``p_paper_snr_db``: the paper's convention (the authors' code): every
          pixel of the image, estimates 0 outside the tissue, SNR with the estimate's RMS in the
          numerator (:func:`mrfbook.metrics.paper_snr_db`);

        plus ``n_tissue``, ``seconds`` (restoration + mapping), ``restore_s``, ``map_s``, and the
        restoration's ``lam`` and ``iterations`` when it had one.

    Explained in chapter 8, book/08_evaluation.md.
    """
    mask = phantom.tissue_mask
    mapped = mask if maps.resolvable is None else (np.asarray(maps.resolvable) & mask)
    out: dict[str, float] = {"n_tissue": int(mask.sum()), "n_resolvable": int(mapped.sum())}
    for key, est, ref in (("t1", maps.t1_ms, phantom.t1_ms), ("t2", maps.t2_ms, phantom.t2_ms)):
        out[f"{key}_rmse_ms"] = metrics.rmse(est, ref, mask)
        out[f"{key}_snr_db"] = metrics.snr_db(est, ref, mask)
        nan = float("nan")
        out[f"{key}_rmse_resolvable_ms"] = metrics.rmse(est, ref, mapped) if mapped.any() else nan
        out[f"{key}_snr_resolvable_db"] = metrics.snr_db(est, ref, mapped) if mapped.any() else nan
        out[f"{key}_paper_snr_db"] = metrics.paper_snr_db(est, ref)
        out[f"{key}_paper_rmse_ms"] = metrics.rmse(est, ref)
    out["seconds"] = float(maps.total_s)
    out["restore_s"] = float(maps.restore_s)
    out["map_s"] = float(maps.map_s)
    for key in ("lam", "iterations"):
        if key in maps.info:
            out[key] = float(maps.info[key])
    return out


# --------------------------------------------------------------------------------------------------
# storage
# --------------------------------------------------------------------------------------------------
def storage_comparison(n_atoms_t1t2: int, n_timepoints: int, network_configs: Mapping[str, Any],
                       b1_counts: tuple[int, ...] = (1, 11, 21, 41)) -> list[dict[str, Any]]:
    """How a dictionary and the networks grow when B1 is added as a third parameter.

    The dictionary stores one float32 atom per (T1, T2, B1) point: ``n_atoms_t1t2 * n_b1 * L * 4``
    bytes. A network keeps its layers and only gains one output (B1) in its last dense layer; its
    float32 weights take 4 bytes each.

    Parameters
    ----------
    n_atoms_t1t2 : int
        Atoms of the 2-parameter grid (80,100 for the paper's).
    n_timepoints : int
        L.
    network_configs : mapping
        ``{name: NetworkConfig}`` of the 2-output networks.
    b1_counts : tuple of int
        Numbers of B1 values (>= 1) to tabulate; 1 means no B1 axis.

    Returns
    -------
    list of dict
        One row per count: ``n_b1``, ``dictionary_atoms``, ``dictionary_mb`` and, per network,
        ``<name>_weights`` and ``<name>_mb`` (1 MB = 1e6 bytes).

    Explained in chapter 8, book/08_evaluation.md.
    """
    import dataclasses

    from mrfbook.nn.network import expected_parameter_count

    check_int("n_atoms_t1t2", n_atoms_t1t2, 1)
    check_int("n_timepoints", n_timepoints, 1)
    rows = []
    for i, n_b1 in enumerate(b1_counts):
        check_int(f"b1_counts[{i}]", n_b1, 1)
        row: dict[str, Any] = {"n_b1": int(n_b1), "dictionary_atoms": int(n_atoms_t1t2 * n_b1),
                               "dictionary_mb": n_atoms_t1t2 * n_b1 * n_timepoints * 4 / 1e6}
        for name, cfg in network_configs.items():
            outputs = cfg.n_outputs + (1 if n_b1 > 1 else 0)
            n_w = expected_parameter_count(dataclasses.replace(cfg, n_outputs=outputs))
            row[f"{name}_weights"] = int(n_w)
            row[f"{name}_mb"] = n_w * 4 / 1e6
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# the summary chapter 9 reads
# --------------------------------------------------------------------------------------------------
def inputs_signature(networks: Mapping[str, ShippedNetwork], dictionary: Any, test_dictionary: Any) -> str:
    """SHA-256 over what the reproduction depends on: model files, dictionaries, library source.

    Explained in chapter 9, book/09_reproduction.md.
    """
    from mrfbook.nn.runs import model_file
    from mrfbook.utils.provenance import file_sha256

    h = hashlib.sha256()
    for name, model in networks.items():
        h.update(name.encode())
        h.update(file_sha256(model_file(model.folder)).encode())
    for d in (dictionary, test_dictionary):
        h.update(d.sequence.digest.encode())
        h.update(np.asarray(d.t1_ms, dtype=np.float64).tobytes())
        h.update(np.asarray(d.t2_ms, dtype=np.float64).tobytes())
    package = Path(__file__).resolve().parents[1]  # the whole mrfbook package, every subpackage
    for rel in sorted(src.relative_to(package).as_posix() for src in package.rglob("*.py")):
        h.update(rel.encode())
        h.update((package / rel).read_bytes())
    return h.hexdigest()


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer, int)) and not isinstance(obj, bool):
        return int(obj)
    return obj


def summarise_reproduction(*, signature: str, synthetic: SyntheticTest, full: Mapping[str, MethodMaps],
                           undersampled: UndersampledResult, phantom: Any, storage: list[dict[str, Any]],
                           network_info: Mapping[str, Mapping[str, Any]], machine: Mapping[str, Any],
                           settings: Mapping[UndersampledSetting, UndersampledResult] | None = None,
                           phantoms: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """All of chapter 8's figures as one JSON-able dict (see chapter 9 for its use).

    Keys: ``format``, ``signature``, ``created`` (UTC time), ``machine``, ``networks`` (weights, MB on disk, training device
    and seconds per epoch from each model's log), ``synthetic`` (scores and seconds per method,
    baseline), ``full_sampling`` and ``undersampled`` (:func:`map_scores` per method, the weights and
    how they were set), ``settings`` (the 15 % experiment under each :class:`UndersampledSetting`:
    phantom, masks, weight rule, weights, scores, :func:`common_scores` and :func:`label_scores`;
    ``phantoms`` maps the settings' phantom names to their maps), ``storage``.

    Explained in chapter 8, book/08_evaluation.md.
    """
    import datetime as _dt

    return _plain({
        "format": SUMMARY_FORMAT,
        "signature": signature,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": dict(machine),
        "networks": {k: dict(v) for k, v in network_info.items()},
        "synthetic": {
            "n": synthetic.n,
            "scores": synthetic.scores(),
            "seconds": dict(synthetic.seconds),
            "baseline_seconds": synthetic.baseline_seconds,
            "baseline_n": synthetic.baseline_n,
            "baseline_agrees": synthetic.baseline_agrees,
            "baseline_float32_agrees": synthetic.baseline_float32_agrees,
        },
        "full_sampling": {"n_tissue": int(phantom.tissue_mask.sum()),
                          "scores": {k: map_scores(v, phantom) for k, v in full.items()}},
        "undersampled": _undersampled_summary(undersampled, phantom),
        "settings": [{"phantom": k.phantom, "pattern": k.pattern, "lam": k.lam, "label": k.label,
                      **_undersampled_summary(v, (phantoms or {})[k.phantom])}
                     for k, v in (settings or {}).items()],
        "storage": storage,
    })


def _undersampled_summary(result: UndersampledResult, phantom: Any) -> dict[str, Any]:
    return {
        "sampling_fraction": result.sampling_fraction,
        "pattern": result.pattern,
        "lam_rule": result.lam_rule,
        "lam_lowrank": result.lam_lowrank,
        "lam_flor": result.lam_flor,
        "lowrank_iterations": result.lowrank_iterations,
        "flor_iterations": result.flor_iterations,
        "scores": {k: map_scores(v, phantom) for k, v in result.maps.items()},
        "common_scores": common_scores(result.maps, phantom),
        "label_scores": {k: label_scores(v, phantom) for k, v in result.maps.items()},
    }


def common_scores(maps: Mapping[str, MethodMaps], phantom: Any) -> dict[str, dict[str, float]]:
    """Every method's errors on the same pixels: those FLOR and every low-rank method mapped.

    A method that leaves a hard pixel unmapped is not scored on it, so SNRs over each method's own
    resolvable pixels compare different pixel sets; this puts them on one (zero-filled matching,
    the baseline, is scored there too but does not shrink the set).

    Returns
    -------
    dict
        ``{method: {"n", "t1_rmse_ms", "t1_snr_db", "t2_rmse_ms", "t2_snr_db"}}``.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    mask = np.asarray(phantom.tissue_mask).copy()
    for name, m in maps.items():
        if (name == "FLOR" or name.startswith("low-rank + ")) and m.resolvable is not None:
            mask &= np.asarray(m.resolvable)
    out: dict[str, dict[str, float]] = {}
    for name, m in maps.items():
        out[name] = {"n": int(mask.sum())}
        for key, est, ref in (("t1", m.t1_ms, phantom.t1_ms), ("t2", m.t2_ms, phantom.t2_ms)):
            out[name][f"{key}_rmse_ms"] = metrics.rmse(est, ref, mask)
            out[name][f"{key}_snr_db"] = metrics.snr_db(est, ref, mask)
    return out


def label_scores(maps: MethodMaps, phantom: Any) -> dict[str, dict[str, float]]:
    """A method's errors on each tissue class of the phantom: where its all-pixel error comes from.

    Pixels are grouped by ``phantom.labels`` (the dominant tissue of each pixel); a pixel the
    method did not map counts with its 0, as in :func:`map_scores`.

    Parameters
    ----------
    maps : MethodMaps
    phantom : mrfbook.physics.phantom.TissueMaps
        With ``labels`` and ``label_names``; without labels (None or absent) the result is empty.

    Returns
    -------
    dict
        ``{tissue name: {"n", "n_mapped", "t1_rmse_ms", "t2_rmse_ms", "t1_error_share",
        "t2_error_share"}}`` over the classes that hold tissue pixels; ``p_error_share`` is the
        class's part (0 to 1) of the method's squared error over all tissue pixels.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    labels = getattr(phantom, "labels", None)
    if labels is None:
        return {}
    mask = np.asarray(phantom.tissue_mask)
    labels = np.asarray(labels)
    mapped = mask if maps.resolvable is None else (np.asarray(maps.resolvable) & mask)
    squared = {key: (np.asarray(est, np.float64) - ref) ** 2
               for key, est, ref in (("t1", maps.t1_ms, phantom.t1_ms), ("t2", maps.t2_ms, phantom.t2_ms))}
    totals = {key: float(sq[mask].sum()) for key, sq in squared.items()}
    out: dict[str, dict[str, float]] = {}
    for index in np.unique(labels[mask]):
        group = mask & (labels == index)
        row = {"n": int(group.sum()), "n_mapped": int((group & mapped).sum())}
        for key, sq in squared.items():
            row[f"{key}_rmse_ms"] = float(np.sqrt(sq[group].mean()))
            row[f"{key}_error_share"] = float(sq[group].sum() / totals[key]) if totals[key] > 0 else 0.0
        out[str(phantom.label_names[int(index)])] = row
    return out


def summary_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/evaluation/reproduction.json`` (cache: ``$MRFBOOK_CACHE`` or ``~/.cache/mrfbook``)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "evaluation" / "reproduction.json"


def save_summary(summary: Mapping[str, Any], path: str | os.PathLike | None = None) -> Path:
    """Write ``summary`` as JSON (atomically) and return the path."""
    p = Path(path) if path is not None else summary_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1, allow_nan=True))
    os.replace(tmp, p)
    return p


def load_summary(signature: str, path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The saved summary if it exists and was computed from the inputs ``signature`` names, else None."""
    p = Path(path) if path is not None else summary_path()
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):  # unreadable, not UTF-8, or not JSON (JSONDecodeError is a ValueError)
        return None
    if not isinstance(data, dict) or data.get("format") != SUMMARY_FORMAT or data.get("signature") != signature:
        return None
    return data


def run_reproduction(networks: Mapping[str, ShippedNetwork], dictionary: Any, test_dictionary: Any,
                     phantoms: Mapping[str, Any],
                     phantom_networks: Mapping[str, ShippedNetwork] | None = None) -> dict[str, Any]:
    """Run every experiment of chapter 8 in one call and return :func:`summarise_reproduction`'s dict.

    ``phantoms`` maps names to :class:`mrfbook.physics.phantom.TissueMaps`; its "brain" entry is the
    book's phantom of the full-sampling and main 15 % experiments, the :data:`SETTINGS` name the others.
    ``phantom_networks`` (e.g. :func:`fresh_network`) are evaluated on the phantoms only; their
    synthetic-grid accuracy is their training record. Chapter 9 calls it when chapter 8's saved summary
    is missing or stale.

    Explained in chapter 9, book/09_reproduction.md.
    """
    from mrfbook.nn.runs import runtime_info

    extra = dict(phantom_networks or {})
    models = {k: v.model for k, v in networks.items()}
    phantom_models = {**models, **{k: v.model for k, v in extra.items()}}
    phantom = phantoms["brain"]
    synthetic = synthetic_test(models, dictionary, test_dictionary)
    stack, full = full_sampling_maps(phantom, dictionary, phantom_models)
    settings = undersampled_settings(phantoms, dictionary, phantom_models, SETTINGS, truths={"brain": stack})
    under = settings[SETTINGS[0]]
    storage = storage_comparison(dictionary.n_atoms, dictionary.n_timepoints, network_configs(networks))
    every = {**networks, **extra}
    return summarise_reproduction(signature=inputs_signature(every, dictionary, test_dictionary), synthetic=synthetic,
                                  full=full, undersampled=under, phantom=phantom, storage=storage,
                                  network_info={k: v.info() for k, v in every.items()}, machine=runtime_info(),
                                  settings=settings, phantoms=phantoms)


def reproduction_summary(dictionary: Any = None, test_dictionary: Any = None, *,
                         save: bool = True) -> tuple[dict[str, Any], bool]:
    """Chapter 8's saved summary if it matches the current inputs, else a new run of its experiments.

    The inputs are the shipped networks (:func:`mrfbook.nn.runs.shipped_networks`), the networks
    evaluated on the phantoms only (:func:`phantom_only_networks`: the fresh-tissue and the refined
    network), the two dictionaries and the library source (:func:`inputs_signature`); a new run
    (:func:`run_reproduction`, several minutes on a CPU) evaluates those on the phantoms as chapter 8
    does, and is saved when ``save``.

    Parameters
    ----------
    dictionary, test_dictionary : Dictionary, optional
        Default the cached paper grid and shifted test grid.
    save : bool
        Save a new run's summary (:func:`save_summary`) for the pages that follow.

    Returns
    -------
    (dict, bool)
        The summary, and whether it was loaded (True) or computed by this call (False).

    Explained in chapter 9, book/09_reproduction.md.
    """
    from mrfbook.nn.runs import shipped_networks
    from mrfbook.physics.dictionary import cached_dictionary

    dictionary = cached_dictionary() if dictionary is None else dictionary
    test_dictionary = cached_dictionary(grid="test") if test_dictionary is None else test_dictionary
    shipped = shipped_networks(dictionary.sequence)
    extra = phantom_only_networks(dictionary.sequence)
    summary = load_summary(inputs_signature({**shipped, **extra}, dictionary, test_dictionary))
    if summary is not None:
        return summary, True
    summary = run_reproduction(shipped, dictionary, test_dictionary, evaluation_phantoms(dictionary.sequence),
                               phantom_networks=extra)
    if save:
        save_summary(summary)
    return summary, False


def evaluate_on_dictionary(model: Any, dictionary: Any, *, batch_size: int = 4096,
                           return_predictions: bool = False) -> Any:
    """Accuracy of a trained model on the atoms of a (test) dictionary.

    Parameters
    ----------
    model : TrainedModel
    dictionary : Dictionary
        E.g. the shifted test grid (``cached_dictionary(grid="test")``), no pair in common with training.
    batch_size : int
        Signatures per forward pass.
    return_predictions : bool
        Also return the predictions, so further analysis (e.g. :mod:`mrfbook.analysis.errors`)
        needs no second pass.

    Returns
    -------
    dict, or (dict, (N, 2) float array) with ``return_predictions``
        ``n``, ``seconds`` (inference), and per parameter ``t1_rmse_ms``, ``t1_mae_ms``,
        ``t1_max_abs_ms``, ``t1_r2`` (same for t2); the predicted (T1, T2) in ms.

    Explained in chapter 7, book/07_training.md.
    """
    with Stopwatch() as sw:
        pred = predict_parameters(model, dictionary.atoms, batch_size=batch_size)
    out: dict[str, Any] = {"n": int(len(pred)), "seconds": sw.seconds,
                           **metrics.parameter_scores(pred[:, :2], dictionary.t1_ms, dictionary.t2_ms)}
    return (out, pred) if return_predictions else out
