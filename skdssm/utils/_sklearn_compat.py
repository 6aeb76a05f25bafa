"""Every private scikit-learn name skdssm uses, imported in one place.

scikit-learn does not promise that its private helpers keep their names or locations, so
the rest of the package imports them from here; when one moves, this module alone changes
(a ``try``/``except ImportError`` picking the new location) and the admitted versions in
``pyproject.toml`` stay true.

Checked against scikit-learn 1.6.1 (the oldest admitted, ``scikit-learn>=1.6``: the first
release with ``validate_data`` as a function and with ``__sklearn_tags__``) and 1.9.1:
every name below lives at the same place in both, so no fallback is needed yet. One
behaviour differs: 1.9's ``_check_sample_weight`` rejects all-zero weights, 1.6's accepts
them; pass ``dtype`` (and any other option) by keyword, as 1.9 requires.
"""

from __future__ import annotations

from sklearn.utils._optional_dependencies import check_matplotlib_support
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from sklearn.utils._set_output import _get_container_adapter
from sklearn.utils.validation import _check_feature_names_in, _check_sample_weight, validate_data

__all__ = [
    "HasMethods",
    "Interval",
    "StrOptions",
    "_check_feature_names_in",
    "_check_sample_weight",
    "_get_container_adapter",
    "check_matplotlib_support",
    "validate_data",
    "validate_parameter_constraints",
    "validate_params",
]
