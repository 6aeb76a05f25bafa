"""Synthetic interaction data with a planted structure that a model should recover."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.utils import Bunch, check_scalar

from .._utils import check_generator
from ._base import interaction_bunch, lists_by_row

# Logit contribution of a (user cluster, item cluster) pair the user cluster likes
# (+) or does not like (-): strong enough that clusters explain most of the labels.
_AFFINITY_STRENGTH = 2.0
_BIAS_SCALE = 0.3
# A liked item is this many times as likely to be sampled as another one.
_LIKED_SAMPLING_BOOST = 3.0
# Latent utility cut points for ratings 1..5; 0 separates label 0 (<= 3) from 1 (>= 4).
_RATING_CUTS = np.array([-2.5, -1.0, 0.0, 2.0])
_N_GENERIC_TAGS = 8
_START_TIME = 1_500_000_000  # 2017-07-14, Unix seconds

_SITE_FACTORS = ("urban", "green", "transport")
# Dense places have more transport and less greenery, as in real cities.
_FACTOR_COV = np.array([[1.0, -0.4, 0.5], [-0.4, 1.0, -0.2], [0.5, -0.2, 1.0]])
_LOG_INTENSITY_SD = 0.5
_ARCHETYPE_WEIGHT, _PREFERENCE_SD = 1.2, 0.3
# Log-odds of sampling an item rise by this much per unit of the preference score.
_GEO_SAMPLING_BIAS = 0.5
_GEO_SCORE_SD = 0.5
_GEO_RATING_CUTS = np.array([-1.5, -0.5, 0.5, 1.5])


class _OSMKind(NamedTuple):
    measure: str | None  # "length", "area" or None (count only)
    density: float  # median number of objects per km^2
    loadings: tuple[float, float, float]  # on the site factors (urban, green, transport)
    # "length": metres of line per metre of radius at the median; "area": largest
    # share of the ground the kind covers.
    scale: float = 0.0
    presence: float = np.inf  # logit intercept of "any nearby" (rare kinds); inf: always


_OSM_KINDS = {
    "poi": _OSMKind(None, 300.0, (0.8, -0.2, 0.2)),
    "place": _OSMKind(None, 20.0, (0.4, 0.0, 0.2)),
    "traffic": _OSMKind(None, 60.0, (0.6, -0.2, 0.4)),
    "transport": _OSMKind(None, 40.0, (0.2, 0.0, 0.8)),
    "road": _OSMKind("length", 400.0, (0.5, -0.2, 0.2), 25.0),
    "railway": _OSMKind("length", 10.0, (0.1, -0.1, 0.8), 4.0, -1.0),
    "waterway": _OSMKind("length", 10.0, (-0.1, 0.6, 0.0), 3.0, -0.8),
    "building": _OSMKind("area", 800.0, (0.8, -0.4, 0.1), 0.35),
    "landuse": _OSMKind("area", 60.0, (0.1, 0.4, 0.0), 0.6),
    "natural": _OSMKind("area", 40.0, (-0.4, 0.8, -0.1), 0.4),
    "water": _OSMKind("area", 5.0, (-0.1, 0.8, 0.0), 0.2, -1.2),
}

_INTERACTIONS_DESCR = """Synthetic interactions with planted user and item clusters (skdssm).

Each user cluster likes one or two item clusters (``affinity``, a logit contribution of
+{strength} or -{strength}); the label of a (user, item) pair is 1 with probability
sigmoid((affinity + user bias + item bias) / label_noise). ``rating`` (1..5) agrees with
it: label == (rating >= 4). User features ``segment``, ``age_group`` and ``activity`` and
item features ``category``, ``tags`` and ``price`` partly reveal the clusters
(``feature_noise`` of them are random). Ground truth: ``user_cluster``, ``item_cluster``,
``affinity``.
"""

_GEO_DESCR = """Synthetic restaurant ratings over OpenStreetMap-like site features (skdssm).

Each item (a site) has three latent factors {factors}; they drive heavy-tailed,
correlated OSM-style counts, lengths (m) and areas (m^2) within each radius in {radii} m
(counts and areas grow like r^2, lengths like r, values are monotone in r). Each user
prefers one factor (``user_preference``, a weight per factor); the rating (1..5) of an
item is the preference-weighted sum of its factors plus noise, and users rate items
they would like more often. Ground truth: ``user_preference``, ``user_archetype``,
``item_factors``, ``factor_names``.
"""


def make_interactions(
    n_users: int = 200,
    n_items: int = 100,
    *,
    n_user_clusters: int = 4,
    n_item_clusters: int = 4,
    interactions_per_user: int = 20,
    feature_noise: float = 0.2,
    label_noise: float = 1.0,
    random_state=None,
) -> Bunch:
    """Generate user-item interactions whose labels follow planted clusters.

    Users and items fall into latent clusters; each user cluster likes one or two item
    clusters. A (user, item) pair is liked (``label`` 1) with probability
    ``sigmoid((affinity[user cluster, item cluster] + user bias + item bias) / label_noise)``.
    The features partly reveal the clusters, so a model that uses them (or learns the
    ids) can recover the signal. The layout matches :func:`fetch_movielens`.

    Parameters
    ----------
    n_users, n_items : int, default=200, 100
        Number of users (ids 1..n_users) and items (ids 1..n_items). 0 is never an id.
    n_user_clusters, n_item_clusters : int, default=4
        Number of latent clusters; users and items are spread evenly over them.
    interactions_per_user : int, default=20
        Distinct items each user interacts with (at most ``n_items``). Items of a
        liked cluster are sampled three times as often as others, so both labels occur.
    feature_noise : float in [0, 1], default=0.2
        Fraction of users (items) whose ``segment`` (``category``) is drawn at random
        instead of equal to the cluster; ``age_group`` uses twice this noise and the
        cluster-revealing tag half of it.
    label_noise : float >= 0, default=1.0
        Scale of the logistic noise added to the logit before thresholding. 0 gives
        deterministic labels; larger values make them noisier.
    random_state : int, RandomState, Generator or None, default=None
        Seed; the same value gives the same data.

    Returns
    -------
    sklearn.utils.Bunch
        ``interactions``: ``user_id``, ``item_id`` (int64), ``rating`` (float32, 1..5),
        ``timestamp`` (int64, increasing within a user), ``label`` (int64, rating >= 4);
        sorted by user then time.
        ``users``: ``user_id``, ``segment`` (str), ``age_group`` (int64, 1..6),
        ``activity`` (float64).
        ``items``: ``item_id``, ``category`` (str), ``tags`` (list of 1 to 3 str),
        ``price`` (float64).
        ``frame``: interactions joined with users and items, same row order.
        ``user_cluster`` (n_users,), ``item_cluster`` (n_items,): ground-truth clusters
        aligned with the rows of ``users`` and ``items``.
        ``affinity`` (n_user_clusters, n_item_clusters): logit contribution of each
        cluster pair. ``DESCR``.

    Examples
    --------
    >>> from skdssm.datasets import make_interactions
    >>> data = make_interactions(n_users=50, n_items=30, interactions_per_user=10,
    ...                          random_state=0)
    >>> data.interactions.shape
    (500, 5)
    >>> data.frame.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['user_id', 'item_id', 'rating', 'timestamp', 'label', 'segment', 'age_group',
     'activity', 'category', 'tags', 'price']
    >>> bool(((data.interactions.rating >= 4) == data.interactions.label).all())
    True
    """
    n_users = check_scalar(n_users, "n_users", numbers.Integral, min_val=1)
    n_items = check_scalar(n_items, "n_items", numbers.Integral, min_val=1)
    check_scalar(n_user_clusters, "n_user_clusters", numbers.Integral, min_val=1, max_val=n_users)
    check_scalar(n_item_clusters, "n_item_clusters", numbers.Integral, min_val=1, max_val=n_items)
    check_scalar(
        interactions_per_user, "interactions_per_user", numbers.Integral, min_val=1, max_val=n_items
    )
    check_scalar(feature_noise, "feature_noise", numbers.Real, min_val=0, max_val=1)
    check_scalar(label_noise, "label_noise", numbers.Real, min_val=0)
    rng = check_generator(random_state)

    user_cluster = rng.permutation(np.arange(n_users) % n_user_clusters)
    item_cluster = rng.permutation(np.arange(n_items) % n_item_clusters)
    likes = np.zeros((n_user_clusters, n_item_clusters), dtype=bool)
    likes[np.arange(n_user_clusters), np.arange(n_user_clusters) % n_item_clusters] = True
    second = (np.arange(n_user_clusters) + 1) % n_item_clusters
    likes[np.arange(n_user_clusters), second] |= rng.random(n_user_clusters) < 0.5
    affinity = np.where(likes, _AFFINITY_STRENGTH, -_AFFINITY_STRENGTH)
    user_bias = rng.normal(0.0, _BIAS_SCALE, n_users)
    item_bias = rng.normal(0.0, _BIAS_SCALE, n_items)

    liked = likes[user_cluster][:, item_cluster]
    log_weight = np.log1p((_LIKED_SAMPLING_BOOST - 1) * liked)
    user_idx, item_idx = _sample_items(rng, log_weight, interactions_per_user)
    logit = (
        affinity[user_cluster[user_idx], item_cluster[item_idx]]
        + user_bias[user_idx]
        + item_bias[item_idx]
    )
    utility = logit + label_noise * rng.logistic(size=logit.size)
    rating = np.digitize(utility, _RATING_CUTS) + 1
    interactions = _interaction_table(rng, user_idx, item_idx, rating, interactions_per_user)
    interactions["label"] = (rating >= 4).astype(np.int64)
    return interaction_bunch(
        interactions,
        _cluster_user_features(rng, user_cluster, n_user_clusters, feature_noise),
        _cluster_item_features(rng, item_cluster, n_item_clusters, feature_noise),
        user_cluster=user_cluster,
        item_cluster=item_cluster,
        affinity=affinity,
        DESCR=_INTERACTIONS_DESCR.format(strength=_AFFINITY_STRENGTH),
    )


def _cluster_user_features(rng, cluster, n_clusters, noise) -> pd.DataFrame:
    n_users = cluster.size
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int64),
            "segment": _labels("segment_", _noisy(rng, cluster, n_clusters, noise)),
            "age_group": 1 + _noisy(rng, cluster, n_clusters, min(1.0, 2 * noise)) % 6,
            "activity": rng.lognormal(0.3 * cluster, 0.5),
        }
    )


def _cluster_item_features(rng, cluster, n_clusters, noise) -> pd.DataFrame:
    n_items = cluster.size
    # Tag 1 reveals the cluster (with half the noise); up to two generic tags follow.
    generic = np.argsort(rng.random((n_items, _N_GENERIC_TAGS)), axis=1)[:, :2]
    candidates = np.column_stack(
        [_labels("theme_", _noisy(rng, cluster, n_clusters, noise / 2)), _labels("tag_", generic)]
    )
    n_tags = rng.integers(1, 4, n_items)
    rows, cols = np.nonzero(np.arange(3) < n_tags[:, None])
    return pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1, dtype=np.int64),
            "category": _labels("category_", _noisy(rng, cluster, n_clusters, noise)),
            "tags": lists_by_row(rows, candidates[rows, cols].astype(object), n_items),
            "price": rng.lognormal(2.0 + 0.3 * cluster, 0.4),
        }
    )


def _noisy(rng, truth: np.ndarray, n_classes: int, noise: float) -> np.ndarray:
    """``truth`` with a fraction ``noise`` of entries replaced by uniform random classes."""
    replace = rng.random(truth.size) < noise
    return np.where(replace, rng.integers(n_classes, size=truth.size), truth)


def _labels(prefix: str, codes: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, codes.astype(str))


def make_geo_interactions(
    n_users: int = 300,
    n_items: int = 500,
    *,
    radii: Sequence[int] = (100, 200, 500),
    interactions_per_user: int = 30,
    random_state=None,
) -> Bunch:
    """Generate ratings of sites described by OpenStreetMap-like features at several radii.

    A reproducible stand-in for a restaurant recommender over OSM features:
    three latent site factors (urban density, greenery/water, public transport) drive
    heavy-tailed, correlated counts, lengths and areas of OSM objects around each item;
    each user weights those factors, and rates items accordingly.

    Parameters
    ----------
    n_users, n_items : int, default=300, 500
        Number of users (ids 1..n_users) and items (ids 1..n_items).
    radii : sequence of int, default=(100, 200, 500)
        Strictly increasing radii in metres; every feature exists once per radius.
    interactions_per_user : int, default=30
        Distinct items each user rates (at most ``n_items``), sampled with a bias
        toward items the user would like.
    random_state : int, RandomState, Generator or None, default=None
        Seed; the same value gives the same data.

    Returns
    -------
    sklearn.utils.Bunch
        ``interactions``: ``user_id``, ``item_id`` (int64), ``rating`` (float32, 1..5),
        ``timestamp`` (int64, increasing within a user); sorted by user then time.
        ``users``: ``user_id``.
        ``items``: ``item_id`` and, for each radius ``r``, float64 columns
        ``{kind}_count_{r}`` for kinds poi, place, traffic, transport, road, railway,
        waterway, building, landuse, natural, water, plus ``road_length_{r}``,
        ``railway_length_{r}``, ``waterway_length_{r}`` (metres) and
        ``building_area_{r}``, ``landuse_area_{r}``, ``natural_area_{r}``,
        ``water_area_{r}`` (square metres). Values never decrease with the radius.
        ``frame``: interactions joined with items, same row order.
        ``user_preference`` (n_users, 3) and ``item_factors`` (n_items, 3): the planted
        weights and factors, the expected rating rising with their dot product;
        ``user_archetype`` (n_users,): the factor each user mostly prefers;
        ``factor_names``: ("urban", "green", "transport"). ``DESCR``.

    Examples
    --------
    >>> from skdssm.datasets import make_geo_interactions
    >>> data = make_geo_interactions(n_users=20, n_items=50, radii=(100, 500),
    ...                              interactions_per_user=5, random_state=0)
    >>> data.interactions.shape
    (100, 4)
    >>> data["items"].shape
    (50, 37)
    >>> bool((data["items"].poi_count_500 >= data["items"].poi_count_100).all())
    True
    """
    n_users = check_scalar(n_users, "n_users", numbers.Integral, min_val=1)
    n_items = check_scalar(n_items, "n_items", numbers.Integral, min_val=1)
    check_scalar(
        interactions_per_user, "interactions_per_user", numbers.Integral, min_val=1, max_val=n_items
    )
    radii = _check_radii(radii)
    rng = check_generator(random_state)

    item_factors = rng.multivariate_normal(np.zeros(len(_SITE_FACTORS)), _FACTOR_COV, n_items)
    items = pd.concat(
        [
            pd.DataFrame({"item_id": np.arange(1, n_items + 1, dtype=np.int64)}),
            _osm_features(rng, item_factors, radii),
        ],
        axis=1,
    )
    user_archetype = rng.integers(len(_SITE_FACTORS), size=n_users)
    user_preference = _ARCHETYPE_WEIGHT * np.eye(len(_SITE_FACTORS))[user_archetype]
    user_preference += rng.normal(0.0, _PREFERENCE_SD, user_preference.shape)
    score = user_preference @ item_factors.T
    user_idx, item_idx = _sample_items(rng, _GEO_SAMPLING_BIAS * score, interactions_per_user)
    noisy_score = score[user_idx, item_idx] + rng.normal(0.0, _GEO_SCORE_SD, user_idx.size)
    rating = np.digitize(noisy_score, _GEO_RATING_CUTS) + 1
    return interaction_bunch(
        _interaction_table(rng, user_idx, item_idx, rating, interactions_per_user),
        pd.DataFrame({"user_id": np.arange(1, n_users + 1, dtype=np.int64)}),
        items,
        user_preference=user_preference,
        user_archetype=user_archetype,
        item_factors=item_factors,
        factor_names=_SITE_FACTORS,
        DESCR=_GEO_DESCR.format(factors=_SITE_FACTORS, radii=tuple(radii.tolist())),
    )


def _osm_features(rng, factors: np.ndarray, radii: np.ndarray) -> pd.DataFrame:
    """OSM-like features, one column per (kind, measure, radius), radius-major order."""
    kinds = list(_OSM_KINDS.values())
    measure = np.array([kind.measure or "" for kind in kinds])
    density, scale, presence = (
        np.array([getattr(kind, field) for kind in kinds])
        for field in ("density", "scale", "presence")
    )
    loadings = np.array([kind.loadings for kind in kinds])
    shape = (factors.shape[0], len(kinds), radii.size)

    drive = factors @ loadings.T  # (n_items, n_kinds)
    relative = np.exp(drive + _LOG_INTENSITY_SD * rng.standard_normal(drive.shape))
    relative *= rng.random(drive.shape) < expit(presence + drive)
    ring_m2 = np.pi * np.diff(radii.astype(float) ** 2, prepend=0.0)
    ring_m = np.diff(radii.astype(float), prepend=0.0)
    # Gamma-mixed Poisson (negative binomial) counts per ring; sums over rings nest.
    count_rate = (density * relative)[:, :, None] * ring_m2 / 1e6 * rng.gamma(2.0, 0.5, shape)
    count_step = rng.poisson(count_rate)
    # A ring holds length or area only where it holds objects of that kind.
    occupied = count_step > 0
    length_step = ((measure == "length") * scale * relative)[:, :, None] * ring_m
    coverage = ((measure == "area") * scale * relative / (1.0 + relative))[:, :, None]
    area_step = np.minimum(coverage * rng.gamma(4.0, 0.25, shape), 1.0) * ring_m2
    blocks = {
        "count": np.cumsum(count_step, axis=2).astype(float),
        "length": np.cumsum(length_step * rng.gamma(2.0, 0.5, shape) * occupied, axis=2),
        "area": np.cumsum(area_step * occupied, axis=2),
    }
    columns = {}
    for r_pos, radius in enumerate(radii):
        for k_pos, (name, kind) in enumerate(_OSM_KINDS.items()):
            for what in ("count", kind.measure) if kind.measure else ("count",):
                columns[f"{name}_{what}_{radius}"] = blocks[what][:, k_pos, r_pos]
    return pd.DataFrame(columns)


def _check_radii(radii) -> np.ndarray:
    values = np.asarray(radii)
    if (
        values.ndim != 1
        or values.size == 0
        or not np.issubdtype(values.dtype, np.integer)
        or (values <= 0).any()
        or (np.diff(values) <= 0).any()
    ):
        raise ValueError(
            f"radii must be a non-empty, strictly increasing sequence of positive integers "
            f"(metres), e.g. (100, 200, 500); got {radii!r}."
        )
    return values.astype(np.int64)


def _sample_items(rng, preference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``k`` distinct items per user, item i with weight ``exp(preference[u, i])``.

    Gumbel top-k: adding Gumbel noise to log-weights and keeping the k largest samples
    without replacement. Returns (user index, item index) arrays, user-major, the items
    of a user in random order (so that order carries no preference signal).
    """
    keys = preference + rng.gumbel(size=preference.shape)
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    top = rng.permuted(top, axis=1)
    return np.repeat(np.arange(preference.shape[0]), k), top.ravel()


def _interaction_table(rng, user_idx, item_idx, rating, per_user: int) -> pd.DataFrame:
    """Interactions from 0-based indices (user-major, ``per_user`` rows a user), with
    1-based ids and Unix times strictly increasing within each user."""
    n_users = user_idx.size // per_user
    start = _START_TIME + rng.integers(0, 365 * 86_400, n_users)
    gaps = rng.integers(60, 3 * 86_400, (n_users, per_user))
    return pd.DataFrame(
        {
            "user_id": (user_idx + 1).astype(np.int64),
            "item_id": (item_idx + 1).astype(np.int64),
            "rating": rating.astype(np.float32),
            "timestamp": (start[:, None] + np.cumsum(gaps, axis=1)).ravel().astype(np.int64),
        }
    )


_IMPLICIT_DESCR = """Synthetic heavy-tailed implicit feedback with planted clusters (skdssm).

{n_interactions} distinct (user, item) interactions of {n_users} users with {n_items} items.
History lengths are lognormal (sigma {history_sigma}), item popularity is Zipf (exponent
{item_zipf}). Users and items fall into {n_clusters} clusters; a share {cluster_affinity} of a
user's interactions are drawn from the items of the user's own cluster (by popularity within
it), the rest from the whole catalogue by popularity. Duplicate pairs were redrawn; the
{n_dropped} left after {rounds} rounds were dropped. Ground truth: ``user_cluster``,
``item_cluster``, ``item_popularity``, ``cluster_affinity``.
"""

# Median history length behind the default n_users: with history_sigma=1.2 the mean is
# about 41 items and, at 1M interactions, the longest histories hold over a thousand.
_MEDIAN_HISTORY = 20
# Default catalogue: one item per this many interactions (20k items at 1M).
_INTERACTIONS_PER_ITEM = 50
_MIN_ITEMS = 1_000
# Duplicate (user, item) draws are redrawn at most this many times, then dropped.
_MAX_REDRAW_ROUNDS = 12
_RESCALING_PASSES = 5
_N_DEVICES = ("mobile", "desktop", "tablet")
_DEVICE_SHARES = (0.6, 0.3, 0.1)
_ITEMS_PER_BRAND = 25
_ACTIVITY_SPAN_DAYS = (30, 730)


def make_implicit_interactions(
    n_interactions: int = 1_000_000,
    *,
    n_users: int | None = None,
    n_items: int | None = None,
    history_sigma: float = 1.2,
    item_zipf: float = 1.1,
    n_clusters: int = 20,
    cluster_affinity: float = 0.5,
    feature_noise: float = 0.2,
    with_features: bool = True,
    random_state=None,
) -> Bunch:
    """Generate heavy-tailed implicit feedback (positive interactions only) at scale.

    A stand-in for click or purchase logs of millions of rows: a few users have thousands of
    items while most have a handful (lognormal history lengths), and a few items take a large
    share of all interactions (Zipf popularity). A planted structure makes personalisation
    pay: users and items fall into ``n_clusters`` clusters and a share ``cluster_affinity``
    of each user's interactions comes from the items of the user's own cluster. Generation is
    vectorised (no loop over users or rows) and memory-light (int32 ids, categorical
    features), for benchmarks at tens of millions of rows (``benchmarks/bench_scale.py``).

    Each user ``u`` gets a history length ``L_u`` drawn lognormal with shape
    ``history_sigma``, scaled so that the lengths sum to ``n_interactions`` and clipped to
    ``[1, n_items // 2]`` (the excess of clipped users goes to the others), then rounded at
    random. Each of the ``L_u`` items is drawn independently: with probability
    ``cluster_affinity`` from the user's cluster, else from the whole catalogue, item ``i``
    with weight ``rank_i ** -item_zipf`` in both cases. **Duplicates**: a pair drawn twice is
    redrawn from the same distribution, up to 12 rounds; the duplicates still left (heavy
    users who have exhausted their cluster) are dropped and counted in
    ``n_dropped_duplicates``. The number of rows is therefore approximate: about
    ``n_interactions - n_dropped_duplicates``, a few percent short at 100k rows with the
    defaults and within 1% from 1M rows. The order of a user's items carries no signal;
    their timestamps increase strictly, over an activity span of 30 days to 2 years.

    Parameters
    ----------
    n_interactions : int, default=1_000_000
        Target number of rows (distinct (user, item) pairs); the result is within a few
        percent (see above).
    n_users : int, default=None
        Number of users (ids 1..n_users). None: ``n_interactions`` divided by the mean
        history length, so that the median history holds about 20 items (2.4k users per
        100k interactions with the default ``history_sigma``).
    n_items : int, default=None
        Catalogue size (ids 1..n_items). None: ``n_interactions // 50``, at least 1000
        (20k items at 1M rows). Items that are never drawn stay in ``items``.
    history_sigma : float >= 0, default=1.2
        Shape of the lognormal history lengths. 1.2 gives a longest history about 80 times
        the median at 1M rows (a dozen users with over 1000 items); 0 gives every user the
        same length.
    item_zipf : float >= 0, default=1.1
        Exponent of the Zipf popularity: the item of popularity rank ``r`` (1-based, ranks in
        random id order) is drawn with weight ``r ** -item_zipf``. The realised counts
        follow that slope beyond the first thousand ranks and are flatter in the head, where
        an item can be taken only once per user. With the defaults, about 40% of the
        interactions fall on the top 1% of items at 1M rows; 0 makes every item equally
        popular.
    n_clusters : int, default=20
        Number of user clusters and of item clusters (user cluster ``c`` prefers item
        cluster ``c``); users and items are spread evenly over them.
    cluster_affinity : float in [0, 1], default=0.5
        Share of a user's draws taken from the user's own cluster. 0 leaves popularity as
        the only signal (a popularity ranking is then optimal); 1 confines every user to a
        cluster.
    feature_noise : float in [0, 1], default=0.2
        Share of users (items) whose ``segment`` (``category``) is drawn at random instead
        of equal to the cluster, so the features reveal the clusters only partly.
    with_features : bool, default=True
        Add the user features ``segment`` and ``device`` and the item features
        ``category``, ``brand`` and ``price``. False keeps ids and timestamps only.
    random_state : int, RandomState, Generator or None, default=None
        Seed; the same value gives the same data.

    Returns
    -------
    sklearn.utils.Bunch
        ``interactions``: ``user_id``, ``item_id`` (int32), ``timestamp`` (int64 Unix
        seconds, strictly increasing within a user); sorted by user then time, one row per
        distinct pair.
        ``users``: ``user_id`` and, with features, ``segment`` (category ``segment_<k>``,
        the cluster up to ``feature_noise``) and ``device`` (category, uninformative).
        ``items``: ``item_id`` and, with features, ``category`` (category
        ``category_<k>``, the cluster up to ``feature_noise``), ``brand`` (category, about
        25 items each, nested in ``category``) and ``price`` (float32, uninformative).
        ``frame``: interactions with the user and then the item columns, same row order
        (the layout of :func:`make_interactions`).
        ``user_cluster`` (n_users,), ``item_cluster`` (n_items,): ground-truth clusters
        aligned with ``users`` and ``items``; ``item_popularity`` (n_items,): probability of
        each item in a draw from the whole catalogue; ``cluster_affinity``.
        ``n_dropped_duplicates``: duplicate draws dropped after the redraw rounds. ``DESCR``.

    Examples
    --------
    >>> from skdssm.datasets import make_implicit_interactions
    >>> data = make_implicit_interactions(20_000, random_state=0)
    >>> data.frame.columns.tolist()
    ['user_id', 'item_id', 'timestamp', 'segment', 'device', 'category', 'brand', 'price']
    >>> abs(len(data.frame) - 20_000) < 1_000
    True
    >>> bool(data.interactions.duplicated(["user_id", "item_id"]).any())
    False
    """
    n_interactions = check_scalar(n_interactions, "n_interactions", numbers.Integral, min_val=1)
    check_scalar(history_sigma, "history_sigma", numbers.Real, min_val=0)
    if n_users is None:
        mean_history = _MEDIAN_HISTORY * np.exp(history_sigma**2 / 2)
        n_users = max(1, round(n_interactions / mean_history))
    if n_items is None:
        n_items = max(_MIN_ITEMS, n_interactions // _INTERACTIONS_PER_ITEM)
    n_users = check_scalar(n_users, "n_users", numbers.Integral, min_val=1)
    n_items = check_scalar(n_items, "n_items", numbers.Integral, min_val=1)
    check_scalar(item_zipf, "item_zipf", numbers.Real, min_val=0)
    check_scalar(n_clusters, "n_clusters", numbers.Integral, min_val=1)
    if n_clusters > min(n_users, n_items):
        raise ValueError(
            f"n_clusters={n_clusters} must not exceed the number of users ({n_users}) or of "
            f"items ({n_items}); lower n_clusters, or raise n_interactions (the default n_users "
            "and n_items grow with it)."
        )
    check_scalar(cluster_affinity, "cluster_affinity", numbers.Real, min_val=0, max_val=1)
    check_scalar(feature_noise, "feature_noise", numbers.Real, min_val=0, max_val=1)
    check_scalar(with_features, "with_features", (bool, np.bool_))
    max_history = max(1, n_items // 2)
    if n_interactions > n_users * max_history:
        raise ValueError(
            f"n_interactions={n_interactions} does not fit {n_users} users with at most "
            f"n_items // 2 = {max_history} items each; raise n_users or n_items, or lower "
            "n_interactions."
        )
    rng = check_generator(random_state)

    user_cluster = rng.permutation(np.arange(n_users) % n_clusters).astype(np.int32)
    item_cluster = rng.permutation(np.arange(n_items) % n_clusters).astype(np.int32)
    rank = rng.permutation(n_items) + 1.0
    item_popularity = rank**-item_zipf
    item_popularity /= item_popularity.sum()
    sampler = _ClusterPopularitySampler(item_popularity, item_cluster, n_clusters,
                                        cluster_affinity)

    lengths = _history_lengths(rng, n_users, n_interactions, history_sigma, max_history)
    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    pairs = users * n_items + sampler.draw(rng, user_cluster[users])
    del users
    pairs, n_dropped = _distinct_pairs(rng, pairs, n_items, user_cluster, sampler)
    user_idx = (pairs // n_items).astype(np.int32)
    item_idx = (pairs % n_items).astype(np.int32)
    del pairs
    # Pairs come sorted by (user, item); a random order within each user becomes time order
    # (one int64 sort key, user in the high bits and random low bits: cheaper than lexsort).
    order = np.argsort((user_idx.astype(np.int64) << 32) | rng.integers(0, 1 << 32, user_idx.size))
    item_idx = item_idx[order]
    del order
    interactions = pd.DataFrame(
        {
            "user_id": user_idx + np.int32(1),
            "item_id": item_idx + np.int32(1),
            "timestamp": _increasing_times(rng, user_idx, n_users),
        }
    )
    users_frame = pd.DataFrame({"user_id": np.arange(1, n_users + 1, dtype=np.int32)})
    items_frame = pd.DataFrame({"item_id": np.arange(1, n_items + 1, dtype=np.int32)})
    if with_features:
        users_frame = users_frame.assign(**_implicit_user_features(rng, user_cluster, n_clusters,
                                                                   feature_noise))
        items_frame = items_frame.assign(**_implicit_item_features(rng, item_cluster, n_clusters,
                                                                   feature_noise))
    return Bunch(
        interactions=interactions,
        users=users_frame,
        items=items_frame,
        frame=_gathered_frame(interactions, users_frame, items_frame, user_idx, item_idx),
        user_cluster=user_cluster,
        item_cluster=item_cluster,
        item_popularity=item_popularity,
        cluster_affinity=float(cluster_affinity),
        n_dropped_duplicates=n_dropped,
        DESCR=_IMPLICIT_DESCR.format(
            n_interactions=len(interactions), n_users=n_users, n_items=n_items,
            history_sigma=history_sigma, item_zipf=item_zipf, n_clusters=n_clusters,
            cluster_affinity=cluster_affinity, n_dropped=n_dropped, rounds=_MAX_REDRAW_ROUNDS,
        ),
    )


def _history_lengths(rng, n_users: int, total: int, sigma: float, cap: int) -> np.ndarray:
    """Lognormal lengths summing to about ``total``, in [1, cap], stochastically rounded.

    Lengths clipped at ``cap`` give their excess to the others (a few rescaling passes), so
    that clipping the heaviest users does not shrink the total.
    """
    raw = rng.lognormal(0.0, sigma, n_users)
    scaled = raw * (total / raw.sum())
    for _ in range(_RESCALING_PASSES):
        clipped = scaled >= cap
        free = total - cap * clipped.sum()
        if not clipped.any() or free <= 0:
            break
        scaled = np.where(clipped, cap, raw * (free / raw[~clipped].sum()))
    lengths = np.floor(scaled + rng.random(n_users)).astype(np.int64)
    return np.clip(lengths, 1, cap)


class _ClusterPopularitySampler:
    """Draw items by popularity, from the drawer's cluster with probability ``affinity``.

    Inverse-CDF sampling with one ``searchsorted`` per draw: the within-cluster CDFs are laid
    end to end, cluster ``c`` spanning ``(c, c + 1]``, so ``c + uniform`` finds an item of
    cluster ``c`` for every draw at once.
    """

    def __init__(self, popularity, item_cluster, n_clusters: int, affinity: float):
        self.affinity = affinity
        self.global_cdf = np.cumsum(popularity)
        self.global_cdf /= self.global_cdf[-1]
        self.by_cluster = np.argsort(item_cluster, kind="stable").astype(np.int32)
        sizes = np.bincount(item_cluster, minlength=n_clusters)
        self.cluster_end = np.cumsum(sizes)
        weight = popularity[self.by_cluster]
        running = np.cumsum(weight)
        before = np.repeat(running[self.cluster_end - sizes] - weight[self.cluster_end - sizes],
                           sizes)
        within = running - before
        self.cluster_cdf = np.repeat(np.arange(n_clusters), sizes) + within / np.repeat(
            within[self.cluster_end - 1], sizes)

    def draw(self, rng, cluster: np.ndarray) -> np.ndarray:
        """One item index (int64) per entry of ``cluster`` (the drawer's cluster)."""
        uniform = rng.random(cluster.size)
        from_cluster = rng.random(cluster.size) < self.affinity
        items = np.searchsorted(self.global_cdf, uniform, side="right")
        own = cluster[from_cluster]
        position = np.searchsorted(self.cluster_cdf, own + uniform[from_cluster], side="right")
        # c + u can round up to c + 1 when u is within 2**-53 of 1.
        position = np.minimum(position, self.cluster_end[own] - 1)
        items[from_cluster] = self.by_cluster[position]
        return np.minimum(items, self.global_cdf.size - 1)


def _distinct_pairs(rng, pairs: np.ndarray, n_items: int, user_cluster, sampler):
    """Sort ``user * n_items + item`` codes and redraw the item of each repeated code.

    Returns the sorted distinct codes and how many repeats were dropped after
    ``_MAX_REDRAW_ROUNDS`` rounds. ``pairs`` is sorted in place.
    """
    pairs.sort()
    for _ in range(_MAX_REDRAW_ROUNDS):
        repeated = np.flatnonzero(pairs[1:] == pairs[:-1]) + 1
        if repeated.size == 0:
            return pairs, 0
        users = pairs[repeated] // n_items
        pairs[repeated] = users * n_items + sampler.draw(rng, user_cluster[users])
        # Only the redrawn codes are out of place: timsort merges the sorted runs cheaply.
        pairs.sort(kind="stable")
    keep = np.ones(pairs.size, dtype=bool)
    keep[1:] = pairs[1:] != pairs[:-1]
    return pairs[keep], int(pairs.size - keep.sum())


def _increasing_times(rng, user_idx: np.ndarray, n_users: int) -> np.ndarray:
    """Unix seconds strictly increasing within each user (``user_idx`` sorted, every user
    present)."""
    counts = np.bincount(user_idx, minlength=n_users)
    start = _START_TIME + rng.integers(0, 365 * 86_400, n_users)
    span = rng.uniform(*_ACTIVITY_SPAN_DAYS, n_users) * 86_400
    mean_gap = span / np.maximum(counts, 1)
    gaps = 1 + np.floor(rng.exponential(1.0, user_idx.size) * mean_gap[user_idx]).astype(np.int64)
    elapsed = np.cumsum(gaps)
    first = np.cumsum(counts) - counts  # every user has at least one row
    elapsed -= np.repeat(elapsed[first] - gaps[first], counts)
    elapsed += start[user_idx]
    return elapsed


def _categories(prefix: str, codes: np.ndarray, n_categories: int) -> pd.Categorical:
    return pd.Categorical.from_codes(
        codes, categories=[f"{prefix}{k}" for k in range(n_categories)])


def _implicit_user_features(rng, cluster, n_clusters: int, noise: float) -> dict:
    device = rng.choice(len(_N_DEVICES), size=cluster.size, p=_DEVICE_SHARES)
    return {
        "segment": _categories("segment_", _noisy(rng, cluster, n_clusters, noise), n_clusters),
        "device": pd.Categorical.from_codes(device, categories=list(_N_DEVICES)),
    }


def _implicit_item_features(rng, cluster, n_clusters: int, noise: float) -> dict:
    category = _noisy(rng, cluster, n_clusters, noise)
    brands_per_category = max(1, cluster.size // (_ITEMS_PER_BRAND * n_clusters))
    brand = category * brands_per_category + rng.integers(brands_per_category, size=cluster.size)
    return {
        "category": _categories("category_", category, n_clusters),
        "brand": _categories("brand_", brand, n_clusters * brands_per_category),
        "price": rng.lognormal(3.0, 0.8, cluster.size).astype(np.float32),
    }


def _gathered_frame(interactions, users, items, user_idx, item_idx) -> pd.DataFrame:
    """What :func:`interaction_bunch` builds with two merges, by positional gathers (ids are
    1..n, so row ``i - 1`` of ``users`` / ``items`` holds id ``i``): no hash join over
    millions of rows, and the interaction columns are shared, not copied."""
    return pd.concat(
        [
            interactions,
            users.iloc[user_idx, 1:].reset_index(drop=True),
            items.iloc[item_idx, 1:].reset_index(drop=True),
        ],
        axis=1,
    )
