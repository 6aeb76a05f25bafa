"""Sphinx configuration of the skdssm documentation.

Build from the repository root (``pip install -e ".[docs]"`` first)::

    python -m sphinx -W -b html docs docs/_build/html

The example gallery executes ``examples/*.py`` in their quick mode (``SKDSSM_GALLERY=1``, set
below); the MovieLens examples read ``$SKDSSM_DATA``, else ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document this checkout's skdssm, whatever else is installed.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "sphinxext"))
os.environ["SKDSSM_GALLERY"] = "1"

import skdssm  # noqa: E402

project = "skdssm"
author = "the skdssm developers"
copyright = "2026, the skdssm developers"
release = skdssm.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "skdssm_docs",  # sphinxext/: gallery order, check that api.rst lists every public name
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build"]

# API reference: one page per public class or function, generated from the numpydoc docstrings.
autosummary_generate = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc Parameters sections already give the types
numpydoc_show_class_members = False  # autodoc documents the members (class template)

# User guide pages are MyST markdown; anchors let pages link to each other's sections.
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    "filename_pattern": r".*\.py$",  # run every example (quick mode), not only plot_*.py
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "skdssm_docs.ExampleOrder",
    # "Examples using X" on each API page, and links from the examples' code to the API pages.
    "doc_module": ("skdssm",),
    "backreferences_dir": "generated/backreferences",
    "download_all_examples": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skdssm {release}"
html_theme_options = {"show_toc_level": 2}
