"""Sphinx helpers for skdssm's documentation.

- :class:`ExampleOrder`: the order of the example gallery (sphinx-gallery sorts by a key class
  named by its import path, so that the configuration stays picklable).
- :func:`skip_inherited_from_dependencies`: class pages document the methods skdssm defines,
  also those inherited from its private base classes, but not scikit-learn's (``get_params``,
  ``set_output``, the ``set_*_request`` methods...), which scikit-learn documents.
- :func:`check_api_reference`: warns (an error under ``-W``) when a public name of a public module
  is missing from ``api.rst``, so that the reference keeps up with the code. A module's public
  names are its ``__all__``, or, without one, the classes and functions it defines whose names do
  not start with an underscore.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

PUBLIC_MODULES = ("skdssm", "skdssm.estimators", "skdssm.preprocessing", "skdssm.pipeline",
                  "skdssm.model_selection", "skdssm.metrics", "skdssm.neighbors",
                  "skdssm.sampling", "skdssm.losses", "skdssm.datasets", "skdssm.baselines",
                  "skdssm.plotting")
GALLERY_ORDER = ("quickstart.py", "mlp_structures.py", "movielens_retrieval.py",
                 "geo_two_tower.py")

_CURRENT_MODULE = re.compile(r"^\.\. (?:current|auto)?module:: (\S+)")
_DIRECTIVE = re.compile(r"^\.\. ([\w:-]+)::\s*(\S*)")


class ExampleOrder:
    """``within_subsection_order``: the examples of GALLERY_ORDER first, in that order."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        rank = GALLERY_ORDER.index(filename) if filename in GALLERY_ORDER else len(GALLERY_ORDER)
        return rank, filename

    def __repr__(self) -> str:  # sphinx-gallery compares configurations by repr
        return f"<{type(self).__name__}>"


def _defining_module(member) -> str | None:
    function = member.fget if isinstance(member, property) else member
    return getattr(inspect.unwrap(function), "__module__", None) if callable(function) else None


def skip_inherited_from_dependencies(app, what, name, obj, skip, options):
    """``autodoc-skip-member``: skip class members defined outside skdssm."""
    if what != "class" or skip:
        return None
    module = _defining_module(obj)
    if module is not None and module.split(".")[0] != "skdssm":
        return True
    return None


def public_names(module) -> list[str]:
    """The documented-to-be names of ``module``: its ``__all__`` without submodules and dunders,
    else the classes and functions defined in it whose names do not start with ``_``."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name, obj in vars(module).items()
                 if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                 and obj.__module__ == module.__name__]
    return [name for name in names
            if not name.startswith("__") and not inspect.ismodule(getattr(module, name))]


def documented_names(api_text: str) -> set[str]:
    """Full names listed in ``api_text``: autosummary entries and ``.. data::`` directives, each
    under the module of the last ``currentmodule`` / ``automodule`` / ``module`` directive."""
    names, module, in_autosummary = set(), "", False
    for line in api_text.splitlines():
        if (match := _CURRENT_MODULE.match(line)) is not None:
            module, in_autosummary = match.group(1), False
        elif (match := _DIRECTIVE.match(line)) is not None:
            directive, argument = match.groups()
            in_autosummary = directive == "autosummary"
            if directive in ("data", "autodata", "py:data"):
                names.add(argument if "." in argument else f"{module}.{argument}")
        elif in_autosummary and line.startswith("   ") and not line.strip().startswith(":"):
            entry = line.strip().lstrip("~")
            if entry:
                names.add(entry if entry.startswith("skdssm.") else f"{module}.{entry}")
        elif in_autosummary and line.strip() and not line.startswith(" "):
            in_autosummary = False
    return names


def _resolve(full_name: str):
    module_name, _, name = full_name.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return None


def check_api_reference(app) -> None:
    api_file = Path(app.srcdir) / "api.rst"
    documented = documented_names(api_file.read_text(encoding="utf-8"))
    documented_ids = {id(obj) for obj in map(_resolve, documented) if obj is not None}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            full_name = f"{module_name}.{name}"
            if full_name not in documented and id(getattr(module, name)) not in documented_ids:
                logger.warning(f"{full_name} is public but not listed in {api_file.name}; add it "
                               f"to an autosummary there (data: a '.. data::' entry)",
                               type="skdssm", subtype="api", location=str(api_file))


def setup(app):
    app.connect("builder-inited", check_api_reference)
    app.connect("autodoc-skip-member", skip_inherited_from_dependencies)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
