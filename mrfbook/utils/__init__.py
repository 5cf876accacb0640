"""Small helpers every layer may use: argument checks, provenance records, timing.

The bottom layer with :mod:`mrfbook.paper` and :mod:`mrfbook.metrics`: imports nothing above it.

- :mod:`mrfbook.utils.checks` -- argument checks that raise ``ValueError`` naming the parameter and range.
- :mod:`mrfbook.utils.provenance` -- UTC time, atomic JSON writes, SHA-256 of files (chapters 7 and 8).
- :mod:`mrfbook.utils.timing` -- one timing convention for the library, benchmarks and chapters (chapter 3).

Explained in chapter 3, book/03_dictionary.md (timing), and chapter 7, book/07_training.md (run records).
"""
