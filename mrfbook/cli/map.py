"""``python -m mrfbook map``: T1, T2 and PD maps from an image stack or k-space, by matching or a network.

One mapping path: whatever the input (an image stack, full or undersampled k-space in either
layout), the command makes an image stack (H, W, L) -- as given, zero-filled (inverse FFT), or
restored (``--restore lowrank|flor``, weight chosen from the data by a k-space hold-out, or
``--lam``) -- and maps it with :func:`mrfbook.recon.matching.match_maps` or
:func:`mrfbook.nn.inference.network_maps`. Both apply the resolvability rule of
:func:`mrfbook.physics.noise.resolvable` (``--min-snr``), with the restoration's hold-out error as
``error_level``; pixels of the mask that cannot be resolved hold 0 in every map, are marked in
``resolvable.npy`` and in the figures, and are counted in ``summary.json``.

Explained in book/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mrfbook.cli.common import (
    Reporter,
    add_sequence_options,
    load_dictionary,
    positive,
    sequence_from_args,
)
from mrfbook.cli.inputs import (
    InputError,
    as_image_stack,
    as_image_volume,
    as_kspace_lhw,
    as_pixel_mask,
    as_sampling_masks,
    as_volume_mask,
    load_array,
)
from mrfbook.physics.noise import DEFAULT_MIN_SNR, ZERO_TOL
from mrfbook.utils.timing import Stopwatch

__all__ = ["add_map_parser", "RESTORE_CHOICES", "NOT_RESOLVED_COLOUR", "WARN_FRACTION"]

#: Values of ``--restore``; "auto" restores undersampled k-space (low rank) and nothing else.
RESTORE_CHOICES = ("auto", "none", "lowrank", "flor")
#: Colour of the pixels of the mask that cannot be resolved in the PNGs (in neither colormap).
NOT_RESOLVED_COLOUR = "#21c45a"
#: With --mask, more than this share of its pixels not resolved is a warning (else a progress line).
WARN_FRACTION = 0.01
#: The restoration's own iteration cap, for --help (mrfbook.recon.weights.DEFAULT_MAX_ITER, checked by a
#: test; not imported here so that --help does not load the solvers).
RESTORATION_MAX_ITER = 300


def _load_map_inputs(args: argparse.Namespace, n_timepoints: int):
    """Read and check the images or k-space (+ masks); returns (images or None, kspace, masks, pixel mask)."""
    if args.images is not None:
        for option in ("kspace_layout", "sampling_mask"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option.replace('_', '-')}: only used with --kspace")
        if args.restore not in ("auto", "none"):
            raise InputError(f"--restore {args.restore}: restoration needs k-space input (--kspace), not --images")
        for option in ("lam", "max_iter"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option.replace('_', '-')}: only used to restore k-space (--kspace with "
                                 "--restore lowrank or flor)")
        raw = load_array(args.images, name="--images", mmap=True)
        if raw.ndim == 4:  # a volume: not read here (it may be larger than memory)
            images = as_image_volume(raw, "--images")
            height, width, depth, length = images.shape
            if length != n_timepoints:
                source = "--dictionary" if args.dictionary is not None else "--model"
                raise InputError(
                    f"--images: the data has L = {length} time points but the sequence recorded in {source} has "
                    f"{n_timepoints}; the data must come from the sequence the dictionary/model was made for"
                )
            mask = None
            if args.mask is not None:
                mask = as_volume_mask(load_array(args.mask, name="--mask"), (height, width, depth))
            return images, None, None, mask
        _refuse_volume_options(args)
        images = as_image_stack(np.array(raw), "--images")
        height, width, length = images.shape
        kspace = sampling = None
    else:
        _refuse_volume_options(args)
        if args.kspace_layout is None:
            raise InputError(
                "--kspace-layout: required with --kspace; say whether the array is LHW "
                "(frames, rows, columns) or HWL (rows, columns, frames)"
            )
        kspace = as_kspace_lhw(load_array(args.kspace, name="--kspace"), args.kspace_layout)
        length, height, width = kspace.shape
        images = None
        if args.sampling_mask is not None:
            sampling = as_sampling_masks(
                load_array(args.sampling_mask, name="--sampling-mask"), kspace.shape, args.kspace_layout
            )
            outside = np.count_nonzero(kspace[~sampling])
            if outside:
                raise InputError(
                    f"--kspace: {outside} non-zero samples lie outside --sampling-mask; unsampled "
                    "k-space points must be 0"
                )
        else:
            if args.restore in ("lowrank", "flor"):
                raise InputError(f"--sampling-mask: required with --restore {args.restore} (which points were measured?)")
            sampling = np.ones(kspace.shape, dtype=bool)
    if length != n_timepoints:
        source = "--dictionary" if args.dictionary is not None else "--model"
        raise InputError(
            f"{'--images' if images is not None else '--kspace'}: the data has L = {length} time points "
            f"but the sequence recorded in {source} has {n_timepoints}; "
            "the data must come from the sequence the dictionary/model was made for"
        )
    if args.mask is not None:
        pixel_mask = as_pixel_mask(load_array(args.mask, name="--mask"), (height, width))
    else:
        pixel_mask = np.ones((height, width), dtype=bool)
    return images, kspace, sampling, pixel_mask


#: Options of 4-D volumes, with their defaults (None in the parser, so a given one is recognised).
VOLUME_DEFAULTS = {"workers": 2, "threads_per_worker": 1, "memory_limit": "auto", "scheduler": None,
                   "slices_per_task": 1, "signal_reference": "volume"}


def _refuse_volume_options(args: argparse.Namespace) -> None:
    for option in VOLUME_DEFAULTS:
        if getattr(args, option, None) is not None:
            raise InputError(f"--{option.replace('_', '-')}: only used with a 4-D --images volume (H, W, D, L)")


def _volume_settings(args: argparse.Namespace) -> dict:
    """The volume options with defaults filled in, checked (memory limit parsed)."""
    settings = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in VOLUME_DEFAULTS.items()}
    if args.scheduler is not None:
        for option in ("workers", "threads_per_worker", "memory_limit"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option.replace('_', '-')}: not used with --scheduler (the cluster's own "
                                 "workers run the tasks)")
    limit = settings["memory_limit"]
    if limit.lower() in ("auto", "none"):
        settings["memory_limit"] = None if limit.lower() == "none" else "auto"
    else:
        from dask.utils import parse_bytes

        try:
            parsed = parse_bytes(limit)
        except (ValueError, TypeError):
            raise InputError(f"--memory-limit: {limit!r} is not a size; give e.g. 2GiB, 500MB, auto or none") from None
        if parsed < 2**26:
            raise InputError(f"--memory-limit: {limit!r} is below 64 MiB; a worker needs more")
        settings["memory_limit"] = parsed
    return settings


def _check_options(args: argparse.Namespace) -> None:
    """Parse and check --lam, --max-iter and --min-snr in place (one-line errors naming the option)."""
    if args.lam is not None:
        text = str(args.lam).strip()
        if text.lower() == "auto":
            args.lam = "auto"
        else:
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value) or value < 0:
                raise InputError(f"--lam: must be 'auto' or a number >= 0 (the restoration's weight), got {text!r}")
            args.lam = value
    if args.max_iter is not None:
        try:
            value = int(str(args.max_iter))
        except ValueError:
            value = 0
        if value < 1:
            raise InputError(f"--max-iter: must be an integer >= 1, got {args.max_iter!r}")
        args.max_iter = value
    if args.min_snr is None:
        args.min_snr = DEFAULT_MIN_SNR
    else:
        try:
            value = float(str(args.min_snr))
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or value < 0:
            raise InputError(f"--min-snr: must be a number >= 0 (0: round-off guard only), got {args.min_snr!r}")
        args.min_snr = value


def _restore_method(args: argparse.Namespace, sampling: np.ndarray, dictionary) -> str:
    """The restoration to run: 'none', 'lowrank' or 'flor' ('auto': lowrank iff undersampled)."""
    method = args.restore
    if method == "auto":
        method = "lowrank" if not sampling.all() else "none"
    if method == "flor" and dictionary is None:
        raise InputError("--restore flor: needs --dictionary (FLOR restores in the dictionary's subspace); with "
                         "--model use --restore lowrank")
    if method == "none":
        for option in ("lam", "max_iter"):
            if getattr(args, option) is not None:
                why = "the k-space is fully sampled" if args.restore == "auto" else "--restore none"
                raise InputError(f"--{option.replace('_', '-')}: only used with a restoration, and {why}")
    return method


def _jsonable(value):
    """Numbers, arrays and tuples as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _reconstruct(kspace: np.ndarray, sampling: np.ndarray, method: str, args: argparse.Namespace, dictionary,
                 say: Reporter) -> tuple[np.ndarray, dict | None, float | None]:
    """k-space (L, H, W) -> image stack (H, W, L), the restoration's record (or None) and its error level."""
    from mrfbook.recon.acquisition import UndersampledFourier, zero_filled

    op = UndersampledFourier(sampling)
    if method == "none":
        say("zero-filled reconstruction (inverse FFT)" + (" of fully sampled k-space" if sampling.all() else ""))
        return np.asarray(zero_filled(kspace, op)), None, None
    from mrfbook.recon.weights import DEFAULT_MAX_ITER, restore

    lam = "auto" if args.lam is None else args.lam
    name = {"lowrank": "low-rank", "flor": "FLOR"}[method]
    limit = f"at most {DEFAULT_MAX_ITER if args.max_iter is None else args.max_iter}"
    weight = "weight chosen from the data (k-space hold-out)" if lam == "auto" else f"weight {lam:g}"
    say(f"{name} restoration of {sampling.mean():.0%} sampled k-space, {weight}, {limit} iterations")
    kwargs = {"method": method, "lam": lam, "estimate_error": True, "progress": say.progress}
    if method == "flor":
        kwargs["dictionary"] = dictionary
    if args.max_iter is not None:
        kwargs["max_iter"] = args.max_iter
    clock = Stopwatch().start()
    result = restore(kspace, op, **kwargs)
    seconds = clock.stop()
    extra = getattr(result, "extra", {}) or {}
    choice = extra.get("weight_choice")
    error_level = extra.get("error_level")
    record = {
        "method": method,
        "solver": getattr(result, "method", method),
        "weight": float(result.lam),
        "weight_chosen_by": getattr(choice, "method", "k-space hold-out") if choice is not None else "given",
        "iterations": int(result.n_iter),
        "max_iter": args.max_iter if args.max_iter is not None else DEFAULT_MAX_ITER,
        "converged": bool(result.converged),
        "error_level": None if error_level is None else float(error_level),
        "seconds": round(seconds, 3),
    }
    if choice is not None:
        record["weight_search"] = {
            "candidates": _jsonable(choice.candidates),
            "holdout_errors": _jsonable(choice.holdout_error),
            "holdout_fraction": _jsonable(choice.holdout_fraction),
            "n_holdout": _jsonable(choice.n_holdout),
            "seed": _jsonable(choice.seed),
            "iterations": _jsonable(choice.iterations),
            "seconds": _jsonable(choice.seconds),
        }
        say(f"weight {result.lam:g} chosen among {len(record['weight_search']['candidates'])} candidates by the "
            f"hold-out error of {record['weight_search']['n_holdout']:,} k-space samples")
    search = ", weight search included" if choice is not None else ""
    say(f"{name} restoration done in {seconds:.1f} s{search}: {result.n_iter} iterations"
        + ("" if error_level is None else f"; hold-out error {float(error_level):.3g} per sample"))
    if not result.converged:
        say.warn(f"the {name} restoration stopped after {result.n_iter} iterations without converging "
                 "(raise --max-iter); the maps may be less accurate")
    return np.asarray(result.images), record, None if error_level is None else float(error_level)


def _map_stack(images: np.ndarray, pixel_mask: np.ndarray, dictionary, model, sequence, min_snr: float,
               error_level: float | None, say: Reporter) -> tuple[dict, np.ndarray, np.ndarray, object]:
    """The one mapping path: (maps, mapped, resolvable, Resolvability) of an image stack (H, W, L)."""
    n_considered = int(pixel_mask.sum())
    if dictionary is not None:
        from mrfbook.recon.matching import match_maps

        say(f"matching {n_considered:,} pixels against {dictionary.n_atoms:,} atoms")
        result = match_maps(images, dictionary, mask=pixel_mask, min_snr=min_snr, error_level=error_level,
                            progress=say.progress)
        maps = {"t1": result.t1_ms, "t2": result.t2_ms, "pd": result.pd}
        return maps, np.asarray(result.valid), np.asarray(result.resolvable), result.resolvability
    from mrfbook.nn.inference import network_maps

    say(f"network inference on {n_considered:,} pixels")
    result = network_maps(model, images, pixel_mask, sequence=sequence, pd=True, min_snr=min_snr,
                          error_level=error_level)
    maps = {"t1": result.t1_ms, "t2": result.t2_ms, "pd": result.pd}
    return maps, result.mapped, result.resolvable, result.resolvability


def _report_resolvability(n_mask: int, n_not: int, floor_text: str, masked: bool, say: Reporter) -> None:
    """A warning when a given mask loses more than WARN_FRACTION of its pixels, else a progress line."""
    if not n_not:
        return
    text = (f"{n_not:,} of the {n_mask:,} pixels of the mask ({100 * n_not / n_mask:.1f} %) cannot be resolved "
            f"({floor_text}): 0 in every map, False in resolvable.npy, green in the figures")
    if masked and n_not > WARN_FRACTION * n_mask:
        say.warn(text)
    else:
        say(text)


def _map_volume(args: argparse.Namespace, say: Reporter, volume, mask, sequence, dictionary,
                timings: dict) -> int:
    """``map`` of a 4-D volume (H, W, D, L): slice by slice on a Dask cluster (mrfbook.analysis.volumes)."""
    from mrfbook.analysis.volumes import map_volume

    settings = _volume_settings(args)
    height, width, depth, length = volume.shape
    method = "dictionary matching" if dictionary is not None else "network"
    if settings["scheduler"] is not None:
        where = f"the cluster at {settings['scheduler']}"
    else:
        limit = settings["memory_limit"]
        shown = "none" if limit is None else (limit if isinstance(limit, str) else f"{limit / 2**20:,.0f} MiB")
        where = (f"a local cluster of {settings['workers']} worker(s) x {settings['threads_per_worker']} thread(s), "
                 f"memory limit {shown} per worker")
    say(f"{method} of {depth} slices of {height} x {width} pixels on {where}, "
        f"{settings['slices_per_task']} slice(s) per task")
    step = max(1, depth // 20)
    shown_at = [0]

    def progress(done: int, total: int) -> None:
        if done - shown_at[0] >= step or done == total:
            shown_at[0] = done
            say(f"mapped {done}/{total} slices")

    try:
        result = map_volume(
            volume, dictionary=dictionary, model=args.model if dictionary is None else None, mask=mask,
            n_workers=settings["workers"], threads_per_worker=settings["threads_per_worker"],
            memory_limit=settings["memory_limit"], scheduler=settings["scheduler"],
            slices_per_task=settings["slices_per_task"], signal_reference=settings["signal_reference"],
            min_snr=args.min_snr, progress=progress if say.progress else None, name="--images",
        )
    except ValueError as exc:
        text = str(exc)
        for prefix, option in (("--images:", "--images:"), ("scheduler:", "--scheduler:"),
                               ("memory_limit:", "--memory-limit:")):
            if text.startswith(prefix):
                raise InputError(f"{option}{text[len(prefix):]}") from exc
        raise
    timings["mapping"] = result.seconds
    maps = {"t1": result.t1_ms, "t2": result.t2_ms, "pd": result.pd}
    used_mask = np.ones((height, width, depth), dtype=bool) if mask is None else np.broadcast_to(
        mask[:, :, None] if mask.ndim == 2 else mask, (height, width, depth))
    n_mask = int(used_mask.sum())
    n_resolvable = result.n_resolvable
    over = "the volume" if settings["signal_reference"] == "volume" else "each slice"
    if args.min_snr == 0:
        rule = f"resolvable: norm > 0 and > {ZERO_TOL:g} x the largest norm of {over} (min_snr = 0: round-off guard only)"
    else:
        rule = (f"resolvable: norm > min_snr x level x sqrt(L), min_snr = {args.min_snr:g}, level = the per-sample "
                f"noise measured outside the signals' subspace over {over}; and > {ZERO_TOL:g} x the largest norm "
                f"of {over}")
    levels = [float(v) for v in result.noise_levels]
    floors = [float(v) for v in result.floors]
    per_volume = settings["signal_reference"] == "volume"
    _report_resolvability(n_mask, n_mask - n_resolvable,
                          f"signal norm <= {args.min_snr:g} x noise x sqrt(L)", mask is not None, say)
    summary = {
        "method": method,
        "source": str(args.dictionary or args.model),
        "input": str(args.images),
        "restore": "none",
        "sequence_digest": sequence.digest,
        "n_timepoints": sequence.n_timepoints,
        "shape": [height, width, depth],
        "n_pixels_in_mask": n_mask,
        "n_pixels_resolvable": n_resolvable,
        "n_pixels_not_resolvable": n_mask - n_resolvable,
        "n_pixels_mapped": int(result.mapped.sum()),
        "resolvability": {
            "rule": rule,
            "min_snr": args.min_snr,
            "measured_over": settings["signal_reference"],
            "noise_level": levels[0] if per_volume else levels,
            "error_level": None,
            "floor": floors[0] if per_volume else floors,
            "round_off_guard": None if result.reference_norm is None else ZERO_TOL * result.reference_norm,
        },
        "restoration": None,
        "units": {"t1": "ms", "t2": "ms", "pd": "a.u. (signal units)",
                  "noise_level": "signal units per sample", "floor": "signal units (norm of a signature)"},
        "n_workers": result.n_workers,
        "scheduler": settings["scheduler"] or "local",
        "memory_limit_per_worker": settings["memory_limit"],
        "slices_per_task": settings["slices_per_task"],
        "signal_reference": settings["signal_reference"],
        "reference_norm": result.reference_norm,
        "png_slice": depth // 2,
    }
    _write_maps(args.out, maps, np.ascontiguousarray(used_mask), result.resolvable, result.mapped, summary, timings,
                png_slice=depth // 2)
    say(f"{method}: {n_mask:,} pixels of {depth} slices in {result.seconds:.1f} s on {result.n_workers} "
        f"worker(s), {n_resolvable:,} resolvable; wrote t1.npy t2.npy pd.npy resolvable.npy (H, W, D) mask.npy "
        f"t1.png t2.png pd.png (slice {depth // 2}) summary.json to {args.out}")
    return 0


def _save_map_png(path: Path, image: np.ndarray, mask: np.ndarray, unresolved: np.ndarray, *, title: str,
                  unit: str, min_snr: float) -> None:
    """One map as a PNG: the colormap inside the mask, unresolved pixels flat green, a caption counting them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    shown = np.where(mask & ~unresolved, image, np.nan)
    finite = shown[np.isfinite(shown)]
    vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    im = ax.imshow(shown, cmap="magma" if unit == "ms" else "gray", vmin=0.0, vmax=vmax if vmax > 0 else 1.0,
                   interpolation="nearest")
    n_unresolved = int(unresolved.sum())
    ax.set_title(title)
    ax.set_xlabel("column (pixel)")
    ax.set_ylabel("row (pixel)")
    fig.colorbar(im, ax=ax, label=f"{title.split(',')[0]} ({unit})")
    if n_unresolved:
        ax.imshow(np.where(unresolved, 1.0, np.nan), cmap=ListedColormap([NOT_RESOLVED_COLOUR]), vmin=0, vmax=1,
                  interpolation="nearest")
        what = "signal below the noise floor" if min_snr > 0 else "no signal"
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        fig.legend(handles=[Patch(color=NOT_RESOLVED_COLOUR, label=f"{n_unresolved:,} pixels of the mask cannot be "
                                  f"resolved ({what}): 0 in the map")],
                   loc="lower center", fontsize=7.5, frameon=False)
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_maps(out: Path, maps: dict, pixel_mask: np.ndarray, resolvable: np.ndarray, mapped: np.ndarray,
                summary: dict, timings: dict, png_slice: int | None = None) -> None:
    """Write the maps, the masks, three PNGs (of slice ``png_slice`` of a volume) and summary.json, all or none."""
    clock = Stopwatch().start()
    out.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mrfbook-map.", dir=out))
    try:
        for key, image in maps.items():
            np.save(staging / f"{key}.npy", image)
        np.save(staging / "mask.npy", pixel_mask)
        np.save(staging / "resolvable.npy", np.ascontiguousarray(resolvable, dtype=bool))
        shown = (lambda a: a) if png_slice is None else (lambda a: a[:, :, png_slice])
        where = "" if png_slice is None else f", slice {png_slice}"
        not_mapped = np.asarray(pixel_mask) & ~np.asarray(mapped)
        for key, title, unit in (("t1", "T1", "ms"), ("t2", "T2", "ms"), ("pd", "PD", "a.u.")):
            _save_map_png(staging / f"{key}.png", shown(maps[key]), shown(pixel_mask), shown(not_mapped),
                          title=f"{title}{where}", unit=unit, min_snr=summary["resolvability"]["min_snr"])
        timings["writing"] = clock.stop()
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        summary["seconds"] = {k: round(v, 3) for k, v in timings.items()}
        (staging / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cmd_map(args: argparse.Namespace, say: Reporter) -> int:
    clock = Stopwatch().start()
    out = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise InputError(f"--out: parent folder {out.parent} does not exist")
    _check_options(args)
    given_sequence = sequence_from_args(args)

    if args.dictionary is not None:
        dictionary = load_dictionary(args.dictionary, expected_sequence=given_sequence)
        sequence, model = dictionary.sequence, None
    else:
        dictionary = None
        sequence = _model_sequence(args.model, given_sequence)
    images, kspace, sampling, pixel_mask = _load_map_inputs(args, sequence.n_timepoints)
    timings = {"reading": 0.0, "restoration": 0.0, "mapping": 0.0}
    if images is not None and images.ndim == 4:
        timings["reading"] = clock.stop()
        return _map_volume(args, say, images, pixel_mask, sequence, dictionary, timings)
    restore_method = "none" if images is not None else _restore_method(args, sampling, dictionary)
    if args.model is not None:
        say("loading the network")
        model = _load_model(args.model, sequence)
    timings["reading"] = clock.stop()
    height, width = pixel_mask.shape

    record = error_level = None
    if images is None:
        clock = Stopwatch().start()
        images, record, error_level = _reconstruct(kspace, sampling, restore_method, args, dictionary, say)
        timings["restoration"] = clock.stop()
    clock = Stopwatch().start()
    maps, mapped, resolvable_map, rule = _map_stack(images, pixel_mask, dictionary, model, sequence, args.min_snr,
                                                    error_level, say)
    timings["mapping"] = clock.stop()
    method = "dictionary matching" if dictionary is not None else "network"
    n_mask = int(pixel_mask.sum())
    n_resolvable = int(resolvable_map.sum())
    _report_resolvability(n_mask, n_mask - n_resolvable, f"signal norm <= {rule.floor:.3g} = "
                          f"{args.min_snr:g} x {rule.level:.3g} x sqrt({rule.n_timepoints})", args.mask is not None, say)
    resolvability = rule.summary()
    resolvability.pop("n_resolvable")
    resolvability.pop("n_not_resolvable")
    resolvability["subspace"] = ("the dictionary's atoms" if dictionary is not None else
                                 "fingerprints of the sequence (mrfbook.physics.noise.sequence_subspace)")
    summary = {
        "method": method,
        "source": str(args.dictionary or args.model),
        "input": str(args.images or args.kspace),
        "restore": restore_method,
        "sequence_digest": sequence.digest,
        "n_timepoints": sequence.n_timepoints,
        "shape": [height, width],
        "n_pixels_in_mask": n_mask,
        "n_pixels_resolvable": n_resolvable,
        "n_pixels_not_resolvable": n_mask - n_resolvable,
        "n_pixels_mapped": int(mapped.sum()),
        "resolvability": resolvability,
        "restoration": record,
        "units": {"t1": "ms", "t2": "ms", "pd": "a.u. (signal units)",
                  "noise_level": "signal units per sample", "floor": "signal units (norm of a signature)"},
    }
    _write_maps(out, maps, pixel_mask, resolvable_map, mapped, summary, timings)
    say(f"{method}: {n_mask:,} pixels, {n_resolvable:,} resolvable, in {timings['total']:.1f} s; wrote t1.npy "
        f"t2.npy pd.npy mask.npy resolvable.npy t1.png t2.png pd.png summary.json to {out}")
    return 0


def _model_sequence(path: Path, given_sequence):
    """The sequence a model from 'train' was trained for, read from the model's metadata.

    :func:`mrfbook.nn.model.read_network_metadata` reads it from the model's file (or its
    JSON sidecar) without importing Keras, so the command refuses a model made for another
    sequence, or data of the wrong length, before the slow import of Keras.
    """
    from mrfbook.nn.model import read_network_metadata
    from mrfbook.physics.sequence import FispSequence

    if not path.is_file():
        raise InputError(f"--model: file not found: {path}")
    if path.suffix.lower() not in (".keras", ".npz"):
        raise InputError(f"--model: {path} must be a network file: a .keras file written by 'mrfbook train' "
                         "or the .npz of a refined network (models/refined_network/model.npz)")
    try:
        meta = read_network_metadata(path)
        sequence = FispSequence.from_dict(meta["sequence"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--model: cannot read the training sequence from {path}: {exc}") from exc
    if given_sequence is not None and not given_sequence.matches(sequence):  # up to round-off
        raise InputError(
            f"--model: {path} was trained for another sequence (digest {sequence.digest[:12]}, "
            f"L = {sequence.n_timepoints}) than the one given (digest {given_sequence.digest[:12]}, "
            f"L = {given_sequence.n_timepoints}); train a network for this sequence"
        )
    return sequence


def _load_model(path: Path, sequence):
    """Load the network (Keras, or a refined network without Keras) and check it against the sequence."""
    from mrfbook.nn.model import load_network

    try:
        return load_network(path, expected_sequence=sequence)
    except (ValueError, OSError, KeyError) as exc:
        raise InputError(f"--model: cannot use {path}: {exc}") from exc


def add_map_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``map`` command to the parser of ``python -m mrfbook``."""
    p = subparsers.add_parser(
        "map",
        help="map T1, T2 and PD from an image stack or k-space",
        description="Estimate T1, T2 (ms) and PD maps from your data by dictionary matching "
        "(--dictionary) or with a trained network (--model). Undersampled k-space is restored first "
        "(low rank, weight chosen from the data). Pixels whose signal is too weak to be resolved "
        "(see --min-snr) are not mapped. Writes t1.npy, t2.npy, pd.npy (float64, (H, W); 0 outside the "
        "mask and where a pixel cannot be resolved), mask.npy, resolvable.npy (bool), t1.png, t2.png, pd.png "
        "(unresolvable pixels in green) and summary.json (counts, the rule's noise level and floor, the "
        "restoration's weight, iterations and convergence, seconds per stage) into --out. Arrays may be "
        ".npy, .npz or MATLAB .mat files; use FILE:KEY to pick one array of an .npz/.mat file holding several.",
    )
    data = p.add_argument_group("data (one of --images / --kspace)")
    which = data.add_mutually_exclusive_group(required=True)
    which.add_argument("--images", metavar="FILE[:KEY]",
                       help="image stack of shape (H, W, L), real or complex, one image per time point; or a "
                       "volume (H, W, D, L) of D slices, mapped slice by slice with Dask (a .npy volume is read "
                       "slab by slab, so it may be larger than memory; see the volume options)")
    which.add_argument("--kspace", metavar="FILE[:KEY]",
                       help="Cartesian k-space, complex, shape (L, H, W) or (H, W, L) as told by "
                       "--kspace-layout, in mrfbook.recon.acquisition's FFT convention (see book/cli.md)")
    data.add_argument("--kspace-layout", choices=("LHW", "HWL"), type=str.upper, default=None,
                      help="axis order of --kspace (required with it): LHW = (frames, rows, columns), "
                      "HWL = (rows, columns, frames)")
    data.add_argument("--sampling-mask", metavar="FILE[:KEY]", default=None,
                      help="which k-space points were measured: 0/1 array in the --kspace layout, or one (H, W) "
                      "mask for all frames (default: fully sampled; required with --restore lowrank/flor)")
    data.add_argument("--mask", metavar="FILE[:KEY]", default=None,
                      help="pixels to map: (H, W) array of 0/1 (default: every pixel); for a volume also "
                      "(H, W, D)")
    method = p.add_argument_group("method (one of --dictionary / --model)")
    how = method.add_mutually_exclusive_group(required=True)
    how.add_argument("--dictionary", type=Path, metavar="DICT.npz", help="dictionary from 'simulate' (matching)")
    how.add_argument("--model", type=Path, metavar="MODEL", help="network: models/refined_network/model.npz "
                     "(recommended) or a .keras file from 'train'")
    add_sequence_options(p, required=False)
    rec = p.add_argument_group("restoration (--kspace only; mrfbook.recon.weights)")
    rec.add_argument("--restore", choices=RESTORE_CHOICES, default="auto",
                     help="'lowrank': nuclear-norm restoration (mrfbook.recon.lowrank); 'flor': FLOR, low rank in the "
                     "dictionary's subspace (needs --dictionary); 'none': zero-filled (inverse FFT); 'auto' "
                     "(default): lowrank if --sampling-mask leaves points out, else none")
    rec.add_argument("--lam", default=None, metavar="auto|LAMBDA",
                     help="the restoration's weight: 'auto' (default) chooses it from the data, the candidate whose "
                     "restoration best predicts k-space samples held out of the fit; a number >= 0 (in "
                     "thousandths of the largest singular value of the zero-filled stack) uses it as given")
    rec.add_argument("--max-iter", default=None, metavar="N",
                     help="at most N iterations of each restoration run, N >= 1 (default: the restoration's own, "
                     f"{RESTORATION_MAX_ITER} = mrfbook.recon.weights.DEFAULT_MAX_ITER; it stops earlier once the "
                     "relative change is below 1e-4)")
    res = p.add_argument_group("resolvability (mrfbook.physics.noise.resolvable)")
    res.add_argument("--min-snr", default=None, metavar="X",
                     help=f"a pixel is mapped only if its signature's norm exceeds X x the noise per sample x "
                     f"sqrt(L); the noise is measured outside the signals' subspace, or is the restoration's "
                     f"hold-out error if larger. Default {DEFAULT_MIN_SNR:g} (pure noise never reaches it); "
                     "0 keeps only the round-off guard (norm > 1e-6 x the largest)")
    vol = p.add_argument_group(
        "volumes (4-D --images only; mrfbook.analysis.volumes)",
        "A volume (H, W, D, L) is mapped slice by slice on a Dask cluster: a local one (default) or a "
        "running one (--scheduler); the maps equal mapping each slice alone, and are (H, W, D).")
    vol.add_argument("--workers", type=positive(int, "--workers"), default=None, metavar="N",
                     help="local worker processes (default: 2)")
    vol.add_argument("--threads-per-worker", type=positive(int, "--threads-per-worker"), default=None, metavar="N",
                     help="threads per local worker (default: 1; numba/BLAS threads follow)")
    vol.add_argument("--memory-limit", default=None, metavar="SIZE",
                     help="memory per local worker, e.g. 2GiB or 500MB, 'auto' (machine memory / workers, the "
                     "default) or 'none'; Dask pauses and restarts a worker above it")
    vol.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="address of a running Dask scheduler (e.g. tcp://host:8786): use that cluster instead "
                     "of a local one; its workers need mrfbook and read --images from the same path")
    vol.add_argument("--slices-per-task", type=positive(int, "--slices-per-task"), default=None, metavar="N",
                     help="slices read and mapped per task (default: 1); memory per task grows with it, the maps "
                     "do not change")
    vol.add_argument("--signal-reference", choices=("volume", "slice"), default=None,
                     help="where the resolvability rule measures its noise level and largest norm: over the whole "
                     "volume (default; one more read of the volume) or in each slice (what mapping each slice "
                     "alone does)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (warnings are still printed)")
    p.set_defaults(func=_cmd_map)
