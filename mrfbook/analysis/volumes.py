"""T1, T2 and PD maps of image volumes (H, W, D, L) of any depth, in memory or on disk, with Dask.

:func:`map_volume` maps a stack of D slices, each an (H, W, L) image series, by dictionary
matching (:func:`mrfbook.recon.matching.match_maps`) or by a network
(:func:`mrfbook.nn.inference.network_maps`), on a ``dask.distributed`` cluster: a
``LocalCluster`` on this machine by default, or any running cluster given its scheduler address
(or a ``distributed.Client``). The same code runs in both cases.

**Unit of work: the slice.** Each task reads a slab of ``slices_per_task`` slices and maps them
one slice at a time with exactly the call a slice-by-slice loop makes, so the maps equal the
slice-by-slice maps bit for bit, whatever the slab size, the number of workers or the cluster.
Pixels are never split below a slice because the mapping functions are not strictly per pixel:
their resolvability rule (:func:`mrfbook.physics.noise.resolvable`: the noise level is a median
over the pixels of the call, the round-off guard relative to the largest norm of the call) and
their batched BLAS products see the whole call.

**Resolvability rule** (``signal_reference``: over which pixels its noise level and its largest
norm are measured):

* ``"volume"`` (default): a first pass over the volume measures, over the masked pixels of the
  *whole volume*, the largest signature norm and the per-sample noise outside the signals'
  subspace (the dictionary's, or the network's sequence's) -- exactly what one call on all the
  volume's pixels would measure. Pixels at or below the round-off guard (``ZERO_TOL`` = 1e-6 x
  that norm, or 0) are taken out of the slice's mask, and each slice is mapped with the volume's
  noise level (``noise_level=``): a pixel is resolvable iff it is in one call on the whole
  volume. A slice of background noise is thus not mapped as if it were tissue. Costs one more
  read of the volume (norms and residuals only; 16 bytes per masked pixel come back).
* ``"slice"``: the rule is measured per slice, exactly what mapping each slice on its own does.
  One pass.

**Inputs.** A NumPy array (in memory), a ``.npy`` file or ``numpy.memmap`` (C order; read by
explicit file reads inside the workers, so no worker maps the whole file and no array is
pickled), or a Dask array (e.g. ``dask.array.from_zarr``). At most ``2 x workers x threads``
slabs are in flight at any time, so the memory a run needs is a few slabs per worker plus the
maps, whatever the depth D. The maps (three (H, W, D) float64 arrays and a bool one, 25 bytes
per pixel) are gathered in the caller's memory: 32 times less than a float32 volume of L = 200
time points (800 bytes per pixel).

**Workers.** A dictionary is sent once to each worker (``Client.scatter(broadcast=True)``), so
its search index (:func:`mrfbook.recon.matching.search_index`) is built once per worker. A
network is never pickled: each worker loads it from its ``.keras`` path once (cached per path
and file modification time) and checks it against the sequence the caller read from the model's
metadata.

Explained in book/scaling.md.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mrfbook.physics.noise import DEFAULT_MIN_SNR, ZERO_TOL, check_min_snr, noise_level_from_energy
from mrfbook.utils.checks import check_int, check_nonnegative

__all__ = [
    "SIGNAL_REFERENCES",
    "NpyVolume",
    "VolumeMaps",
    "open_volume",
    "volume_cluster",
    "map_volume",
]

#: Allowed values of ``signal_reference`` (see the module docstring).
SIGNAL_REFERENCES = ("volume", "slice")

# Keras models are not safe to call from several threads at once, nor (with numba's
# "workqueue" threading layer) are numba's parallel kernels: one lock per worker process.
_CALL_LOCK = threading.Lock()


class NpyVolume:
    """A C-ordered 4-D array in a ``.npy`` file (or raw file at an offset), read slab by slab.

    Pickles as its path, shape and dtype (a few hundred bytes), so tasks carry no data. Slabs
    ``[:, :, d0:d1, :]`` are read with one ``pread`` per (row, column) -- ``(d1 - d0) x L``
    contiguous values each -- into a fresh array: no memory map stays open, and a worker's
    resident memory counts only what it holds.

    Parameters
    ----------
    path : str or Path
        The file.
    shape : tuple of 4 ints, optional
        (H, W, D, L); with ``dtype`` and ``offset`` for a raw file. Default: read from the
        ``.npy`` header.
    dtype : numpy dtype, optional
        Element type (raw file only).
    offset : int, optional
        Bytes before the first element (raw file only).

    Explained in book/scaling.md.
    """

    def __init__(self, path: str | Path, shape: tuple[int, ...] | None = None, dtype: Any = None,
                 offset: int | None = None) -> None:
        self.path = str(Path(path).resolve())
        if not os.path.isfile(self.path):
            raise ValueError(f"path: file not found: {path}")
        if shape is None:
            try:  # the header only: a memory map that is dropped at once
                header = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise ValueError(f"path: {path} is not a readable .npy file: {exc}") from exc
            shape, dtype, offset = header.shape, header.dtype, int(header.offset)
            fortran = not header.flags.c_contiguous
            del header
            if fortran:
                raise ValueError(f"path: {path} stores its array in Fortran order; save a C-ordered array "
                                 "(np.save(path, np.ascontiguousarray(volume)))")
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.offset = int(offset or 0)
        if self.dtype.hasobject or self.dtype.names:
            raise ValueError(f"path: {path} holds dtype {self.dtype}; expected real or complex numbers")
        expected = self.offset + int(np.prod(self.shape)) * self.dtype.itemsize
        if os.path.getsize(self.path) < expected:
            raise ValueError(f"path: {path} is shorter ({os.path.getsize(self.path)} bytes) than its "
                             f"shape {self.shape} x {self.dtype} needs ({expected} bytes)")

    @classmethod
    def from_memmap(cls, array: np.memmap) -> "NpyVolume":
        """The file behind a C-contiguous ``numpy.memmap`` (e.g. ``np.load(path, mmap_mode="r")``)."""
        if not array.flags.c_contiguous or array.filename is None:
            raise ValueError("volume: a numpy.memmap must be C-contiguous and backed by a file")
        base_offset = int(getattr(array, "offset", 0))
        return cls(array.filename, array.shape, array.dtype, base_offset)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the whole array."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def read(self, d0: int, d1: int) -> np.ndarray:
        """Slices ``d0 <= d < d1``: ndarray (H, W, d1 - d0, L) of the stored dtype."""
        h, w, depth, length = self.shape
        if not 0 <= d0 < d1 <= depth:
            raise ValueError(f"slab [{d0}, {d1}) outside the volume's depth {depth}")
        out = np.empty((h, w, d1 - d0, length), dtype=self.dtype)
        run = (d1 - d0) * length * self.dtype.itemsize
        step = depth * length * self.dtype.itemsize
        start = self.offset + d0 * length * self.dtype.itemsize
        view = memoryview(out.reshape(-1).view(np.uint8))
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for k in range(h * w):
                got = os.preadv(fd, [view[k * run:(k + 1) * run]], start + k * step)
                if got != run:
                    raise ValueError(f"{self.path}: short read at pixel {k} (file truncated?)")
        finally:
            os.close(fd)
        return out

    def __repr__(self) -> str:
        return f"NpyVolume({self.path!r}, shape={self.shape}, dtype={self.dtype})"


@dataclass
class VolumeMaps:
    """Maps of a volume from :func:`map_volume`.

    Attributes
    ----------
    t1_ms, t2_ms : ndarray, (H, W, D), float64
        Relaxation times in ms; 0 where not ``mapped``.
    pd : ndarray, (H, W, D), float64
        Proton density in signal units (the PD of the per-slice method); 0 where not ``mapped``.
    mapped : ndarray, (H, W, D), bool
        Pixels of the mask that were mapped (resolvable; matching: ``valid``; network: and a
        finite estimate).
    n_not_mapped : int
        Pixels of the mask left out (not resolvable, or no finite network estimate).
    reference_norm : float or None
        Largest signature norm among the masked pixels of the volume (``signal_reference =
        "volume"``); None for ``"slice"``.
    seconds : float
        Wall seconds of the mapping (both passes, cluster start excluded).
    reference_seconds : float
        Wall seconds of the first pass (the volume's largest norm and noise level); 0 for ``"slice"``.
    n_workers : int
        Workers of the cluster that ran it.
    resolvable : ndarray, (H, W, D), bool
        Pixels of the mask that pass the resolvability rule.
    noise_levels : ndarray, (D,), float64
        Per-sample noise level the rule used for each slice (signal units): the volume's for
        ``"volume"`` (the same in every slice), each slice's own for ``"slice"`` (0 for a slice
        with no masked pixel).
    floors : ndarray, (D,), float64
        The norm a signature of each slice had to exceed (``min_snr x level x sqrt(L)``).
    min_snr : float
        The rule's factor.
    error_level : float or None
        The external per-sample error level given.

    Explained in book/scaling.md.
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    pd: np.ndarray
    mapped: np.ndarray
    n_not_mapped: int
    reference_norm: float | None
    seconds: float
    reference_seconds: float
    n_workers: int
    resolvable: np.ndarray
    noise_levels: np.ndarray
    floors: np.ndarray
    min_snr: float
    error_level: float | None

    @property
    def n_resolvable(self) -> int:
        """Pixels of the mask that pass the resolvability rule."""
        return int(np.count_nonzero(self.resolvable))


def open_volume(volume: Any, name: str = "volume") -> Any:
    """A volume source for :func:`map_volume`: an ndarray, an :class:`NpyVolume` or a Dask array.

    Parameters
    ----------
    volume : ndarray, numpy.memmap, str or Path (``.npy``), NpyVolume or dask.array.Array
        Shape (H, W, D, L), real or complex numbers. A path or memmap is not read here.
    name : str
        Parameter name for error messages.

    Returns
    -------
    ndarray, NpyVolume or dask.array.Array
        With ``.shape`` (H, W, D, L) and ``.dtype``.

    Explained in book/scaling.md.
    """
    try:
        if isinstance(volume, (str, Path)):
            if Path(volume).suffix.lower() != ".npy":
                raise ValueError(f"a volume file must be a .npy file, got {volume}")
            source = NpyVolume(volume)
        elif isinstance(volume, np.memmap):
            source = NpyVolume.from_memmap(volume)
        else:
            source = None
    except ValueError as exc:
        raise ValueError(f"{name}: {str(exc).removeprefix('path: ').removeprefix('volume: ')}") from exc
    if source is None:
        dask_array = type(volume).__module__.startswith("dask.") and hasattr(volume, "dask")
        if not (isinstance(volume, (NpyVolume, np.ndarray)) or dask_array):
            raise ValueError(f"{name}: expected an ndarray, a .npy path, a numpy.memmap, an NpyVolume or a "
                             f"dask array, got {type(volume).__name__}")
        source = volume
    dtype = np.dtype(source.dtype)
    if dtype.kind not in "iufc":
        raise ValueError(f"{name}: dtype {dtype} is not allowed; expected real or complex numbers")
    if len(source.shape) != 4 or min(source.shape) < 1:
        raise ValueError(f"{name}: expected a non-empty 4-D volume of shape (H, W, D, L), got shape {tuple(source.shape)}")
    return source


def volume_cluster(n_workers: int = 2, *, threads_per_worker: int = 1, memory_limit: str | int | None = "auto",
                   processes: bool = True, scheduler: str | None = None):
    """A ``distributed.Client``: on a new ``LocalCluster``, or connected to ``scheduler``.

    Parameters
    ----------
    n_workers : int
        Local workers, >= 1 (ignored with ``scheduler``).
    threads_per_worker : int
        Threads per local worker, >= 1. Each worker's numba and BLAS threads are set to this
        number too (worker processes only), so workers x threads should not exceed the cores.
    memory_limit : str, int or None
        Per local worker: bytes, a string such as ``"1GiB"``, ``"auto"`` (the machine's memory /
        workers) or None (no limit). Dask spills, pauses and, above 95 %, restarts a worker.
    processes : bool
        Workers in separate processes (default) or as threads of this process.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``): connect to that cluster instead.

    Returns
    -------
    distributed.Client
        Close it (and its cluster: ``client.cluster.close()`` when local) when done, or use it as
        a context manager.

    Explained in book/scaling.md.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ValueError(f"scheduler must be a non-empty address string, got {scheduler!r}")
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"scheduler: cannot connect to {scheduler}: {exc}") from exc
    n_workers = check_int("n_workers", n_workers, 1)
    threads_per_worker = check_int("threads_per_worker", threads_per_worker, 1)
    kwargs: dict[str, Any] = {}
    if processes:
        threads = str(threads_per_worker)
        kwargs["env"] = {"NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                         "MKL_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads,
                         "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                               processes=processes, dashboard_address=None, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"memory_limit: cannot start workers with memory_limit={memory_limit!r}: {exc}") from exc
    return Client(cluster)


# ----------------------------------------------------------------------------- worker side


@lru_cache(maxsize=4)
def _worker_model(path: str, mtime_ns: int, digest: str | None):
    """The network at ``path``, loaded once per worker process (per file version)."""
    from mrfbook.nn.model import load_network
    from mrfbook.physics.sequence import FispSequence

    trained = load_network(path)
    if digest is not None and trained.sequence_digest != digest:
        raise ValueError(f"model: {path} changed on disk: its sequence digest is now {trained.sequence_digest}")
    sequence = FispSequence.from_dict(trained.sequence) if trained.sequence is not None else None
    return trained, sequence


def _read(source: Any, d0: int, d1: int) -> np.ndarray:
    if isinstance(source, NpyVolume):
        return source.read(d0, d1)
    return np.asarray(source)  # a slab already sent or computed for this task


def _check_finite(slab: np.ndarray, d0: int, name: str) -> None:
    bad = ~np.isfinite(slab)
    if bad.any():
        h, w, d, t = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: {int(bad.sum()):,} values of slices {d0}..{d0 + slab.shape[2] - 1} are NaN or "
                         f"infinite (first at index {(h, w, d0 + d, t)}); all values must be finite")


def _norms(stack: np.ndarray) -> np.ndarray:
    """(H, W) float64 signature norms, computed as the resolvability rule computes them."""
    from mrfbook.physics.noise import signature_norms

    h, w, length = stack.shape
    return signature_norms(stack.reshape(h * w, length)).reshape(h, w)


def _basis(method: str, engine: Any) -> np.ndarray:
    """The subspace the rule measures the noise outside of: the dictionary's or the sequence's."""
    from mrfbook.physics.noise import dictionary_subspace, sequence_subspace

    if method == "matching":
        return dictionary_subspace(engine)
    _, sequence = _worker_model(*engine)
    if sequence is None:
        raise ValueError("model: the network records no training sequence (needed for the resolvability rule)")
    return sequence_subspace(sequence)


def _slab_statistics(source: Any, d0: int, d1: int, mask: np.ndarray, method: str, engine: Any, measure: bool,
                     name: str) -> tuple[int, list[np.ndarray], list[np.ndarray], int]:
    """Norms and energies outside the subspace of the masked pixels of each slice, and the subspace rank."""
    from mrfbook.physics.noise import outside_energy

    slab = _read(source, d0, d1)
    _check_finite(slab, d0, name)
    basis = _basis(method, engine) if measure else None
    norms, energies = [], []
    for k in range(d1 - d0):
        stack = slab[:, :, k, :]
        rows = stack.reshape(-1, stack.shape[-1])[mask[:, :, k].ravel()]
        norms.append(_norms(stack)[mask[:, :, k]])
        energies.append(outside_energy(rows, basis) if measure else np.zeros(0))
    return d0, norms, energies, 0 if basis is None else int(basis.shape[1])


def _map_slice(stack: np.ndarray, mask: np.ndarray, method: str, engine: Any, options: dict,
               noise_level: float | None):
    """(t1, t2, pd, mapped, resolvable, noise level, floor) of one slice: the slice-by-slice call itself."""
    h, w = mask.shape
    if not mask.any():  # nothing to map; the level is the given one (the volume's), else 0
        zeros = np.zeros((h, w))
        empty = np.zeros((h, w), dtype=bool)
        level = noise_level or 0.0
        floor = options["min_snr"] * max(level, options["error_level"] or 0.0) * float(np.sqrt(stack.shape[-1]))
        return zeros, zeros.copy(), zeros.copy(), empty, empty.copy(), level, floor
    rule = {"min_snr": options["min_snr"], "error_level": options["error_level"], "noise_level": noise_level}
    if method == "matching":
        from mrfbook.recon.matching import match_maps

        with _CALL_LOCK if _numba_needs_lock() else nullcontext():
            m = match_maps(stack, engine, mask=mask, rank=options["rank"], chunk_size=options["chunk_size"], **rule)
        return m.t1_ms, m.t2_ms, m.pd, m.valid, m.resolvable, m.resolvability.noise_level, m.resolvability.floor
    from mrfbook.nn.inference import network_maps

    trained, sequence = _worker_model(*engine)
    with _CALL_LOCK:
        m = network_maps(trained, stack, mask, sequence=sequence, batch_size=options["batch_size"], pd=True, **rule)
    return m.t1_ms, m.t2_ms, m.pd, m.mapped, m.resolvable, m.resolvability.noise_level, m.resolvability.floor


def _map_slab(source: Any, d0: int, d1: int, mask: np.ndarray, reference: float | None, noise_level: float | None,
              method: str, engine: Any, options: dict) -> tuple:
    """Map slices ``d0 <= d < d1`` one by one; returns (d0, t1, t2, pd, mapped, resolvable, levels, floors)."""
    slab = _read(source, d0, d1)
    _check_finite(slab, d0, options["name"])
    h, w, depth = slab.shape[0], slab.shape[1], d1 - d0
    t1, t2, pd = (np.zeros((h, w, depth)) for _ in range(3))
    mapped = np.zeros((h, w, depth), dtype=bool)
    resolvable = np.zeros((h, w, depth), dtype=bool)
    levels, floors = np.zeros(depth), np.zeros(depth)
    for k in range(depth):
        stack = slab[:, :, k, :]
        keep = mask[:, :, k]
        if reference is not None:  # the volume's round-off guard
            norms = _norms(stack)
            keep = keep & (norms > ZERO_TOL * reference) & (norms > 0)
        (t1[:, :, k], t2[:, :, k], pd[:, :, k], mapped[:, :, k], resolvable[:, :, k], levels[k],
         floors[k]) = _map_slice(stack, keep, method, engine, options, noise_level)
    return d0, t1, t2, pd, mapped, resolvable, levels, floors


# ----------------------------------------------------------------------------- driver


def _numba_needs_lock() -> bool:
    """True unless numba's parallel layer is known to be thread-safe (omp, tbb)."""
    try:
        import numba

        return numba.threading_layer() not in ("omp", "tbb")
    except (ImportError, ValueError):  # ValueError: no parallel function has run yet
        return True


def _run_windowed(client: Any, tasks, window: int, on_result) -> None:
    """Submit ``client.submit(*task)`` for each task, at most ``window`` at once; feed results in order of completion."""
    from distributed import as_completed

    pending = iter(tasks)
    running = as_completed()
    for task in (next(pending, None) for _ in range(window)):
        if task is not None:
            running.add(client.submit(*task, pure=False))
    for future in running:
        try:
            result = future.result()
        except BaseException:
            for other in list(running.futures):
                other.cancel()
            raise
        finally:
            future.release()
        on_result(result)
        task = next(pending, None)
        if task is not None:
            running.add(client.submit(*task, pure=False))


def map_volume(
    volume: Any,
    *,
    dictionary: Any = None,
    model: str | Path | None = None,
    mask: np.ndarray | None = None,
    client: Any = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    processes: bool = True,
    scheduler: str | None = None,
    slices_per_task: int = 1,
    signal_reference: str = "volume",
    min_snr: float = DEFAULT_MIN_SNR,
    error_level: float | None = None,
    rank: Any = "default",
    chunk_size: int = 4096,
    batch_size: int = 4096,
    progress: Any = None,
    name: str = "volume",
) -> VolumeMaps:
    """T1, T2 and PD maps of an (H, W, D, L) volume, slice by slice on a Dask cluster.

    See the module docstring for the unit of work, the resolvability rule and the memory a run
    needs. Exactly one of ``dictionary`` and ``model``.

    Parameters
    ----------
    volume : ndarray, numpy.memmap, str or Path (``.npy``), NpyVolume or dask.array.Array
        (H, W, D, L), real or complex, finite (checked slab by slab in the workers).
    dictionary : mrfbook.physics.dictionary.Dictionary, optional
        Map by matching (:func:`mrfbook.recon.matching.match_maps`); L = its time points.
    model : str or Path, optional
        A ``.keras`` file from ``mrfbook train``: map with :func:`mrfbook.nn.inference.network_maps`
        (``pd=True``, the sequence the model records). Workers load it from this path.
    mask : ndarray, (H, W) or (H, W, D), bool, optional
        Pixels to map (one (H, W) mask for every slice, or one per slice); default every pixel.
    client : distributed.Client, optional
        Run on this client's cluster (left open). Default: a new cluster from
        :func:`volume_cluster` with ``n_workers``, ``threads_per_worker``, ``memory_limit``,
        ``processes`` and ``scheduler``, closed at the end.
    n_workers, threads_per_worker, memory_limit, processes, scheduler
        See :func:`volume_cluster`.
    slices_per_task : int
        Slices per task (>= 1): memory per task ~ ``slices_per_task x H x W x L`` values plus
        the per-slice mapping's own. Does not change the maps.
    signal_reference : {"volume", "slice"}
        Where the resolvability rule measures its noise level and largest norm: over the
        volume (default) or each slice.
    min_snr : float
        The rule's factor (:func:`mrfbook.physics.noise.resolvable`), finite, >= 0; default 3, 0
        keeps only the round-off guard.
    error_level : float, optional
        External per-sample error level of the volume (signal units, >= 0), see the rule.
    rank : int, None or "default"
        Matching's SVD rank (``"default"``: :data:`mrfbook.recon.matching.DEFAULT_RANK`).
    chunk_size : int
        Matching's signatures per block (>= 1).
    batch_size : int
        Network's signatures per forward pass (>= 1).
    progress : callable, optional
        Called as ``progress(done_slices, total_slices)`` after each slab.
    name : str
        Name of ``volume`` in error messages (e.g. ``"--images"``).

    Returns
    -------
    VolumeMaps
        (H, W, D) maps, equal to mapping each slice with the per-slice function: with
        ``"slice"`` and the mask; with ``"volume"`` and the mask less the pixels under the
        volume's round-off guard, and the volume's ``noise_level``.

    Explained in book/scaling.md.
    """
    source = open_volume(volume, name)
    h, w, depth, length = (int(n) for n in source.shape)
    if (dictionary is None) == (model is None):
        raise ValueError("give exactly one of dictionary= (matching) and model= (a .keras network path)")
    if signal_reference not in SIGNAL_REFERENCES:
        raise ValueError(f"signal_reference must be one of {SIGNAL_REFERENCES}, got {signal_reference!r}")
    slices_per_task = check_int("slices_per_task", slices_per_task, 1)
    min_snr = check_min_snr(min_snr)
    if error_level is not None:
        error_level = check_nonnegative("error_level", error_level)
    if mask is None:
        mask3 = np.ones((h, w, depth), dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape not in ((h, w), (h, w, depth)):
            raise ValueError(f"mask must be a bool array of shape (H, W) = {(h, w)} or (H, W, D) = {(h, w, depth)}, "
                             f"got {mask.dtype} {mask.shape}")
        mask3 = np.broadcast_to(mask[:, :, None], (h, w, depth)) if mask.ndim == 2 else mask
    if dictionary is not None:
        from mrfbook.recon.matching import DEFAULT_RANK, search_index

        method = "matching"
        n_t = int(np.asarray(dictionary.atoms).shape[1])
        if n_t != length:
            raise ValueError(f"{name}: the volume has L = {length} time points but the dictionary has {n_t}")
        rank = DEFAULT_RANK if rank == "default" else rank
        search_index(dictionary, rank)  # checks the dictionary and rank here, not in a worker
        options = {"rank": rank, "chunk_size": check_int("chunk_size", chunk_size, 1), "name": name}
        if min_snr > 0:
            from mrfbook.physics.noise import dictionary_subspace

            dictionary_subspace(dictionary)  # checked and computed once here
    else:
        from mrfbook.nn.model import read_network_metadata

        method = "network"
        path = Path(model).resolve()
        if not path.is_file() or path.suffix.lower() not in (".keras", ".npz"):
            raise ValueError(f"model must be the path of an existing network file (.keras or a refined network's "
                             f".npz), got {model}")
        meta = read_network_metadata(path)
        if meta.get("sequence") is None:
            raise ValueError(f"model: {path} records no training sequence (needed for the sign and PD)")
        from mrfbook.physics.sequence import FispSequence

        n_t = FispSequence.from_dict(meta["sequence"]).n_timepoints
        if n_t != length:
            raise ValueError(f"{name}: the volume has L = {length} time points but the model's sequence has {n_t}")
        engine = (str(path), path.stat().st_mtime_ns, meta.get("sequence_digest"))
        options = {"batch_size": check_int("batch_size", batch_size, 1), "name": name}
    options.update(min_snr=min_snr, error_level=error_level)

    own = client is None
    if own:
        client = volume_cluster(n_workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                                processes=processes, scheduler=scheduler)
    try:
        clock = time.perf_counter()
        info = client.scheduler_info()
        workers = info.get("workers", {})
        slots = max(1, sum(int(v.get("nthreads", 1)) for v in workers.values()))
        window = 2 * slots
        if method == "matching":
            engine = client.scatter(dictionary, broadcast=True, hash=False)
        bounds = [(d0, min(d0 + slices_per_task, depth)) for d0 in range(0, depth, slices_per_task)]

        def slab_source(d0: int, d1: int):
            if isinstance(source, NpyVolume):
                return source
            if isinstance(source, np.ndarray):
                return client.scatter(np.ascontiguousarray(source[:, :, d0:d1, :]), hash=False)
            return client.compute(source[:, :, d0:d1, :])

        reference = volume_noise = None
        if signal_reference == "volume":
            measure = min_snr > 0
            norms: list[np.ndarray] = [np.zeros(0)] * depth
            energies: list[np.ndarray] = [np.zeros(0)] * depth
            ranks = [0]

            def keep_statistics(result):
                d0, n, e, k = result
                norms[d0:d0 + len(n)] = n
                energies[d0:d0 + len(e)] = e
                ranks[0] = max(ranks[0], k)

            _run_windowed(client, _lazy_tasks(bounds, lambda d0, d1: (
                _slab_statistics, slab_source(d0, d1), d0, d1, np.ascontiguousarray(mask3[:, :, d0:d1]), method, engine,
                measure, name)), window, keep_statistics)
            all_norms = np.concatenate(norms)
            reference = float(all_norms.max()) if all_norms.size else 0.0
            if measure:
                signal = (all_norms > ZERO_TOL * reference) & (all_norms > 0)
                volume_noise = noise_level_from_energy(np.concatenate(energies)[signal], length, ranks[0],
                                                       complex_data=np.dtype(source.dtype).kind == "c")
        reference_seconds = time.perf_counter() - clock if signal_reference == "volume" else 0.0

        t1, t2, pd = (np.zeros((h, w, depth)) for _ in range(3))
        mapped = np.zeros((h, w, depth), dtype=bool)
        resolvable = np.zeros((h, w, depth), dtype=bool)
        levels, floors = np.zeros(depth), np.zeros(depth)
        done = [0]

        def keep(result):
            d0, a, b, c, m, r, lv, fl = result
            d1 = d0 + a.shape[2]
            t1[:, :, d0:d1], t2[:, :, d0:d1], pd[:, :, d0:d1], mapped[:, :, d0:d1] = a, b, c, m
            resolvable[:, :, d0:d1], levels[d0:d1], floors[d0:d1] = r, lv, fl
            done[0] += d1 - d0
            if progress is not None:
                progress(done[0], depth)

        _run_windowed(client, _lazy_tasks(bounds, lambda d0, d1: (
            _map_slab, slab_source(d0, d1), d0, d1, np.ascontiguousarray(mask3[:, :, d0:d1]), reference, volume_noise,
            method, engine, options)), window, keep)
        n_workers_used = len(workers)
        seconds = time.perf_counter() - clock
    finally:
        if own:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
    return VolumeMaps(t1, t2, pd, mapped, int(mask3.sum() - mapped.sum()), reference, seconds, reference_seconds,
                      n_workers_used, resolvable, levels, floors, min_snr, error_level)


def _lazy_tasks(bounds: list[tuple[int, int]], make):
    """Tasks built only when submitted (slabs of in-memory or Dask volumes are cut then)."""
    for d0, d1 in bounds:
        yield make(d0, d1)
