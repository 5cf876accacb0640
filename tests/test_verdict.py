"""Tests for mrfbook.report.verdict: the introduction's verdict box, from a hand-made summary."""

import copy
import re

from test_reproduction import make_summary

from mrfbook.report.reproduction import qualitative_claims, reproduction_rows
from mrfbook.report.verdict import BEYOND, verdict, verdict_html


def test_every_claim_and_every_judged_figure_is_listed_once():
    summary = make_summary()
    result = verdict(summary)
    claims = qualitative_claims(summary)
    judged = [r for r in reproduction_rows(summary) if r["holds"] is not None]
    entries = result["reproduced"] + result["not_reproduced"]
    assert result["n_claims"] == len(claims) and result["n_hold"] == sum(c["holds"] for c in claims)
    assert result["n_figures"] == len(judged) and result["n_figures_hold"] == sum(r["holds"] for r in judged)
    assert sum(len(e.get("items", [])) for e in entries) == len(judged)
    assert len([e for e in entries if "items" not in e]) == len(claims)
    good_items = [i for e in result["reproduced"] for i in e.get("items", [])]
    assert len(good_items) == result["n_figures_hold"]


def test_the_lists_follow_the_summary():
    summary = make_summary()
    before = verdict(summary)
    worse = copy.deepcopy(summary)
    # the network's T2 error on the synthetic grid becomes 100x worse: that figure changes list
    worse["synthetic"]["scores"]["paper network"]["t2_rmse_ms"] *= 100
    after = verdict(worse)
    assert after["n_figures_hold"] <= before["n_figures_hold"]
    text = " ".join(i for e in after["not_reproduced"] for i in e.get("items", []))
    assert "RMSE T2" in text


def test_the_box_links_each_entry_to_its_chapter_and_escapes_text():
    result = verdict(make_summary())
    box = verdict_html(result, origin="a <test> run")
    assert "a &lt;test&gt; run" in box
    n_entries = len(result["reproduced"]) + len(result["not_reproduced"]) + len(BEYOND)
    assert len(re.findall(r'<a href="\d\d_[a-z_]+\.html">chapter \d+</a>', box)) == n_entries
    assert re.search(r"chapter \d+(?!</a>)", re.sub(r"<a [^>]*>chapter \d+</a>", "", box)) is None
