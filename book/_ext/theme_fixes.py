"""Sphinx extension: mend two JavaScript errors of the Jupyter Book 1.x theme stack.

- sphinx-thebe's configuration script is added twice to every page, and the second copy throws
  ``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared``: drop exact duplicates.
- pydata-sphinx-theme logs ``Got invalid theme mode`` when no default mode is set: set one
  (``html_context.default_mode``) in ``_config.yml``.

The browser test fails on any JavaScript error, so these must be fixed rather than ignored.
"""

from __future__ import annotations


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        filename = getattr(script, "filename", script)
        attributes = getattr(script, "attributes", {}) or {}
        key = (str(filename or ""), str(attributes.get("body", "")))  # None and "" both mean inline
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)  # early: emit_firstresult stops at the first handler returning a template
    return {"parallel_read_safe": True, "parallel_write_safe": True}
