"""Sphinx extension: re-render the pages that paste glued outputs of another page.

MyST-NB resolves a cross-document glue reference (``{glue:any}`` with ``:doc:``, or
``{glue:text}`` with ``page.md::key``) when the pasting page is written, but Sphinx does not
know that the pasting page depends on the other one: after the other page is re-executed, the
pasting page would keep the old values.  ``cross_glue_readers`` (in ``_config.yml``, under
``sphinx.config``) maps each pasting page to the pages it pastes from; whenever one of those is
re-read, the pasting page is re-read and re-written too.
"""

from __future__ import annotations


def _outdated(app, env, added, changed, removed):
    readers = app.config.cross_glue_readers or {}
    touched = set(added) | set(changed)
    return [reader for reader, sources in readers.items()
            if reader in env.found_docs and touched.intersection(sources) and reader not in touched]


def setup(app):
    app.add_config_value("cross_glue_readers", {}, "env")
    app.connect("env-get-outdated", _outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
