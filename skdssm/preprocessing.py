"""Transformers that prepare an interaction DataFrame for skdssm's two-tower estimators.

Multi-valued and sequence features become *padded blocks*: ``max_len`` integer columns
``<name>[0] .. <name>[max_len - 1]`` that the estimators read as one feature ``<name>``,
with 0 as padding. See ``docs/preprocessing.md`` for the conventions and recipes.
"""

from __future__ import annotations

from skdssm._preprocessing._history import HistoryBuilder
from skdssm._preprocessing._padding import MultiHotPadder, SequenceTruncator
from skdssm._preprocessing._profile import UserProfileEncoder

__all__ = ["HistoryBuilder", "MultiHotPadder", "SequenceTruncator", "UserProfileEncoder"]
