"""TwoTowerRetriever on small synthetic data with a planted signal."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from skdssm import TwoTowerRetriever
from skdssm._features import HISTORY_BAG, ITEM_POSITION, N_RESERVED, USER_POSITION
from skdssm._retriever import FullRankingRecall, RetrievalCriterion
from skdssm._skorch import DrawCandidates
from skdssm.baselines import PopularityRecommender
from skdssm.datasets import make_geo_interactions, make_interactions
from skdssm.metrics import recall_at_k
from skdssm.model_selection import UserHoldoutSplit
from skdssm.sampling import make_sampler

FAST = dict(hidden_dims=(32, 16), embedding_dim=8, max_epochs=8, batch_size=64, lr=1e-2,
            early_stopping=False, temperature=0.1)
RECALL_BAR = 0.29  # issue 6: MovieLens-100K, full ranking, TwoTowerRetriever() defaults


@pytest.fixture(scope="module")
def data():
    bunch = make_interactions(n_users=100, n_items=60, interactions_per_user=30, random_state=0)
    positives = bunch.frame[bunch.frame["label"] == 1].drop(columns=["label", "rating"])
    train_rows, test_rows = next(UserHoldoutSplit(test_size=0.25, min_interactions=4,
                                                  drop_unseen=False, random_state=0).split(positives))
    return positives.iloc[train_rows], positives.iloc[test_rows]


def recall(model, test, k=10):
    users = np.unique(test["user_id"])
    return recall_at_k(test, model.predict_topk(users, k=k), users=users, k=k)


def popularity_recall(train, test, k=10):
    return recall(PopularityRecommender().fit(train), test, k)


@pytest.mark.parametrize("loss, sampler", [
    ("softmax", "in_batch"), ("softmax", "mixed"), ("infonce", "uniform"),
    ("bpr", "popularity"), ("bce", "log_uniform"), ("bce", "in_batch"),
])
def test_each_loss_recovers_the_planted_signal(data, loss, sampler):
    train, test = data
    model = TwoTowerRetriever(loss=loss, negative_sampler=sampler, random_state=0, **FAST)
    model.fit(train)
    assert recall(model, test) > popularity_recall(train, test) + 0.05


def test_early_stopping_tracks_full_ranking_recall(data):
    train, _ = data
    model = TwoTowerRetriever(random_state=0, **dict(FAST, early_stopping=True, max_epochs=40,
                                                     n_iter_no_change=2))
    model.fit(train)
    scores = model.history_[:, "valid_recall_at_10"]
    assert len(scores) < 40 and all(0 <= s <= 1 for s in scores)
    assert np.isfinite(model.history_[:, "valid_loss"]).all()


def bag_items(model, users: np.ndarray, gather=None) -> list:
    """Item ids in the bags that ``gather`` (default: the fitted model's serving transform)
    gives the users at these positions."""
    gather = gather or model._user_queries(model.user_ids_[users])[2]
    arrays = gather.arrays({USER_POSITION: np.arange(len(users)) if gather.histories.n_users
                            == len(users) else np.asarray(users)})
    codes, offsets = arrays[f"user:{HISTORY_BAG}"], arrays[f"user:{HISTORY_BAG}:offsets"]
    return [set(model.item_ids_[row - N_RESERVED]) for row in np.split(codes, offsets[1:])]


def test_history_bag_learns_and_serves_each_users_positives(data):
    """The default user tower (user_representation="bag") has no user-id embedding: it is
    built from the user's features and the bag of their positive items."""
    train, test = data
    model = TwoTowerRetriever(history_bag_size=50, random_state=0, **FAST).fit(train)
    assert "user_id" not in model.net_.module_.user_tower.categorical_names
    assert recall(model, test) > popularity_recall(train, test) + 0.05
    # Served bags are every training positive of the user (fewer than 50 here).
    bags = bag_items(model, np.arange(len(model.user_ids_)))
    positives = train.groupby("user_id")["item_id"].apply(set)
    assert bags == [positives[user] for user in model.user_ids_]
    # A user unseen in fit gets an empty bag and is still served.
    assert model.predict_topk([10_000], k=5).shape == (1, 5)


def test_bag_gradient_through_the_pooling_transpose_trains_the_same_model(data, monkeypatch):
    """On the CPU the training batches carry the transposed pooling matrix of the bags and the
    backward pass pools the gradient with it; the model trained is embedding_bag's own."""
    from skdssm import _history

    train, _ = data
    params = dict(FAST, max_epochs=2, history_bag_size=20, random_state=0)
    built = []
    original = _history.bag_pooling_transpose

    def recording(*args):
        built.append(len(args[0]))
        return original(*args)

    monkeypatch.setattr(_history, "bag_pooling_transpose", recording)
    fast = TwoTowerRetriever(**params).fit(train)
    assert built  # the training batches did carry the transpose
    monkeypatch.setattr(_history.UserInputs, "__init__", _without_bag_codes(
        _history.UserInputs.__init__))
    reference = TwoTowerRetriever(**params).fit(train)
    reference_state = reference.net_.module_.state_dict()
    for name, value in fast.net_.module_.state_dict().items():
        if name == "bias":
            # The global bias shifts every logit of a softmax row alike: its gradient is zero
            # up to float rounding, which AdamW's normalised steps turn into a random walk.
            continue
        torch.testing.assert_close(value, reference_state[name], rtol=1e-4, atol=1e-5, msg=name)
    np.testing.assert_array_equal(fast.predict_topk([1, 2, 3], k=5),
                                  reference.predict_topk([1, 2, 3], k=5))


def _without_bag_codes(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "bag_codes": None})
    return wrapped


def test_history_bag_keeps_the_most_recent_items(data):
    train, _ = data
    model = TwoTowerRetriever(history_bag_size=3, random_state=0,
                              **dict(FAST, max_epochs=1)).fit(train)
    bags = bag_items(model, np.arange(len(model.user_ids_)))
    recent = train.sort_values("timestamp", kind="stable").groupby("user_id")["item_id"].apply(
        lambda items: set(items.iloc[-3:]))
    assert bags == [recent[user] for user in model.user_ids_]


def test_id_representation_embeds_the_user_id_and_no_bag(data):
    train, test = data
    model = TwoTowerRetriever(user_representation="id", random_state=0, **FAST).fit(train)
    assert "user_id" in model.net_.module_.user_tower.categorical_names
    assert "user:history_bag" not in model.user_inputs_
    assert not model.net_.module_.user_tower.multi_names
    assert recall(model, test) > popularity_recall(train, test) + 0.05


def test_history_bag_of_validated_users_never_holds_their_held_out_items(data):
    train, _ = data
    model = TwoTowerRetriever(history_bag_size=50, random_state=0,
                              **dict(FAST, early_stopping=True, max_epochs=2)).fit(train)
    (scorer,) = [cb.evaluate for _, cb in model.net_.callbacks_ if isinstance(cb, FullRankingRecall)]
    bags = bag_items(model, scorer.user_inputs[USER_POSITION], scorer.transform)
    held_out = [set(model.item_ids_[row.indices]) for row in scorer.relevant]
    assert len(bags) == len(held_out) > 0 and all(held_out)
    assert all(not (bag & items) for bag, items in zip(bags, held_out))
    # Served bags, rebuilt after training, hold every positive, held-out ones included.
    served = bag_items(model, np.arange(len(model.user_ids_)))
    assert sum(map(len, served)) == len(train)


def test_plateau_schedule_follows_the_validation_recall(data, plateau_lrs):
    train, _ = data
    model = TwoTowerRetriever(random_state=0, **dict(FAST, early_stopping=True, max_epochs=10,
                                                     n_iter_no_change=10, lr_schedule="plateau"))
    history = model.fit(train).history_
    lrs = np.array(history[:, "event_lr"])
    assert lrs[-1] < FAST["lr"]
    np.testing.assert_allclose(lrs, plateau_lrs(history[:, "valid_recall_at_10"], FAST["lr"], True))


def test_clone_and_determinism(data):
    train, _ = data
    model = TwoTowerRetriever(random_state=5, **dict(FAST, max_epochs=2))
    assert clone(model).get_params() == model.get_params()
    a = clone(model).fit(train).transform_items()
    b = clone(model).fit(train).transform_items()
    c = TwoTowerRetriever(random_state=6, **dict(FAST, max_epochs=2)).fit(train).transform_items()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("params", [
    dict(ensemble_size=1), dict(ensemble_size=2),
    # Early stopping (the default) keeps its validation scorer in the fitted net's callbacks.
    dict(early_stopping=True), dict(early_stopping=True, refit=True),
], ids=["single", "ensemble", "early_stopping", "refit"])
def test_pickle_round_trip_gives_identical_recommendations(data, params):
    train, _ = data
    model = TwoTowerRetriever(random_state=0, **{**FAST, "max_epochs": 2, **params}).fit(train)
    restored = pickle.loads(pickle.dumps(model))
    users = model.user_ids_[:10]
    np.testing.assert_array_equal(model.predict_topk(users, k=5), restored.predict_topk(users, k=5))
    np.testing.assert_array_equal(model.transform_users(users), restored.transform_users(users))


def test_rating_transform_center_makes_low_ratings_explicit_negatives(data):
    train, _ = data
    ratings = np.where(np.arange(len(train)) % 4 == 0, 1.0, 5.0)
    bce = TwoTowerRetriever(loss="bce", rating_transform="center", random_state=0,
                            **dict(FAST, max_epochs=1)).fit(train, ratings)
    assert len(bce.net_.history) == 1
    softmax = TwoTowerRetriever(rating_transform="center", random_state=0,
                                **dict(FAST, max_epochs=1)).fit(train, ratings)
    # Rated-1 rows are dropped for the listwise loss but still count as seen.
    assert softmax.seen_items_.nnz == bce.seen_items_.nnz == len(train.drop_duplicates(["user_id", "item_id"]))
    with pytest.raises(ValueError, match="rating_transform needs y"):
        TwoTowerRetriever(rating_transform="center").fit(train)


def test_sequence_representation_serves_new_users_from_their_history(data):
    train, test = data
    model = TwoTowerRetriever(user_representation="sequence", random_state=0,
                              **dict(FAST, embedding_dim=8, n_heads=2)).fit(train)
    assert "user:user_id" not in [f"user:{n}" for n in model.net_.module_.user_tower.categorical_names]
    known_user = train["user_id"].iloc[0]
    history = train[train["user_id"] == known_user]
    # A brand-new user id with the same features and history gets the same embedding.
    newcomer = history.assign(user_id=999_999)
    users = history.head(1).drop(columns=["item_id", "timestamp"])
    np.testing.assert_allclose(
        model.transform_users(newcomer.head(1).drop(columns=["item_id", "timestamp"]),
                              history=newcomer),
        model.transform_users(users), rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.transform_users(newcomer.head(1).drop(columns=["item_id"])),
                           model.transform_users(users))
    assert recall(model, test) > popularity_recall(train, test)


def test_profile_representation_needs_numeric_item_features(data):
    train, test = data
    model = TwoTowerRetriever(user_representation="profile", random_state=0, **FAST).fit(train)
    assert recall(model, test) > 0
    with pytest.raises(ValueError, match="no float item feature"):
        TwoTowerRetriever(user_representation="profile", **FAST).fit(train.drop(columns="price"))


def test_content_only_item_tower_embeds_unseen_items(data):
    train, _ = data
    model = TwoTowerRetriever(item_id_embedding=False, random_state=0, **FAST).fit(train)
    items = train.drop_duplicates("item_id").head(3)
    renamed = items.assign(item_id=items["item_id"] + 10_000)
    np.testing.assert_allclose(model.transform_items(items), model.transform_items(renamed),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16"])
def test_mixed_precision_and_checkpointing_train_to_comparable_quality(data, precision):
    train, test = data
    plain = TwoTowerRetriever(random_state=0, **FAST).fit(train)
    amp = TwoTowerRetriever(mixed_precision=precision, gradient_checkpointing=True,
                            random_state=0, **FAST).fit(train)
    assert np.isfinite(amp.history_[:, "train_loss"]).all()
    assert recall(amp, test) > recall(plain, test) - 0.1


def test_fp16_needs_cuda(data):
    train, _ = data
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="fp16.*needs a CUDA device"):
        TwoTowerRetriever(mixed_precision="fp16", **FAST).fit(train)


@pytest.mark.parametrize("device", ["cuda", torch.device("cuda")], ids=["str", "torch.device"])
def test_cuda_without_cuda_is_a_value_error_naming_device(data, device):
    train, _ = data
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match=r"device=.*cuda.* needs CUDA.*"
                                         r"torch\.cuda\.is_available\(\) is False"):
        TwoTowerRetriever(device=device, **FAST).fit(train)


def test_string_ids_export_to_npz_without_pickling(data, tmp_path):
    train, _ = data
    train = train.assign(user_id="u" + train["user_id"].astype(str),
                         item_id="i" + train["item_id"].astype(str))
    model = TwoTowerRetriever(random_state=0, **dict(FAST, max_epochs=1)).fit(train)
    model.export_embeddings(tmp_path / "emb.npz")
    arrays = np.load(tmp_path / "emb.npz")  # allow_pickle=False, numpy's default
    assert arrays["item_ids"].dtype.kind == "U" and arrays["user_ids"].dtype.kind == "U"
    np.testing.assert_array_equal(arrays["item_ids"], model.item_ids_.astype(str))
    np.testing.assert_array_equal(arrays["user_ids"], model.user_ids_.astype(str))


@pytest.mark.parametrize("representation", ["bag", "id", "sequence"])
def test_item_id_zero_and_negative_ids_are_ordinary_ids(data, representation):
    train, test = data
    shift = train["item_id"].min()  # item ids from 0, user ids from -40
    shifted = train.assign(item_id=train["item_id"] - shift, user_id=train["user_id"] - 41)
    model = TwoTowerRetriever(user_representation=representation, random_state=0, **FAST)
    model.fit(shifted)
    original = TwoTowerRetriever(user_representation=representation, random_state=0, **FAST)
    original.fit(train)
    assert 0 in model.item_ids_ and (model.user_ids_ < 0).any()
    users = original.user_ids_[:20]
    np.testing.assert_array_equal(model.predict_topk(users - 41, k=5),
                                  original.predict_topk(users, k=5) - shift)


def test_export_embeddings_npz_and_parquet(data, tmp_path):
    train, _ = data
    model = TwoTowerRetriever(random_state=0, **dict(FAST, max_epochs=1)).fit(train)
    model.export_embeddings(tmp_path / "emb.npz")
    arrays = np.load(tmp_path / "emb.npz", allow_pickle=True)
    np.testing.assert_array_equal(arrays["item_ids"], model.item_ids_)
    np.testing.assert_allclose(arrays["item_embeddings"], model.transform_items())
    np.testing.assert_allclose(arrays["user_embeddings"], model.transform_users(model.user_ids_))
    model.export_embeddings(tmp_path / "emb.parquet")
    table = pd.read_parquet(tmp_path / "emb.parquet")
    items = table[table["entity"] == "item"]
    np.testing.assert_array_equal(items["id"], model.item_ids_)
    np.testing.assert_allclose(items.filter(regex=r"^e\d+$").to_numpy(), model.transform_items())
    with pytest.raises(ValueError, match="must end with"):
        model.export_embeddings(tmp_path / "emb.csv")


class ScoreModule(torch.nn.Module):
    """Stands in for TwoTowerModule in loss tests: cosine scores at temperature 0.5, no bias."""

    temperature = 0.5
    ensemble_size = 1

    def members(self, embeddings):
        return [embeddings]

    def score_matrix(self, u, c):
        return u @ c.T / self.temperature


def test_retrieval_loss_softmax_masks_duplicates_and_known_positives():
    """The in-batch loss equals a hand-built reference with accidental hits and known positives removed."""
    torch.manual_seed(0)
    users = np.array([0, 1, 2])
    items = np.array([0, 0, 1])  # item 0 twice: an accidental hit for rows 0 and 1
    sampler = make_sampler("in_batch").fit([0, 1, 2, 2], [0, 0, 1, 0], n_items=2, n_users=3)
    user = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    item = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)

    batch = DrawCandidates(sampler, {}, shared_columns=True, log_q=False)(
        {USER_POSITION: torch.as_tensor(users), ITEM_POSITION: torch.as_tensor(items)})
    loss = RetrievalCriterion("softmax")((None, user, item, None), torch.ones(3), batch,
                                         ScoreModule())
    logits = (user @ item.T / 0.5).numpy()
    # Row 0 and 1 share item 0; user 2 knows item 0 as a positive, so column 0/1 are masked for it.
    allowed = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=bool)
    expected = np.mean([-logits[i, i] + np.log(np.exp(logits[i, allowed[i]]).sum()) for i in range(3)])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("exclude_known", [True, False])
def test_symmetric_softmax_adds_the_item_to_user_direction(exclude_known):
    """symmetric=True adds, for each batch item, a softmax over the batch's users: logQ-corrected
    by user frequency, the same user in another column and users knowing the item masked."""
    torch.manual_seed(1)
    users = np.array([0, 0, 1, 2])  # user 0 twice: an accidental hit in the item->user direction
    items = np.array([0, 1, 2, 3])
    # Training rows: user 2 also knows item 2, so user 2 is not a negative of item 2.
    sampler = make_sampler("in_batch", exclude_known_positives=exclude_known).fit(
        [0, 0, 1, 2, 2], [0, 1, 2, 3, 2], n_items=4, n_users=3)
    user = torch.nn.functional.normalize(torch.randn(4, 4), dim=1)
    item = torch.nn.functional.normalize(torch.randn(4, 4), dim=1)

    batch = DrawCandidates(sampler, {}, shared_columns=True, user_log_q=True)(
        {USER_POSITION: torch.as_tensor(users), ITEM_POSITION: torch.as_tensor(items)})
    one_way = RetrievalCriterion("softmax")((None, user, item, None), torch.ones(4), batch,
                                            ScoreModule())
    both = RetrievalCriterion("softmax", symmetric=True)(
        (None, user, item, None), torch.ones(4), batch, ScoreModule())
    logits = (item @ user.T / 0.5).numpy()  # rows: items, columns: users
    log_q = np.log(np.array([2, 1, 2]) / 5)[users]  # users' shares of the 5 training rows
    logits = logits - log_q[None, :]
    allowed = np.ones((4, 4), dtype=bool)
    allowed[0, 1] = allowed[1, 0] = False  # the same user (0) in the other column
    allowed[2, 3] = not exclude_known  # user 2 knows item 2
    expected = np.mean([-logits[j, j] + np.log(np.exp(logits[j, allowed[j]]).sum())
                        for j in range(4)])
    assert (both - one_way).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("sampler", ["in_batch", "mixed"])
def test_one_way_softmax_recovers_the_planted_signal(data, sampler):
    """symmetric=False (the user-to-item softmax alone) still learns; the default is symmetric."""
    train, test = data
    model = TwoTowerRetriever(symmetric=False, negative_sampler=sampler, random_state=0, **FAST)
    model.fit(train)
    assert recall(model, test) > popularity_recall(train, test) + 0.05
    assert np.isfinite(model.history_[:, "train_loss"]).all()


@pytest.mark.parametrize("representation", ["bag", "sequence", "profile", "id"])
def test_integer_column_names_train_the_same_model(data, representation):
    """Frames with int column names (as sklearn's checks feed them) are read like named ones,
    including by the internal history / profile builders."""
    train, _ = data
    position = {name: i for i, name in enumerate(train.columns)}
    params = dict(FAST, max_epochs=2, user_representation=representation, random_state=0)
    named = TwoTowerRetriever(**params).fit(train)
    numbered = TwoTowerRetriever(user_col=position["user_id"], item_col=position["item_id"],
                                 time_col=position["timestamp"], **params)
    numbered.fit(train.rename(columns=position))
    users = named.user_ids_[:10]
    np.testing.assert_array_equal(numbered.predict_topk(users, k=5),
                                  named.predict_topk(users, k=5))


def test_missing_id_column_is_a_value_error_naming_it():
    frame = pd.DataFrame({"user": [1, 2], "item_id": [3, 4]})
    with pytest.raises(ValueError, match="Column 'user_id' is missing from X"):
        TwoTowerRetriever(**FAST).fit(frame, sample_weight=pd.Series([1.0, 1.0]))


@pytest.fixture(scope="module")
def geo():
    return make_geo_interactions(n_users=150, n_items=120, interactions_per_user=30, random_state=0)


@pytest.mark.parametrize("loss, sampler", [("softmax", "in_batch"), ("infonce", "popularity"),
                                           ("bpr", "uniform"), ("bce", "mixed")])
def test_geo_profile_towers_recover_the_planted_preference(geo, loss, sampler):
    """Scaled geo features -> profile user tower, content-only item tower, centered
    ratings; the learned scores must agree with the planted user x item affinity."""
    from scipy.stats import spearmanr
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    from skdssm.pipeline import make_pipeline

    X = geo.frame.drop(columns="rating")
    geo_columns = [c for c in X.columns if c not in ("user_id", "item_id", "timestamp")]
    scaler = ColumnTransformer([("geo", StandardScaler(), geo_columns)], remainder="passthrough",
                               verbose_feature_names_out=False).set_output(transform="pandas")
    model = TwoTowerRetriever(user_representation="profile", item_id_embedding=False,
                              rating_transform="center", loss=loss, negative_sampler=sampler,
                              random_state=0, **dict(FAST, max_epochs=10, lr=3e-3))
    pipe = make_pipeline(scaler, model).fit(X, geo.frame["rating"].to_numpy())
    users = model.user_ids_
    scores = pipe.transform_users(users) @ model.item_embeddings_.T
    planted = geo.user_preference[users - 1] @ geo.item_factors[model.item_ids_ - 1].T
    per_user = [spearmanr(s, p).statistic for s, p in zip(scores, planted)]
    assert np.mean(per_user) > 0.5


@pytest.mark.realdata
def test_movielens_100k_defaults_reach_the_recall_bar(movielens_home, single_thread):
    """Issue 6's protocol and bar: TwoTowerRetriever() defaults, full-ranking Recall@10."""
    from skdssm.datasets import fetch_movielens

    frame = fetch_movielens("100k", data_home=movielens_home, download=False).frame
    positives = frame.loc[frame["rating"] >= 4, ["user_id", "item_id", "gender", "age",
                                                 "occupation", "genres", "timestamp"]]
    train_rows, test_rows = next(UserHoldoutSplit(test_size=0.2, min_interactions=5,
                                                  random_state=0).split(positives))
    train, test = positives.iloc[train_rows], positives.iloc[test_rows]
    model = TwoTowerRetriever(random_state=0).fit(train)
    assert recall(model, test) >= RECALL_BAR
    assert recall(model, test) > popularity_recall(train, test) + 0.1


@pytest.mark.parametrize("loss, sampler, symmetric", [
    ("softmax", "in_batch", True), ("softmax", "mixed", False), ("bce", "uniform", False),
    ("infonce", "popularity", False), ("bpr", "in_batch", False),
])
def test_ensemble_members_each_learn_from_their_own_loss(loss, sampler, symmetric):
    """With ensemble_size=n the criterion is the mean of each member's own loss (same batch, same
    negatives), so each member gets exactly the gradient it would get alone, divided by n."""
    from skdssm._features import TowerSchema
    from skdssm.nn import TwoTowerModule

    torch.manual_seed(0)
    n_users, n_items = 5, 8
    schemas = (TowerSchema(categorical={"user_id": n_users + 2}, ids=("user_id",)),
               TowerSchema(categorical={"item_id": n_items + 2}, ids=("item_id",)))
    ensemble = TwoTowerModule(*schemas, hidden_dims=(6,), embedding_dim=4, ensemble_size=3)
    users, items = np.array([0, 1, 2, 3, 4, 0]), np.array([0, 1, 2, 3, 4, 5])
    rows = {"user:user_id": torch.as_tensor(users + 2), "item:item_id": torch.as_tensor(items + 2),
            USER_POSITION: torch.as_tensor(users), ITEM_POSITION: torch.as_tensor(items)}
    catalogue = {"item:item_id": np.arange(n_items) + 2}

    def draw():  # a fresh, identically seeded sampler draws the same negatives every time
        params = {} if sampler == "in_batch" else {"n_negatives": 2}
        fitted = make_sampler(sampler, random_state=0, **params).fit(
            users, items, n_items=n_items, n_users=n_users)
        return DrawCandidates(fitted, catalogue, shared_columns=loss == "softmax",
                              user_log_q=symmetric)(rows)

    def criterion():
        return RetrievalCriterion(loss, symmetric=symmetric, in_batch=sampler == "in_batch")

    target = torch.ones(len(users))
    batch = draw()
    total = criterion()(ensemble(**batch), target, batch, ensemble)
    total.backward()
    member_losses = []
    for m in range(3):
        member = TwoTowerModule(*schemas, hidden_dims=(6,), embedding_dim=4)
        member.user_tower = ensemble.user_tower.members[m]
        member.item_tower = ensemble.item_tower.members[m]
        batch = draw()
        own = criterion()(member(**batch), target, batch, member)
        parameters = list(member.user_tower.parameters()) + list(member.item_tower.parameters())
        expected = torch.autograd.grad(own, parameters)
        for parameter, gradient in zip(parameters, expected):
            torch.testing.assert_close(parameter.grad, gradient / 3)
        member_losses.append(own.item())
    assert total.item() == pytest.approx(sum(member_losses) / 3, rel=1e-5)


def test_ensemble_retriever_learns_and_serves_unit_embeddings(data):
    train, test = data
    model = TwoTowerRetriever(ensemble_size=3, random_state=0, **FAST).fit(train)
    assert model.item_embeddings_.shape == (len(model.item_ids_), 3 * 16)
    np.testing.assert_allclose(np.linalg.norm(model.item_embeddings_, axis=1), 1, rtol=1e-5)
    users = np.unique(test["user_id"])
    scores = model.transform_users(users) @ model.item_embeddings_.T
    scores[model._exclusions(pd.Index(model.user_ids_).get_indexer(users)).toarray() > 0] = -np.inf
    np.testing.assert_array_equal(model.predict_topk(users, k=5),
                                  model.item_ids_[np.argsort(-scores, axis=1)[:, :5]])
    assert recall(model, test) > popularity_recall(train, test) + 0.05


def test_refit_serves_a_model_trained_on_every_row_for_the_chosen_epochs(data):
    """refit=True: the early-stopped run picks best_epoch_; the served model is the one that
    early_stopping=False, max_epochs=best_epoch_ trains on all rows (validation rows included)."""
    train, test = data
    params = dict(FAST, early_stopping=True, max_epochs=30, n_iter_no_change=2)
    stopped = TwoTowerRetriever(random_state=0, **params).fit(train)
    model = TwoTowerRetriever(refit=True, random_state=0, **params).fit(train)
    assert model.best_epoch_ == stopped.best_epoch_ < len(stopped.history_)
    assert model.validation_history_[:, "valid_recall_at_10"] == stopped.history_[:, "valid_recall_at_10"]
    assert len(model.history_) == model.best_epoch_ and "valid_loss" not in model.history_[-1]
    alone = TwoTowerRetriever(random_state=0, **dict(params, early_stopping=False,
                                                     max_epochs=model.best_epoch_)).fit(train)
    np.testing.assert_array_equal(model.item_embeddings_, alone.item_embeddings_)
    users = np.unique(test["user_id"])
    np.testing.assert_array_equal(model.predict_topk(users, k=5), alone.predict_topk(users, k=5))
    assert model.get_params()["refit"] and clone(model).refit


# ------------------------------------------------------------------ histories at scale
USER_COLUMNS = ["user_id", "segment", "age_group", "activity"]


def test_stored_histories_grow_with_interactions_not_with_the_bag_width(data):
    train, _ = data
    narrow = TwoTowerRetriever(history_bag_size=20, random_state=0, **dict(FAST, max_epochs=1))
    wide = TwoTowerRetriever(history_bag_size=40, random_state=0, **dict(FAST, max_epochs=1))
    narrow.fit(train), wide.fit(train)
    assert len(narrow.histories_.items) == len(train)  # one entry per positive interaction
    assert narrow.histories_.nbytes == wide.histories_.nbytes
    assert abs(len(pickle.dumps(narrow)) - len(pickle.dumps(wide))) < 1_000
    assert not any(key.startswith("user:history") for key in narrow.user_inputs_)


def test_a_new_user_with_a_seen_users_history_gets_the_same_embedding(data):
    """The bag tower has no user id: a user is their features and their items."""
    train, _ = data
    model = TwoTowerRetriever(random_state=0, **FAST).fit(train)
    known = model.user_ids_[3]
    rows = train[train["user_id"] == known]
    newcomer = rows.assign(user_id=10_000)
    profile = newcomer[USER_COLUMNS].head(1)
    folded = model.transform_users(profile, history=newcomer[["user_id", "item_id", "timestamp"]])
    np.testing.assert_allclose(folded, model.transform_users([known]), rtol=1e-5, atol=1e-6)
    # Without the history the newcomer is someone else (an empty bag).
    assert not np.allclose(model.transform_users(profile), folded, atol=1e-3)
    # The same goes for the recommendations, the history's items left out.
    np.testing.assert_array_equal(model.predict_topk(profile, k=5, history=newcomer),
                                  model.predict_topk([known], k=5))


def test_history_items_never_come_back_and_replace_a_seen_users_history(data):
    train, _ = data
    model = TwoTowerRetriever(random_state=0, **FAST).fit(train)
    users = model.user_ids_[:6]
    liked = train.drop_duplicates("item_id")["item_id"].to_numpy()[:15]
    history = pd.DataFrame({"user_id": np.repeat(users, 15), "item_id": np.tile(liked, 6),
                            "timestamp": np.tile(np.arange(15), 6)})
    top = model.predict_topk(users, k=20, history=history)
    assert not np.isin(top, liked).any()
    # A seen user's stored history is replaced by the given one (same as a newcomer with it).
    newcomers = history[history["user_id"] == users[0]].assign(user_id=-7)
    features = train[train["user_id"] == users[0]][USER_COLUMNS].head(1)
    np.testing.assert_allclose(
        model.transform_users([users[0]], history=history),
        model.transform_users(features.assign(user_id=-7), history=newcomers), rtol=1e-5, atol=1e-6)
    # Users absent from history keep their stored one.
    np.testing.assert_allclose(model.transform_users([users[0], users[1]], history=history[
        history["user_id"] == users[0]])[1:], model.transform_users([users[1]]), rtol=1e-5, atol=1e-6)


def test_unknown_history_items_are_ignored_with_a_count(data):
    train, _ = data
    model = TwoTowerRetriever(random_state=0, **dict(FAST, max_epochs=1)).fit(train)
    user = model.user_ids_[0]
    history = pd.DataFrame({"user_id": [user] * 3, "item_id": [model.item_ids_[0], -1, -2],
                            "timestamp": [1, 2, 3]})
    with pytest.warns(UserWarning, match="2 history row"):
        folded = model.transform_users([user], history=history)
    np.testing.assert_allclose(folded, model.transform_users([user], history=history.head(1)),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Column .timestamp. is missing from history"):
        model.transform_users([user], history=history.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="user_representation='id'"):
        TwoTowerRetriever(user_representation="id", **dict(FAST, max_epochs=1)).fit(
            train).predict_topk([user], history=history)


def test_users_left_out_of_fit_are_served_from_their_history(data):
    """Fold-in: users never seen in fit, described by their training positives, are ranked
    nearly as well as when trained in, and far above popularity."""
    train, test = data
    users = np.unique(train["user_id"])
    left_out = users[::5]
    outside = train[train["user_id"].isin(left_out)]
    model = TwoTowerRetriever(random_state=0, **FAST).fit(train[~train["user_id"].isin(left_out)])
    trained_in = TwoTowerRetriever(random_state=0, **FAST).fit(train)
    held = test[test["user_id"].isin(left_out)]
    profiles = outside.drop_duplicates("user_id")[USER_COLUMNS]
    top = model.predict_topk(profiles, k=10, history=outside)
    folded = recall_at_k(held, top, users=profiles["user_id"].to_numpy(), k=10)
    inside = recall_at_k(held, trained_in.predict_topk(profiles["user_id"].to_numpy(), k=10),
                         users=profiles["user_id"].to_numpy(), k=10)
    popular = recall_at_k(held, PopularityRecommender().fit(train).predict_topk(
        profiles["user_id"].to_numpy(), k=10), users=profiles["user_id"].to_numpy(), k=10)
    assert folded > popular + 0.05
    assert folded > inside - 0.1


@pytest.mark.parametrize("representation", ["sequence", "profile"])
def test_history_serves_sequence_and_profile_users(data, representation):
    train, _ = data
    model = TwoTowerRetriever(user_representation=representation, random_state=0,
                              **dict(FAST, max_epochs=2)).fit(train)
    known = model.user_ids_[2]
    rows = train[train["user_id"] == known]
    newcomer = rows.assign(user_id=5_000)
    np.testing.assert_allclose(
        model.transform_users(newcomer[USER_COLUMNS].head(1), history=newcomer),
        model.transform_users([known]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ configuration objects
def test_sampler_and_index_objects_round_trip_and_grid_search(data):
    from sklearn.model_selection import GridSearchCV

    from skdssm.metrics import make_topk_scorer
    from skdssm.neighbors import ExactIndex, HNSWIndex
    from skdssm.sampling import PopularitySampler

    train, _ = data
    model = TwoTowerRetriever(negative_sampler=PopularitySampler(alpha=0.5, n_negatives=2),
                              loss="infonce", index=HNSWIndex(M=8), random_state=0,
                              **dict(FAST, max_epochs=2))
    params = model.get_params(deep=True)
    assert params["negative_sampler__alpha"] == 0.5 and params["index__M"] == 8
    twin = clone(model)
    assert twin.negative_sampler is not model.negative_sampler
    assert twin.get_params(deep=True)["negative_sampler__n_negatives"] == 2
    model.fit(train)
    assert model.sampler_.alpha == 0.5 and model.sampler_ is not model.negative_sampler
    assert model.index_.M == 8 and model.index_ is not model.index
    assert not hasattr(model.negative_sampler, "probabilities_")  # the parameter stays unfitted
    search = GridSearchCV(model, {"negative_sampler__alpha": [0.0, 1.0], "index": [ExactIndex()]},
                          cv=UserHoldoutSplit(n_splits=2, random_state=0),
                          scoring=make_topk_scorer("recall", k=5)).fit(train)
    assert [p["negative_sampler__alpha"] for p in search.cv_results_["params"]] == [0.0, 1.0]
    assert search.best_estimator_.sampler_.alpha in (0.0, 1.0)
    # The string forms still work and mean the objects' defaults.
    assert TwoTowerRetriever(negative_sampler="popularity", loss="infonce", random_state=0,
                             **dict(FAST, max_epochs=1)).fit(train).sampler_.alpha == 0.75


def test_score_is_recall_at_10_of_the_given_rows(data):
    from skdssm.metrics import make_topk_scorer

    train, test = data
    model = TwoTowerRetriever(**{**FAST, "max_epochs": 3}, random_state=0).fit(train)
    score = model.score(test)
    assert score == make_topk_scorer("recall", k=10)(model, test)
    assert score == pytest.approx(recall(model, test))
    assert score > popularity_recall(train, test)
    # Ratings select the relevant rows as fit does (weight > 0); sample weights multiply them.
    ratings = np.where(np.arange(len(test)) % 3 == 0, 0.0, 4.0)
    relevant = test[ratings > 0]
    assert model.score(test, ratings) == make_topk_scorer("recall", k=10)(model, relevant)
    assert model.score(test, sample_weight=ratings) == model.score(test, ratings)


def test_cross_val_score_needs_no_scoring(data):
    from sklearn.model_selection import cross_val_score

    train, _ = data
    cv = UserHoldoutSplit(n_splits=2, random_state=0)
    model = TwoTowerRetriever(**{**FAST, "max_epochs": 2}, random_state=0)
    scores = cross_val_score(model, train, cv=cv)
    expected = [clone(model).fit(train.iloc[fit_rows]).score(train.iloc[test_rows])
                for fit_rows, test_rows in cv.split(train)]
    np.testing.assert_allclose(scores, expected)
