"""Nearest-neighbour indexes over item embeddings: exact search, HNSW and a sharded index of
either, behind one interface.

Every index takes an (n_items, d) float32 matrix of L2-normalised embeddings and answer
``query(vectors, k)`` with ``(distances, indices)``, best first, where the distance is
``1 - dot product`` (``1 - cosine`` for normalised vectors; hnswlib's ``"ip"`` space). Rows of a
query may exclude items (a user's seen items): the index over-fetches by the number of excluded
items of each row and drops them, which the benchmark found faster than hnswlib's ``filter``
callable (see ``benchmarks/results_kneighbors.md``). Items can be removed (``remove_items``: a
mask for exact search, hnswlib's ``mark_deleted`` for HNSW) and brought back by
``replace_items``; a removed item keeps its position and is never returned.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import hnswlib
import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from ._utils import derive_seed
from .utils._sklearn_compat import HasMethods, Interval, validate_params

# Catalogues smaller than this are served by ExactIndex under index="auto". Measured with
# benchmarks/bench_kneighbors.py (crossover table of benchmarks/results_kneighbors.md; d=64,
# batched single-threaded queries, HNSW tuned to recall@10 0.99): exact search answered 1.3x
# faster than HNSW at 10,000 items and 2x slower at 20,000; exact also needs no build or tuning.
EXACT_CROSSOVER = 15_000
# Score matrices of exact search are computed in chunks of at most this many entries (256 MiB).
_MAX_CHUNK_ENTRIES = 1 << 26
_MAX_QUERY_CHUNK = 1024
# ef_search tuning evaluates at most this many query vectors.
_N_TUNING_QUERIES = 2000
# One-sided 95% normal quantile. Tuning asks the lower confidence bound of the recall estimate,
# mean - z * standard error over the per-query recalls, to reach target_recall, not the sample
# mean: the smallest ef whose sample mean just passes is, by construction, the ef at which the
# sample was luckiest, and on fresh queries it fell short (benchmarks/results_kneighbors.md).
_TUNING_Z = 1.645


def _check_vectors(vectors, name: str, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 (n, d) copy-free view of ``vectors`` (a copy only if needed)."""
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_vectors, n_dims); got shape {array.shape}.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns like the indexed embeddings; got "
                         f"{array.shape[1]}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _check_k(k, n_items: int) -> int:
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}.")
    if k > n_items:
        raise ValueError(f"Expected k <= number of indexed items, but k = {k} and the index holds "
                         f"{n_items} items.")
    return int(k)


def _check_exclude(exclude, n_queries: int, n_items: int) -> sp.csr_matrix | None:
    if exclude is None:
        return None
    if not sp.issparse(exclude) or exclude.shape != (n_queries, n_items):
        raise ValueError(
            f"exclude must be a scipy sparse matrix of shape (n_queries, n_items) = "
            f"({n_queries}, {n_items}); got {type(exclude).__name__} of shape "
            f"{getattr(exclude, 'shape', None)}."
        )
    exclude = sp.csr_matrix(exclude, dtype=bool)
    exclude.eliminate_zeros()
    return exclude


def exact_topk(queries: np.ndarray, items: np.ndarray, k: int,
               exclude: sp.csr_matrix | None = None,
               removed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dot-product scores and positions of the ``k`` best ``items`` per query, best first.

    Exact, chunked over queries so that a score chunk stays below 256 MiB; entries of ``exclude``
    (a (n_queries, n_items) sparse matrix) are skipped for their query, the items where the
    boolean (n_items,) mask ``removed`` is True for every query, and a query with fewer than
    ``k`` eligible items gets ``-inf`` scores at the tail.
    """
    items = torch.as_tensor(np.ascontiguousarray(items, dtype=np.float32))
    removed = None if removed is None or not removed.any() else torch.as_tensor(removed)
    chunk = max(1, min(_MAX_QUERY_CHUNK, _MAX_CHUNK_ENTRIES // max(len(items), 1)))
    scores_out = np.empty((len(queries), k), dtype=np.float32)
    index_out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        scores = torch.as_tensor(np.ascontiguousarray(queries[start:stop], dtype=np.float32)) @ items.T
        if exclude is not None:
            rows, cols = exclude[start:stop].nonzero()
            scores[rows, cols] = -torch.inf
        if removed is not None:
            scores[:, removed] = -torch.inf
        top = torch.topk(scores, k, dim=1)
        scores_out[start:stop] = top.values.numpy()
        index_out[start:stop] = top.indices.numpy()
    return scores_out, index_out


def recall_per_query(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Fraction of each row of ``truth`` (exact top-k positions) present in ``found``."""
    # (n, k, k) comparison: k is small (tens), the sample at most a few thousand rows.
    return (found[:, :, None] == truth[:, None, :]).any(axis=1).mean(axis=1)


def recall_against(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (exact top-k positions) present in ``found``."""
    if len(truth) == 0:
        return 1.0
    return float(recall_per_query(found, truth).mean())


def recall_lower_bound(per_query: np.ndarray, z: float = _TUNING_Z) -> float:
    """``mean - z * standard error`` of per-query recalls (a one-sided normal confidence bound
    on the mean recall of queries drawn like these; queries are independent, the ``k`` hits
    within one query are not, so the query is the unit)."""
    if len(per_query) < 2:
        return float(per_query.mean()) if len(per_query) else 1.0
    return float(per_query.mean() - z * per_query.std(ddof=1) / math.sqrt(len(per_query)))


def _tuning_queries(embeddings: np.ndarray, queries, rng: np.random.Generator) -> np.ndarray:
    """At most 2,000 query vectors to tune and measure recall on.

    A sample of ``queries`` (typical query vectors, e.g. user embeddings) when given, else
    perturbed item vectors: each sampled item plus Gaussian noise of the same overall norm,
    renormalised, so that the queries fall between items, as real queries do, rather than on an
    indexed point (which any search depth finds).
    """
    dim = embeddings.shape[1]
    if queries is not None:
        queries = _check_vectors(queries, "queries", dim)
        if len(queries) > _N_TUNING_QUERIES:
            queries = queries[rng.choice(len(queries), _N_TUNING_QUERIES, replace=False)]
        if len(queries):
            return queries
    picked = embeddings[rng.choice(len(embeddings), min(len(embeddings), _N_TUNING_QUERIES),
                                   replace=False)]
    noise = rng.normal(scale=1.0 / math.sqrt(dim), size=picked.shape)
    noisy = picked * np.linalg.norm(picked, axis=1, keepdims=True) + noise
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


# Guards the lazy creation of the indexes' per-object locks and thread pools.
_LOCK_CREATION = threading.Lock()


class _IndexBase(BaseEstimator):
    """Shared interface: query with exclusions, save / load (not public)."""

    _parameter_constraints: dict = {}

    def query(self, vectors, k: int = 10, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Distances and positions of the ``k`` nearest indexed items of each query vector.

        Parameters
        ----------
        vectors : array-like of shape (n_queries, n_dims)
            Query embeddings (L2-normalised for cosine distances).
        k : int, default=10
            Neighbours per query; at most the number of indexed items.
        exclude : scipy sparse matrix of shape (n_queries, n_items), default=None
            Non-zero entries are items that must not be returned for that query row (a user's
            seen items). Items removed by :meth:`remove_items` are never returned. Rows with
            fewer than ``k`` eligible items get position ``-1`` and distance ``inf`` in their
            last slots.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), float32
            ``1 - dot product`` (``1 - cosine``), ascending.
        indices : ndarray of shape (n_queries, k), int64
            Positions of the items in the indexed matrix (in order of ``fit`` then
            ``add_items``).
        """
        check_is_fitted(self)
        vectors = _check_vectors(vectors, "vectors", self.n_features_in_)
        k = _check_k(k, self.n_items_)
        exclude = _check_exclude(exclude, len(vectors), self.n_items_)
        return self._query(vectors, k, exclude)

    def remove_items(self, positions):
        """Stop returning the items at ``positions``; ``replace_items`` brings them back.

        A removed item keeps its position (positions never shift) and its slot in the index;
        removing an item twice is a no-op. The removals are part of the index's state: they
        persist through :meth:`save` and pickle.

        Parameters
        ----------
        positions : array-like of int
            Positions of indexed items (``fit`` then ``add_items`` order).

        Returns
        -------
        self
        """
        check_is_fitted(self)
        positions = np.asarray(positions)
        positions = np.unique(self._check_positions(positions, len(positions)))
        fresh = positions[~self.removed_[positions]]
        self._remove(fresh)
        self.removed_[fresh] = True
        return self

    def __setstate__(self, state):
        # An index pickled before items could be removed has no mask: none of its items is.
        if "n_items_" in state and "removed_" not in state:
            state = {**state, "removed_": np.zeros(state["n_items_"], dtype=bool)}
        super().__setstate__(state)

    def _n_active(self) -> int:
        """Indexed items not removed."""
        return self.n_items_ - int(np.count_nonzero(self.removed_))

    def _grow_removed(self, n_new: int) -> None:
        self.removed_ = np.concatenate([self.removed_, np.zeros(n_new, dtype=bool)])

    def save(self, path) -> None:
        """Write the index (parameters, tuning results and the graph or matrix) to ``path``."""
        check_is_fitted(self)
        with open(path, "wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path):
        """Read an index written by :meth:`save` (only load files you trust: this unpickles)."""
        with open(path, "rb") as handle:
            index = pickle.load(handle)
        if not isinstance(index, cls):
            raise TypeError(f"{path!r} holds a {type(index).__name__}, not a {cls.__name__}.")
        return index

    def _start(self, embeddings) -> np.ndarray:
        self._validate_params()
        embeddings = _check_vectors(embeddings, "embeddings")
        if len(embeddings) == 0:
            raise ValueError("embeddings must hold at least one item; got 0 rows.")
        self.n_features_in_ = embeddings.shape[1]
        return embeddings

    def _check_positions(self, positions, n_vectors: int) -> np.ndarray:
        positions = np.asarray(positions)
        if positions.ndim != 1 or positions.dtype.kind not in "iu" or len(positions) != n_vectors:
            raise ValueError(f"positions must be a 1-D int array with one entry per vector "
                             f"({n_vectors}); got {positions.dtype} of shape {positions.shape}.")
        if len(positions) and (positions.min() < 0 or positions.max() >= self.n_items_):
            raise ValueError(f"positions must lie in [0, {self.n_items_}); got values from "
                             f"{positions.min()} to {positions.max()}. Use add_items for new items.")
        return positions.astype(np.int64)

    def _query(self, vectors, k, exclude):
        if exclude is None or exclude.nnz == 0:
            return self._search_active(vectors, k)
        return self._overfetch(vectors, k, exclude)

    def _search_active(self, vectors, k, n_wanted=None):
        """``_search`` for ``k`` results, of which only as many as there are items not removed
        can be found (hnswlib refuses to return fewer than asked); the rest is ``-1`` / ``inf``."""
        found = min(k, self._n_active())
        distances = np.full((len(vectors), k), np.inf, dtype=np.float32)
        indices = np.full((len(vectors), k), -1, dtype=np.int64)
        if found:
            distances[:, :found], indices[:, :found] = self._search(vectors, found, n_wanted)
        return distances, indices

    def _overfetch(self, vectors, k, exclude):
        """Fetch ``k + n_excluded`` per row, drop the excluded, keep the first ``k`` left.

        Rows are grouped by the power of two above their excluded count so that one heavy user
        does not make every row of the batch fetch as much as it does.
        """
        counts = np.diff(exclude.indptr)
        fetch = np.minimum(k + counts, self.n_items_)
        buckets = np.minimum(2 ** np.ceil(np.log2(np.maximum(fetch, 1))).astype(np.int64),
                             self.n_items_)
        distances = np.full((len(vectors), k), np.inf, dtype=np.float32)
        indices = np.full((len(vectors), k), -1, dtype=np.int64)
        for width in np.unique(buckets):
            rows = np.flatnonzero(buckets == width)
            dist, pos = self._search_active(vectors[rows], int(width), k)
            valid = pos >= 0
            banned = np.asarray(exclude[rows[:, None], np.where(valid, pos, 0)].todense(), dtype=bool)
            keep = valid & ~banned
            # A stable sort of "not kept" moves the kept columns to the front in rank order.
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            kept = np.take_along_axis(keep, order, axis=1)
            distances[rows] = np.where(kept, np.take_along_axis(dist, order, axis=1), np.inf)
            indices[rows] = np.where(kept, np.take_along_axis(pos, order, axis=1), -1)
        return distances, indices


class ExactIndex(_IndexBase):
    """Exact nearest neighbours by batched matrix product and top-k (torch).

    Parameters
    ----------
    None

    Attributes
    ----------
    embeddings_ : ndarray of shape (n_items, n_dims)
        The indexed vectors (float32).
    n_items_ : int
    n_features_in_ : int
        Embedding size.
    removed_ : ndarray of shape (n_items,), dtype=bool
        The items :meth:`remove_items` took out (masked out of every query).
    recall_ : float
        Always 1.0 (kept so both indexes expose the same attributes).

    Examples
    --------
    >>> import numpy as np
    >>> from skdssm.neighbors import ExactIndex
    >>> items = np.eye(3, dtype=np.float32)
    >>> distances, indices = ExactIndex().fit(items).query(items[[2]], k=2)
    >>> indices.tolist(), distances[0, 0].item()
    ([[2, 0]], 0.0)
    """

    def fit(self, embeddings, y=None, queries=None, k: int = 10) -> ExactIndex:
        """Store the embeddings; ``queries`` and ``k`` are accepted for symmetry and unused.

        Parameters
        ----------
        embeddings : array-like of shape (n_items, n_dims)
        y : None
            Ignored.
        queries, k
            Ignored (exact search needs no tuning).

        Returns
        -------
        self
        """
        self.embeddings_ = self._start(embeddings).copy()
        self.n_items_ = len(self.embeddings_)
        self.removed_ = np.zeros(self.n_items_, dtype=bool)
        self.recall_ = 1.0
        return self

    def add_items(self, embeddings) -> ExactIndex:
        """Append items; they get positions ``n_items_ .. n_items_ + len(embeddings) - 1``."""
        check_is_fitted(self)
        embeddings = _check_vectors(embeddings, "embeddings", self.n_features_in_)
        self.embeddings_ = np.concatenate([self.embeddings_, embeddings])
        self._grow_removed(len(embeddings))
        self.n_items_ = len(self.embeddings_)
        return self

    def replace_items(self, positions, embeddings) -> ExactIndex:
        """Replace the vectors of the items at ``positions`` (removed ones are returned again)."""
        check_is_fitted(self)
        embeddings = _check_vectors(embeddings, "embeddings", self.n_features_in_)
        positions = self._check_positions(positions, len(embeddings))
        self.embeddings_[positions] = embeddings
        self.removed_[positions] = False
        return self

    def _remove(self, positions) -> None:
        """Nothing to do: ``removed_`` masks the score matrix of every query."""

    def _search(self, vectors, k, n_wanted=None):
        scores, indices = exact_topk(vectors, self.embeddings_, k, removed=self.removed_)
        return (1.0 - scores).astype(np.float32), indices

    def _query(self, vectors, k, exclude):
        # Masking the excluded entries of the score matrix is exact and cheaper than over-fetching.
        scores, indices = exact_topk(vectors, self.embeddings_, k, exclude, self.removed_)
        short = ~np.isfinite(scores)
        return (np.where(short, np.inf, 1.0 - scores).astype(np.float32),
                np.where(short, -1, indices))


class HNSWIndex(_IndexBase):
    """Approximate nearest neighbours with hnswlib (HNSW graph, inner-product space).

    On L2-normalised vectors hnswlib's ``"ip"`` distance ``1 - dot`` is the cosine distance.
    With ``ef_search=None`` the search depth is tuned in :meth:`fit`: the smallest ``ef_search``
    of a doubling-then-bisection search whose recall@k against exact search, on a sample of
    query vectors, reaches ``target_recall`` with 95% confidence: the one-sided lower bound
    ``mean - 1.645 * standard error`` of the per-query recalls must reach it, so that recall on
    fresh queries drawn like the sample meets the target rather than half the time. The margin
    shrinks with the sample size (about 0.001 at recall 0.99 on 2,000 queries, when one query
    in ten misses one of its ten neighbours). Queries for larger ``k`` scale ``ef`` by ``k`` over
    the tuning ``k`` so the tuned ratio holds; over-fetched slots for excluded items widen the
    result list (hnswlib searches with ``max(ef, n_fetched)``) but not ``ef`` itself.

    Parameters
    ----------
    M : int, default=16
        Graph out-degree (hnswlib ``M``); more links give higher recall per ``ef`` and more memory.
    ef_construction : int, default=200
        Candidate list size while building.
    ef_search : int or None, default=None
        Candidate list size while querying; None tunes it to ``target_recall``.
    target_recall : float in (0, 1], default=0.99
        Recall@k that tuning must reach.
    n_threads : int, default=1
        Threads for building and querying (construction with more than one thread is not
        deterministic).
    random_state : int, RandomState, Generator or None, default=None
        Seeds hnswlib's level generator (``random_seed``) and the tuning sample.

    Attributes
    ----------
    index_ : hnswlib.Index
        The graph (pickles with the estimator).
    ef_search_ : int
        The ``ef`` used for queries at the tuning ``k``.
    recall_ : float
        Recall@k measured against exact search on the tuning sample at ``ef_search_``.
    recall_lower_ : float
        Its one-sided 95% lower confidence bound (what tuning compares to ``target_recall``).
    tuning_k_ : int
        The ``k`` of the tuning.
    removed_ : ndarray of shape (n_items,), dtype=bool
        The items :meth:`remove_items` took out (marked deleted in the graph: they still route
        searches, they are never returned).
    n_items_, n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skdssm.neighbors import HNSWIndex
    >>> rng = np.random.default_rng(0)
    >>> items = rng.normal(size=(500, 16)).astype(np.float32)
    >>> items /= np.linalg.norm(items, axis=1, keepdims=True)
    >>> index = HNSWIndex(random_state=0).fit(items, k=5)
    >>> index.recall_ >= 0.99
    True
    >>> index.query(items[:2], k=5)[1][:, 0].tolist()
    [0, 1]
    """

    _parameter_constraints: dict = {
        "M": [Interval(Integral, 2, None, closed="left")],
        "ef_construction": [Interval(Integral, 1, None, closed="left")],
        "ef_search": [Interval(Integral, 1, None, closed="left"), None],
        "target_recall": [Interval(Real, 0, 1, closed="right")],
        "n_threads": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, M=16, ef_construction=200, ef_search=None, target_recall=0.99,
                 n_threads=1, random_state=None):
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.target_recall = target_recall
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, embeddings, y=None, queries=None, k: int = 10) -> HNSWIndex:
        """Build the graph over ``embeddings`` and tune ``ef_search``.

        Parameters
        ----------
        embeddings : array-like of shape (n_items, n_dims)
            L2-normalised item embeddings.
        y : None
            Ignored.
        queries : array-like of shape (n_queries, n_dims), default=None
            Typical query vectors (user embeddings) for tuning; at most 2,000 are sampled. None
            uses perturbed item vectors (each item plus Gaussian noise of the same norm scale,
            renormalised), so tuning never queries the exact indexed points.
        k : int, default=10
            Recall is measured at this k (capped at the number of items).

        Returns
        -------
        self
        """
        embeddings = self._start(embeddings)
        seed = derive_seed(self.random_state)
        rng = np.random.default_rng(seed)
        self.n_items_ = len(embeddings)
        self.index_ = hnswlib.Index(space="ip", dim=self.n_features_in_)
        self.index_.init_index(max_elements=self.n_items_, M=self.M,
                               ef_construction=self.ef_construction, random_seed=seed)
        self.index_.add_items(embeddings, np.arange(self.n_items_), num_threads=self.n_threads)
        self.removed_ = np.zeros(self.n_items_, dtype=bool)
        self.tuning_k_ = min(int(k), self.n_items_)
        sample = _tuning_queries(embeddings, queries, rng)
        _, truth = exact_topk(sample, embeddings, self.tuning_k_)
        if self.ef_search is not None:
            self.ef_search_ = int(self.ef_search)
            per_query = self._recall(sample, truth, self.ef_search_)
        else:
            self.ef_search_, per_query = self._tune(sample, truth)
        self.recall_ = float(per_query.mean()) if len(per_query) else 1.0
        self.recall_lower_ = recall_lower_bound(per_query)
        return self

    def _recall(self, sample, truth, ef: int) -> np.ndarray:
        """Per-query recall@k of the sample at ``ef``."""
        self.index_.set_ef(ef)
        labels, _ = self.index_.knn_query(sample, k=self.tuning_k_, num_threads=self.n_threads)
        return recall_per_query(labels.astype(np.int64), truth)

    def _reaches(self, per_query: np.ndarray) -> bool:
        return recall_lower_bound(per_query) >= self.target_recall

    def _tune(self, sample, truth) -> tuple[int, np.ndarray]:
        """Smallest ef whose recall lower bound reaches target_recall: double from k, then
        bisect. Returns the ef and its per-query recalls."""
        low, ef = 0, self.tuning_k_
        recall = self._recall(sample, truth, ef)
        while not self._reaches(recall) and ef < self.n_items_:
            low, ef = ef, min(2 * ef, self.n_items_)
            recall = self._recall(sample, truth, ef)
        if not self._reaches(recall):
            warnings.warn(
                f"HNSWIndex reached recall@{self.tuning_k_} = {recall.mean():.4f} (95% lower "
                f"bound {recall_lower_bound(recall):.4f}) < target_recall={self.target_recall} "
                f"even at ef_search={ef} (the catalogue size); raise M or ef_construction, pass "
                "more tuning queries, or use ExactIndex.", UserWarning, stacklevel=3)
            return ef, recall
        high, best = ef, recall
        while high - low > max(1, high // 16):
            middle = (low + high) // 2
            middle_recall = self._recall(sample, truth, middle)
            if self._reaches(middle_recall):
                high, best = middle, middle_recall
            else:
                low = middle
        return high, best

    def _search(self, vectors, k, n_wanted=None):
        """``k`` neighbours searched with the ef tuned for ``n_wanted`` (default ``k``) results:
        over-fetched slots that will be dropped do not deepen the search beyond ``k``."""
        if len(vectors) == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        n_wanted = k if n_wanted is None else n_wanted
        # hnswlib searches with max(ef, k); scaling ef with the wanted count keeps the tuned ratio.
        ef = max(self.ef_search_, math.ceil(self.ef_search_ * n_wanted / self.tuning_k_))
        # ef is state of the shared graph and hnswlib takes no ef per query: setting it and
        # searching is one step, so that queries from several threads each search at their ef.
        with self._query_lock:
            self.index_.set_ef(ef)
            labels, distances = self.index_.knn_query(vectors, k=k, num_threads=self.n_threads)
        return distances.astype(np.float32), labels.astype(np.int64)

    @property
    def _query_lock(self) -> threading.Lock:
        # Made on first use (under a module lock, so two threads cannot make two), not pickled.
        lock = self.__dict__.get("_lock")
        if lock is None:
            with _LOCK_CREATION:
                lock = self.__dict__.setdefault("_lock", threading.Lock())
        return lock

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_lock", None)
        return state

    def add_items(self, embeddings) -> HNSWIndex:
        """Insert items into the graph; they get positions after the current ones."""
        check_is_fitted(self)
        embeddings = _check_vectors(embeddings, "embeddings", self.n_features_in_)
        needed = self.n_items_ + len(embeddings)
        if needed > self.index_.get_max_elements():
            # Geometric growth keeps repeated small additions from resizing every time.
            self.index_.resize_index(max(needed, 2 * self.index_.get_max_elements()))
        self.index_.add_items(embeddings, np.arange(self.n_items_, needed),
                              num_threads=self.n_threads)
        self._grow_removed(len(embeddings))
        self.n_items_ = needed
        return self

    def replace_items(self, positions, embeddings) -> HNSWIndex:
        """Update the vectors of the items at ``positions`` (hnswlib re-links updated points);
        removed ones are returned again."""
        check_is_fitted(self)
        embeddings = _check_vectors(embeddings, "embeddings", self.n_features_in_)
        positions = self._check_positions(positions, len(embeddings))
        # Unmarking restores a removed point with the links it kept; re-adding an unchanged
        # vector would re-link its neighbourhood, which cost recall in the tests for nothing.
        for label in positions[self.removed_[positions]].tolist():
            self.index_.unmark_deleted(label)
        self.removed_[positions] = False
        changed = (self.index_.get_items(positions) != embeddings).any(axis=1)
        if changed.any():
            self.index_.add_items(embeddings[changed], positions[changed],
                                  num_threads=self.n_threads)
        return self

    def _remove(self, positions) -> None:
        # hnswlib marks one label per call; removals are rare and small next to queries.
        for label in positions.tolist():
            self.index_.mark_deleted(label)


class ShardedIndex(_IndexBase):
    """Items split round-robin over ``n_shards`` copies of an index, searched in threads.

    Each shard is an unfitted clone of ``base`` fitted on its share of the items; a query is sent
    to every shard (one thread per shard: hnswlib's search and torch's matrix product release
    the GIL) and the shards' top-``k`` lists are merged into the global top ``k``. The position
    ``p`` of an item (its row in ``fit`` then ``add_items`` order, the numbering every index
    returns) lives in shard ``p % n_shards_`` at local position ``p // n_shards_``. Round-robin
    rather than contiguous ranges keeps the shards within one item of each other in size as
    items are added, and routes ``add_items`` / ``replace_items`` by arithmetic alone, without a
    position table. Excluded items are split by shard, and each shard leaves out its own as it
    would alone (``ExactIndex`` masks them, ``HNSWIndex`` over-fetches by its own count of them),
    so the merged lists are the global top ``k`` of the eligible items.

    Sharding does not make one machine answer faster in total: four graphs of ``n / 4`` items
    cost more search work per query than one of ``n`` (``benchmarks/RESULTS.md`` section 7). It
    bounds a shard's memory and build time, lets the shards be searched at once, and is the
    layout that spreads over machines (``docs/scaling.md``).

    Parameters
    ----------
    n_shards : int, default=4
        Number of shards; a catalogue with fewer items than this gets one shard per item.
    base : index object or None, default=None
        The index each shard is a clone of (``HNSWIndex(M=24)``, ``ExactIndex()``); None means
        ``HNSWIndex()``. Its parameters are reachable as ``base__M`` etc.
    n_threads : int or None, default=None
        Shards fitted or searched at once; None uses one thread per shard. Threads inside a shard
        are the base's own (``HNSWIndex(n_threads=...)``).
    random_state : int, RandomState, Generator or None, default=None
        Draws the tuning sample and, when not None, one seed per shard for the base's
        ``random_state`` (replacing the base's own); with None every shard keeps the base's.

    Attributes
    ----------
    shards_ : list of fitted indexes
        ``shards_[s]`` holds the items at positions ``s, s + n_shards_, s + 2 * n_shards_, ...``.
    n_shards_ : int
        Shards built: ``min(n_shards, n_items at fit)``.
    recall_ : float
        Recall@k of the merged results against exact search over all items, on the tuning sample
        (1.0 when every shard is exact on it).
    recall_lower_ : float
        Its one-sided 95% lower confidence bound.
    tuning_k_ : int
        The ``k`` of that measurement.
    removed_ : ndarray of shape (n_items,), dtype=bool
        The items :meth:`remove_items` took out (each removed in its own shard).
    n_items_, n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skdssm.neighbors import ExactIndex, ShardedIndex
    >>> items = np.eye(5, dtype=np.float32)
    >>> index = ShardedIndex(n_shards=2, base=ExactIndex()).fit(items)
    >>> [len(shard.embeddings_) for shard in index.shards_]
    [3, 2]
    >>> index.query(items[[3]], k=2)[1][0, 0].item()
    3
    """

    _parameter_constraints: dict = {
        "n_shards": [Interval(Integral, 1, None, closed="left")],
        "base": [HasMethods(["fit", "query", "add_items", "replace_items"]), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(self, n_shards=4, base=None, n_threads=None, random_state=None):
        self.n_shards = n_shards
        self.base = base
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, embeddings, y=None, queries=None, k: int = 10) -> ShardedIndex:
        """Split ``embeddings`` round-robin, fit one clone of ``base`` per shard, measure recall.

        Parameters
        ----------
        embeddings : array-like of shape (n_items, n_dims)
            L2-normalised item embeddings.
        y : None
            Ignored.
        queries : array-like of shape (n_queries, n_dims), default=None
            Typical query vectors; one sample of at most 2,000 of them (or of perturbed items
            when None) tunes every shard and measures the merged recall.
        k : int, default=10
            Recall is tuned and measured at this k (capped at the items of a shard / in all).

        Returns
        -------
        self
        """
        embeddings = self._start(embeddings)
        self.n_items_ = len(embeddings)
        self.removed_ = np.zeros(self.n_items_, dtype=bool)
        self.n_shards_ = min(self.n_shards, self.n_items_)
        base = HNSWIndex() if self.base is None else self.base
        rng = np.random.default_rng(derive_seed(self.random_state))
        sample = _tuning_queries(embeddings, queries, rng)
        self.tuning_k_ = min(int(k), self.n_items_)
        shards = [clone(base).set_params(**params) for params in self._shard_seeds(base, rng)]
        parts = [embeddings[shard::self.n_shards_] for shard in range(self.n_shards_)]
        self.shards_ = self._map(
            lambda shard, part: shard.fit(part, queries=sample, k=min(self.tuning_k_, len(part))),
            shards, parts)
        if all(getattr(shard, "recall_", 0.0) == 1.0 for shard in self.shards_):
            # Each shard returned its exact top k on the sample, so the merged list is exact too.
            self.recall_ = self.recall_lower_ = 1.0
        else:
            _, truth = exact_topk(sample, embeddings, self.tuning_k_)
            per_query = recall_per_query(self._query(sample, self.tuning_k_, None)[1], truth)
            self.recall_ = float(per_query.mean())
            self.recall_lower_ = recall_lower_bound(per_query)
        return self

    def _shard_seeds(self, base, rng) -> list[dict]:
        """``set_params`` arguments of each shard: a seed of its own when random_state is set."""
        if self.random_state is None or "random_state" not in base.get_params():
            return [{} for _ in range(self.n_shards_)]
        seeds = rng.integers(np.iinfo(np.int32).max, size=self.n_shards_)
        return [{"random_state": int(seed)} for seed in seeds]

    def _map(self, function, *arguments) -> list:
        """``function`` applied to each shard's arguments, ``n_threads`` shards at once."""
        workers = min(self.n_threads or self.n_shards_, self.n_shards_)
        if workers == 1:
            return list(map(function, *arguments))
        return list(self._pool(workers).map(function, *arguments))

    def _pool(self, workers: int) -> ThreadPoolExecutor:
        # The pool is kept between calls: starting the threads anew took milliseconds per query,
        # far more than the search. It is rebuilt after a fork (threads do not survive one) or a
        # change of n_threads, and is not pickled.
        key = (os.getpid(), workers)
        with _LOCK_CREATION:  # queries from several threads make one pool, not one each
            if getattr(self, "_executor_key", None) != key:
                self._executor = ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="ShardedIndex")
                self._executor_key = key
            return self._executor

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_executor", None)
        state.pop("_executor_key", None)
        return state

    def _shard_sizes(self) -> np.ndarray:
        return (self.n_items_ - np.arange(self.n_shards_) + self.n_shards_ - 1) // self.n_shards_

    def _split_exclude(self, exclude, n_queries: int) -> list:
        """One (n_queries, shard size) csr of local positions per shard, or Nones."""
        if exclude is None or exclude.nnz == 0:
            return [None] * self.n_shards_
        coo = exclude.tocoo()
        shard_of, local = coo.col % self.n_shards_, coo.col // self.n_shards_
        parts = []
        for shard, size in enumerate(self._shard_sizes()):
            mine = shard_of == shard
            parts.append(sp.csr_matrix((coo.data[mine], (coo.row[mine], local[mine])),
                                       shape=(n_queries, int(size)), dtype=bool))
        return parts

    def _query(self, vectors, k, exclude):
        excludes = self._split_exclude(exclude, len(vectors))
        sizes = self._shard_sizes()
        results = self._map(
            lambda shard, size, part: shard.query(vectors, min(k, int(size)), exclude=part),
            self.shards_, sizes, excludes)
        distances = np.concatenate([dist for dist, _ in results], axis=1)
        positions = np.concatenate(
            [np.where(pos >= 0, pos * self.n_shards_ + shard, -1)
             for shard, (_, pos) in enumerate(results)], axis=1)
        # Ties are broken by position, so the merge does not depend on the shard order; missing
        # slots (-1) carry an infinite distance and sort last.
        order = np.lexsort((positions, distances), axis=1)[:, :k]
        return (np.take_along_axis(distances, order, axis=1).astype(np.float32),
                np.take_along_axis(positions, order, axis=1))

    def add_items(self, embeddings) -> ShardedIndex:
        """Append items; position ``p`` (after the current ones) goes to shard ``p % n_shards_``."""
        check_is_fitted(self)
        embeddings = _check_vectors(embeddings, "embeddings", self.n_features_in_)
        shard_of = np.arange(self.n_items_, self.n_items_ + len(embeddings)) % self.n_shards_
        self._map(lambda shard, rows: shard.add_items(embeddings[rows]) if len(rows) else shard,
                  self.shards_, [np.flatnonzero(shard_of == s) for s in range(self.n_shards_)])
        self._grow_removed(len(embeddings))
        self.n_items_ += len(embeddings)
        return self

    def replace_items(self, positions, embeddings) -> ShardedIndex:
        """Replace the vectors of the items at ``positions``, each in its own shard (removed
        ones are returned again)."""
        check_is_fitted(self)
        embeddings = _check_vectors(embeddings, "embeddings", self.n_features_in_)
        positions = self._check_positions(positions, len(embeddings))
        shard_of = positions % self.n_shards_
        for shard in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == shard)
            self.shards_[shard].replace_items(positions[rows] // self.n_shards_, embeddings[rows])
        self.removed_[positions] = False
        return self

    def _remove(self, positions) -> None:
        shard_of = positions % self.n_shards_
        for shard in np.unique(shard_of):
            self.shards_[shard].remove_items(positions[shard_of == shard] // self.n_shards_)


INDEXES = {"exact": ExactIndex, "hnsw": HNSWIndex}


def _is_index(value) -> bool:
    return (not isinstance(value, type) and hasattr(value, "get_params")
            and all(callable(getattr(value, method, None)) for method in ("fit", "query")))


@validate_params(
    {"n_items": [Interval(Integral, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def make_index(kind="auto", n_items: int = 0, **params):
    """An unfitted index for a catalogue of ``n_items`` items.

    Parameters
    ----------
    kind : {"auto", "hnsw", "exact"} or index object, default="auto"
        ``"auto"``: :class:`ExactIndex` below ``EXACT_CROSSOVER`` items (measured in
        ``benchmarks/bench_kneighbors.py``), :class:`HNSWIndex` from there on. An index object
        (``HNSWIndex(M=24)``, ``ShardedIndex(base=HNSWIndex())``, or any estimator with
        ``fit`` and ``query`` like them) is returned as an unfitted :func:`sklearn.base.clone`,
        so a fitted estimator never shares its index with the parameter it was given.
    n_items : int, default=0
        Catalogue size (only ``"auto"`` uses it).
    **params
        Parameters of the chosen index (``ExactIndex`` takes none: parameters meant for HNSW are
        dropped when ``"auto"`` picks exact search); set on the clone of an index object, nested
        ones included (``base__M``).

    Returns
    -------
    index : unfitted index object
    """
    if _is_index(kind):
        index = clone(kind)
    elif isinstance(kind, str) and kind in {"auto", *INDEXES}:
        if kind == "auto":
            kind = "exact" if n_items < EXACT_CROSSOVER else "hnsw"
            if kind == "exact":
                params = {}
        index = INDEXES[kind]()
    elif isinstance(kind, str):
        raise ValueError(f"index must be 'auto', 'hnsw', 'exact' or an index object; got {kind!r}.")
    else:
        hint = (f" Pass an instance, {kind.__name__}(), not the class."
                if isinstance(kind, type) else "")
        raise TypeError(
            "index must be 'auto', 'hnsw', 'exact' or an index object with fit and query methods "
            f"(ExactIndex(), HNSWIndex(M=24), ShardedIndex(...)); got {kind!r}.{hint}")
    valid = index.get_params(deep=True)
    unknown = set(params) - set(valid)
    if unknown:
        raise ValueError(f"index_params {sorted(unknown)} are not parameters of "
                         f"{type(index).__name__}; it takes {sorted(valid)}.")
    return index.set_params(**params)
