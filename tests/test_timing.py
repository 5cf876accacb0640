"""Tests for mrfbook.utils.timing: the stopwatch and repeated timings."""

import time

import pytest

from mrfbook.utils.timing import Stopwatch, Timings, median_time, time_calls


def test_stopwatch_measures_a_block():
    with Stopwatch() as sw:
        time.sleep(0.02)
    assert 0.015 < sw.seconds < 1.0
    assert 0.0 <= sw.cpu_seconds < sw.seconds  # sleeping costs no CPU
    manual = Stopwatch().start()
    assert manual.seconds == 0.0
    assert manual.stop() == manual.seconds >= 0.0


def test_stopwatch_stop_before_start_raises():
    with pytest.raises(ValueError, match="start"):
        Stopwatch().stop()


def test_time_calls_and_median_time():
    calls = []
    t = time_calls(lambda: calls.append(1) or len(calls), 3)
    assert isinstance(t, Timings) and len(t.seconds) == len(t.cpu_seconds) == 3
    assert t.result == 3 and len(calls) == 3
    assert t.best <= t.median and t.median_cpu >= 0.0
    med, out = median_time(lambda: "x", 2)
    assert med >= 0.0 and out == "x"


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True, None])
def test_repeats_must_be_a_positive_integer(repeats):
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        time_calls(lambda: None, repeats)
