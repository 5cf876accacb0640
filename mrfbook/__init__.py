"""mrfbook: deep-learning MR Fingerprinting, the library behind the book.

Modules (each explained in the book chapter named in its docstring):

- :mod:`mrfbook.physics.sequence` -- the FISP sequence (flip angles, TR, TE, RF phase, inversion).
- :mod:`mrfbook.physics.epg` / :mod:`mrfbook.physics.bloch` -- extended-phase-graph and isochromat simulation.
- :mod:`mrfbook.physics.dictionary` / :mod:`mrfbook.physics.compression` -- the paper's dictionary and its SVD.
- :mod:`mrfbook.recon.matching`, :mod:`mrfbook.physics.phantom`, :mod:`mrfbook.recon.acquisition`,
  :mod:`mrfbook.recon.lowrank`, :mod:`mrfbook.recon.flor`, :mod:`mrfbook.metrics` -- the classical pipeline.
- :mod:`mrfbook.nn.network`, :mod:`mrfbook.nn.training`, :mod:`mrfbook.nn.inference` -- the residual CNN.

Submodules are imported on demand so that ``import mrfbook`` stays light (no TensorFlow).
"""

__version__ = "0.1.0"
