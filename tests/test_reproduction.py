"""Tests for mrfbook.report.reproduction: the paper-vs-book table built from a hand-made summary.

The summary mimics :func:`mrfbook.analysis.experiments.summarise_reproduction` (same keys); its values are invented so
that each row's number can be traced back to one entry.
"""

import copy
import re

import numpy as np
import pytest

from mrfbook.analysis.experiments import SUMMARY_FORMAT, storage_comparison
from mrfbook.nn.runs import network_configs
from mrfbook.paper import PAPER, paper_value
from mrfbook.report.reproduction import (
    GROUPS,
    VERDICT_RULES,
    claims_by_setting,
    covered_paper_keys,
    paper_number_keys,
    proposed_network,
    qualitative_claims,
    reproduction_rows,
)


def _map_score(t1_snr, t2_snr, t1_rmse, t2_rmse, restore_s, map_s):
    return {"t1_rmse_ms": t1_rmse, "t1_snr_db": t1_snr, "t1_paper_snr_db": t1_snr + 1.25,
            "t1_paper_rmse_ms": t1_rmse / 2, "t2_rmse_ms": t2_rmse, "t2_snr_db": t2_snr,
            "t2_paper_snr_db": t2_snr + 0.75, "t2_paper_rmse_ms": t2_rmse / 2,
            "t1_snr_resolvable_db": t1_snr + 2.0, "t2_snr_resolvable_db": t2_snr + 3.0,
            "t1_rmse_resolvable_ms": t1_rmse / 3, "t2_rmse_resolvable_ms": t2_rmse / 3,
            "n_tissue": 9_876, "n_resolvable": 9_500,
            "seconds": restore_s + map_s, "restore_s": restore_s, "map_s": map_s}


def make_summary(nets=("paper network", "compact network")):
    """A complete summary with the structure summarise_reproduction() returns."""
    networks = {n: {"folder": n.replace(" network", "_resnet"), "weights": 3_841_122 if n == "paper network"
                    else 173_618, "file_mb": 46.2, "epochs": 50, "seconds_per_epoch": 95.5,
                    "train_device": "cpu", "train_cpu": "Test CPU", "train_backend": "tensorflow",
                    "trained": "2026-11-25", "recorded_test": {}} for n in nets}
    syn_scores = {"matching": {"t1_rmse_ms": 2.887, "t2_rmse_ms": 2.886, "t1_r2": 0.9999950, "t2_r2": 0.9999830,
                               "t1_max_abs_ms": 5.0, "t2_max_abs_ms": 5.0}}
    for i, n in enumerate(nets):
        syn_scores[n] = {"t1_rmse_ms": 1.3 + i, "t2_rmse_ms": 0.8 + i, "t1_r2": 0.99999912 - i * 1e-7,
                         "t2_r2": 0.99999871 - i * 1e-7, "t1_max_abs_ms": 9.0, "t2_max_abs_ms": 7.0}
    full_scores = {"matching": _map_score(30.0, 22.0, 20.0, 3.1, 0.0, 0.4)}
    under_scores = {"zero-filled + matching": _map_score(12.3, 7.4, 300.0, 30.0, 0.01, 0.5),
                    "FLOR": _map_score(28.7, 20.1, 60.0, 6.0, 40.0, 0.45),
                    "low-rank + matching": _map_score(29.0, 20.5, 55.0, 5.5, 12.0, 0.42)}
    for i, n in enumerate(nets):
        full_scores[n] = _map_score(33.0 + i, 27.5 + i, 15.0, 1.7 + i, 0.0, 1.2 + i)
        under_scores[f"low-rank + {n}"] = _map_score(29.6 + i, 18.4 + i, 50.0, 7.0, 12.0, 1.1 + i)
    return {
        "format": SUMMARY_FORMAT, "signature": "0" * 64, "created": "2026-11-25T15:00:00+00:00",
        "machine": {"cpu": "Test CPU", "backend": "tensorflow", "device": "cpu"},
        "networks": networks,
        "synthetic": {"n": 79_800, "scores": syn_scores,
                      "seconds": {"matching": 2.5, **{n: 20.0 + 10 * i for i, n in enumerate(nets)}},
                      "baseline_seconds": 250.0, "baseline_n": 16_384, "baseline_agrees": 1.0},
        "full_sampling": {"n_tissue": 9_876, "scores": full_scores},
        "undersampled": {"sampling_fraction": 0.1504, "lowrank_iterations": 40, "flor_iterations": 30,
                         "pattern": "lines", "lam_rule": "data-chosen", "lam_lowrank": 1.2, "lam_flor": 0.9,
                         "scores": under_scores},
        "settings": [
            {"phantom": "brain", "pattern": "lines", "lam": "auto", "label": "brain, lines, data-chosen weight",
             "sampling_fraction": 0.1504, "lowrank_iterations": 40, "flor_iterations": 30, "lam_rule": "data-chosen",
             "lam_lowrank": 1.2, "lam_flor": 0.9, "scores": under_scores},
            {"phantom": "head", "pattern": "points", "lam": "authors", "label": "head, points, authors' weight",
             "sampling_fraction": 0.15, "lowrank_iterations": 90, "flor_iterations": 30, "lam_rule": "authors'",
             "lam_lowrank": 0.57, "lam_flor": 0.57,
             "scores": {**under_scores, "FLOR": _map_score(40.0, 30.0, 60.0, 6.0, 40.0, 0.45)}},
        ],
        "storage": storage_comparison(80_100, 200, network_configs({})),
    }


def _get(d, *keys):
    for k in keys:
        d = d[k]
    return d


@pytest.fixture(scope="module")
def summary():
    return make_summary()


@pytest.fixture(scope="module")
def rows(summary):
    return reproduction_rows(summary)


def _row(rows, *key):
    found = [r for r in rows if tuple(key) in r["keys"]]
    assert len(found) == 1, key
    return found[0]


# -- coverage ----------------------------------------------------------------------------------------
def test_paper_number_keys_lists_every_numeric_leaf():
    keys = paper_number_keys()
    assert len(keys) == len(set(keys)) == 27
    assert ("synthetic", "t1_rmse_ms") in keys and ("undersampled", "flor", "seconds") in keys
    assert ("training", "device") not in keys and ("synthetic", "source") not in keys  # strings are not figures
    for k in keys:
        assert isinstance(paper_value(*k), (int, float))


def test_every_paper_number_has_a_row(rows):
    assert covered_paper_keys(rows) == set(paper_number_keys())


def test_rows_have_the_documented_fields(rows):
    for r in rows:
        assert set(r) == {"figure", "group", "quantity", "keys", "paper", "book", "book_value", "conditions",
                          "difference", "kind", "holds"}
        assert r["group"] in GROUPS and r["kind"] in VERDICT_RULES
        assert (r["holds"] is None) == (r["kind"] in ("baseline", "setting"))
        assert type(r["book_value"]) is float
        assert r["difference"] and r["conditions"]
        assert all(isinstance(k, tuple) for k in r["keys"])


_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def _first_number(text):
    m = _NUMBER.search(text)
    assert m, text
    s = m.group(0).replace(",", "")
    return float(s), (len(s.split(".")[1]) if "." in s else 0)


def test_each_row_shows_its_book_value_and_the_papers_figure(rows):
    for r in rows:
        shown, decimals = _first_number(r["book"])
        assert abs(shown - r["book_value"]) <= 0.5 * 10 ** -decimals + 1e-12, r["quantity"]
        paper_shown, _ = _first_number(r["paper"])
        assert paper_shown == pytest.approx(paper_value(*r["keys"][0]), rel=1e-9), r["quantity"]


def test_book_values_come_from_the_summary(summary, rows):
    net = "paper network"
    syn, full, under = summary["synthetic"], summary["full_sampling"]["scores"], summary["undersampled"]["scores"]
    expected = {
        ("synthetic", "t1_rmse_ms"): syn["scores"][net]["t1_rmse_ms"],
        ("synthetic", "t2_r2"): syn["scores"][net]["t2_r2"],
        ("full_sampling", "t2_rmse_network_ms"): full[net]["t2_rmse_ms"],
        ("full_sampling", "t2_rmse_matching_ms"): full["matching"]["t2_rmse_ms"],
        ("full_sampling", "t2_snr_gain_db"): full[net]["t2_snr_db"] - full["matching"]["t2_snr_db"],
        ("undersampled", "ma_matching", "t1_snr_db"): under["zero-filled + matching"]["t1_snr_db"],
        ("undersampled", "flor", "t2_snr_db"): under["FLOR"]["t2_snr_db"],
        ("undersampled", "proposed", "t2_snr_db"): under[f"low-rank + {net}"]["t2_snr_db"],
        ("undersampled", "proposed", "seconds"): under[f"low-rank + {net}"]["seconds"],
        ("undersampled", "flor", "seconds"): under["FLOR"]["seconds"],
        ("undersampled", "sampling_ratio"): summary["undersampled"]["sampling_fraction"],
        ("speed", "network_80k_s"): syn["seconds"][net],
        ("speed", "matching_80k_s"): syn["baseline_seconds"],
        ("speed", "speedup_80k"): syn["baseline_seconds"] / syn["seconds"][net],
        ("speed", "network_slice_s"): full[net]["map_s"],
        ("speed", "speedup_slice"): full["matching"]["map_s"] / full[net]["map_s"],
        ("speed", "speedup_vs_flor"): under["FLOR"]["map_s"] / under[f"low-rank + {net}"]["map_s"],
        ("storage", "network_mb"): summary["storage"][0]["paper network_mb"],
        ("storage", "dictionary_mb_more_than"): summary["storage"][0]["dictionary_mb"],
        ("training", "seconds_per_epoch"): summary["networks"][net]["seconds_per_epoch"],
    }
    for key, value in expected.items():
        assert _row(rows, *key)["book_value"] == pytest.approx(value, rel=1e-12), key


def test_the_authors_snr_definition_is_quoted_alongside(summary, rows):
    r = _row(rows, "undersampled", "flor", "t1_snr_db")
    assert f"{summary['undersampled']['scores']['FLOR']['t1_paper_snr_db']:.2f} dB by their definition" in r["difference"]


# -- which network stands for the paper's ------------------------------------------------------------
def test_proposed_network_is_the_paper_network():
    assert proposed_network(make_summary()) == "paper network"
    assert proposed_network({"networks": {"compact network": {}, "paper network": {}}}) == "paper network"
    for bad in ({"networks": {"other": {}}}, {"networks": {"compact network": {}}}, {}):
        with pytest.raises(ValueError, match="paper network"):
            proposed_network(bad)


def test_rows_follow_the_paper_network_and_never_say_it_stands_in():
    s = make_summary()
    rows = reproduction_rows(s)
    r = _row(rows, "synthetic", "t1_rmse_ms")
    assert r["book_value"] == s["synthetic"]["scores"]["paper network"]["t1_rmse_ms"]
    assert "paper network" in r["conditions"] and "stands in" not in r["difference"]
    assert _row(rows, "undersampled", "proposed", "t1_snr_db")["book_value"] == (
        s["undersampled"]["scores"]["low-rank + paper network"]["t1_snr_db"])
    with pytest.raises(ValueError, match="paper network"):
        reproduction_rows(make_summary(("compact network",)))


def test_no_network_raises():
    s = make_summary(())
    with pytest.raises(ValueError, match="paper network"):
        reproduction_rows(s)


# -- the comparative words follow the data -----------------------------------------------------------
def _with(summary, path, value):
    s = copy.deepcopy(summary)
    d = _get(s, *path[:-1])
    d[path[-1]] = value
    return s


def test_snr_gain_sign_words_flip(summary):
    net = "paper network"
    base = summary["full_sampling"]["scores"]["matching"]["t2_snr_db"]
    win = _row(reproduction_rows(_with(summary, ("full_sampling", "scores", net, "t2_snr_db"), base + 3.0)),
               "full_sampling", "t2_snr_gain_db")
    lose = _row(reproduction_rows(_with(summary, ("full_sampling", "scores", net, "t2_snr_db"), base - 2.0)),
                "full_sampling", "t2_snr_gain_db")
    assert win["book_value"] == pytest.approx(3.0) and win["book"] == "+3.00"
    assert win["difference"].startswith("Same sign (the network wins)")
    assert "4.9 dB below the paper" in win["difference"]  # 3.0 vs 7.9
    assert lose["book_value"] == pytest.approx(-2.0) and lose["book"] == "-2.00"
    assert lose["difference"].startswith("Opposite sign (matching wins)")
    assert "9.9 dB below the paper" in lose["difference"]
    big = _row(reproduction_rows(_with(summary, ("full_sampling", "scores", net, "t2_snr_db"), base + 10.0)),
               "full_sampling", "t2_snr_gain_db")
    assert "2.1 dB above the paper" in big["difference"]


@pytest.mark.parametrize("value, words", [
    (30.51 + 1.0, "1.0 dB above the paper"),
    (30.51 - 2.26, "2.3 dB below the paper"),
    (30.51 + 0.01, "equal to the paper"),
])
def test_undersampled_snr_words(summary, value, words):
    s = _with(summary, ("undersampled", "scores", "FLOR", "t1_snr_db"), value)
    assert _row(reproduction_rows(s), "undersampled", "flor", "t1_snr_db")["difference"].startswith(words)


@pytest.mark.parametrize("value, words", [
    (0.659, "within 5 % of the paper's error"),
    (0.659 * 1.04, "within 5 % of the paper's error"),
    (0.659 * 3.2, "3.2x the paper's error"),
    (0.659 * 0.5, "0.5x the paper's error"),
    (0.659 * 42.4, "42x the paper's error"),
])
def test_ratio_words_follow_the_ratio(summary, value, words):
    s = _with(summary, ("synthetic", "scores", "paper network", "t1_rmse_ms"), value)
    assert _row(reproduction_rows(s), "synthetic", "t1_rmse_ms")["difference"].startswith(words)


def test_full_sampling_rmse_rows_give_both_conventions_and_say_which_is_closer(summary):
    # the paper's matching T2 RMSE is 6.252 ms; tissue 3.0 ms vs whole image 6.3 ms: the whole image is closer
    s = _with(_with(summary, ("full_sampling", "scores", "matching", "t2_rmse_ms"), 3.0),
              ("full_sampling", "scores", "matching", "t2_paper_rmse_ms"), 6.3)
    row = _row(reproduction_rows(s), "full_sampling", "t2_rmse_matching_ms")
    assert row["book"] == "3.000 (tissue); 6.300 (whole image)" and row["book_value"] == 3.0
    assert "closer to the whole image convention" in row["difference"]
    s = _with(s, ("full_sampling", "scores", "matching", "t2_paper_rmse_ms"), 30.0)
    assert "closer to the tissue pixels convention" in _row(reproduction_rows(s), "full_sampling",
                                                            "t2_rmse_matching_ms")["difference"]


def test_flor_speed_sentence_compares_restoration_times(summary):
    net = "paper network"
    r = _row(reproduction_rows(summary), "speed", "speedup_vs_flor")  # network maps slower than FLOR's matcher
    assert "FLOR's 30 subspace-constrained iterations (40.0 s) cost more than the low-rank restoration (12.0 s)" \
        in r["difference"]
    cheap = _with(summary, ("undersampled", "scores", "FLOR", "restore_s"), 5.0)
    assert "cost less than" in _row(reproduction_rows(cheap), "speed", "speedup_vs_flor")["difference"]
    fast = _with(summary, ("undersampled", "scores", f"low-rank + {net}", "map_s"), 0.05)
    r = _row(reproduction_rows(fast), "speed", "speedup_vs_flor")
    assert r["book_value"] == pytest.approx(0.45 / 0.05)
    assert "restoration" not in r["difference"]


def test_storage_rows_words(summary, rows):
    net_row = _row(rows, "storage", "network_mb")
    assert net_row["difference"].startswith("Not reproduced: ")  # 15.4 MB of float32 vs the paper's 20.3
    assert "15.4 MB" in net_row["difference"]
    s = copy.deepcopy(summary)
    s["storage"][0]["paper network_mb"] = 20.5
    assert _row(reproduction_rows(s), "storage", "network_mb")["difference"].startswith("Reproduced: ")
    d_row = _row(rows, "storage", "dictionary_mb_more_than")
    assert d_row["book"].startswith("64.1 ")
    assert "would take 128 MB, over the paper's bound" in d_row["difference"]
    s["storage"][0]["dictionary_mb"] = 40.0
    assert "80 MB, under the paper's bound" in _row(reproduction_rows(s), "storage",
                                                    "dictionary_mb_more_than")["difference"]


def test_training_row_reports_the_networks_log(summary, rows):
    r = _row(rows, "training", "epochs")
    assert ("training", "seconds_per_epoch") in r["keys"]
    assert r["book"] == "95.5 on cpu, 50 epochs"
    assert r["paper"] == f"30 on a {PAPER['training']['device']}, 50 epochs"
    assert "3.2x the paper's" in r["difference"]


def test_reproduction_rows_does_not_modify_the_summary(summary):
    before = copy.deepcopy(summary)
    reproduction_rows(summary)
    assert summary == before


# -- the paper's comparative claims ------------------------------------------------------------------
def test_qualitative_claims_follow_the_summary(summary):
    claims = qualitative_claims(summary)
    assert len(claims) == 4 and all(c["claim"] and c["paper"] and c["book"] for c in claims)
    # hand-made summary: paper network 1.3/0.8 ms vs matching 2.887/2.886 -> holds; full T2 27.5 vs 22 dB -> holds;
    # 15 %: proposed 29.6/18.4 vs zero-filled 12.3/7.4 -> +17.3/+11.0 dB >= 10 -> holds;
    # FLOR minus proposed -0.9/+1.7 dB -> close -> holds
    assert [c["holds"] for c in claims] == [True, True, True, True]
    assert "+17.3 / +11.0 dB" in claims[2]["book"] and "-0.9 / +1.7 dB" in claims[3]["book"]


def test_qualitative_claims_report_failures(summary):
    worse = copy.deepcopy(summary)
    worse["undersampled"]["scores"]["low-rank + paper network"]["t2_snr_db"] = 12.0  # 8.1 dB below FLOR
    worse["full_sampling"]["scores"]["paper network"]["t2_snr_db"] = 21.0  # below matching's 22
    claims = qualitative_claims(worse)
    assert [c["holds"] for c in claims] == [True, False, False, False]
    assert "+4.6 dB" in claims[2]["book"] and "+8.1 dB" in claims[3]["book"]
    assert qualitative_claims(worse, close_db=9.0, lift_db=4.0)[3]["holds"] is True


@pytest.mark.parametrize("kwargs, name", [({"close_db": 0}, "close_db"), ({"lift_db": -1.0}, "lift_db")])
def test_qualitative_claims_bad_thresholds_name_the_parameter(summary, kwargs, name):
    with pytest.raises(ValueError, match=name):
        qualitative_claims(summary, **kwargs)


# -- claims under every setting ------------------------------------------------------------------------
def test_claims_by_setting_gives_one_verdict_per_setting_from_the_scores(summary):
    rows = claims_by_setting(summary)
    assert [r["setting"] for r in rows] == ["brain, lines, data-chosen weight", "head, points, authors' weight"]
    # brain: proposed (29.6 / 18.4) minus zero-filled (12.3 / 7.4) = +17.3 / +11.0 >= 10; FLOR minus proposed
    # = -0.9 / +1.7 < 3 dB: both hold
    assert rows[0]["lift_holds"] and rows[0]["close_holds"]
    assert rows[0]["lift"].startswith("+17.3 / +11.0 dB (resolvable: +17.3 / +11.0)")
    # head: FLOR at 40 / 30 dB is 10.4 / 11.6 dB above the proposed method: not close
    assert rows[1]["lift_holds"] and not rows[1]["close_holds"]
    assert rows[1]["lam"] == "0.57 / 0.57"


def test_claims_by_setting_refuses_bad_thresholds(summary):
    with pytest.raises(ValueError, match="close_db"):
        claims_by_setting(summary, close_db=0)
    with pytest.raises(ValueError, match="lift_db"):
        claims_by_setting(summary, lift_db="x")


# -- verdicts, groups, the fresh-tissue network, margins -------------------------------------------------
def test_row_verdicts_follow_the_books_rules(summary, rows):
    # hand-made summary: synthetic 1.3 / 0.8 ms against the paper's 0.659 / 0.491 -> errors do not hold
    assert _row(rows, "synthetic", "t1_rmse_ms")["holds"] is False
    # full sampling: T2 SNR gain +5.5 dB against the paper's +7.9 (more than 1 dB below) -> does not hold
    assert _row(rows, "full_sampling", "t2_snr_gain_db")["holds"] is False
    better = copy.deepcopy(summary)
    better["synthetic"]["scores"]["paper network"]["t1_rmse_ms"] = 0.70  # within 1.1x of 0.659
    better["full_sampling"]["scores"]["paper network"]["t2_snr_db"] = 22.0 + 7.0  # +7.0 dB: within 1 dB
    r2 = reproduction_rows(better)
    assert _row(r2, "synthetic", "t1_rmse_ms")["holds"] is True
    assert _row(r2, "full_sampling", "t2_snr_gain_db")["holds"] is True
    # competing methods' figures carry no verdict; every group is used, in the documented order
    assert _row(rows, "undersampled", "flor", "t1_snr_db")["holds"] is None
    assert [g for g in GROUPS if any(r["group"] == g for r in rows)] == list(GROUPS)
    assert _row(rows, "storage", "network_mb")["group"] == "storage"
    assert _row(rows, "speed", "speedup_80k")["group"] == "speed"
    assert _row(rows, "undersampled", "proposed", "t2_snr_db")["group"] == "15 % of k-space"


def test_speedup_row_quotes_the_paper_and_derives_the_ratio(rows):
    r = _row(rows, "speed", "speedup_80k")
    assert r["paper"].startswith("53x as stated") and "56.6x" in r["paper"]
    assert "53× faster than 464.1 s" in r["difference"]


def test_rows_for_a_phantom_only_network_use_its_training_record(summary):
    s = copy.deepcopy(summary)
    fresh = "paper network, fresh tissues"
    s["networks"][fresh] = dict(s["networks"]["paper network"],
                                recorded_test={"t1_rmse_ms": 0.8, "t2_rmse_ms": 0.335, "t1_r2": 0.9999995,
                                               "t2_r2": 0.9999996})
    s["full_sampling"]["scores"][fresh] = _map_score(34.0, 28.0, 14.0, 1.6, 0.0, 1.2)
    s["undersampled"]["scores"][f"low-rank + {fresh}"] = _map_score(30.0, 19.0, 50.0, 7.0, 12.0, 1.1)
    for st in s["settings"]:
        st["scores"][f"low-rank + {fresh}"] = _map_score(30.0, 19.0, 50.0, 7.0, 12.0, 1.1)
    rows = reproduction_rows(s, fresh)
    assert _row(rows, "synthetic", "t2_rmse_ms")["book_value"] == 0.335
    assert _row(rows, "synthetic", "t2_rmse_ms")["holds"] is True  # 0.335 <= 1.1 x 0.491
    assert np.isnan(_row(rows, "speed", "network_80k_s")["book_value"])  # not timed on the synthetic grid
    assert _row(rows, "speed", "network_80k_s")["holds"] is None
    assert _row(rows, "undersampled", "proposed", "t2_snr_db")["book_value"] == 19.0
    claims = qualitative_claims(s, net=fresh)
    assert claims[0]["holds"] and "0.80 / 0.34 ms" in claims[0]["book"]
    assert len(claims_by_setting(s, net=fresh)) == 2
    with pytest.raises(ValueError, match="does not evaluate"):
        reproduction_rows(s, "no such network")


def test_claims_carry_their_margins(summary):
    claims = qualitative_claims(summary)
    assert claims[1]["margin"].startswith("+5.5 dB")  # full-sampling gain 27.5 - 22.0
    assert claims[2]["margin"].startswith("+1.0 dB")  # smaller lift 11.0 - 10
    assert claims[3]["margin"].startswith("+1.3 dB")  # 3 - 1.7
    by = claims_by_setting(summary)
    assert by[0]["lift_margin_db"] == pytest.approx(1.0) and by[0]["close_margin_db"] == pytest.approx(1.3)
    assert by[1]["close_margin_db"] < 0 and not by[1]["close_holds"]
