"""Ragged user histories gathered per batch equal brute-force bags, sequences and profiles."""

import numpy as np
import pandas as pd
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skdssm._features import (
    HISTORY,
    HISTORY_BAG,
    HISTORY_END,
    ITEM_POSITION,
    LEAVE_ONE_OUT,
    N_RESERVED,
    PAD,
    POOLING_TRANSPOSE,
    PROFILE,
    USER_POSITION,
)
from skdssm._history import UserHistories, UserInputs, UserProfiles, bag_pooling_transpose
from skdssm.nn import pooled_mean
from skdssm.preprocessing import HistoryBuilder, UserProfileEncoder


@st.composite
def event_logs(draw):
    """A small log with repeated items, tied timestamps and users of very different lengths."""
    n_users = draw(st.integers(1, 5))
    n_items = draw(st.integers(1, 8))
    n_rows = draw(st.integers(1, 40))
    users = draw(st.lists(st.integers(0, n_users - 1), min_size=n_rows, max_size=n_rows))
    items = draw(st.lists(st.integers(0, n_items - 1), min_size=n_rows, max_size=n_rows))
    times = draw(st.lists(st.integers(0, 6), min_size=n_rows, max_size=n_rows))
    return pd.DataFrame({"user": users, "item": items, "time": times}), n_users, n_items


def ordered_events(log: pd.DataFrame, user: int) -> list:
    """The user's items, oldest first (ties keep their row order)."""
    rows = log[log["user"] == user]
    return rows.sort_values("time", kind="stable")["item"].tolist()


def brute_bag(log, user, own, width) -> list:
    """HistoryBuilder(leave_one_out=True)'s rule, written out: the last width + 1 events lose
    every occurrence of the row's item when it is among them, else the oldest."""
    window = ordered_events(log, user)[-(width + 1):]
    if own in window:
        return [item for item in window if item != own]
    return window[-width:] if width else []


def brute_sequence(log, user, time, width) -> list:
    rows = log[(log["user"] == user) & (log["time"] < time)]
    return rows.sort_values("time", kind="stable")["item"].tolist()[-width:]


def histories_of(log, n_users) -> UserHistories:
    return UserHistories.from_events(log["user"].to_numpy(), log["item"].to_numpy(), n_users,
                                     log["time"].to_numpy())


def split_bags(arrays) -> list:
    codes = arrays[f"user:{HISTORY_BAG}"]
    offsets = arrays[f"user:{HISTORY_BAG}:offsets"]
    return [sorted(part - N_RESERVED) for part in np.split(codes, offsets[1:])]


@settings(max_examples=60, deadline=None)
@given(event_logs(), st.integers(0, 6))
def test_bags_equal_the_brute_force_rule_and_history_builder(case, width):
    log, n_users, _ = case
    gather = UserInputs("bag", histories_of(log, n_users), bag_size=width)
    rows = {USER_POSITION: log["user"].to_numpy(), ITEM_POSITION: log["item"].to_numpy()}
    bags = split_bags(gather.arrays(rows))
    expected = [sorted(brute_bag(log, u, i, width)) for u, i in zip(log["user"], log["item"])]
    assert bags == expected
    if width:
        # The same bags as the sklearn transformer a user can run on the frame.
        shifted = log.assign(item=log["item"] + 1)  # HistoryBuilder pads with 0
        block = HistoryBuilder("user", "item", "time", max_len=width, leave_one_out=True,
                               output_col="bag").fit(shifted).transform(shifted)
        block = block[[f"bag[{j}]" for j in range(width)]].to_numpy()
        assert [sorted(row[row != 0] - 1) for row in block] == expected
    # Serving (no own item): the user's last width items.
    served = split_bags(gather.arrays({USER_POSITION: np.arange(n_users)}))
    assert served == [sorted(ordered_events(log, u)[-width:] if width else []) for u in range(n_users)]


@settings(max_examples=60, deadline=None)
@given(event_logs(), st.integers(1, 5))
def test_sequences_hold_only_earlier_items_and_equal_history_builder(case, width):
    log, n_users, _ = case
    histories = histories_of(log, n_users)
    users, times = log["user"].to_numpy(), log["time"].to_numpy()
    gather = UserInputs("sequence", histories, sequence_length=width)
    rows = {USER_POSITION: users, HISTORY_END: histories.ends_before(users, times)}
    block = gather.arrays(rows)[f"user:{HISTORY}"]
    for row, (user, time) in zip(block, zip(users, times)):
        expected = brute_sequence(log, user, time, width)
        assert (row[: width - len(expected)] == PAD).all()
        assert (row[width - len(expected):] - N_RESERVED).tolist() == expected
    shifted = log.assign(item=log["item"] + 1)
    reference = HistoryBuilder("user", "item", "time", max_len=width).fit_transform(shifted)
    reference = reference[[f"history[{j}]" for j in range(width)]].to_numpy()
    np.testing.assert_array_equal(np.where(block == PAD, 0, block - N_RESERVED + 1), reference)


@settings(max_examples=60, deadline=None)
@given(event_logs(), st.data())
def test_profiles_equal_user_profile_encoder(case, data):
    log, n_users, n_items = case
    features = np.asarray(data.draw(st.lists(st.floats(-5, 5), min_size=n_items * 2,
                                             max_size=n_items * 2))).reshape(n_items, 2)
    frame = log.assign(f0=features[log["item"], 0], f1=features[log["item"], 1])
    histories = histories_of(log, n_users)
    gather = UserInputs("profile", histories, profiles=UserProfiles(histories, features))
    users, items = log["user"].to_numpy(), log["item"].to_numpy()
    encoder = UserProfileEncoder(["f0", "f1"], user_col="user")
    # Training rows: leave-one-out profiles (fit_transform), served users: full profiles.
    own = gather.arrays({USER_POSITION: users, ITEM_POSITION: items,
                         LEAVE_ONE_OUT: np.ones(len(users), bool)})[f"user:{PROFILE}"]
    np.testing.assert_allclose(own, encoder.fit_transform(frame)[["profile_f0", "profile_f1"]],
                               rtol=1e-5, atol=1e-5)
    queries = pd.DataFrame({"user": np.arange(n_users + 1)})  # the last one is unknown
    served = gather.arrays({USER_POSITION: np.r_[np.arange(n_users), -1]})[f"user:{PROFILE}"]
    np.testing.assert_allclose(served, encoder.transform(queries)[["profile_f0", "profile_f1"]],
                               rtol=1e-5, atol=1e-5)


@given(event_logs(), st.lists(st.integers(-1, 4), min_size=1, max_size=8))
def test_take_gives_each_query_its_users_history(case, users):
    log, n_users, _ = case
    users = np.minimum(np.asarray(users), n_users - 1)
    histories = histories_of(log, n_users)
    taken = histories.take(users)
    for row, user in enumerate(users):
        got = taken.items[taken.indptr[row]:taken.indptr[row + 1]].tolist()
        assert got == (ordered_events(log, user) if user >= 0 else [])


def test_storage_grows_with_the_events_not_a_width():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 100, 5000), rng.integers(0, 50, 5000)
    histories = UserHistories.from_events(users, items, 100, rng.random(5000))
    assert len(histories.items) == 5000
    assert histories.nbytes == 8 * (101 + 5000 + 5000)
    assert histories.lengths().tolist() == np.bincount(users, minlength=100).tolist()


def dense_pooling(codes, offsets, n_codes) -> np.ndarray:
    """P[i, c]: the share of code c in row i's bag (padding left out), written out row by row."""
    pooling = np.zeros((len(offsets), n_codes))
    for row, part in enumerate(np.split(np.asarray(codes), np.asarray(offsets)[1:])):
        part = part[part != PAD]
        for code in part:
            pooling[row, code] += 1.0 / len(part)
    return pooling


def dense_transpose(rows, code_offsets, weights, n_rows) -> np.ndarray:
    transpose = np.zeros((len(code_offsets), n_rows))
    for code, part in enumerate(np.split(np.arange(len(rows)), code_offsets[1:])):
        np.add.at(transpose[code], rows[part], weights[part])
    return transpose


@settings(max_examples=60, deadline=None)
@given(event_logs(), st.integers(0, 6))
def test_training_bags_carry_the_transpose_of_their_pooling_matrix(case, width):
    log, n_users, n_items = case
    n_codes = n_items + N_RESERVED
    gather = UserInputs("bag", histories_of(log, n_users), bag_size=width, bag_codes=n_codes)
    rows = {USER_POSITION: log["user"].to_numpy(), ITEM_POSITION: log["item"].to_numpy()}
    arrays = gather.arrays(rows)
    key = f"user:{HISTORY_BAG}"
    transpose = [arrays[key + suffix] for suffix in POOLING_TRANSPOSE]
    expected = dense_pooling(arrays[key], arrays[key + ":offsets"], n_codes)
    np.testing.assert_allclose(dense_transpose(*transpose, len(log)), expected.T, rtol=1e-6)
    # Serving batches (no bag_codes) carry only the bags.
    assert not set(UserInputs("bag", gather.histories, bag_size=width).arrays(rows)) - {
        key, key + ":offsets"}


def test_pooled_mean_with_the_transpose_has_embedding_bags_values_and_gradient():
    # Bags with a repeated code, padding, an empty bag and a bag of padding only.
    codes = torch.tensor([3, 3, 5, PAD, 2, 7, 7, 7, PAD])
    offsets = torch.tensor([0, 4, 4, 8])
    n_codes = 9
    embedding = torch.nn.Embedding(n_codes, 4, padding_idx=PAD)
    grad = torch.randn(len(offsets), 4, generator=torch.Generator().manual_seed(0))
    transpose = [torch.from_numpy(a) for a in bag_pooling_transpose(codes.numpy(),
                                                                    offsets.numpy(), n_codes)]
    fused = pooled_mean(embedding, codes, offsets, transpose)
    (fused * grad).sum().backward()
    fused_grad, embedding.weight.grad = embedding.weight.grad.clone(), None
    reference = pooled_mean(embedding, codes, offsets)
    (reference * grad).sum().backward()
    torch.testing.assert_close(fused, reference)
    torch.testing.assert_close(fused_grad, embedding.weight.grad)
    assert fused_grad[3].abs().sum() > 0 and (fused_grad[[PAD, 1, 4]] == 0).all()
    assert (fused[[1, 3]] == 0).all()  # the empty bag and the bag of padding pool to zeros
