from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skdssm.sampling import (
    SAMPLERS,
    InBatchSampler,
    LogUniformSampler,
    MixedSampler,
    PopularitySampler,
    UniformSampler,
    make_sampler,
)

DRAWING = ["uniform", "popularity", "log_uniform", "mixed"]


def interactions_with_counts(counts, extra_user_items=()):
    """Users 1.. give item i exactly counts[i] interactions; user 0 holds extra_user_items."""
    items = np.repeat(np.arange(len(counts)), counts)
    users = 1 + np.concatenate([np.arange(c) for c in counts])
    users = np.concatenate([np.zeros(len(extra_user_items), dtype=np.int64), users])
    items = np.concatenate([np.asarray(extra_user_items, dtype=np.int64), items])
    return users, items


def assert_follows(draws, probabilities, allowed):
    """Chi-square goodness of fit of draws to probabilities restricted to allowed items."""
    draws = draws.ravel()
    assert np.isin(draws, allowed).all()
    expected = probabilities[allowed] / probabilities[allowed].sum() * len(draws)
    observed = np.bincount(draws, minlength=len(probabilities))[allowed]
    assert chisquare(observed, expected).pvalue > 1e-3


# --- distributions -------------------------------------------------------------------

COUNTS = np.array([5, 1, 0, 3, 40, 2, 9, 20, 1, 6])


@pytest.mark.parametrize("name", DRAWING)
def test_draws_follow_the_formula_restricted_to_allowed_items(name):
    # User 0 already has items 4 (the most popular) and 6; its row's positive is 4.
    users, items = interactions_with_counts(COUNTS, extra_user_items=[4, 6])
    sampler = make_sampler(name, n_negatives=5, random_state=0).fit(users, items, n_items=10)
    n_rows = 20_000
    draws = sampler.sample(np.zeros(n_rows, dtype=int), np.full(n_rows, 4))
    allowed = np.setdiff1d(np.flatnonzero(sampler.probabilities_), [4, 6])
    assert_follows(draws, sampler.probabilities_, allowed)


def test_probability_formulas():
    users, items = interactions_with_counts(COUNTS)
    uniform = UniformSampler().fit(users, items, n_items=10)
    np.testing.assert_allclose(uniform.probabilities_, np.full(10, 0.1))

    popularity = PopularitySampler(alpha=0.75).fit(users, items, n_items=10)
    weights = COUNTS**0.75
    np.testing.assert_allclose(popularity.probabilities_, weights / weights.sum())
    assert popularity.probabilities_[2] == 0  # never seen: never drawn

    log_uniform = LogUniformSampler().fit(users, items, n_items=10)
    # Ranks by count, ties by position: 4, 7, 6, 9, 0, 3, 5, 1, 8, 2.
    np.testing.assert_array_equal(log_uniform.item_by_rank_, [4, 7, 6, 9, 0, 3, 5, 1, 8, 2])
    rank = np.arange(10)
    expected = (np.log(rank + 2) - np.log(rank + 1)) / np.log(11)
    np.testing.assert_allclose(log_uniform.probabilities_[log_uniform.item_by_rank_], expected)
    assert log_uniform.probabilities_.sum() == pytest.approx(1.0)


def test_popularity_alpha_zero_is_uniform_over_seen_items():
    users, items = interactions_with_counts(COUNTS)
    sampler = PopularitySampler(alpha=0).fit(users, items, n_items=10)
    np.testing.assert_allclose(sampler.probabilities_, (COUNTS > 0) / 9)


def test_exact_fallback_when_known_positives_hold_almost_all_mass():
    # Allowed items 0 and 1 hold 4 / 8004 of the mass: rejection almost never succeeds.
    counts = np.array([1, 3] + [1000] * 8)
    users, items = interactions_with_counts(counts, extra_user_items=range(2, 10))
    sampler = PopularitySampler(n_negatives=4, alpha=1.0, random_state=1)
    sampler.fit(users, items, n_items=10)
    draws = sampler.sample(np.zeros(5000, dtype=int), np.full(5000, 9))
    assert_follows(draws, sampler.probabilities_, np.array([0, 1]))


# --- validity -----------------------------------------------------------------------


@st.composite
def interaction_sets(draw):
    n_items = draw(st.integers(1, 6))
    n_users = draw(st.integers(1, 4))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
            min_size=1,
            max_size=15,
        )
    )
    users, items = np.array(pairs).T
    return users, items, n_items


@settings(max_examples=60, deadline=None)
@given(
    interaction_sets(),
    st.sampled_from(DRAWING),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_never_the_positive_nor_a_known_positive(interactions, name, exclude, seed):
    users, items, n_items = interactions
    sampler = make_sampler(name, n_negatives=3, exclude_known_positives=exclude, random_state=seed)
    sampler.fit(users, items, n_items=n_items)
    known = {(u, i) for u, i in zip(users.tolist(), items.tolist())}
    drawable = set(np.flatnonzero(sampler.probabilities_).tolist())
    allowed = [
        {i for i in drawable if i != positive and not (exclude and (user, i) in known)}
        for user, positive in zip(users.tolist(), items.tolist())
    ]
    if not all(allowed):
        stuck = next(row for row, items_ in enumerate(allowed) if not items_)
        with pytest.raises(ValueError, match=f"User position {users[stuck]} has no valid negative"):
            sampler.sample(users, items)
        return
    negatives = sampler.sample(users, items)
    for row, row_negatives in enumerate(negatives.tolist()):
        assert set(row_negatives) <= allowed[row]


def test_known_positives_are_drawn_when_exclusion_is_off():
    users, items = np.zeros(4, dtype=int), np.arange(4)
    sampler = UniformSampler(n_negatives=2, exclude_known_positives=False, random_state=0)
    rows = np.zeros(1000, dtype=int)
    draws = sampler.fit(users, items, n_items=6).sample(rows, rows)
    assert set(np.unique(draws).tolist()) == {1, 2, 3, 4, 5}
    excluded = UniformSampler(n_negatives=2, random_state=0).fit(users, items, n_items=6)
    draws = excluded.sample(rows, rows)
    assert set(np.unique(draws).tolist()) == {4, 5}


def test_error_names_the_user_without_negatives():
    users, items = np.array([0, 1, 1, 1]), np.array([0, 0, 1, 2])
    sampler = UniformSampler(random_state=0).fit(users, items, n_items=3)
    assert sampler.sample([0], [0]).shape == (1, 4)
    message = "User position 1 has no valid negative: its positive and known positives cover all 3"
    with pytest.raises(ValueError, match=message):
        sampler.sample([0, 1], [0, 2])
    # Popularity cannot draw the never-seen item 3, so user 1 is stuck there too.
    popularity = PopularitySampler().fit(users, items, n_items=4)
    with pytest.raises(ValueError, match="User position 1 .* all 3 items that PopularitySampler"):
        popularity.sample([1], [0])
    single = UniformSampler(exclude_known_positives=False).fit([0], [0], n_items=1)
    message = "User position 0 has no valid negative: its positive cover all 1 items"
    with pytest.raises(ValueError, match=message):
        single.sample([0], [0])


# --- shapes, determinism, masks ------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_shapes_and_dtype(name):
    params = {} if name == "in_batch" else {"n_negatives": 3}
    sampler = make_sampler(name, random_state=0, **params).fit([0, 1, 2], [0, 1, 2], n_items=5)
    negatives = sampler.sample([0, 1, 2, 0], [0, 1, 2, 0])
    assert negatives.dtype == np.int64
    assert negatives.shape == (4, 0 if name == "in_batch" else 3)
    assert sampler.log_q_.shape == sampler.batch_log_q_.shape == (5,)
    assert sampler.uses_batch_negatives == (name in {"in_batch", "mixed"})


@pytest.mark.parametrize("name", DRAWING)
def test_same_seed_same_samples(name):
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 20, 100), rng.integers(0, 10, 100)

    def draw(random_state):
        sampler = make_sampler(name, random_state=random_state).fit(users, items, n_items=10)
        return np.concatenate([sampler.sample(users, items), sampler.sample(users, items)])

    np.testing.assert_array_equal(draw(7), draw(7))
    np.testing.assert_array_equal(draw(np.random.default_rng(3)), draw(np.random.default_rng(3)))
    assert not np.array_equal(draw(7), draw(8))


def test_known_positive_mask_matches_brute_force():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 200), rng.integers(0, 40, 200)
    sampler = UniformSampler().fit(users, items, n_items=50, n_users=35)
    query_users, query_items = rng.integers(0, 35, 25), rng.integers(0, 50, 60)
    known = set(zip(users.tolist(), items.tolist()))
    expected = [[(u, i) in known for i in query_items.tolist()] for u in query_users.tolist()]
    mask = sampler.known_positive_mask(query_users, query_items)
    assert mask.dtype == bool and mask.shape == (25, 60)
    np.testing.assert_array_equal(mask, expected)
    assert mask.any()


# --- log q ---------------------------------------------------------------------------


def test_log_q_of_each_sampler():
    users, items = np.array([0, 1, 2, 3]), np.array([0, 0, 0, 1])
    uniform = UniformSampler().fit(users, items, n_items=4)
    np.testing.assert_allclose(uniform.log_q_, np.log(np.full(4, 0.25)))
    frequency_log_q = [np.log(0.75), np.log(0.25), -np.inf, -np.inf]
    np.testing.assert_allclose(uniform.batch_log_q_, frequency_log_q)
    in_batch = InBatchSampler().fit(users, items, n_items=4)
    np.testing.assert_allclose(in_batch.log_q_, frequency_log_q)
    popularity = PopularitySampler(alpha=0.5).fit(users, items, n_items=4)
    log_q = np.log([np.sqrt(3), 1]) - np.log(np.sqrt(3) + 1)
    np.testing.assert_allclose(popularity.log_q_, [*log_q, -np.inf, -np.inf])


def test_batch_user_log_q_is_each_users_share_of_the_rows():
    users, items = np.array([0, 0, 0, 2]), np.array([0, 1, 2, 1])
    sampler = InBatchSampler().fit(users, items, n_items=3, n_users=4)
    np.testing.assert_allclose(sampler.batch_user_log_q_, [np.log(0.75), -np.inf, np.log(0.25), -np.inf])


def test_mixture_log_q_pools_batch_frequency_and_uniform_draws():
    users, items = np.array([0, 1, 2, 3]), np.array([0, 0, 0, 1])
    mixed = MixedSampler().fit(users, items, n_items=4)
    # 4 batch columns by frequency (.75, .25, 0, 0) and 2 uniform columns (.25 each).
    expected = (4 * np.array([0.75, 0.25, 0, 0]) + 2 * 0.25) / 6
    np.testing.assert_allclose(mixed.mixture_log_q(n_batch=4, n_sampled=2), np.log(expected))
    np.testing.assert_allclose(mixed.mixture_log_q(n_batch=3, n_sampled=0), mixed.batch_log_q_)
    np.testing.assert_allclose(mixed.mixture_log_q(n_batch=0, n_sampled=5), mixed.log_q_)
    with pytest.raises(ValueError, match="n_batch \\+ n_sampled > 0"):
        mixed.mixture_log_q(0, 0)


# --- parameters and inputs -----------------------------------------------------------


def test_make_sampler_builds_each_kind_and_rejects_unused_parameters():
    for name, sampler_class in SAMPLERS.items():
        assert type(make_sampler(name)) is sampler_class
    with pytest.raises(ValueError, match="Unknown negative sampler 'hard'; choose one of"):
        make_sampler("hard")
    message = r"'in_batch' sampler takes no parameter \['n_negatives'\]"
    with pytest.raises(ValueError, match=message):
        make_sampler("in_batch", n_negatives=4)
    with pytest.raises(ValueError, match=r"takes no parameter \['alpha'\]"):
        make_sampler("uniform", alpha=0.5)


def test_params_are_validated_in_fit_and_clone_works():
    sampler = make_sampler("popularity", n_negatives=0)
    assert clone(sampler).get_params()["n_negatives"] == 0  # __init__ only stores
    with pytest.raises(ValueError, match="n_negatives == 0, must be >= 1"):
        sampler.fit([0], [0], n_items=2)
    with pytest.raises(ValueError, match="alpha == -1"):
        PopularitySampler(alpha=-1).fit([0], [0], n_items=2)
    with pytest.raises(TypeError, match="exclude_known_positives must be an instance of"):
        UniformSampler(exclude_known_positives="yes").fit([0], [0], n_items=2)


def test_inputs_are_validated():
    with pytest.raises(NotFittedError):
        UniformSampler().sample([0], [0])
    with pytest.raises(ValueError, match="item_positions must be positions below 3; got 3"):
        UniformSampler().fit([0, 1], [0, 3], n_items=3)
    message = "item_positions must hold integer positions; got dtype float64"
    with pytest.raises(TypeError, match=message):
        UniformSampler().fit([0, 1], [0.0, 1.0], n_items=3)
    with pytest.raises(ValueError, match="same length; got 2 and 1"):
        UniformSampler().fit([0, 1], [0], n_items=3)
    with pytest.raises(ValueError, match="n_users == 1, must be >= 2"):
        UniformSampler().fit([0, 1], [0, 1], n_items=3, n_users=1)
    sampler = UniformSampler().fit([0, 1], [0, 1], n_items=3)
    with pytest.raises(ValueError, match="user_positions must be positions below 2; got 5"):
        sampler.sample([5], [0])
    with pytest.raises(ValueError, match="positive_items must be non-negative positions; got -1"):
        sampler.sample([0], [-1])
    with pytest.raises(ValueError, match="item_positions must be positions below 3; got 7"):
        sampler.known_positive_mask([0], [7])


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_known_positive_mask_equals_a_brute_force_lookup(data):
    n_users, n_items = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 9))
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
                               min_size=1, max_size=30))
    users, items = map(np.array, zip(*pairs))
    sampler = InBatchSampler().fit(users, items, n_items=n_items, n_users=n_users)
    rows = np.array(data.draw(st.lists(st.integers(0, n_users - 1), min_size=1, max_size=8)))
    columns = np.array(data.draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=8)))
    known = set(pairs)
    expected = np.array([[(u, i) in known for i in columns] for u in rows])
    np.testing.assert_array_equal(sampler.known_positive_mask(rows, columns), expected)
