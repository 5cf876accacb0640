"""mrfbook: deep-learning MR Fingerprinting, the library behind the book.

Modules (each explained in the book chapter named in its docstring):

- :mod:`mrfbook.sequence` -- the FISP sequence (flip angles, TR, TE, RF phase, inversion).
- :mod:`mrfbook.epg` / :mod:`mrfbook.bloch` -- extended-phase-graph and isochromat simulation.
- :mod:`mrfbook.dictionary` / :mod:`mrfbook.compression` -- the paper's dictionary and its SVD.
- :mod:`mrfbook.matching`, :mod:`mrfbook.phantom`, :mod:`mrfbook.acquisition`,
  :mod:`mrfbook.lowrank`, :mod:`mrfbook.flor`, :mod:`mrfbook.metrics` -- the classical pipeline.
- :mod:`mrfbook.network`, :mod:`mrfbook.training`, :mod:`mrfbook.inference` -- the residual CNN.

Submodules are imported on demand so that ``import mrfbook`` stays light (no TensorFlow).
"""

__version__ = "0.1.0"
