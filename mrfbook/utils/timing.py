"""Wall-clock and CPU timing, one convention for the library, the benchmarks and the chapters.

Wall seconds come from :func:`time.perf_counter`, CPU seconds from :func:`time.process_time`
(all threads of this process, so CPU / wall above 1 means the work ran on several cores).
Warm-up calls (numba compilation, graph tracing, FFT plans) are the caller's business: time
only what should be counted.

- :class:`Stopwatch`: ``with Stopwatch() as sw: ...`` then ``sw.seconds`` (and ``sw.cpu_seconds``).
- :func:`time_calls`: ``repeats`` calls of a function, every wall and CPU time kept.
- :func:`median_time`: the median wall time of ``repeats`` calls and the last result.

Explained in chapter 3, book/03_dictionary.md.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from mrfbook.utils.checks import check_int

__all__ = ["Stopwatch", "Timings", "time_calls", "median_time"]


class Stopwatch:
    """Wall and CPU seconds of a block of code.

    Use as a context manager (``with Stopwatch() as sw: work()``, then ``sw.seconds``) or with
    :meth:`start` and :meth:`stop` around a loop. Before it stops, ``seconds`` and
    ``cpu_seconds`` are 0.

    Attributes
    ----------
    seconds : float
        Wall-clock seconds between start and stop (:func:`time.perf_counter`).
    cpu_seconds : float
        CPU seconds of this process over the same span (:func:`time.process_time`).

    Explained in chapter 3, book/03_dictionary.md.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._wall0: float | None = None
        self._cpu0 = 0.0

    def start(self) -> "Stopwatch":
        """Start (or restart) the clocks; returns ``self``."""
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def stop(self) -> float:
        """Stop the clocks, store :attr:`seconds` and :attr:`cpu_seconds`, return the wall seconds."""
        wall = time.perf_counter()
        cpu = time.process_time()
        if self._wall0 is None:
            raise ValueError("Stopwatch.stop() called before start()")
        self.seconds = wall - self._wall0
        self.cpu_seconds = cpu - self._cpu0
        return self.seconds

    @property
    def elapsed(self) -> float:
        """Wall seconds since :meth:`start`, while running (the clocks keep going)."""
        if self._wall0 is None:
            raise ValueError("Stopwatch.elapsed read before start()")
        return time.perf_counter() - self._wall0

    def __enter__(self) -> "Stopwatch":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass(frozen=True)
class Timings:
    """Wall and CPU seconds of repeated calls (:func:`time_calls`).

    Attributes
    ----------
    seconds : tuple of float
        Wall seconds of each call, in call order.
    cpu_seconds : tuple of float
        CPU seconds of each call.
    result : object
        What the last call returned.

    Explained in chapter 3, book/03_dictionary.md.
    """

    seconds: tuple[float, ...]
    cpu_seconds: tuple[float, ...]
    result: Any = None

    @property
    def median(self) -> float:
        """Median wall seconds."""
        return float(statistics.median(self.seconds))

    @property
    def best(self) -> float:
        """Fastest wall seconds."""
        return float(min(self.seconds))

    @property
    def median_cpu(self) -> float:
        """Median CPU seconds."""
        return float(statistics.median(self.cpu_seconds))


def time_calls(fn: Callable[[], Any], repeats: int) -> Timings:
    """Call ``fn()`` ``repeats`` times and time each call.

    Parameters
    ----------
    fn : callable
        Called without arguments.
    repeats : int
        Number of timed calls, >= 1 (no untimed warm-up call is made).

    Returns
    -------
    Timings
        Wall and CPU seconds of every call and the last call's result.

    Explained in chapter 3, book/03_dictionary.md.
    """
    repeats = check_int("repeats", repeats, 1)
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        with Stopwatch() as sw:
            out = fn()
        walls.append(sw.seconds)
        cpus.append(sw.cpu_seconds)
    return Timings(tuple(walls), tuple(cpus), out)


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall seconds of ``repeats`` calls of ``fn()`` (>= 1) and the last call's result.

    Explained in chapter 3, book/03_dictionary.md.
    """
    t = time_calls(fn, repeats)
    return t.median, t.result
