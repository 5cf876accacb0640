"""The MRF dictionary: parameter grids, simulated atoms, look-up table and an on-disk cache.

A dictionary is the table of simulated signatures ("atoms") of a fixed FISP sequence, one row per
tissue on a grid of (T1, T2) values, together with the look-up table (LUT) that maps each row back
to its parameters. The paper (Song et al., ICASSP 2019, section 4.1) uses T1 = 1, 11, ..., 4991 ms
and T2 = 1, 11, ..., 1991 ms with the unphysical pairs T1 < T2 left out: 80,100 atoms of 200 time
points.

Explained in chapter 3, book/03_dictionary.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mrfbook.physics.sequence import FispSequence, paper_sequence

__all__ = [
    "FORMAT_VERSION",
    "PHYSICS_VERSION",
    "PAPER_N_ATOMS",
    "StaleDictionaryError",
    "Dictionary",
    "paper_grid",
    "shifted_test_grid",
    "b1_grid",
    "grid_image",
    "build_dictionary",
    "default_cache_dir",
    "cache_path",
    "cached_dictionary",
]

#: Version of the ``.npz`` layout written by :meth:`Dictionary.save`.
FORMAT_VERSION = 1
#: Version of the simulated physics (EPG conventions, initial state, echo sampling). Bump it whenever
#: :func:`mrfbook.physics.epg.simulate_fisp` changes its output for the same inputs: it is part of every
#: cache key, so caches written by older physics are never reused.
PHYSICS_VERSION = 1
#: Number of atoms of the paper's dictionary (section 4.1).
PAPER_N_ATOMS = 80_100

GridName = Literal["paper", "test"]


class StaleDictionaryError(ValueError):
    """A stored dictionary was simulated with a different sequence (or physics) than expected."""


# --------------------------------------------------------------------------------------------------
# Parameter grids
# --------------------------------------------------------------------------------------------------
def _check_positive_scalar(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _axis(name: str, start: float, step: float, stop: float) -> np.ndarray:
    """``start, start + step, ...`` up to and including ``stop`` (within rounding)."""
    if stop < start:
        raise ValueError(f"{name}: the maximum ({stop} ms) must be >= the start ({start} ms)")
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return start + step * np.arange(n, dtype=np.float64)


def _triangle(t1_axis: np.ndarray, t2_axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t1, t2 = np.meshgrid(t1_axis, t2_axis, indexing="ij")
    keep = t1 >= t2
    return np.ascontiguousarray(t1[keep]), np.ascontiguousarray(t2[keep])


def paper_grid(
    *,
    t1_start_ms: float = 1.0,
    t2_start_ms: float = 1.0,
    step_ms: float = 10.0,
    t1_max_ms: float = 5000.0,
    t2_max_ms: float = 2000.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's (T1, T2) training grid, physical pairs (T1 >= T2) only.

    T1 runs ``t1_start_ms, t1_start_ms + step_ms, ...`` up to ``t1_max_ms`` and T2 likewise up to
    ``t2_max_ms``; with the defaults T1 = 1, 11, ..., 4991 ms (500 values) and T2 = 1, 11, ...,
    1991 ms (200 values), and keeping T1 >= T2 leaves exactly 80,100 pairs (paper, section 4.1).

    Parameters
    ----------
    t1_start_ms, t2_start_ms : float
        First T1 / T2 value in ms, > 0.
    step_ms : float
        Grid spacing in ms (both axes), > 0.
    t1_max_ms, t2_max_ms : float
        Largest allowed T1 / T2 in ms (inclusive), >= the corresponding start.

    Returns
    -------
    t1_ms, t2_ms : np.ndarray
        Flat (K,) float64 arrays in ms, ordered T1-major (T1 ascending, then T2 ascending), with
        ``t1_ms >= t2_ms`` everywhere.

    Explained in chapter 3, book/03_dictionary.md.
    """
    t1_start_ms = _check_positive_scalar("t1_start_ms", t1_start_ms)
    t2_start_ms = _check_positive_scalar("t2_start_ms", t2_start_ms)
    step_ms = _check_positive_scalar("step_ms", step_ms)
    t1_max_ms = _check_positive_scalar("t1_max_ms", t1_max_ms)
    t2_max_ms = _check_positive_scalar("t2_max_ms", t2_max_ms)
    t1_axis = _axis("t1_max_ms", t1_start_ms, step_ms, t1_max_ms)
    t2_axis = _axis("t2_max_ms", t2_start_ms, step_ms, t2_max_ms)
    t1, t2 = _triangle(t1_axis, t2_axis)
    if t1.size == 0:
        raise ValueError(
            "paper_grid: no pair with T1 >= T2; t1_max_ms must be >= t2_start_ms "
            f"(got t1_max_ms={t1_max_ms}, t2_start_ms={t2_start_ms})"
        )
    return t1, t2


def shifted_test_grid(
    offset_ms: float = 5.0,
    *,
    step_ms: float = 10.0,
    t1_max_ms: float = 5000.0,
    t2_max_ms: float = 2000.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic test grid: the paper grid shifted by ``offset_ms`` on both axes.

    With the default offset of 5 ms, T1 = 6, 16, ..., 4996 ms and T2 = 6, 16, ..., 1996 ms
    (T1 >= T2 kept), so no (T1, T2) pair is shared with :func:`paper_grid` and every test pair
    lies halfway between training pairs (the paper's section 4.2 test set).

    Parameters
    ----------
    offset_ms : float
        Shift of both axes relative to the paper grid's start of 1 ms; must satisfy
        ``0 < offset_ms < step_ms`` so that no value coincides with a training value.
    step_ms, t1_max_ms, t2_max_ms : float
        As in :func:`paper_grid`.

    Returns
    -------
    t1_ms, t2_ms : np.ndarray
        Flat (K,) float64 arrays in ms, T1 >= T2.

    Explained in chapter 3, book/03_dictionary.md.
    """
    step_ms = _check_positive_scalar("step_ms", step_ms)
    offset_ms = float(offset_ms)
    if not np.isfinite(offset_ms) or not 0.0 < offset_ms < step_ms:
        raise ValueError(
            f"offset_ms must lie in the open interval (0, step_ms) = (0, {step_ms}) ms so that no "
            f"test value falls on the training grid, got {offset_ms!r}"
        )
    return paper_grid(
        t1_start_ms=1.0 + offset_ms,
        t2_start_ms=1.0 + offset_ms,
        step_ms=step_ms,
        t1_max_ms=t1_max_ms,
        t2_max_ms=t2_max_ms,
    )


def b1_grid(
    t1_ms: np.ndarray, t2_ms: np.ndarray, b1_values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Repeat a (T1, T2) grid for every B1 scale, for a 3-parameter dictionary.

    Parameters
    ----------
    t1_ms, t2_ms : np.ndarray
        (K,) relaxation times in ms.
    b1_values : np.ndarray
        (M,) flip-angle scale factors (dimensionless, > 0, 1 = nominal).

    Returns
    -------
    t1_ms, t2_ms, b1 : np.ndarray
        (K * M,) float64 arrays, B1-major (all (T1, T2) pairs for ``b1_values[0]`` first).

    Explained in chapter 3, book/03_dictionary.md.
    """
    t1, t2 = _validate_grid(t1_ms, t2_ms)
    b1_values = np.asarray(b1_values, dtype=np.float64)
    if b1_values.ndim != 1 or b1_values.size == 0:
        raise ValueError(f"b1_values must be a non-empty 1-D array, got shape {b1_values.shape}")
    if not np.all(np.isfinite(b1_values)) or np.any(b1_values <= 0):
        raise ValueError("b1_values must be finite and > 0 (1 = nominal flip angle)")
    m = b1_values.size
    return np.tile(t1, m), np.tile(t2, m), np.repeat(b1_values, t1.size)


def grid_image(
    t1_ms: np.ndarray, t2_ms: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrange per-pair values of a flat (T1, T2) grid as an image for ``pcolormesh``.

    Parameters
    ----------
    t1_ms, t2_ms : np.ndarray
        (K,) grid pairs in ms (e.g. from :func:`paper_grid`), each pair at most once.
    values : np.ndarray
        (K,) one value per pair (e.g. atom norms, estimation errors).

    Returns
    -------
    t1_axis : np.ndarray
        (n1,) sorted distinct T1 values in ms.
    t2_axis : np.ndarray
        (n2,) sorted distinct T2 values in ms.
    image : np.ndarray
        (n2, n1) float64, ``image[j, i]`` is the value at (``t1_axis[i]``, ``t2_axis[j]``);
        NaN where the grid has no pair (e.g. T1 < T2).

    Explained in chapter 3, book/03_dictionary.md.
    """
    t1, t2 = _validate_grid(t1_ms, t2_ms)
    values = np.asarray(values)
    if values.shape != t1.shape:
        raise ValueError(f"values must have shape {t1.shape} like t1_ms, got {values.shape}")
    t1_axis, i = np.unique(t1, return_inverse=True)
    t2_axis, j = np.unique(t2, return_inverse=True)
    if np.unique(j * t1_axis.size + i).size != t1.size:
        raise ValueError("t1_ms/t2_ms contain a repeated (T1, T2) pair; grid_image needs each once")
    image = np.full((t2_axis.size, t1_axis.size), np.nan)
    image[j, i] = values
    return t1_axis, t2_axis, image


def _validate_grid(t1_ms, t2_ms) -> tuple[np.ndarray, np.ndarray]:
    t1 = np.asarray(t1_ms, dtype=np.float64)
    t2 = np.asarray(t2_ms, dtype=np.float64)
    for name, arr in (("t1_ms", t1), ("t2_ms", t2)):
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array in ms, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be finite and > 0 ms")
    if t1.shape != t2.shape:
        raise ValueError(f"t1_ms and t2_ms must have the same shape, got {t1.shape} and {t2.shape}")
    return t1, t2


def _validate_b1(b1, n: int) -> np.ndarray | None:
    if b1 is None:
        return None
    b1 = np.asarray(b1, dtype=np.float64)
    if b1.shape != (n,):
        raise ValueError(f"b1 must be None or a ({n},) array matching t1_ms, got shape {b1.shape}")
    if not np.all(np.isfinite(b1)) or np.any(b1 <= 0):
        raise ValueError("b1 must be finite and > 0 (flip-angle scale, 1 = nominal)")
    return b1


# --------------------------------------------------------------------------------------------------
# The dictionary
# --------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Dictionary:
    """Simulated signatures of one sequence on a parameter grid, with their look-up table.

    Attributes
    ----------
    atoms : np.ndarray
        (K, L) float32 raw simulated signatures (proton density 1, not normalised), real-valued
        (the 90° RF-phase convention of :mod:`mrfbook.physics.epg`). Treat as read-only.
    t1_ms, t2_ms : np.ndarray
        (K,) float64 relaxation times of each atom in ms.
    sequence : FispSequence
        The sequence that produced the atoms (L = ``sequence.n_timepoints``).
    b1_scale : np.ndarray or None
        (K,) float64 flip-angle scale of each atom for a 3-parameter dictionary, or None (B1 = 1).

    Explained in chapter 3, book/03_dictionary.md.
    """

    atoms: np.ndarray
    t1_ms: np.ndarray
    t2_ms: np.ndarray
    sequence: FispSequence
    b1_scale: np.ndarray | None = None
    _normalised: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        atoms = np.asarray(self.atoms)
        if atoms.ndim != 2:
            raise ValueError(f"atoms must be a 2-D (K, L) array, got shape {atoms.shape}")
        if np.iscomplexobj(atoms):
            raise ValueError("atoms must be real-valued (float32), got a complex array")
        self.atoms = np.ascontiguousarray(atoms, dtype=np.float32)
        self.t1_ms, self.t2_ms = _validate_grid(self.t1_ms, self.t2_ms)
        k, n_t = self.atoms.shape
        if self.t1_ms.shape != (k,):
            raise ValueError(
                f"t1_ms/t2_ms must have one entry per atom: atoms has K={k} rows, "
                f"t1_ms has shape {self.t1_ms.shape}"
            )
        if not isinstance(self.sequence, FispSequence):
            raise ValueError(f"sequence must be a FispSequence, got {type(self.sequence).__name__}")
        if n_t != self.sequence.n_timepoints:
            raise ValueError(
                f"atoms has L={n_t} time points but sequence.n_timepoints = "
                f"{self.sequence.n_timepoints}"
            )
        self.b1_scale = _validate_b1(self.b1_scale, k)

    # -- shape and size -----------------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        """Number of atoms K."""
        return int(self.atoms.shape[0])

    @property
    def n_timepoints(self) -> int:
        """Number of time points L."""
        return int(self.atoms.shape[1])

    @property
    def nbytes(self) -> int:
        """Memory held by atoms and parameters in bytes (not counting the normalised copy)."""
        total = self.atoms.nbytes + self.t1_ms.nbytes + self.t2_ms.nbytes
        if self.b1_scale is not None:
            total += self.b1_scale.nbytes
        return int(total)

    # -- look-up table --------------------------------------------------------------------------
    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Column names of :attr:`lut`."""
        return ("t1_ms", "t2_ms") if self.b1_scale is None else ("t1_ms", "t2_ms", "b1_scale")

    @property
    def lut(self) -> np.ndarray:
        """(K, 2) float64 look-up table [T1, T2] in ms; (K, 3) [T1, T2, B1] with ``b1_scale``."""
        cols = [self.t1_ms, self.t2_ms] + ([self.b1_scale] if self.b1_scale is not None else [])
        return np.stack(cols, axis=1)

    def nearest(self, t1_ms: float, t2_ms: float) -> int:
        """Index of the atom whose (T1, T2) is closest (Euclidean, in ms) to the given pair.

        Ties go to the lowest index. ``b1_scale`` is ignored (all B1 values compete).
        """
        t1 = _check_positive_scalar("t1_ms", t1_ms)
        t2 = _check_positive_scalar("t2_ms", t2_ms)
        return int(np.argmin((self.t1_ms - t1) ** 2 + (self.t2_ms - t2) ** 2))

    # -- normalisation --------------------------------------------------------------------------
    @property
    def norms(self) -> np.ndarray:
        """(K,) float64 L2 norm of each raw atom (signal units, PD = 1)."""
        return np.sqrt(np.einsum("kl,kl->k", self.atoms, self.atoms, dtype=np.float64))

    def normalised(self) -> np.ndarray:
        """(K, L) float32 atoms scaled to unit L2 norm per row (read-only, computed once).

        A row with zero norm (no signal at all) stays zero.
        """
        if self._normalised is None:
            norms = self.norms
            scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
            out = (self.atoms * scale[:, None].astype(np.float32)).astype(np.float32, copy=False)
            out.flags.writeable = False
            self._normalised = out
        return self._normalised

    # -- storage --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the dictionary to ``path`` as an uncompressed ``.npz`` (atomically).

        The archive holds ``atoms`` (float32), ``t1_ms``, ``t2_ms``, optionally ``b1_scale``, the
        sequence as JSON (``sequence_json``) with its ``sequence_digest``, and ``format_version``
        and ``physics_version``. It is written to a temporary file in the same folder and renamed,
        so readers never see a half-written file. The path is used exactly as given.

        Returns
        -------
        Path
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "atoms": self.atoms,
            "t1_ms": self.t1_ms,
            "t2_ms": self.t2_ms,
            "sequence_json": np.array(json.dumps(self.sequence.to_dict(), sort_keys=True)),
            "sequence_digest": np.array(self.sequence.digest),
            "format_version": np.array(FORMAT_VERSION),
            "physics_version": np.array(PHYSICS_VERSION),
        }
        if self.b1_scale is not None:
            arrays["b1_scale"] = self.b1_scale
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            # mkstemp creates the file 0600; give it the permissions of an ordinary new file.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, expected_sequence: FispSequence | None = None
    ) -> "Dictionary":
        """Read a dictionary written by :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
            The ``.npz`` file.
        expected_sequence : FispSequence, optional
            If given, the stored sequence digest must equal ``expected_sequence.digest``.

        Raises
        ------
        StaleDictionaryError
            The stored sequence differs from ``expected_sequence`` (the message names both
            digests), or the file was written by another physics version.
        ValueError
            The file is not a dictionary of a supported format version, or is inconsistent.
        """
        path = Path(path)
        with np.load(path, allow_pickle=False) as z:
            missing = {"atoms", "t1_ms", "t2_ms", "sequence_json", "sequence_digest",
                       "format_version"} - set(z.files)
            if missing:
                raise ValueError(f"{path} is not an mrfbook dictionary (missing {sorted(missing)})")
            version = int(z["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: format_version {version} is not supported (expected {FORMAT_VERSION})"
                )
            stored_digest = str(z["sequence_digest"])
            if expected_sequence is not None and expected_sequence.digest != stored_digest and \
                    not expected_sequence.matches(json.loads(str(z["sequence_json"]))):  # same up to round-off
                raise StaleDictionaryError(
                    f"{path} was simulated for sequence digest {stored_digest}, but the expected "
                    f"sequence has digest {expected_sequence.digest}; rebuild the dictionary"
                )
            physics = int(z["physics_version"]) if "physics_version" in z.files else None
            if physics != PHYSICS_VERSION:
                raise StaleDictionaryError(
                    f"{path} was simulated with physics_version {physics}, this library has "
                    f"PHYSICS_VERSION {PHYSICS_VERSION}; rebuild the dictionary"
                )
            sequence = FispSequence.from_dict(json.loads(str(z["sequence_json"])))
            if sequence.digest != stored_digest:
                raise ValueError(
                    f"{path}: stored sequence_digest {stored_digest} does not match the stored "
                    f"sequence (digest {sequence.digest}); the file is corrupt"
                )
            b1 = z["b1_scale"] if "b1_scale" in z.files else None
            return cls(
                atoms=z["atoms"], t1_ms=z["t1_ms"], t2_ms=z["t2_ms"], sequence=sequence, b1_scale=b1
            )


# --------------------------------------------------------------------------------------------------
# Building and caching
# --------------------------------------------------------------------------------------------------
def build_dictionary(
    sequence: FispSequence,
    t1_ms: np.ndarray | None = None,
    t2_ms: np.ndarray | None = None,
    *,
    b1: np.ndarray | None = None,
    progress: bool = False,
) -> Dictionary:
    """Simulate the dictionary of ``sequence`` on a (T1, T2[, B1]) grid with the EPG model.

    Parameters
    ----------
    sequence : FispSequence
        The acquisition (L time points).
    t1_ms, t2_ms : np.ndarray, optional
        (K,) relaxation times in ms, finite and > 0, same shape. Give both or neither; neither
        means :func:`paper_grid` (80,100 atoms). T1 >= T2 is *not* required here (grids with
        unphysical pairs are simulated as asked); :func:`paper_grid` leaves those pairs out.
    b1 : np.ndarray, optional
        (K,) flip-angle scale per atom for a 3-parameter dictionary (see :func:`b1_grid`).
    progress : bool
        Show a progress bar during the simulation.

    Returns
    -------
    Dictionary
        Atoms (K, L) float32 from :func:`mrfbook.physics.epg.simulate_fisp`.

    Explained in chapter 3, book/03_dictionary.md.
    """
    from mrfbook.physics.epg import simulate_fisp  # imported late: the EPG module compiles with numba

    if not isinstance(sequence, FispSequence):
        raise ValueError(f"sequence must be a FispSequence, got {type(sequence).__name__}")
    if (t1_ms is None) != (t2_ms is None):
        raise ValueError("t1_ms and t2_ms must be given together (or both left out for the paper grid)")
    if t1_ms is None:
        t1_ms, t2_ms = paper_grid()
    t1, t2 = _validate_grid(t1_ms, t2_ms)
    b1 = _validate_b1(b1, t1.size)
    atoms = simulate_fisp(sequence, t1, t2, b1, dtype=np.float32, progress=progress)
    atoms = np.asarray(atoms)
    expected = (t1.size, sequence.n_timepoints)
    if atoms.shape != expected:  # pragma: no cover - guards against an EPG API change
        raise RuntimeError(f"simulate_fisp returned shape {atoms.shape}, expected {expected}")
    return Dictionary(atoms=atoms, t1_ms=t1, t2_ms=t2, sequence=sequence, b1_scale=b1)


_GRID_NAMES = ("paper", "test")


def _named_grid(grid: str) -> tuple[np.ndarray, np.ndarray]:
    grid = _check_grid_name(grid)
    return paper_grid() if grid == "paper" else shifted_test_grid()


def default_cache_dir() -> Path:
    """``$MRFBOOK_CACHE`` if set, else ``~/.cache/mrfbook``."""
    env = os.environ.get("MRFBOOK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mrfbook"


def _check_grid_name(grid: str) -> str:
    if grid not in _GRID_NAMES:
        raise ValueError(f"grid must be one of {list(_GRID_NAMES)}, got {grid!r}")
    return grid


def cache_path(
    sequence: FispSequence | None = None,
    *,
    grid: GridName = "paper",
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Where :func:`cached_dictionary` keeps the dictionary of ``sequence`` on ``grid``.

    The file name carries a key hashed from the sequence digest, the grid name,
    :data:`PHYSICS_VERSION` and :data:`FORMAT_VERSION`, so a change to any of them gives a new
    file and a stale cache is never read.
    """
    sequence = paper_sequence() if sequence is None else sequence
    grid = _check_grid_name(grid)
    key_src = f"{sequence.digest}|{grid}|physics={PHYSICS_VERSION}|format={FORMAT_VERSION}"
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return folder / f"dictionary-{grid}-{key}.npz"


def cached_dictionary(
    sequence: FispSequence | None = None,
    *,
    grid: GridName = "paper",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Dictionary:
    """The dictionary of ``sequence`` on a named grid, simulated once and then read from disk.

    Parameters
    ----------
    sequence : FispSequence, optional
        Defaults to :func:`mrfbook.physics.sequence.paper_sequence`.
    grid : {"paper", "test"}
        :func:`paper_grid` (training, 80,100 atoms) or :func:`shifted_test_grid` (offset 5 ms).
    cache_dir : str or PathLike, optional
        Folder of the cache; default ``$MRFBOOK_CACHE`` or ``~/.cache/mrfbook``.
    progress : bool
        Show a progress bar if the dictionary has to be simulated.

    Returns
    -------
    Dictionary

    Notes
    -----
    The file is :func:`cache_path`; it is written atomically (temporary file + rename), so
    concurrent callers at worst simulate twice. An unreadable or stale file is replaced (with a
    warning).

    Explained in chapter 3, book/03_dictionary.md.
    """
    sequence = paper_sequence() if sequence is None else sequence
    path = cache_path(sequence, grid=grid, cache_dir=cache_dir)
    if path.exists():
        try:
            return Dictionary.load(path, expected_sequence=sequence)
        except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            warnings.warn(f"ignoring unusable cached dictionary {path}: {exc}", stacklevel=2)
    t1, t2 = _named_grid(grid)
    dictionary = build_dictionary(sequence, t1, t2, progress=progress)
    dictionary.save(path)
    return dictionary
