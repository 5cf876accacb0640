"""Sphinx extension: serve MathJax from the build instead of a CDN.

The rendered book must show its equations without network access (offline readers, the headless
browser test).  The ``jupyter-server-mathjax`` package ships MathJax 2.7 with its fonts; this
extension copies it into ``_build/html/_static`` and points Sphinx's math support at it.
"""

from __future__ import annotations

from pathlib import Path


def _use_packaged_mathjax(app, config) -> None:
    import jupyter_server_mathjax

    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "MathJax.js").exists():
        raise RuntimeError(f"offline_mathjax: MathJax.js not found in {static}")
    config.html_static_path.append(str(static))
    # Relative paths are resolved against _static/ by sphinx.ext.mathjax.
    config.mathjax_path = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
    config.mathjax3_config = None
    config.myst_update_mathjax = False
    config.mathjax2_config = {
        "tex2jax": {
            "inlineMath": [["\\(", "\\)"]],
            "displayMath": [["\\[", "\\]"]],
            "processEscapes": True,
            # MyST marks sections tex2jax_ignore and the math itself with class "math".
            "ignoreClass": "tex2jax_ignore|mathjax_ignore",
            "processClass": "math|output_area",
        },
        # The package ships the STIX-Web fonts (not the TeX ones) for HTML-CSS output.
        "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
        "showMathMenu": False,
        "messageStyle": "none",
    }


def setup(app):
    app.connect("config-inited", _use_packaged_mathjax, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
