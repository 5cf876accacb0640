"""mrfbook: deep-learning MR Fingerprinting, the library behind the book.

The subpackages mirror the book's parts; each module's docstring ends with a back-link to the
chapter that explains it (one format, checked by tests/test_docstrings.py).

- :mod:`mrfbook.physics` -- Simulation (chapters 2-3, and 4-5 for phantoms and noise):
  ``sequence``, ``epg``, ``bloch``, ``distinguishability``, ``dictionary``, ``compression``,
  ``phantom``, ``noise``.
- :mod:`mrfbook.recon` -- The classical pipeline (chapters 4-5): ``matching``, ``acquisition``,
  ``solvers``, ``lowrank``, ``flor``.
- :mod:`mrfbook.nn` -- The network (chapters 6-7), the only place Keras is imported: ``inputs``,
  ``network``, ``losses``, ``model``, ``data``, ``training``, ``inference``, ``runs``.
- :mod:`mrfbook.analysis` -- Results (chapters 7-10): ``experiments``, ``errors``, ``studies``.
- :mod:`mrfbook.report` -- what the book shows, needs the ``book`` extra: ``tables``, ``gallery``,
  ``figures``, ``reproduction``.
- :mod:`mrfbook.cli` -- ``python -m mrfbook`` (book/cli.md): ``common``, ``inputs``, ``simulate``,
  ``train``, ``map``.
- :mod:`mrfbook.utils` -- ``checks``, ``provenance``, ``timing``; with :mod:`mrfbook.paper` (the
  paper's published numbers, chapter 9) and :mod:`mrfbook.metrics` (error metrics, chapter 4), the
  bottom layer.

Layer rule (checked by tests/test_layers.py): utils, paper and metrics import nothing above them;
physics imports only those; recon and nn import physics, never each other; analysis imports
physics, recon and nn; report may import anything and nothing in the library imports it; cli uses
physics, recon, nn and (to score a trained network) analysis.

Submodules are imported on demand, so ``import mrfbook`` stays light (no TensorFlow, no matplotlib).

Explained in chapter 1, book/01_introduction.md.
"""

__version__ = "0.1.0"
