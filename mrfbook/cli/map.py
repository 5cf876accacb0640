"""``python -m mrfbook map``: T1, T2 and PD maps from an image stack or k-space, by matching or a network.

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
from mrfbook.utils.timing import Stopwatch

__all__ = ['add_map_parser']


def _load_map_inputs(args: argparse.Namespace, n_timepoints: int):
    """Read and check the images or k-space (+ masks); returns (images or None, kspace, masks, pixel mask)."""
    if args.images is not None:
        for option in ("kspace_layout", "sampling_mask"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option.replace('_', '-')}: only used with --kspace")
        if args.restore != "none":
            raise InputError("--restore: restoration needs k-space input (--kspace), not --images")
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
            if args.restore != "none":
                raise InputError("--sampling-mask: required with --restore lowrank (which points were measured?)")
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


def _map_volume(args: argparse.Namespace, say: Reporter, volume, mask, sequence, dictionary) -> int:
    """``map`` of a 4-D volume (H, W, D, L): slice by slice on a Dask cluster (mrfbook.analysis.volumes)."""
    from mrfbook.analysis.volumes import map_volume

    settings = _volume_settings(args)
    height, width, depth, _ = volume.shape
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
            progress=progress if say.progress else None, name="--images",
        )
    except ValueError as exc:
        text = str(exc)
        for prefix, option in (("--images:", "--images:"), ("scheduler:", "--scheduler:"),
                               ("memory_limit:", "--memory-limit:")):
            if text.startswith(prefix):
                raise InputError(f"{option}{text[len(prefix):]}") from exc
        raise
    maps = {"t1": result.t1_ms, "t2": result.t2_ms, "pd": result.pd}
    used_mask = np.ones((height, width, depth), dtype=bool) if mask is None else np.broadcast_to(
        mask[:, :, None] if mask.ndim == 2 else mask, (height, width, depth))
    n_considered = int(used_mask.sum())
    if result.n_without_signal:
        rule = "in the volume" if settings["signal_reference"] == "volume" else "in its slice"
        say(f"{result.n_without_signal:,} pixels of the mask carry no signal (norm <= 1e-6 x the largest {rule}): "
            "left at 0 in every map")
    summary = {
        "method": method,
        "source": str(args.dictionary or args.model),
        "input": str(args.images),
        "restore": args.restore,
        "sequence_digest": sequence.digest,
        "n_timepoints": sequence.n_timepoints,
        "shape": [height, width, depth],
        "n_pixels_mapped": n_considered,
        "n_pixels_without_signal": result.n_without_signal,
        "seconds": round(result.seconds, 3),
        "units": {"t1": "ms", "t2": "ms", "pd": "a.u. (signal units)"},
        "n_workers": result.n_workers,
        "scheduler": settings["scheduler"] or "local",
        "memory_limit_per_worker": settings["memory_limit"],
        "slices_per_task": settings["slices_per_task"],
        "signal_reference": settings["signal_reference"],
        "reference_norm": result.reference_norm,
        "png_slice": depth // 2,
    }
    _write_maps(args.out, maps, np.ascontiguousarray(used_mask), summary, png_slice=depth // 2)
    say(f"{method}: {n_considered:,} pixels of {depth} slices in {result.seconds:.1f} s on {result.n_workers} "
        f"worker(s); wrote t1.npy t2.npy pd.npy (H, W, D) mask.npy t1.png t2.png pd.png (slice {depth // 2}) "
        f"summary.json to {args.out}")
    return 0


def _reconstruct(kspace: np.ndarray, sampling: np.ndarray, args: argparse.Namespace, say: Reporter) -> np.ndarray:
    """k-space (L, H, W) -> image stack (H, W, L): zero-filled or low-rank restored."""
    from mrfbook.recon.acquisition import UndersampledFourier, zero_filled

    op = UndersampledFourier(sampling)
    if args.restore == "none":
        say("zero-filled reconstruction (inverse FFT)")
        return np.asarray(zero_filled(kspace, op))
    from mrfbook.recon.lowrank import lowrank_restore

    say(f"low-rank restoration (lambda = {args.lam:g}, at most {args.max_iter} iterations)")
    result = lowrank_restore(kspace, op, lam=args.lam, max_iter=args.max_iter, progress=say.progress)
    if not result.converged:
        say(f"warning: low-rank restoration stopped after {result.n_iter} iterations without converging")
    return np.asarray(result.images)


def _save_map_png(path: Path, image: np.ndarray, mask: np.ndarray, *, title: str, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.where(mask, image, np.nan)
    finite = shown[np.isfinite(shown)]
    vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    im = ax.imshow(shown, cmap="magma" if unit == "ms" else "gray", vmin=0.0, vmax=vmax if vmax > 0 else 1.0,
                   interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel("column (pixel)")
    ax.set_ylabel("row (pixel)")
    fig.colorbar(im, ax=ax, label=f"{title} ({unit})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_maps(out: Path, maps: dict, pixel_mask: np.ndarray, summary: dict, png_slice: int | None = None) -> None:
    """Write the maps, the mask, three PNGs (of slice ``png_slice`` of a volume) and summary.json, all or none."""
    out.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mrfbook-map.", dir=out))
    try:
        for key, image in maps.items():
            np.save(staging / f"{key}.npy", image)
        np.save(staging / "mask.npy", pixel_mask)
        shown = (lambda a: a) if png_slice is None else (lambda a: a[:, :, png_slice])
        where = "" if png_slice is None else f", slice {png_slice}"
        _save_map_png(staging / "t1.png", shown(maps["t1"]), shown(pixel_mask), title=f"T1{where}", unit="ms")
        _save_map_png(staging / "t2.png", shown(maps["t2"]), shown(pixel_mask), title=f"T2{where}", unit="ms")
        _save_map_png(staging / "pd.png", shown(maps["pd"]), shown(pixel_mask), title=f"PD{where}", unit="a.u.")
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cmd_map(args: argparse.Namespace, say: Reporter) -> int:
    out = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise InputError(f"--out: parent folder {out.parent} does not exist")
    if args.max_iter < 1:
        raise InputError("--max-iter: must be >= 1")
    given_sequence = sequence_from_args(args)

    if args.dictionary is not None:
        dictionary = load_dictionary(args.dictionary, expected_sequence=given_sequence)
        sequence, model = dictionary.sequence, None
    else:
        dictionary = None
        sequence = _model_sequence(args.model, given_sequence)
    images, kspace, sampling, pixel_mask = _load_map_inputs(args, sequence.n_timepoints)
    if images is not None and images.ndim == 4:
        return _map_volume(args, say, images, pixel_mask, sequence, dictionary)
    if args.model is not None:
        say("loading the network")
        model = _load_model(args.model, sequence)
    height, width = pixel_mask.shape

    clock = Stopwatch().start()
    if images is None:
        images = _reconstruct(kspace, sampling, args, say)
    n_considered = int(pixel_mask.sum())
    if dictionary is not None:
        from mrfbook.recon.matching import match_signatures

        signatures = images.reshape(-1, images.shape[-1])[pixel_mask.ravel()]
        say(f"matching {len(signatures):,} pixels against {dictionary.n_atoms:,} atoms")
        result = match_signatures(signatures, dictionary, progress=say.progress)
        maps = {}
        for key, values in (("t1", result.t1_ms), ("t2", result.t2_ms), ("pd", result.pd)):
            full = np.zeros(height * width, dtype=np.float64)
            full[pixel_mask.ravel()] = np.asarray(values, dtype=np.float64)
            maps[key] = full.reshape(height, width)
        n_without_signal = int(np.count_nonzero(~result.valid))
        method = "dictionary matching"
    else:
        from mrfbook.nn.inference import network_maps

        say(f"network inference on {n_considered:,} pixels")
        result = network_maps(model, images, pixel_mask, sequence=sequence, pd=True)
        maps = {"t1": result.t1_ms, "t2": result.t2_ms, "pd": result.pd}
        n_without_signal = result.n_without_signal
        method = "network"
    if n_without_signal:
        say(f"{n_without_signal:,} pixels of the mask carry no signal (norm <= 1e-6 x the largest): "
            "left at 0 in every map")
    elapsed = clock.stop()

    summary = {
        "method": method,
        "source": str(args.dictionary or args.model),
        "input": str(args.images or args.kspace),
        "restore": args.restore,
        "sequence_digest": sequence.digest,
        "n_timepoints": sequence.n_timepoints,
        "shape": [height, width],
        "n_pixels_mapped": n_considered,
        "n_pixels_without_signal": n_without_signal,
        "seconds": round(elapsed, 3),
        "units": {"t1": "ms", "t2": "ms", "pd": "a.u. (signal units)"},
    }
    _write_maps(out, maps, pixel_mask, summary)
    say(f"{method}: {int(pixel_mask.sum()):,} pixels in {elapsed:.1f} s; wrote t1.npy t2.npy pd.npy "
        f"mask.npy t1.png t2.png pd.png summary.json to {out}")
    return 0


def _model_sequence(path: Path, given_sequence):
    """The sequence a model from 'train' was trained for, read from the model's metadata.

    :func:`mrfbook.nn.model.read_model_metadata` reads it from the ``.keras`` file (or its
    JSON sidecar) without importing Keras, so the command refuses a model made for another
    sequence, or data of the wrong length, before the slow import of Keras.
    """
    from mrfbook.nn.model import read_model_metadata
    from mrfbook.physics.sequence import FispSequence

    if not path.is_file():
        raise InputError(f"--model: file not found: {path}")
    if path.suffix.lower() != ".keras":
        raise InputError(f"--model: {path} must be a .keras file written by 'mrfbook train'")
    try:
        meta = read_model_metadata(path)
        sequence = FispSequence.from_dict(meta["sequence"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--model: cannot read the training sequence from {path}: {exc}") from exc
    if given_sequence is not None and given_sequence.digest != sequence.digest:
        raise InputError(
            f"--model: {path} was trained for another sequence (digest {sequence.digest[:12]}, "
            f"L = {sequence.n_timepoints}) than the one given (digest {given_sequence.digest[:12]}, "
            f"L = {given_sequence.n_timepoints}); train a network for this sequence"
        )
    return sequence


def _load_model(path: Path, sequence):
    """Load the network (Keras) and check it against the sequence from its metadata."""
    from mrfbook.nn.model import load_trained_model

    try:
        return load_trained_model(path, expected_sequence=sequence)
    except (ValueError, OSError, KeyError) as exc:
        raise InputError(f"--model: cannot use {path}: {exc}") from exc


def add_map_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``map`` command to the parser of ``python -m mrfbook``."""
    p = subparsers.add_parser(
        "map",
        help="map T1, T2 and PD from an image stack or k-space",
        description="Estimate T1, T2 (ms) and PD maps from your data by dictionary matching "
        "(--dictionary) or with a trained network (--model). Writes t1.npy, t2.npy, pd.npy "
        "(float64, (H, W); 0 outside the mask and where a pixel has no signal), mask.npy, t1.png, t2.png, pd.png "
        "and summary.json "
        "into --out. Arrays may be .npy, .npz or MATLAB .mat files; use FILE:KEY to pick one "
        "array of an .npz/.mat file holding several.",
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
                      "mask for all frames (default: fully sampled; required with --restore lowrank)")
    data.add_argument("--mask", metavar="FILE[:KEY]", default=None,
                      help="pixels to map: (H, W) array of 0/1 (default: every pixel); for a volume also "
                      "(H, W, D)")
    method = p.add_argument_group("method (one of --dictionary / --model)")
    how = method.add_mutually_exclusive_group(required=True)
    how.add_argument("--dictionary", type=Path, metavar="DICT.npz", help="dictionary from 'simulate' (matching)")
    how.add_argument("--model", type=Path, metavar="MODEL.keras", help="network from 'train'")
    add_sequence_options(p, required=False)
    p.add_argument("--restore", choices=("none", "lowrank"), default="none",
                   help="k-space only: 'lowrank' restores undersampled data first (mrfbook.recon.lowrank, "
                   "nuclear-norm, the paper's lambda = 5); default: zero-filled")
    p.add_argument("--lam", type=positive(float, "--lam"), default=5.0, metavar="LAMBDA",
                   help="nuclear-norm weight of --restore lowrank (default: 5, the paper's)")
    p.add_argument("--max-iter", type=int, default=100, metavar="N",
                   help="at most this many iterations of --restore lowrank (default: 100; it stops "
                   "earlier once the relative change is below 1e-4)")
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
                     help="no-signal rule: norm <= 1e-6 x the largest norm in the whole volume (default; one more "
                     "read of the volume) or in each slice (what mapping each slice alone does)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_map)
