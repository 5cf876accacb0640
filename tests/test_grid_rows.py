"""Tests for mrfbook.analysis.errors: errors on and between the training grid's T2 rows."""

from __future__ import annotations

import numpy as np
import pytest

from mrfbook.analysis.errors import errors_by_t2_row
from mrfbook.nn.model import load_trained_model
from mrfbook.nn.runs import default_models_dir
from mrfbook.physics.dictionary import build_dictionary, paper_grid
from mrfbook.physics.sequence import paper_sequence


@pytest.fixture(scope="module")
def compact():
    return load_trained_model(default_models_dir() / "compact_resnet" / "model.keras", expected_sequence=paper_sequence())


def test_row_errors_match_a_direct_evaluation(compact):
    seq = paper_sequence()
    t1 = np.arange(6.0, 1000.0, 50.0)
    rows = errors_by_t2_row(compact, seq, np.array([11.0, 16.0, 300.0]), t1, training_t2_ms=np.unique(paper_grid()[1]))
    assert rows.on_training_row.tolist() == [True, False, False]
    assert rows.n.tolist() == [int(np.sum(t1 >= 11)), int(np.sum(t1 >= 16)), int(np.sum(t1 >= 300))]
    for i, t2 in enumerate((11.0, 16.0, 300.0)):
        keep = t1[t1 >= t2]
        pred = compact.predict(build_dictionary(seq, keep, np.full(keep.size, t2)).atoms)
        assert rows.t1_rmse_ms[i] == pytest.approx(np.sqrt(np.mean((pred[:, 0] - keep) ** 2)), rel=1e-5)
        assert rows.t2_rmse_ms[i] == pytest.approx(np.sqrt(np.mean((pred[:, 1] - t2) ** 2)), rel=1e-5)
    # pooling one row gives that row; pooling two weights them by their tissue counts
    assert rows.pooled(True) == pytest.approx((rows.t1_rmse_ms[0], rows.t2_rmse_ms[0]))
    w = rows.n[1:]
    expect_t1 = np.sqrt(np.sum(w * rows.t1_rmse_ms[1:] ** 2) / w.sum())
    assert rows.pooled(False)[0] == pytest.approx(expect_t1)
    assert rows.pooled(False, t2_max_ms=20.0) == pytest.approx((rows.t1_rmse_ms[1], rows.t2_rmse_ms[1]))
    assert rows.pooled(False, t2_min_ms=20.0) == pytest.approx((rows.t1_rmse_ms[2], rows.t2_rmse_ms[2]))
    with pytest.raises(ValueError, match="no on-grid row"):
        rows.pooled(True, t2_max_ms=5.0)


@pytest.mark.parametrize("t2, t1, name", [(np.array([]), np.array([10.0]), "t2_ms"),
                                          (np.array([5.0]), np.array([-1.0]), "t1_ms"),
                                          (np.array([50.0]), np.array([10.0, 20.0]), "T1 value >= it")])
def test_bad_rows_name_the_parameter(compact, t2, t1, name):
    with pytest.raises(ValueError, match=name):
        errors_by_t2_row(compact, paper_sequence(), t2, t1, training_t2_ms=np.array([1.0]))
