"""Simulation: the FISP sequence, its signals and the dictionary (book part "Simulation").

NumPy, SciPy and numba only (no Keras, no plotting); imports only the bottom layer
(:mod:`mrfbook.utils`, :mod:`mrfbook.paper`, :mod:`mrfbook.metrics`).

- :mod:`mrfbook.physics.sequence` -- FISP schedules: flip angles, TR, TE, RF phase, inversion (chapter 2).
- :mod:`mrfbook.physics.epg` -- extended-phase-graph simulation of FISP signatures (chapter 2).
- :mod:`mrfbook.physics.bloch` -- isochromat Bloch simulation and the analytic steady state, references for the EPG (chapter 2).
- :mod:`mrfbook.physics.distinguishability` -- how well a schedule tells tissues apart (chapter 2).
- :mod:`mrfbook.physics.dictionary` -- parameter grids, simulated atoms, look-up table, on-disk cache (chapter 3).
- :mod:`mrfbook.physics.compression` -- SVD compression of the dictionary's time axis (chapter 3).
- :mod:`mrfbook.physics.phantom` -- numerical T1/T2/PD phantoms (chapter 4).
- :mod:`mrfbook.physics.reference` -- apparent single-compartment parameters, the reference a single-compartment
  method can at best reach (chapter 4).
- :mod:`mrfbook.physics.noise` -- noise at a stated SNR, one definition for images, k-space and fingerprints (chapter 5).

Explained in chapter 2, book/02_simulation.md, and chapter 3, book/03_dictionary.md.
"""
