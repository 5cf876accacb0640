"""Tests for mrfbook.metrics against hand-computed numbers."""

import math

import numpy as np
import pytest

from mrfbook import metrics

REF = np.array([1.0, 2.0, 3.0, 4.0])
EST = np.array([1.0, 2.0, 3.0, 6.0])  # one error of 2 -> SS_res = 4


def test_rmse_nrmse():
    assert metrics.rmse(EST, REF) == pytest.approx(1.0)  # sqrt(4/4)
    assert metrics.nrmse(EST, REF) == pytest.approx(1.0 / math.sqrt(30 / 4))


def test_r2():
    # SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert metrics.r2(EST, REF) == pytest.approx(1 - 4 / 5)
    assert metrics.r2(REF, REF) == 1.0
    assert metrics.r2(np.full(4, REF.mean()), REF) == pytest.approx(0.0)


def test_snr_definitions():
    assert metrics.snr_db(EST, REF) == pytest.approx(20 * math.log10(math.sqrt(7.5) / 1.0))
    assert metrics.paper_snr_db(EST, REF) == pytest.approx(20 * math.log10(math.sqrt(50 / 4)))
    assert metrics.psnr_db(EST, REF, peak=5000) == pytest.approx(20 * math.log10(5000))
    assert metrics.snr_db(REF, REF) == math.inf


def test_mask():
    mask = np.array([True, True, False, True])
    assert metrics.rmse(EST, REF, mask) == pytest.approx(math.sqrt(4 / 3))
    # paper_snr without a mask counts background zeros: adding zeros changes RMS but not RMSE sum
    ref = np.r_[REF, 0, 0, 0, 0]
    est = np.r_[EST, 0, 0, 0, 0]
    m = ref > 0
    assert metrics.rmse(est, ref) == pytest.approx(math.sqrt(4 / 8))
    assert metrics.snr_db(est, ref, m) == pytest.approx(metrics.snr_db(EST, REF))


def test_summarise_keys():
    s = metrics.summarise(EST.reshape(2, 2), REF.reshape(2, 2), np.ones((2, 2), bool), peak=10.0)
    assert set(s) == {"rmse", "nrmse", "r2", "snr_db", "psnr_db", "paper_snr_db", "paper_rmse"}
    assert s["psnr_db"] == pytest.approx(20.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        metrics.rmse(EST[:3], REF)
    with pytest.raises(ValueError, match="mask"):
        metrics.rmse(EST, REF, np.array([1, 0, 1, 1]))
    with pytest.raises(ValueError, match="mask"):
        metrics.rmse(EST, REF, np.zeros(4, bool))
    with pytest.raises(ValueError, match="finite"):
        metrics.rmse(np.r_[EST[:3], np.nan], REF)
    with pytest.raises(ValueError, match="peak"):
        metrics.psnr_db(EST, REF, peak=0)
    with pytest.raises(ValueError, match="constant"):
        metrics.r2(EST, np.ones(4))


def test_parameter_scores_by_hand():
    # T1: errors (0, 0, 0, 2) as above; T2: errors (1, -1, 1, -1) around 10, 20, 30, 40
    t2 = np.array([10.0, 20.0, 30.0, 40.0])
    est = np.stack([EST, t2 + np.array([1.0, -1.0, 1.0, -1.0])], axis=1).astype(np.float32)
    s = metrics.parameter_scores(est, REF, t2)
    assert list(s) == ["t1_rmse_ms", "t1_mae_ms", "t1_max_abs_ms", "t1_r2",
                       "t2_rmse_ms", "t2_mae_ms", "t2_max_abs_ms", "t2_r2"]
    assert all(type(v) is float for v in s.values())
    assert s["t1_rmse_ms"] == pytest.approx(1.0) and s["t1_mae_ms"] == pytest.approx(0.5)
    assert s["t1_max_abs_ms"] == 2.0 and s["t1_r2"] == pytest.approx(1 - 4 / 5)
    assert s["t2_rmse_ms"] == s["t2_mae_ms"] == s["t2_max_abs_ms"] == 1.0
    assert s["t2_r2"] == pytest.approx(1 - 4 / 500)
    # the same numbers as the single metrics, a subset in the asked order, and a mask
    assert s["t1_rmse_ms"] == metrics.rmse(est[:, 0], REF) and s["t2_r2"] == metrics.r2(est[:, 1], t2)
    assert list(metrics.parameter_scores(est, REF, t2, scores=("r2", "rmse"))) == [
        "t1_r2", "t1_rmse_ms", "t2_r2", "t2_rmse_ms"]
    masked = metrics.parameter_scores(est, REF, t2, np.array([True, True, True, False]), scores=("max_abs",))
    assert masked == {"t1_max_abs_ms": 0.0, "t2_max_abs_ms": 1.0}


def test_parameter_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="estimate_ms"):
        metrics.parameter_scores(np.zeros((4, 3)), REF, REF)
    with pytest.raises(ValueError, match="t1_ms and t2_ms"):
        metrics.parameter_scores(np.zeros((4, 2)), REF, REF[:3])
    with pytest.raises(ValueError, match="scores"):
        metrics.parameter_scores(np.zeros((4, 2)), REF, REF, scores=("bias",))
    with pytest.raises(ValueError, match="finite"):
        metrics.parameter_scores(np.full((4, 2), np.nan), REF, REF)
