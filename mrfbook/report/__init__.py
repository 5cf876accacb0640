"""What the book shows: tables, figures, kernel-free galleries and the reproduction table.

Book-only: matplotlib and IPython are imported here (at module level only here) and come with the
``book`` extra. It may import any other subpackage; nothing else in the library imports it.

- :mod:`mrfbook.report.tables` -- Markdown tables for chapter output (chapter 6 on).
- :mod:`mrfbook.report.gallery` -- kernel-free image sliders for the static HTML book (chapters 2 and 5).
- :mod:`mrfbook.report.figures` -- map figures, the pipeline diagram, the architecture drawing (chapters 6 and 8).
- :mod:`mrfbook.report.reproduction` -- each of the paper's figures next to the book's (chapter 9).

Explained in chapter 9, book/09_reproduction.md, where the whole report comes together.
"""
