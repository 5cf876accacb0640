"""Loading and checking user data for the command line.

Everything a user hands to ``python -m mrfbook`` passes through this module:
arrays stored as ``.npy``, ``.npz`` or MATLAB ``.mat`` files, and acquisition
sequences stored as CSV, ``.npy`` or ``.npz`` files.  Every loader checks what
it reads (file present, numeric dtype, expected number of dimensions, finite
values) and raises :class:`InputError` whose message names the offending
option/parameter and what is allowed.  Nothing is clipped, cast from complex to
real or reshaped silently.

Explained in book/cli.md (the command line chapter).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = [
    "InputError",
    "ARRAY_SUFFIXES",
    "SEQUENCE_COLUMNS",
    "split_key",
    "load_array",
    "load_sequence_arrays",
    "load_sequence",
    "check_numeric",
    "check_finite",
    "as_image_stack",
    "as_image_volume",
    "as_volume_mask",
    "as_kspace_lhw",
    "as_pixel_mask",
    "as_sampling_masks",
]

ARRAY_SUFFIXES = (".npy", ".npz", ".mat")
#: Column names of a sequence file; the first three are required.
SEQUENCE_COLUMNS = ("flip_angle_deg", "tr_ms", "te_ms", "rf_phase_deg")
_REQUIRED_COLUMNS = SEQUENCE_COLUMNS[:3]


class InputError(ValueError):
    """User input that cannot be used; the message names the parameter and the fix."""


def split_key(spec: str | Path) -> tuple[Path, str | None]:
    """Split ``"file.npz:key"`` into ``(Path("file.npz"), "key")``.

    Parameters
    ----------
    spec : str or Path
        A path, optionally followed by ``:KEY`` naming one array inside an
        ``.npz`` or ``.mat`` file.  A path that itself exists is never split.

    Returns
    -------
    path : Path
    key : str or None
    """
    text = str(spec)
    if Path(text).exists() or ":" not in text:
        return Path(text), None
    head, key = text.rsplit(":", 1)
    if head and key and Path(head).suffix.lower() in (".npz", ".mat"):
        return Path(head), key
    return Path(text), None


def _require_file(path: Path, name: str, suffixes: tuple[str, ...]) -> None:
    if not path.exists():
        raise InputError(f"{name}: file not found: {path}")
    if not path.is_file():
        raise InputError(f"{name}: not a regular file: {path}")
    if path.suffix.lower() not in suffixes:
        raise InputError(
            f"{name}: unsupported file type {path.suffix or '(no suffix)'!r} for {path}; "
            f"allowed: {', '.join(suffixes)}"
        )


def _pick(arrays: dict[str, np.ndarray], key: str | None, path: Path, name: str) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise InputError(
                f"{name}: {path} holds no array named {key!r}; it holds: {', '.join(sorted(arrays)) or 'nothing'}"
            )
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if not arrays:
        raise InputError(f"{name}: {path} holds no arrays")
    raise InputError(
        f"{name}: {path} holds several arrays ({', '.join(sorted(arrays))}); "
        f"name one as {path}:KEY"
    )


def load_array(spec: str | Path, *, name: str, mmap: bool = False) -> np.ndarray:
    """Load one array from a ``.npy``, ``.npz`` or ``.mat`` file.

    Parameters
    ----------
    spec : str or Path
        File path, optionally ``path:KEY`` to pick one array of an ``.npz`` or
        ``.mat`` file holding several.  ``.mat`` files are read with
        :func:`scipy.io.loadmat` (MATLAB v4–v7.2; v7.3/HDF5 files are refused).
    name : str
        Name of the option the file came from (e.g. ``"--images"``); used in
        error messages.
    mmap : bool
        For a ``.npy`` file: return a read-only ``numpy.memmap`` (nothing is read
        yet; volumes larger than memory are then read slab by slab). Other file
        types are always read into memory.

    Returns
    -------
    numpy.ndarray
        The stored array, unchanged (shape and dtype as stored).

    Raises
    ------
    InputError
        Missing file, unsupported type, unreadable file, ambiguous or absent key.
    """
    path, key = split_key(spec)
    _require_file(path, name, ARRAY_SUFFIXES)
    suffix = path.suffix.lower()
    if key is not None and suffix == ".npy":
        raise InputError(f"{name}: a .npy file holds one array; drop ':{key}' from {spec}")
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return _pick({k: data[k] for k in data.files}, key, path, name)
        from scipy.io import loadmat

        try:
            mat = loadmat(path)
        except NotImplementedError as exc:  # MATLAB v7.3 = HDF5
            raise InputError(
                f"{name}: {path} is a MATLAB v7.3 (HDF5) file, which is not supported; "
                "save it with save(..., '-v7')"
            ) from exc
        arrays = {k: v for k, v in mat.items() if not k.startswith("__")}
        return _pick(arrays, key, path, name)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{name}: cannot read {path}: {exc}") from exc


def check_numeric(arr: np.ndarray, name: str, *, allow_complex: bool = True) -> np.ndarray:
    """Refuse non-numeric (object, string, structured) or, if asked, complex arrays."""
    kind = arr.dtype.kind
    allowed = "biufc" if allow_complex else "biuf"
    if kind not in allowed:
        what = "real or complex numbers" if allow_complex else "real numbers"
        raise InputError(f"{name}: dtype {arr.dtype} is not allowed; expected {what}")
    return arr


def check_finite(arr: np.ndarray, name: str) -> np.ndarray:
    """Refuse arrays holding NaN or infinite values (the message counts them)."""
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{name}: {int(bad.sum()):,} of {arr.size:,} values are NaN or infinite "
            f"(first at index {first}); all values must be finite"
        )
    return arr


def as_image_stack(arr: np.ndarray, name: str = "--images") -> np.ndarray:
    """Check an image stack of shape (H, W, L): numeric, finite, 3-D.

    Returns the array as complex64 if complex, else float64 (values unchanged).
    """
    check_numeric(arr, name)
    if arr.dtype.kind == "b":
        raise InputError(f"{name}: dtype bool is not allowed for images; expected real or complex numbers")
    if arr.ndim != 3:
        raise InputError(
            f"{name}: expected a 3-D image stack of shape (H, W, L) or a 4-D volume (H, W, D, L), got shape {arr.shape}"
        )
    if min(arr.shape) < 1:
        raise InputError(f"{name}: empty image stack, shape {arr.shape}")
    check_finite(arr, name)
    return arr.astype(np.complex64 if arr.dtype.kind == "c" else np.float64, copy=False)


def as_image_volume(arr: np.ndarray, name: str = "--images") -> np.ndarray:
    """Check a volume of shape (H, W, D, L) -- D slices of (H, W, L) image series -- without reading it.

    Numeric (not bool) dtype, 4-D, no empty axis. The values are not read here (the array may be
    a memory map of a file larger than memory): their finiteness is checked slab by slab while
    mapping (:func:`mrfbook.analysis.volumes.map_volume`). Returned unchanged, dtype as stored.
    """
    check_numeric(arr, name)
    if arr.dtype.kind == "b":
        raise InputError(f"{name}: dtype bool is not allowed for images; expected real or complex numbers")
    if arr.ndim != 4:
        raise InputError(f"{name}: expected a 4-D volume of shape (H, W, D, L), got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise InputError(f"{name}: empty volume, shape {arr.shape}")
    return arr


def as_volume_mask(arr: np.ndarray, shape: tuple[int, int, int], name: str = "--mask") -> np.ndarray:
    """Check a pixel mask of a volume (H, W, D): one (H, W) mask for every slice or an (H, W, D) one, 0/1 or bool."""
    height, width, depth = shape
    if arr.shape not in ((height, width), (height, width, depth)):
        raise InputError(
            f"{name}: shape {arr.shape} does not match the volume; expected (H, W) = {(height, width)} "
            f"(every slice) or (H, W, D) = {tuple(shape)}"
        )
    mask = _as_bool(np.asarray(arr), name)
    if not mask.any():
        raise InputError(f"{name}: the mask selects no pixel; at least one value must be 1/True")
    return mask


def as_kspace_lhw(arr: np.ndarray, layout: str, name: str = "--kspace") -> np.ndarray:
    """Check Cartesian k-space and return it as (L, H, W) complex64.

    Parameters
    ----------
    arr : numpy.ndarray
        k-space samples, complex (or real) numbers, finite, 3-D.
    layout : {"LHW", "HWL"}
        Axis order of ``arr``: ``LHW`` = (frames, rows, columns), ``HWL`` =
        (rows, columns, frames).
    """
    check_numeric(arr, name)
    if arr.dtype.kind == "b":
        raise InputError(f"{name}: dtype bool is not allowed for k-space")
    layout = layout.upper()
    if layout not in ("LHW", "HWL"):
        raise InputError(f"--kspace-layout: {layout!r} is not allowed; use LHW or HWL")
    if arr.ndim != 3:
        raise InputError(
            f"{name}: expected 3-D k-space of shape {'(L, H, W)' if layout == 'LHW' else '(H, W, L)'}"
            f" (--kspace-layout {layout}), got shape {arr.shape}"
        )
    check_finite(arr, name)
    if layout == "HWL":
        arr = np.moveaxis(arr, -1, 0)
    return np.ascontiguousarray(arr, dtype=np.complex64)


def _as_bool(arr: np.ndarray, name: str) -> np.ndarray:
    check_numeric(arr, name, allow_complex=False)
    if arr.dtype.kind == "b":
        return arr
    check_finite(arr, name)
    values = np.unique(arr)
    if not np.all(np.isin(values, (0, 1))):
        raise InputError(
            f"{name}: a mask must hold only 0/1 or True/False; found values such as "
            f"{values[~np.isin(values, (0, 1))][:3].tolist()}"
        )
    return arr.astype(bool)


def as_pixel_mask(arr: np.ndarray, shape: tuple[int, int], name: str = "--mask") -> np.ndarray:
    """Check a pixel (tissue) mask: shape (H, W) matching the images, 0/1 or bool values."""
    if arr.shape != tuple(shape):
        raise InputError(f"{name}: shape {arr.shape} does not match the image size (H, W) = {tuple(shape)}")
    mask = _as_bool(arr, name)
    if not mask.any():
        raise InputError(f"{name}: the mask selects no pixel; at least one value must be 1/True")
    return mask


def as_sampling_masks(arr: np.ndarray, lhw_shape: tuple[int, int, int], layout: str,
                      name: str = "--sampling-mask") -> np.ndarray:
    """Check k-space sampling masks and return them as (L, H, W) bool.

    ``arr`` is either one (H, W) mask shared by all frames or one mask per
    frame in the same axis order as the k-space (``layout``).
    """
    n_frames, height, width = lhw_shape
    mask = _as_bool(arr, name)
    if mask.shape == (height, width):
        return np.broadcast_to(mask, lhw_shape).copy()
    expected = lhw_shape if layout.upper() == "LHW" else (height, width, n_frames)
    if mask.shape != expected:
        raise InputError(
            f"{name}: shape {mask.shape} does not match the k-space; expected {expected} "
            f"(one mask per frame, layout {layout.upper()}) or {(height, width)} (shared)"
        )
    if layout.upper() == "HWL":
        mask = np.moveaxis(mask, -1, 0)
    if not mask.reshape(n_frames, -1).any(axis=1).all():
        raise InputError(f"{name}: some frames sample no k-space point at all")
    return np.ascontiguousarray(mask)


# ----------------------------------------------------------------------------- sequences


def _sequence_from_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(c.strip() for c in row)]
    if not rows:
        raise InputError(f"--sequence: {path} is empty; expected a header line {','.join(_REQUIRED_COLUMNS)}")
    header = [c.strip() for c in rows[0]]
    _check_columns(header, path)
    columns: dict[str, list[float]] = {h: [] for h in header}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputError(
                f"--sequence: {path} line {line_no} has {len(row)} fields, the header has {len(header)}"
            )
        for h, cell in zip(header, row):
            try:
                columns[h].append(float(cell))
            except ValueError:
                raise InputError(
                    f"--sequence: {path} line {line_no}, column {h}: {cell.strip()!r} is not a number"
                ) from None
    if len(rows) < 2:
        raise InputError(f"--sequence: {path} has a header but no time points")
    return {h: np.asarray(v, dtype=np.float64) for h, v in columns.items()}


def _check_columns(names: list[str], path: Path) -> None:
    missing = [c for c in _REQUIRED_COLUMNS if c not in names]
    unknown = [c for c in names if c not in SEQUENCE_COLUMNS]
    if missing or unknown or len(set(names)) != len(names):
        raise InputError(
            f"--sequence: {path} has columns {names}; required: {', '.join(_REQUIRED_COLUMNS)}, "
            f"optional: {SEQUENCE_COLUMNS[3]}"
            + (f" (missing: {', '.join(missing)})" if missing else "")
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )


def load_sequence_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read the per-time-point sequence parameters from a file.

    Parameters
    ----------
    path : str or Path
        * ``.csv``: a header line naming the columns ``flip_angle_deg``,
          ``tr_ms``, ``te_ms`` and optionally ``rf_phase_deg``, then one line per
          time point;
        * ``.npz``: arrays with those names, each of shape (L,);
        * ``.npy``: a structured array with those field names, or a plain
          (L, 3) / (L, 4) array whose columns are in that order.

    Returns
    -------
    dict
        Column name -> (L,) float64 array (degrees or milliseconds).
    """
    path = Path(path)
    _require_file(path, "--sequence", (".csv", ".npy", ".npz"))
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _sequence_from_csv(path)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                _check_columns(list(data.files), path)
                raw = {k: data[k] for k in data.files}
        else:
            arr = np.load(path, allow_pickle=False)
            if arr.dtype.names:
                _check_columns(list(arr.dtype.names), path)
                raw = {k: arr[k] for k in arr.dtype.names}
            elif arr.ndim == 2 and arr.shape[1] in (3, 4):
                raw = {SEQUENCE_COLUMNS[i]: arr[:, i] for i in range(arr.shape[1])}
            else:
                raise InputError(
                    f"--sequence: {path} holds an array of shape {arr.shape}; expected (L, 3) or (L, 4) "
                    f"with columns {', '.join(SEQUENCE_COLUMNS)} or a structured array with those fields"
                )
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"--sequence: cannot read {path}: {exc}") from exc
    out = {}
    for key, value in raw.items():
        value = np.asarray(value)
        check_numeric(value, f"--sequence {key}", allow_complex=False)
        if value.ndim != 1:
            raise InputError(f"--sequence: {key} in {path} has shape {value.shape}; expected (L,)")
        out[key] = value.astype(np.float64)
    lengths = {k: v.size for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"--sequence: columns of {path} differ in length: {lengths}")
    if next(iter(lengths.values())) == 0:
        raise InputError(f"--sequence: {path} holds no time points")
    return out


def load_sequence(path: str | Path, *, inversion: bool = True, inversion_delay_ms: float = 0.0):
    """Load a :class:`mrfbook.physics.sequence.FispSequence` from a sequence file.

    See :func:`load_sequence_arrays` for the accepted formats.  Values are
    validated by :meth:`FispSequence.from_arrays`; its ValueError (which names
    the parameter and allowed range) is re-raised as :class:`InputError`.
    """
    from mrfbook.physics.sequence import FispSequence

    arrays = load_sequence_arrays(path)
    for key, value in arrays.items():
        check_finite(value, f"--sequence {key}")
    kwargs = dict(
        flip_angles_deg=arrays["flip_angle_deg"],
        tr_ms=arrays["tr_ms"],
        te_ms=arrays["te_ms"],
        inversion=inversion,
        inversion_delay_ms=inversion_delay_ms,
    )
    if "rf_phase_deg" in arrays:
        kwargs["rf_phase_deg"] = arrays["rf_phase_deg"]
    try:
        return FispSequence.from_arrays(**kwargs)
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(f"--sequence: {path}: {exc}") from exc
