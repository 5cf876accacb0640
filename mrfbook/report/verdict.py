"""The book's verdict in one box: what reproduces, what does not, where the book goes further.

:func:`verdict` sorts the paper's comparative claims
(:func:`mrfbook.report.reproduction.qualitative_claims`, and per setting
:func:`mrfbook.report.reproduction.claims_by_setting`) and its figures
(:func:`mrfbook.report.reproduction.reproduction_rows`, each with its verdict under the book's rule
of :data:`mrfbook.report.reproduction.VERDICT_RULES`) into "reproduced" and "not reproduced", with
the numbers of this build. It reads chapter 8's summary
(:func:`mrfbook.analysis.experiments.summarise_reproduction`), the one chapter 9's reproduction
report reads, so the box and chapter 9's table agree. :func:`verdict_html` renders the box.

:func:`book_summary` finds the summary the way chapter 9 does: the one chapter 8 saved in this
build if it was computed from the current inputs, else a fresh run of the same experiments.

Explained in chapter 1, book/01_introduction.md.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

from mrfbook.report.reproduction import GROUPS, claims_by_setting, proposed_network, qualitative_claims, reproduction_rows

__all__ = ["BEYOND", "book_summary", "verdict", "verdict_html"]

#: Where the book goes beyond the paper: (what, chapter file, chapter number).
BEYOND = [
    ("an EPG simulator validated against an independent isochromat Bloch simulation and the analytic "
     "steady state", "02_simulation", 2),
    ("an exact, pruned dictionary search that returns the same atom as exhaustive float64 matching, "
     "and an analysis of why matching errors exceed half a grid step", "04_matching", 4),
    ("brain and head phantoms with partial volume, and the apparent single-compartment maps a "
     "one-tissue method can reach at best", "04_matching", 4),
    ("the restoration weight chosen from the data by a k-space hold-out, and the authors' random point "
     "masks next to realisable phase-encode lines", "05_undersampling", 5),
    ("a diagnosis of the network's error by region, on and between the grid rows, and a remedy: "
     "fine-tuning on fresh, off-grid tissues", "07_training", 7),
    ("the 15 % comparison under six settings (two phantoms, two mask patterns, two weight rules)",
     "08_evaluation", 8),
    ("robustness to noise, to a flip-angle (B1) error and to TE, and the cost of retraining for "
     "another sequence", "10_beyond", 10),
    ("a network trained on restored, partial-volume and noisy fingerprints of random phantoms: a "
     "learned start, a fit of the simulated signal and a learned correction, at a fraction of the "
     "paper network's cost", "11_real_inputs", 11),
]

#: The chapter that measures each group of figures: (file, number).
_GROUP_CHAPTER = {"accuracy": ("08_evaluation", 8), "15 % of k-space": ("08_evaluation", 8),
                  "speed": ("08_evaluation", 8), "storage": ("08_evaluation", 8)}


def book_summary() -> tuple[dict[str, Any], str]:
    """Chapter 8's summary of this build, or a fresh run of its experiments; and where it came from.

    The summary chapter 8 saved is used if it was computed from the current inputs (weights,
    dictionaries, library source: :func:`mrfbook.analysis.experiments.inputs_signature`);
    otherwise the experiments are run here (several minutes on a CPU) and the result is saved
    for the pages that follow.

    Explained in chapter 1, book/01_introduction.md.
    """
    from mrfbook.analysis.experiments import reproduction_summary

    summary, loaded = reproduction_summary()
    if loaded:
        return summary, f"the evaluation run of this build (summary written {summary['created']})"
    return summary, f"a run of the evaluation's experiments made for this page ({summary['created']})"


def verdict(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Sort the paper's claims and figures into reproduced and not reproduced, with this build's numbers.

    Parameters
    ----------
    summary : mapping
        Chapter 8's summary (:func:`mrfbook.analysis.experiments.summarise_reproduction`).

    Returns
    -------
    dict
        ``reproduced`` and ``not_reproduced``: lists of dicts with ``what`` (a sentence with the
        numbers), ``where`` (chapter file) and ``chapter`` (number): first the paper's comparative
        claims, then one entry per group of figures (accuracy, 15 % of k-space, speed, storage)
        whose ``items`` list the figures of that group, the book's next to the paper's.
        ``n_claims`` and ``n_hold`` count the claims and those that hold; ``n_figures`` and
        ``n_figures_hold`` the figures with a verdict (a competing method's figures have none) and
        those that hold; ``n_settings``, ``n_settings_lift`` and
        ``n_settings_close`` the 15 % settings and how many meet each of the two 15 % claims;
        ``network`` the network standing for the paper's.

    Explained in chapter 1, book/01_introduction.md.
    """
    net = proposed_network(summary)
    claims = qualitative_claims(summary)
    settings = claims_by_setting(summary)
    rows = [r for r in reproduction_rows(summary) if r.get("holds") is not None]
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    n_set = len(settings)
    n_lift = sum(s["lift_holds"] for s in settings)
    n_close = sum(s["close_holds"] for s in settings)
    per_setting = {2: f" (holds in {n_lift} of {n_set} settings)", 3: f" (holds in {n_close} of {n_set} settings)"}
    for i, c in enumerate(claims):
        claim = c["claim"].rstrip(".")
        what = f"{claim[0].lower()}{claim[1:]}: {c['book']} against the paper's {c['paper']}{per_setting.get(i, '')}"
        where, chapter = ("09_reproduction", 9) if i >= 2 else ("08_evaluation", 8)
        (good if c["holds"] else bad).append({"what": what, "where": where, "chapter": chapter})
    for group in GROUPS:
        for holds, target in ((True, good), (False, bad)):
            members = [r for r in rows if r.get("group") == group and bool(r["holds"]) is holds]
            if members:
                where, chapter = _GROUP_CHAPTER.get(group, ("09_reproduction", 9))
                target.append({"what": f"{group[0].upper()}{group[1:]}, {len(members)} "
                                       f"figure{'s' if len(members) > 1 else ''}",
                               "items": [f"{r['quantity']}: {r['book']} (paper: {r['paper']})" for r in members],
                               "where": where, "chapter": chapter})
    return {"reproduced": good, "not_reproduced": bad, "n_claims": len(claims),
            "n_hold": sum(bool(c["holds"]) for c in claims), "n_figures": len(rows),
            "n_figures_hold": sum(bool(r["holds"]) for r in rows), "n_settings": n_set,
            "n_settings_lift": n_lift, "n_settings_close": n_close, "network": net}


def _items(entries: list[Mapping[str, Any]]) -> str:
    if not entries:
        return "<li>none</li>"
    out = []
    for e in entries:
        sub = "".join(f"<li>{html.escape(i)}</li>" for i in e.get("items", []))
        link = f'<a href="{e["where"]}.html">chapter {e["chapter"]}</a>'
        if sub:  # a group of figures: folded, the group's name and count shown
            out.append(f"<li><details><summary>{html.escape(e['what'])} ({link})</summary><ul>{sub}</ul>"
                       "</details></li>")
        else:
            out.append(f"<li>{html.escape(e['what'])} ({link}).</li>")
    return "".join(out)


def verdict_html(result: Mapping[str, Any], *, origin: str = "") -> str:
    """The verdict box as HTML (three headed lists); chapter links are relative to the book's pages.

    Each group of figures is a ``<details>`` element: its name and count show, a click unfolds
    the figures.

    Explained in chapter 1, book/01_introduction.md.
    """
    beyond = "".join(f'<li>{html.escape(what)} (<a href="{where}.html">chapter {n}</a>).</li>'
                     for what, where, n in BEYOND)
    source = f'<p class="mrf-verdict-origin">Numbers from {html.escape(origin)}.</p>' if origin else ""
    n_bad_claims = result["n_claims"] - result["n_hold"]
    n_bad_figures = result["n_figures"] - result["n_figures_hold"]
    return (
        '<div class="mrf-verdict">'
        f"<p><strong>Reproduced</strong>: {result['n_hold']} of the paper's {result['n_claims']} comparative claims "
        f"and {result['n_figures_hold']} of its {result['n_figures']} figures.</p><ul>{_items(result['reproduced'])}</ul>"
        f"<p><strong>Not reproduced</strong>: {n_bad_claims} claim{'' if n_bad_claims == 1 else 's'} and "
        f"{n_bad_figures} figure{'' if n_bad_figures == 1 else 's'}.</p>"
        f"<ul>{_items(result['not_reproduced'])}</ul>"
        f"<p><strong>Beyond the paper</strong>:</p><ul>{beyond}</ul>{source}</div>"
    )
