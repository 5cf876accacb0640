"""Results: the paper's experiments, where the errors come from, studies beyond the paper (book part "Results").

Imports :mod:`mrfbook.physics`, :mod:`mrfbook.recon`, :mod:`mrfbook.nn` and the bottom layer;
no plotting (figures are drawn by :mod:`mrfbook.report`).

- :mod:`mrfbook.analysis.experiments` -- the synthetic test, phantom maps, speed, storage; chapter 8's summary (chapters 8 and 9).
- :mod:`mrfbook.analysis.errors` -- errors by region of the (T1, T2) plane and between grid rows (chapter 7).
- :mod:`mrfbook.analysis.studies` -- noise, network size, sequence mismatch, retraining (chapter 10).

Explained in chapter 8, book/08_evaluation.md, and chapter 10, book/10_beyond.md.
"""
