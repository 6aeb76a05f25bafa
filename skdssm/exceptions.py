"""Warnings of skdssm."""

from __future__ import annotations

__all__ = ["InconsistentVersionWarning"]


class InconsistentVersionWarning(UserWarning):
    """An estimator is unpickled under other versions of skdssm, torch or scikit-learn than
    the ones that pickled it.

    Unpickling such an estimator may break or silently give other results; refit it under the
    current versions, or move the model through :meth:`export_embeddings` (plain arrays) and the
    index's own ``save`` / ``load``.

    Parameters
    ----------
    estimator_name : str
        The class of the unpickled estimator.
    versions : dict
        ``{package: (pickled_version, current_version)}`` for each package whose version differs.

    Attributes
    ----------
    estimator_name : str
    versions : dict

    Examples
    --------
    >>> from skdssm.exceptions import InconsistentVersionWarning
    >>> warning = InconsistentVersionWarning("TwoTowerRetriever", {"torch": ("2.3.0", "2.5.1")})
    >>> print(warning)  # doctest: +NORMALIZE_WHITESPACE
    TwoTowerRetriever was pickled with torch 2.3.0 and is loaded with torch 2.5.1. It may not
    work or give other results: refit it, or move it through export_embeddings and the index's
    own save / load.
    """

    def __init__(self, estimator_name: str, versions: dict):
        self.estimator_name = estimator_name
        self.versions = versions

    def __str__(self) -> str:
        pickled = ", ".join(f"{name} {old}" for name, (old, _) in self.versions.items())
        current = ", ".join(f"{name} {new}" for name, (_, new) in self.versions.items())
        return (f"{self.estimator_name} was pickled with {pickled} and is loaded with {current}. "
                "It may not work or give other results: refit it, or move it through "
                "export_embeddings and the index's own save / load.")
