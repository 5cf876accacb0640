"""The classical pipeline: acquisition, dictionary matching, restoration (book part "The classical pipeline").

Imports :mod:`mrfbook.physics` and the bottom layer, never :mod:`mrfbook.nn`.

- :mod:`mrfbook.recon.matching` -- dictionary matching: signatures to (T1, T2, PD) (chapter 4).
- :mod:`mrfbook.recon.acquisition` -- image stacks, undersampling masks, the sampling operator (chapter 5).
- :mod:`mrfbook.recon.solvers` -- proximal gradient (ISTA / FISTA), the loop the restorations share (chapter 5).
- :mod:`mrfbook.recon.lowrank` -- low-rank restoration, the paper's eq. 2 (chapter 5).
- :mod:`mrfbook.recon.flor` -- FLOR, restoration in the dictionary's subspace (chapter 5).
- :mod:`mrfbook.recon.weights` -- the restoration weight chosen from the data by k-space hold-out,
  and :func:`mrfbook.recon.weights.restore`, the entry point (chapter 5).

Explained in chapter 4, book/04_matching.md, and chapter 5, book/05_undersampling.md.
"""
