"""The ``python -m mrfbook`` command line: simulate a dictionary, train the network, map data.

Three subcommands wrap the library for users who bring their own sequence or data::

    python -m mrfbook simulate --paper --output dict.npz
    python -m mrfbook train dict.npz --output model.keras --compact --epochs 5
    python -m mrfbook map --images stack.npy --mask mask.npy --dictionary dict.npz --out maps/

Every command checks all of its input before writing anything; bad input ends
the command with a one-line message naming the problem and exit status 2, and
leaves no output behind (files are written under temporary names and renamed
only when complete).

Explained in book/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mrfbook.io import (
    InputError,
    as_image_stack,
    as_kspace_lhw,
    as_pixel_mask,
    as_sampling_masks,
    load_array,
    load_sequence,
)

__all__ = ["main", "build_parser", "EXIT_USAGE"]

#: Exit status for bad input or usage (argparse uses the same).
EXIT_USAGE = 2

PROG = "python -m mrfbook"


# ============================================================================ helpers


class _Reporter:
    """Prints progress lines to stderr unless ``--quiet``."""

    def __init__(self, command: str, quiet: bool) -> None:
        self.command = command
        self.quiet = quiet

    @property
    def progress(self) -> bool:
        return not self.quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"mrfbook {self.command}: {message}", file=sys.stderr, flush=True)


def _check_output_file(path: Path, option: str, suffix: str) -> Path:
    """Refuse an output path with the wrong suffix, in a missing folder, or that is a folder."""
    if path.suffix.lower() != suffix:
        raise InputError(f"{option}: {path} must end in {suffix}")
    if not path.parent.is_dir():
        raise InputError(f"{option}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"{option}: {path} is a folder; give a file name ending in {suffix}")
    return path


def _positive(kind: type, name: str) -> Callable[[str], float | int]:
    """argparse type: a finite number > 0 (``kind`` int or float)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {kind.__name__} > 0, got {text!r}") from None
        if not np.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def _add_sequence_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group(
        "sequence",
        None if required else
        "Optional: the sequence your data was acquired with. It must match the sequence recorded "
        "in the dictionary/model, else the command refuses.",
    )
    choice = group.add_mutually_exclusive_group(required=required)
    choice.add_argument(
        "--sequence",
        metavar="FILE",
        type=Path,
        help="sequence file: CSV with header columns flip_angle_deg,tr_ms,te_ms[,rf_phase_deg] "
        "(one line per time point), or .npz with arrays of those names, or .npy holding an "
        "(L, 3)/(L, 4) array with columns in that order (or a structured array with those fields)",
    )
    choice.add_argument(
        "--paper",
        action="store_true",
        help="the paper's FISP sequence (mrfbook.sequence.paper_sequence)",
    )
    group.add_argument(
        "--n-timepoints",
        type=_positive(int, "--n-timepoints"),
        default=200,
        metavar="L",
        help="length of the --paper sequence (default: 200)",
    )
    group.add_argument(
        "--no-inversion",
        action="store_true",
        help="sequence file without the ideal 180° inversion before the first pulse "
        "(default for --sequence: with inversion, like the paper)",
    )
    group.add_argument(
        "--inversion-delay-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="relaxation between inversion and first pulse, ms >= 0 (default: 0)",
    )


def _sequence_from_args(args: argparse.Namespace):
    """The FispSequence named by --sequence/--paper, or None if neither was given."""
    if getattr(args, "sequence", None) is not None:
        if args.n_timepoints != 200:
            raise InputError("--n-timepoints: only used with --paper; a --sequence file sets its own length")
        return load_sequence(
            args.sequence, inversion=not args.no_inversion, inversion_delay_ms=args.inversion_delay_ms
        )
    if getattr(args, "paper", False):
        from mrfbook.sequence import paper_sequence

        if args.no_inversion or args.inversion_delay_ms != 0.0:
            raise InputError("--no-inversion/--inversion-delay-ms: only used with --sequence FILE")
        try:
            return paper_sequence(args.n_timepoints)
        except ValueError as exc:
            raise InputError(f"--n-timepoints: {exc}") from exc
    return None


def _load_dictionary(path: Path, expected_sequence=None, *, option: str = "--dictionary"):
    from mrfbook.dictionary import Dictionary, StaleDictionaryError

    if not path.is_file():
        raise InputError(f"{option}: file not found: {path}")
    try:
        return Dictionary.load(path, expected_sequence=expected_sequence)
    except StaleDictionaryError as exc:  # its message names the file and both sequence digests
        raise InputError(f"{option}: another sequence: {exc}") from exc
    except (ValueError, OSError, KeyError, EOFError) as exc:
        raise InputError(f"{option}: cannot use {path}: {exc}") from exc


# ============================================================================ simulate


def _grid_from_args(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    from mrfbook.dictionary import paper_grid

    (t1_lo, t1_hi), (t2_lo, t2_hi) = args.t1_range, args.t2_range
    for option, lo, hi in (("--t1-range", t1_lo, t1_hi), ("--t2-range", t2_lo, t2_hi)):
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi < lo:
            raise InputError(f"{option}: need 0 < MIN <= MAX (ms), got {lo:g} {hi:g}")
    try:
        t1, t2 = paper_grid(
            t1_start_ms=t1_lo, t2_start_ms=t2_lo, step_ms=args.step, t1_max_ms=t1_hi, t2_max_ms=t2_hi
        )
    except ValueError as exc:
        raise InputError(f"--t1-range/--t2-range/--step: {exc}") from exc
    return t1, t2


def _cmd_simulate(args: argparse.Namespace, say: _Reporter) -> int:
    from mrfbook.dictionary import build_dictionary

    output = _check_output_file(args.output, "--output", ".npz")
    sequence = _sequence_from_args(args)
    t1, t2 = _grid_from_args(args)
    size_mb = t1.size * sequence.n_timepoints * 4 / 1e6
    say(f"simulating {t1.size:,} atoms x {sequence.n_timepoints} time points ({size_mb:.1f} MB)")
    start = time.perf_counter()
    dictionary = build_dictionary(sequence, t1, t2, progress=say.progress)
    dictionary.save(output)  # written under a temporary name and renamed (atomic)
    say(f"wrote {output} ({dictionary.n_atoms:,} atoms, sequence digest {sequence.digest[:12]}) "
        f"in {time.perf_counter() - start:.1f} s")
    return 0


# ============================================================================ train


def _cmd_train(args: argparse.Namespace, say: _Reporter) -> int:
    output = _check_output_file(args.output, "--output", ".keras")
    dictionary = _load_dictionary(args.dictionary, option="DICT.npz")
    if args.checkpoint_dir is not None and args.checkpoint_dir.exists() and not args.checkpoint_dir.is_dir():
        raise InputError(f"--checkpoint-dir: {args.checkpoint_dir} exists and is not a folder")
    from mrfbook import training
    from mrfbook.network import compact_config, paper_config

    make_network = compact_config if args.compact else paper_config
    config_kwargs = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                     "fresh_tissues": args.fresh_tissues}
    if args.validation_fraction is not None:
        config_kwargs["validation_fraction"] = args.validation_fraction
    if args.learning_rate is not None:
        config_kwargs["learning_rate"] = args.learning_rate
        config_kwargs["min_learning_rate"] = min(1e-6, args.learning_rate)
    try:
        config = training.TrainingConfig(network=make_network(dictionary.n_timepoints), **config_kwargs)
    except ValueError as exc:
        raise InputError(f"train: {exc}") from exc
    n_val = int(round(dictionary.n_atoms * config.validation_fraction))
    if n_val < 1 or dictionary.n_atoms - n_val < 1:
        raise InputError(
            f"DICT.npz: {dictionary.n_atoms} atoms are too few to hold out a validation fraction of "
            f"{config.validation_fraction:g}; simulate a finer grid"
        )
    say(f"training the {'compact' if args.compact else 'paper'} network on {dictionary.n_atoms:,} signatures "
        f"of {dictionary.n_timepoints} time points: {config.epochs} epoch{'s' if config.epochs > 1 else ''}, "
        f"batch {config.batch_size}")
    start = time.perf_counter()
    result = training.train(dictionary, config, checkpoint_dir=args.checkpoint_dir, progress=say.progress)
    # The model (.keras) and its sidecar (.json: sequence, label scaling) are written into a
    # temporary folder beside the output and renamed into place only when both are complete.
    sidecar = training.sidecar_path(output)
    staging = Path(tempfile.mkdtemp(prefix=".mrfbook-train.", dir=output.parent))
    try:
        written = training.save_trained_model(result.trained_model(), staging / output.name)
        os.replace(training.sidecar_path(written), sidecar)
        os.replace(written, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    final = {k: v[-1] for k, v in result.history.items() if v}
    summary = ", ".join(f"{k} {final[k]:.4g}" for k in ("val_t1_rmse_ms", "val_t2_rmse_ms") if k in final)
    say(f"wrote {output} and {sidecar.name} in {time.perf_counter() - start:.1f} s"
        + (f" (validation RMSE in ms: {summary})" if summary else ""))
    return 0


# ============================================================================ map


def _load_map_inputs(args: argparse.Namespace, n_timepoints: int):
    """Read and check the images or k-space (+ masks); returns (images or None, kspace, masks, pixel mask)."""
    if args.images is not None:
        for option in ("kspace_layout", "sampling_mask"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option.replace('_', '-')}: only used with --kspace")
        if args.restore != "none":
            raise InputError("--restore: restoration needs k-space input (--kspace), not --images")
        images = as_image_stack(load_array(args.images, name="--images"), "--images")
        height, width, length = images.shape
        kspace = sampling = None
    else:
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


def _reconstruct(kspace: np.ndarray, sampling: np.ndarray, args: argparse.Namespace, say: _Reporter) -> np.ndarray:
    """k-space (L, H, W) -> image stack (H, W, L): zero-filled or low-rank restored."""
    from mrfbook.acquisition import UndersampledFourier, zero_filled

    op = UndersampledFourier(sampling)
    if args.restore == "none":
        say("zero-filled reconstruction (inverse FFT)")
        return np.asarray(zero_filled(kspace, op))
    from mrfbook.lowrank import lowrank_restore

    say(f"low-rank restoration (lambda = {args.lam:g}, at most {args.max_iter} iterations)")
    result = lowrank_restore(kspace, op, lam=args.lam, max_iter=args.max_iter, progress=say.progress)
    if not result.converged:
        say(f"warning: low-rank restoration stopped after {result.n_iter} iterations without converging")
    return np.asarray(result.images)


def _real_signatures(signatures: np.ndarray, sequence) -> np.ndarray:
    """Real signatures (N, L) for the network (which was trained on real atoms).

    Complex data carry a per-pixel phase that is constant in time: it is removed
    with :func:`mrfbook.inference.real_signatures` (``complex_mode="dephase"``).
    That leaves a sign ambiguity, resolved here per pixel by choosing the sign
    whose best correlation with a coarse dictionary of the same sequence
    (T1, T2 every 250 ms) is positive.  Real input is used as it is.
    """
    if not np.iscomplexobj(signatures):
        return np.asarray(signatures, dtype=np.float64)
    from mrfbook.dictionary import build_dictionary, paper_grid
    from mrfbook.inference import real_signatures

    reference = build_dictionary(sequence, *paper_grid(step_ms=250.0)).normalised()
    real = real_signatures(signatures, complex_mode="dephase")
    corr = real @ reference.T
    real[corr.max(axis=1) < (-corr).max(axis=1)] *= -1.0
    return real


def _estimate_with_model(trained, sequence, signatures: np.ndarray, say: _Reporter):
    """Network estimate of (T1, T2) in ms; PD by least squares against the simulated signature.

    Pixels without signal (all zeros) get T1 = T2 = PD = 0.
    """
    from mrfbook.epg import simulate_fisp
    from mrfbook.inference import predict_parameters

    real = _real_signatures(signatures, sequence)
    say(f"network inference on {len(real):,} signatures")
    params = np.asarray(predict_parameters(trained, real))
    signal = np.all(np.isfinite(params), axis=1)
    t1 = np.where(signal, params[:, 0], 0.0)
    t2 = np.where(signal, params[:, 1], 0.0)
    pd = np.zeros(len(real))
    if signal.any():
        # The network can return values outside the simulated range (even <= 0); PD is then
        # fitted against the nearest valid tissue (T >= 1 ms), the maps keep the raw output.
        atoms = np.asarray(simulate_fisp(sequence, np.maximum(t1[signal], 1.0), np.maximum(t2[signal], 1.0),
                                         dtype=np.float64))
        x = real[signal]
        pd[signal] = np.einsum("nl,nl->n", atoms, x) / np.maximum(np.einsum("nl,nl->n", atoms, atoms), 1e-30)
    return t1, t2, pd


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


def _cmd_map(args: argparse.Namespace, say: _Reporter) -> int:
    out = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise InputError(f"--out: parent folder {out.parent} does not exist")
    if args.max_iter < 1:
        raise InputError("--max-iter: must be >= 1")
    given_sequence = _sequence_from_args(args)

    if args.dictionary is not None:
        dictionary = _load_dictionary(args.dictionary, expected_sequence=given_sequence)
        sequence, model = dictionary.sequence, None
    else:
        dictionary = None
        sequence = _model_sequence(args.model, given_sequence)
    images, kspace, sampling, pixel_mask = _load_map_inputs(args, sequence.n_timepoints)
    if args.model is not None:
        say("loading the network")
        model = _load_model(args.model, sequence)
    height, width = pixel_mask.shape

    start = time.perf_counter()
    if images is None:
        images = _reconstruct(kspace, sampling, args, say)
    signatures = images.reshape(-1, images.shape[-1])[pixel_mask.ravel()]
    if dictionary is not None:
        from mrfbook.matching import match_signatures

        say(f"matching {len(signatures):,} pixels against {dictionary.n_atoms:,} atoms")
        result = match_signatures(signatures, dictionary, progress=say.progress)
        t1, t2, pd = result.t1_ms, result.t2_ms, result.pd
        method = "dictionary matching"
    else:
        t1, t2, pd = _estimate_with_model(model, sequence, signatures, say)
        method = "network"

    maps = {}
    for key, values in (("t1", t1), ("t2", t2), ("pd", pd)):
        full = np.zeros(height * width, dtype=np.float64)
        full[pixel_mask.ravel()] = np.asarray(values, dtype=np.float64)
        maps[key] = full.reshape(height, width)
    elapsed = time.perf_counter() - start

    out.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mrfbook-map.", dir=out))
    try:
        for key, image in maps.items():
            np.save(staging / f"{key}.npy", image)
        np.save(staging / "mask.npy", pixel_mask)
        _save_map_png(staging / "t1.png", maps["t1"], pixel_mask, title="T1", unit="ms")
        _save_map_png(staging / "t2.png", maps["t2"], pixel_mask, title="T2", unit="ms")
        _save_map_png(staging / "pd.png", maps["pd"], pixel_mask, title="PD", unit="a.u.")
        summary = {
            "method": method,
            "source": str(args.dictionary or args.model),
            "input": str(args.images or args.kspace),
            "restore": args.restore,
            "sequence_digest": sequence.digest,
            "n_timepoints": sequence.n_timepoints,
            "shape": [height, width],
            "n_pixels_mapped": int(pixel_mask.sum()),
            "seconds": round(elapsed, 3),
            "units": {"t1": "ms", "t2": "ms", "pd": "a.u. (signal units)"},
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"{method}: {int(pixel_mask.sum()):,} pixels in {elapsed:.1f} s; wrote t1.npy t2.npy pd.npy "
        f"mask.npy t1.png t2.png pd.png summary.json to {out}")
    return 0


def _model_sequence(path: Path, given_sequence):
    """The sequence a model from 'train' was trained for, read from its JSON sidecar.

    Reading the small sidecar (``MODEL.json`` beside ``MODEL.keras``, see
    :func:`mrfbook.training.save_trained_model`) first lets the command refuse a
    model made for another sequence, or data of the wrong length, before the
    slow import of Keras.
    """
    from mrfbook.sequence import FispSequence

    if not path.is_file():
        raise InputError(f"--model: file not found: {path}")
    if path.suffix.lower() != ".keras":
        raise InputError(f"--model: {path} must be a .keras file written by 'mrfbook train'")
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise InputError(
            f"--model: {path} has no sidecar {sidecar.name} beside it (it records the sequence and the "
            "label scaling); use a model written by 'mrfbook train' and keep the two files together"
        )
    try:
        meta = json.loads(sidecar.read_text())
        sequence = FispSequence.from_dict(meta["sequence"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--model: cannot read the training sequence from {sidecar}: {exc}") from exc
    if given_sequence is not None and given_sequence.digest != sequence.digest:
        raise InputError(
            f"--model: {path} was trained for another sequence (digest {sequence.digest[:12]}, "
            f"L = {sequence.n_timepoints}) than the one given (digest {given_sequence.digest[:12]}, "
            f"L = {given_sequence.n_timepoints}); train a network for this sequence"
        )
    return sequence


def _load_model(path: Path, sequence):
    """Load the network (Keras) and check it against the sequence from its sidecar."""
    from mrfbook import training

    try:
        return training.load_trained_model(path, expected_sequence=sequence)
    except (ValueError, OSError, KeyError) as exc:
        raise InputError(f"--model: cannot use {path}: {exc}") from exc


# ============================================================================ parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m mrfbook`` (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="MR fingerprinting from the command line: simulate a dictionary, train the "
        "network, map T1/T2/PD from your own data. Explained in the book's chapter 'The command line'.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # -- simulate
    p = sub.add_parser(
        "simulate",
        help="simulate a dictionary for a sequence and save it as .npz",
        description="Simulate the dictionary (EPG, FISP) of a sequence on a (T1, T2) grid with "
        "T1 >= T2 and save it as .npz (mrfbook.dictionary.Dictionary.save; the file records the sequence).",
    )
    _add_sequence_options(p, required=True)
    grid = p.add_argument_group("grid (ms; only pairs with T1 >= T2 are kept)")
    grid.add_argument("--t1-range", nargs=2, type=float, metavar=("MIN", "MAX"), default=(1.0, 5000.0),
                      help="T1 from MIN to MAX ms inclusive (default: 1 5000, the paper's)")
    grid.add_argument("--t2-range", nargs=2, type=float, metavar=("MIN", "MAX"), default=(1.0, 2000.0),
                      help="T2 from MIN to MAX ms inclusive (default: 1 2000, the paper's)")
    grid.add_argument("--step", type=_positive(float, "--step"), default=10.0, metavar="MS",
                      help="grid spacing in ms on both axes (default: 10, the paper's; 80,100 atoms)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DICT.npz", help="output file (.npz)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_simulate)

    # -- train
    p = sub.add_parser(
        "train",
        help="train the residual 1-D CNN on a dictionary",
        description="Train the network (mrfbook.training.train) on the atoms of a dictionary file "
        "written by 'simulate'. The saved model records the dictionary's sequence, so 'map' refuses "
        "data from another sequence.",
    )
    p.add_argument("dictionary", type=Path, metavar="DICT.npz", help="dictionary file from 'simulate'")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.keras",
                   help="output model file (.keras); its sidecar MODEL.json (sequence, label scaling, "
                   "training record) is written beside it")
    p.add_argument("--epochs", type=_positive(int, "--epochs"), default=50, help="epochs (default: 50, the paper's)")
    p.add_argument("--batch-size", type=_positive(int, "--batch-size"), default=256,
                   help="batch size (default: 256, the paper's)")
    p.add_argument("--validation-fraction", type=_fraction, default=None, metavar="F",
                   help="share of the atoms held out for validation (default: the library's, 0.2 as in the paper)")
    p.add_argument("--learning-rate", type=_positive(float, "--learning-rate"), default=None, metavar="LR",
                   help="initial learning rate, divided by 10 every 10 epochs (default: the library's, "
                   "1e-3 for its scaled labels; the paper's 1e-2 was for labels in ms, see chapter 7)")
    p.add_argument("--fresh-tissues", action="store_true",
                   help="train every epoch on new random tissues drawn uniformly over the (T1, T2) range of the "
                   "dictionary's atoms (T1 >= T2) instead of the atoms themselves; validation stays on held-out "
                   "atoms (TrainingConfig.fresh_tissues, chapter 7)")
    p.add_argument("--compact", action="store_true",
                   help="the compact network (mrfbook.network.compact_config): ~20x fewer parameters, CPU-friendly")
    p.add_argument("--checkpoint-dir", type=Path, default=None, metavar="DIR",
                   help="save a checkpoint after every epoch here and resume from the latest one")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)

    # -- map
    p = sub.add_parser(
        "map",
        help="map T1, T2 and PD from an image stack or k-space",
        description="Estimate T1, T2 (ms) and PD maps from your data by dictionary matching "
        "(--dictionary) or with a trained network (--model). Writes t1.npy, t2.npy, pd.npy "
        "(float64, (H, W); 0 outside the mask), mask.npy, t1.png, t2.png, pd.png and summary.json "
        "into --out. Arrays may be .npy, .npz or MATLAB .mat files; use FILE:KEY to pick one "
        "array of an .npz/.mat file holding several.",
    )
    data = p.add_argument_group("data (one of --images / --kspace)")
    which = data.add_mutually_exclusive_group(required=True)
    which.add_argument("--images", metavar="FILE[:KEY]",
                       help="image stack of shape (H, W, L), real or complex, one image per time point")
    which.add_argument("--kspace", metavar="FILE[:KEY]",
                       help="Cartesian k-space, complex, shape (L, H, W) or (H, W, L) as told by "
                       "--kspace-layout, in mrfbook.acquisition's FFT convention (see book/cli.md)")
    data.add_argument("--kspace-layout", choices=("LHW", "HWL"), type=str.upper, default=None,
                      help="axis order of --kspace (required with it): LHW = (frames, rows, columns), "
                      "HWL = (rows, columns, frames)")
    data.add_argument("--sampling-mask", metavar="FILE[:KEY]", default=None,
                      help="which k-space points were measured: 0/1 array in the --kspace layout, or one (H, W) "
                      "mask for all frames (default: fully sampled; required with --restore lowrank)")
    data.add_argument("--mask", metavar="FILE[:KEY]", default=None,
                      help="pixels to map: (H, W) array of 0/1 (default: every pixel)")
    method = p.add_argument_group("method (one of --dictionary / --model)")
    how = method.add_mutually_exclusive_group(required=True)
    how.add_argument("--dictionary", type=Path, metavar="DICT.npz", help="dictionary from 'simulate' (matching)")
    how.add_argument("--model", type=Path, metavar="MODEL.keras", help="network from 'train'")
    _add_sequence_options(p, required=False)
    p.add_argument("--restore", choices=("none", "lowrank"), default="none",
                   help="k-space only: 'lowrank' restores undersampled data first (mrfbook.lowrank, "
                   "nuclear-norm, the paper's lambda = 5); default: zero-filled")
    p.add_argument("--lam", type=_positive(float, "--lam"), default=5.0, metavar="LAMBDA",
                   help="nuclear-norm weight of --restore lowrank (default: 5, the paper's)")
    p.add_argument("--max-iter", type=int, default=100, metavar="N",
                   help="at most this many iterations of --restore lowrank (default: 100; it stops "
                   "earlier once the relative change is below 1e-4)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_map)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mrfbook")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    say = _Reporter(args.command, args.quiet)
    try:
        return args.func(args, say)
    except ValueError as exc:  # InputError, and library checks that name the bad parameter
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
