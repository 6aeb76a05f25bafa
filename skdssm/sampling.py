"""Negative samplers over item positions ``0 .. n_items - 1`` (numpy, vectorised, seeded).

A sampler is fitted on the training interactions, given as integer positions (the
caller maps raw ids to positions). It learns the item frequencies, the set of known
(user, item) positives and the distribution it draws from; then ``sample`` draws
``n_negatives`` negatives for each row of a batch, never the row's positive and, with
``exclude_known_positives=True``, never one of the user's known positives.

Each sampler also exposes the log sampling probability ``log q`` of every item for the
logQ correction of :func:`skdssm.losses.logq_correction`:

- ``log_q_``: the distribution of the sampler's own draws (for ``"in_batch"``, of the
  batch positives);
- ``batch_log_q_``: the empirical item frequency ``count / total``, which is the
  distribution of the other positives of a batch when they serve as negatives;
- :meth:`NegativeSampler.mixture_log_q`: the pool of both, for mixed negatives;
- ``batch_user_log_q_``: the empirical user frequency, the distribution of the users of
  a batch when they serve as negatives of its items (the symmetric softmax of
  :class:`skdssm.TwoTowerRetriever`).

Use :func:`make_sampler` to build one by name.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils import check_scalar
from sklearn.utils.validation import check_is_fitted

from skdssm._utils import check_generator

__all__ = [
    "SAMPLERS",
    "InBatchSampler",
    "LogUniformSampler",
    "MixedSampler",
    "NegativeSampler",
    "PopularitySampler",
    "UniformSampler",
    "make_sampler",
]

# Rejection rounds before the exact fallback; after 16 rounds only users whose known
# positives hold most of the sampling mass still have invalid draws.
_MAX_REJECTION_ROUNDS = 16
# Largest (rows x n_items) block the exact fallback builds at once (~8 MB of float64).
_FALLBACK_CELLS = 2**20


def _as_positions(values, name: str, upper: int | None = None) -> np.ndarray:
    """Validate a 1-D array of non-negative integer positions below ``upper``."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got an array of shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer positions; got dtype {array.dtype}. "
            "Map raw ids to positions 0..n-1 first."
        )
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative positions; got {array.min()}.")
    if upper is not None and array.size and array.max() >= upper:
        raise ValueError(
            f"{name} must be positions below {upper}; got {array.max()}. Pass the full "
            "catalogue / user count to fit, or map unseen ids to a known position."
        )
    return array


def _log(probabilities: np.ndarray) -> np.ndarray:
    """Elementwise log, mapping probability 0 to -inf without a warning."""
    with np.errstate(divide="ignore"):
        return np.log(probabilities)


class NegativeSampler(BaseEstimator):
    """Base class: fit on interactions, then draw negatives for a batch.

    Subclasses define the sampling distribution in ``_fit_distribution`` (setting
    ``probabilities_``) and draw from it in ``_draw``. This class handles validation,
    known positives, and redrawing invalid negatives.

    Parameters
    ----------
    n_negatives : int, default=4
        Negatives drawn per row by :meth:`sample`.
    exclude_known_positives : bool, default=True
        Never return an item the user interacted with in the data passed to ``fit``.
        The row's own positive is never returned, whatever this setting.
    random_state : None, int, numpy RandomState or Generator, default=None
        Seeds the draws; the same seed gives the same sequence of samples.

    Attributes
    ----------
    n_items_ : int
    n_users_ : int
    item_counts_ : ndarray of shape (n_items,)
        Interactions per item in the fitted data.
    known_positive_keys_ : ndarray of int64
        Sorted unique keys ``user * n_items + item`` of the known positives.
    known_positives_ : scipy.sparse.csr_matrix of bool, shape (n_users, n_items)
        The same pairs as a matrix (the masks of in-batch negatives are sliced from it).
    probabilities_ : ndarray of shape (n_items,)
        Probability that one draw returns each item (before exclusions).
    log_q_ : ndarray of shape (n_items,)
        ``log(probabilities_)``: the q of the logQ correction for the drawn columns.
    batch_log_q_ : ndarray of shape (n_items,)
        ``log(item_counts_ / item_counts_.sum())``, the q of in-batch negative columns;
        -inf for items absent from the fitted data (they never occur in a batch).
    batch_user_log_q_ : ndarray of shape (n_users,)
        ``log`` of each user's share of the interactions, the q of in-batch user columns.
    generator_ : numpy.random.Generator
    """

    uses_batch_negatives = False
    """Whether the other positives of a batch also serve as negatives."""

    def __init__(self, n_negatives=4, exclude_known_positives=True, random_state=None):
        self.n_negatives = n_negatives
        self.exclude_known_positives = exclude_known_positives
        self.random_state = random_state

    def _check_params(self) -> None:
        check_scalar(self.exclude_known_positives, "exclude_known_positives", (bool, np.bool_))
        check_scalar(self.n_negatives, "n_negatives", numbers.Integral, min_val=1)

    def fit(self, user_positions, item_positions, n_items: int, n_users: int | None = None):
        """Learn item frequencies, known positives and the sampling distribution.

        Parameters
        ----------
        user_positions : array-like of int of shape (n_interactions,)
        item_positions : array-like of int of shape (n_interactions,)
            Positions in ``0 .. n_items - 1``.
        n_items : int
            Catalogue size; items absent from the data can still be drawn (except by
            ``"popularity"`` and ``"in_batch"``, which draw by frequency).
        n_users : int, optional
            Number of user positions; default ``max(user_positions) + 1``.

        Returns
        -------
        self
        """
        self._check_params()
        check_scalar(n_items, "n_items", numbers.Integral, min_val=1)
        users = _as_positions(user_positions, "user_positions")
        items = _as_positions(item_positions, "item_positions", n_items)
        if len(users) != len(items):
            raise ValueError(
                f"user_positions and item_positions must have the same length; got "
                f"{len(users)} and {len(items)}."
            )
        if not len(items):
            raise ValueError("fit needs at least one interaction; got none.")
        n_users_seen = int(users.max()) + 1
        if n_users is not None:
            check_scalar(n_users, "n_users", numbers.Integral, min_val=n_users_seen)
        self.n_items_ = int(n_items)
        self.n_users_ = n_users_seen if n_users is None else int(n_users)
        self.item_counts_ = np.bincount(items, minlength=n_items)
        self.known_positive_keys_ = np.unique(users * self.n_items_ + items)
        self.known_positives_ = sp.csr_matrix(
            (np.ones(len(items), dtype=bool), (users, items)), shape=(self.n_users_, self.n_items_))
        self.known_positives_.sum_duplicates()
        self.batch_log_q_ = _log(self.item_counts_ / self.item_counts_.sum())
        self.batch_user_log_q_ = _log(np.bincount(users, minlength=self.n_users_) / len(users))
        self._fit_distribution()
        self.log_q_ = _log(self.probabilities_)
        self.generator_ = check_generator(self.random_state)
        return self

    def _fit_distribution(self) -> None:
        raise NotImplementedError

    def _draw(self, size) -> np.ndarray:
        raise NotImplementedError

    def _check_rows(self, user_positions, positive_items) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        users = _as_positions(user_positions, "user_positions", self.n_users_)
        positives = _as_positions(positive_items, "positive_items", self.n_items_)
        if len(users) != len(positives):
            raise ValueError(
                f"user_positions and positive_items must have the same length; got "
                f"{len(users)} and {len(positives)}."
            )
        return users, positives

    def _is_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Elementwise (broadcast) membership of (user, item) in the known positives."""
        keys = users * self.n_items_ + items
        keys_ = self.known_positive_keys_
        index = np.minimum(np.searchsorted(keys_, keys), len(keys_) - 1)
        return keys_[index] == keys

    def _forbidden(self, users: np.ndarray, positives: np.ndarray, items: np.ndarray) -> np.ndarray:
        forbidden = items == positives
        if self.exclude_known_positives:
            forbidden |= self._is_known(users, items)
        return forbidden

    def _check_has_negatives(self, users: np.ndarray, positives: np.ndarray) -> None:
        """Raise if some row's forbidden items cover every item the sampler can draw."""
        n_drawable = np.count_nonzero(self.probabilities_)
        n_forbidden = (self.probabilities_[positives] > 0).astype(np.int64)
        if self.exclude_known_positives:
            # Known positives have a count >= 1, so every sampler can draw them.
            starts = np.searchsorted(self.known_positive_keys_, users * self.n_items_)
            ends = np.searchsorted(self.known_positive_keys_, (users + 1) * self.n_items_)
            n_forbidden = n_forbidden * ~self._is_known(users, positives) + (ends - starts)
        stuck = np.flatnonzero(n_forbidden >= n_drawable)
        if len(stuck):
            row = stuck[0]
            what = "its positive"
            if self.exclude_known_positives:
                what += " and known positives"
            raise ValueError(
                f"User position {users[row]} has no valid negative: {what} cover all "
                f"{n_drawable} items that {type(self).__name__} can draw. Drop the user from "
                "training or set exclude_known_positives=False."
            )

    def sample(self, user_positions, positive_items) -> np.ndarray:
        """Draw ``n_negatives`` negatives for each row.

        Draws are redrawn, in a few vectorised rounds over only the invalid entries,
        until none is the row's positive (or, with ``exclude_known_positives``, a known
        positive of the user); entries still invalid after the rounds are drawn exactly
        from the allowed items. The result follows ``probabilities_`` restricted to the
        allowed items of each row.

        Parameters
        ----------
        user_positions : array-like of int of shape (B,)
        positive_items : array-like of int of shape (B,)

        Returns
        -------
        ndarray of int64 of shape (B, n_negatives)

        Raises
        ------
        ValueError
            If a row has no allowed item, naming its user position.
        """
        users, positives = self._check_rows(user_positions, positive_items)
        self._check_has_negatives(users, positives)
        negatives = self._draw((len(users), self.n_negatives))
        rows, columns = np.nonzero(self._forbidden(users[:, None], positives[:, None], negatives))
        for _ in range(_MAX_REJECTION_ROUNDS):
            if not len(rows):
                break
            redrawn = self._draw(len(rows))
            negatives[rows, columns] = redrawn
            still = self._forbidden(users[rows], positives[rows], redrawn)
            rows, columns = rows[still], columns[still]
        if len(rows):
            negatives[rows, columns] = self._draw_allowed(users[rows], positives[rows])
        return negatives

    def _draw_allowed(self, users: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """One exact draw per entry from ``probabilities_`` restricted to its allowed items.

        Only the rare entries left by rejection get here; they are processed in chunks of
        rows so the dense (rows, n_items) weights stay small.
        """
        draws = np.empty(len(users), dtype=np.int64)
        all_items = np.arange(self.n_items_)
        chunk = max(1, _FALLBACK_CELLS // self.n_items_)
        for start in range(0, len(users), chunk):
            part = slice(start, start + chunk)
            forbidden = self._forbidden(users[part, None], positives[part, None], all_items)
            cdf = np.cumsum(np.where(forbidden, 0.0, self.probabilities_), axis=1)
            total = cdf[:, -1]
            # Strictly below the total, so the first cdf entry above it is an allowed item.
            threshold = np.minimum(self.generator_.random(len(cdf)) * total, np.nextafter(total, 0))
            draws[part] = (cdf <= threshold[:, None]).sum(axis=1)
        return draws

    def known_positive_mask(self, user_positions, item_positions) -> np.ndarray:
        """Which items are known positives of which users.

        For in-batch negatives: pass the batch users and the candidate items, then
        mask the True entries (keeping each row's own positive) with
        :func:`skdssm.losses.mask_logits`.

        Parameters
        ----------
        user_positions : array-like of int of shape (B,)
        item_positions : array-like of int of shape (C,)

        Returns
        -------
        ndarray of bool of shape (B, C)
            ``mask[i, j]`` is True when item ``item_positions[j]`` is a known positive of
            user ``user_positions[i]``.
        """
        check_is_fitted(self)
        users = _as_positions(user_positions, "user_positions", self.n_users_)
        items = _as_positions(item_positions, "item_positions", self.n_items_)
        # scipy's (rows, columns) fancy indexing of the known-positive matrix: a few ms for a
        # 512 x 512 batch where a (B, C) look-up of the sorted keys takes ten times longer.
        return self.known_positives_[users][:, items].toarray()

    def mixture_log_q(self, n_batch: int, n_sampled: int) -> np.ndarray:
        """log q of one candidate slot when batch positives and sampled items are pooled.

        With ``n_batch`` in-batch candidate columns (drawn by item frequency) and
        ``n_sampled`` columns drawn by this sampler, a slot holds item j with probability
        ``q_j = (n_batch * freq_j + n_sampled * p_j) / (n_batch + n_sampled)``. Subtract
        ``log q`` of each column's item from every column, batch and sampled alike, so
        both kinds are corrected on the same scale (mixed negative sampling).

        Parameters
        ----------
        n_batch : int
            In-batch candidate columns (usually the batch size; 0 for none).
        n_sampled : int
            Sampled candidate columns (0 for none).

        Returns
        -------
        ndarray of shape (n_items,)
        """
        check_is_fitted(self)
        check_scalar(n_batch, "n_batch", numbers.Integral, min_val=0)
        check_scalar(n_sampled, "n_sampled", numbers.Integral, min_val=0)
        if n_batch + n_sampled == 0:
            raise ValueError("mixture_log_q needs n_batch + n_sampled > 0; got 0 and 0.")
        with np.errstate(divide="ignore"):
            pooled = np.logaddexp(
                np.log(n_batch) + self.batch_log_q_, np.log(n_sampled) + self.log_q_
            )
        return pooled - np.log(n_batch + n_sampled)


class UniformSampler(NegativeSampler):
    """Each item of the catalogue with probability ``1 / n_items``.

    Examples
    --------
    >>> sampler = UniformSampler(n_negatives=2, random_state=0).fit([0, 0, 1], [0, 1, 2], n_items=5)
    >>> negatives = sampler.sample([0, 1], [0, 2])
    >>> negatives.shape, bool((negatives[0] >= 2).all()), bool((negatives[1] != 2).all())
    ((2, 2), True, True)
    """

    def _fit_distribution(self) -> None:
        self.probabilities_ = np.full(self.n_items_, 1.0 / self.n_items_)

    def _draw(self, size) -> np.ndarray:
        return self.generator_.integers(0, self.n_items_, size=size, dtype=np.int64)


class PopularitySampler(NegativeSampler):
    """Items drawn with probability proportional to ``count ** alpha``.

    Items absent from the fitted data have probability 0 (they are never drawn), also
    for ``alpha=0``, which is then uniform over the items seen in ``fit``.

    Parameters
    ----------
    n_negatives : int, default=4
    alpha : float, default=0.75
        Exponent on the counts (word2vec's 0.75); 1 is the empirical frequency.
    exclude_known_positives : bool, default=True
    random_state : None, int, numpy RandomState or Generator, default=None

    Attributes
    ----------
    cdf_ : ndarray of shape (n_items,)
        Cumulative ``probabilities_``, ending at exactly 1.

    Examples
    --------
    >>> sampler = PopularitySampler(alpha=1.0).fit([0, 1, 2, 3], [0, 0, 0, 1], n_items=3)
    >>> sampler.probabilities_
    array([0.75, 0.25, 0.  ])
    """

    def __init__(
        self, n_negatives=4, alpha=0.75, exclude_known_positives=True, random_state=None
    ):
        super().__init__(n_negatives, exclude_known_positives, random_state)
        self.alpha = alpha

    def _check_params(self) -> None:
        super()._check_params()
        check_scalar(self.alpha, "alpha", numbers.Real, min_val=0)

    def _fit_distribution(self) -> None:
        counts = self.item_counts_.astype(np.float64)
        weights = np.where(counts > 0, counts**self.alpha, 0.0)
        self.probabilities_ = weights / weights.sum()
        cdf = np.cumsum(weights)
        self.cdf_ = cdf / cdf[-1]

    def _draw(self, size) -> np.ndarray:
        # cdf_[-1] == 1 > u, and side="right" skips the flat steps of zero-probability items.
        return np.searchsorted(self.cdf_, self.generator_.random(size), side="right")


class LogUniformSampler(NegativeSampler):
    """Log-uniform (Zipfian) over frequency ranks, as in RALM / TensorFlow's sampler.

    Items are ranked by count (rank 0 = most frequent, ties broken by position) and
    rank r is drawn with probability ``(log(r + 2) - log(r + 1)) / log(N + 1)``, by the
    closed-form inverse CDF ``r = floor(exp(u * log(N + 1))) - 1`` with u ~ U[0, 1).

    Attributes
    ----------
    item_by_rank_ : ndarray of int64 of shape (n_items,)
        Item position at each rank.

    Examples
    --------
    >>> sampler = LogUniformSampler().fit([0, 1, 2], [2, 2, 0], n_items=3)
    >>> sampler.item_by_rank_
    array([2, 0, 1])
    >>> bool(np.isclose(sampler.probabilities_[2], np.log(2) / np.log(4)))
    True
    """

    def _fit_distribution(self) -> None:
        self.item_by_rank_ = np.argsort(-self.item_counts_, kind="stable")
        ranks = np.arange(self.n_items_)
        self.probabilities_ = np.empty(self.n_items_)
        self.probabilities_[self.item_by_rank_] = np.log1p(1.0 / (ranks + 1)) / np.log(
            self.n_items_ + 1
        )

    def _draw(self, size) -> np.ndarray:
        log_range = np.log(self.n_items_ + 1)
        ranks = np.floor(np.exp(self.generator_.random(size) * log_range)).astype(np.int64) - 1
        return self.item_by_rank_[np.clip(ranks, 0, self.n_items_ - 1)]


class InBatchSampler(NegativeSampler):
    """In-batch negatives: the other positives of the batch; :meth:`sample` draws none.

    ``log_q_`` (= ``batch_log_q_``) is the log empirical frequency ``count / total``,
    the probability that an item occurs as a batch positive. With
    ``exclude_known_positives=True`` the caller masks the batch items that are known
    positives of each user, using :meth:`known_positive_mask`.

    Parameters
    ----------
    exclude_known_positives : bool, default=True
        Read by the caller; see above.
    random_state : None, int, numpy RandomState or Generator, default=None
        Unused (nothing is drawn); accepted so that every sampler takes it.

    Examples
    --------
    >>> sampler = InBatchSampler().fit([0, 1, 2, 3], [0, 0, 0, 1], n_items=2)
    >>> sampler.sample([0, 1], [0, 0]).shape
    (2, 0)
    >>> np.exp(sampler.log_q_)
    array([0.75, 0.25])
    """

    uses_batch_negatives = True

    def __init__(self, exclude_known_positives=True, random_state=None):
        self.exclude_known_positives = exclude_known_positives
        self.random_state = random_state

    def _check_params(self) -> None:
        check_scalar(self.exclude_known_positives, "exclude_known_positives", (bool, np.bool_))

    def _fit_distribution(self) -> None:
        self.probabilities_ = self.item_counts_ / self.item_counts_.sum()

    def sample(self, user_positions, positive_items) -> np.ndarray:
        """Return an empty (B, 0) int64 array: the negatives are the batch's positives."""
        users, _ = self._check_rows(user_positions, positive_items)
        return np.empty((len(users), 0), dtype=np.int64)


class MixedSampler(UniformSampler):
    """Mixed negative sampling (Yang et al. 2020): in-batch plus uniform draws.

    The batch's other positives are negatives (item frequency, ``batch_log_q_``) and
    :meth:`sample` adds ``n_negatives`` uniform draws per row (``log_q_ = -log N``),
    which reach the rarely-interacted items that in-batch negatives miss. Correct the
    pooled columns with :meth:`mixture_log_q`.

    Examples
    --------
    >>> sampler = MixedSampler(n_negatives=1, random_state=0).fit([0, 1], [0, 0], n_items=2)
    >>> sampler.sample([0, 1], [0, 0]).tolist()
    [[1], [1]]
    >>> np.exp(sampler.mixture_log_q(n_batch=2, n_sampled=2))
    array([0.75, 0.25])
    """

    uses_batch_negatives = True


SAMPLERS: dict[str, type[NegativeSampler]] = {
    "uniform": UniformSampler,
    "popularity": PopularitySampler,
    "log_uniform": LogUniformSampler,
    "in_batch": InBatchSampler,
    "mixed": MixedSampler,
}
"""Sampler name -> class."""


def make_sampler(name: str, **params) -> NegativeSampler:
    """Build the negative sampler registered under ``name``.

    Parameters
    ----------
    name : {"uniform", "popularity", "log_uniform", "in_batch", "mixed"}
    **params
        Constructor parameters of that sampler. A parameter it does not take (e.g.
        ``n_negatives`` for ``"in_batch"``) raises instead of being ignored.

    Returns
    -------
    NegativeSampler
        Unfitted.

    Examples
    --------
    >>> make_sampler("popularity", alpha=0.5)
    PopularitySampler(alpha=0.5)
    """
    if name not in SAMPLERS:
        raise ValueError(f"Unknown negative sampler {name!r}; choose one of {list(SAMPLERS)}.")
    sampler_class = SAMPLERS[name]
    accepted = list(sampler_class().get_params())
    unexpected = sorted(set(params) - set(accepted))
    if unexpected:
        raise ValueError(
            f"The {name!r} sampler takes no parameter {unexpected}; its parameters are "
            f"{accepted}. Drop the parameter or choose another sampler."
        )
    return sampler_class(**params)
