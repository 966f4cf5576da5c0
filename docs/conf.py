"""Sphinx configuration for the refmann documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The tutorial notebooks in ``tutorials/*.ipynb`` are copied into ``docs/tutorials/`` (generated,
gitignored) when this file is read, with Markdown links ``../docs/X`` rewritten to ``../X``, and
executed by myst-nb in full mode (``REFMANN_DOCS_QUICK=1``: in quick mode).
Set ``REFMANN_DOCS_EXECUTE=cache`` (re-run only changed notebooks) or ``off`` for quicker local
rebuilds; the default ``force`` runs every notebook against the current code.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

# Notebooks run in kernels that inherit this environment: full sizes (the runs the prose describes;
# REFMANN_DOCS_QUICK=1 for the small, seconds-long ones), one BLAS thread.
os.environ["REFMANN_QUICK"] = "1" if os.environ.get("REFMANN_DOCS_QUICK") == "1" else "0"
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _docs_relative(notebook: bytes, name: str) -> bytes:
    """A notebook with its Markdown links to ``../docs/X`` (right from ``tutorials/``) made ``../X``, and
    a first cell that links the notebook itself for download (the page's own ``.ipynb``)."""
    nb = json.loads(notebook)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = text.replace("](../docs/", "](../")
    # the repository's own file (docs/tutorials/ holds this edited copy)
    link = f"{{download}}`Download this notebook <../../tutorials/{name}>` (outputs stripped; it runs as it is)"
    cell = {"cell_type": "markdown", "metadata": {}, "source": link}
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):  # cell ids exist from nbformat 4.5
        cell["id"] = "refmann-download"
    nb.setdefault("cells", []).insert(0, cell)
    return json.dumps(nb, indent=1, ensure_ascii=False).encode()


def _copy_tutorials() -> int:
    """Mirror ``tutorials/*.ipynb`` into ``docs/tutorials/``; return how many there are."""
    dest = DOCS / "tutorials"
    dest.mkdir(exist_ok=True)
    sources = sorted((ROOT / "tutorials").glob("*.ipynb"))
    names = {p.name for p in sources}
    for stale in dest.glob("*.ipynb"):
        if stale.name not in names:
            stale.unlink()
    for src in sources:
        target = dest / src.name
        content = _docs_relative(src.read_bytes(), src.name)
        if not target.exists() or target.read_bytes() != content:
            target.write_bytes(content)  # only when changed, so Sphinx's incremental build works
    return len(sources)


NUM_TUTORIALS = _copy_tutorials()

import refmann  # noqa: E402  (after sys.path)

project = "refmann"
author = "refmann contributors"
copyright = "2026, refmann contributors"
release = refmann.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinxcontrib.bibtex",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: the equations render offline
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# MyST: $...$ and $$...$$ (label) math, \begin{align} blocks, ::: fences, definition lists.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True
math_eqref_format = "({number})"

# Notebooks: executed at build time; a failing cell fails the build.
nb_execution_mode = os.environ.get("REFMANN_DOCS_EXECUTE", "force")
nb_execution_timeout = 120
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_merge_streams = True
nb_render_markdown_format = "gfm"  # Markdown outputs (tables of results) with GitHub's tables

# API reference.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()

# Bibliography.
bibtex_bibfiles = ["refs.bib"]
bibtex_default_style = "plain"
bibtex_reference_style = "author_year"

# No internet: no intersphinx.
html_theme = "furo"
html_title = f"refmann {release}"
html_static_path: list[str] = []


def _without_empty_tutorial_toctree(app, docname, source):
    """With no notebooks, replace the (empty) glob toctree of ``tutorials.md`` by a sentence.

    An empty glob is a Sphinx warning, and it cannot be silenced with ``suppress_warnings``.
    """
    if docname == "tutorials" and NUM_TUTORIALS == 0:
        source[0] = re.sub(r"```\{toctree\}.*?```", "*No tutorial notebooks in this checkout.*", source[0], flags=re.S)


def setup(app):
    app.connect("source-read", _without_empty_tutorial_toctree)
