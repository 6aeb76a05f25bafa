"""encode_users / encode_items and export_onnx: the exported towers reproduce the estimators."""

import json

import numpy as np
import pandas as pd
import pytest

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.datasets import make_interactions

FAST = dict(hidden_dims=(16, 8), embedding_dim=8, max_epochs=1, batch_size=64, random_state=0)


@pytest.fixture(scope="module")
def frame():
    data = make_interactions(n_users=40, n_items=25, interactions_per_user=8, random_state=0)
    return data.frame


@pytest.fixture(scope="module")
def positives(frame):
    return frame[frame["label"] == 1].drop(columns=["label", "rating"])


def run_onnx(path, inputs):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path))
    names = [node.name for node in session.get_inputs()]
    assert names == list(inputs)
    return session.run(None, inputs)[0]


def check_towers(model, directory, users, items, history=None):
    """Both exported towers give transform_users / transform_items for these queries."""
    pytest.importorskip("onnxscript")
    model.export_onnx(directory)
    np.testing.assert_allclose(run_onnx(directory / "user_tower.onnx",
                                        model.encode_users(users, history=history)),
                               model.transform_users(users, history=history), atol=1e-4)
    np.testing.assert_allclose(run_onnx(directory / "item_tower.onnx", model.encode_items(items)),
                               model.transform_items(items), atol=1e-4)


@pytest.mark.parametrize("representation", ["bag", "sequence", "profile", "id"])
def test_retriever_towers_reproduce_transform(positives, representation, tmp_path):
    model = TwoTowerRetriever(user_representation=representation, **FAST).fit(positives)
    # Known users, an unseen user (empty history) and a batch size unlike the export's example.
    users = np.concatenate([model.user_ids_[:5], [10_000]])
    history = None
    if representation != "id":
        # A fold-in history: the service sends the user's items, as the graph's inputs.
        history = positives[positives["user_id"] == model.user_ids_[0]].assign(user_id=10_000)
    items = model.item_ids_[:3]
    check_towers(model, tmp_path, users, items, history)


def test_retriever_ensemble_and_content_items_export(positives, tmp_path):
    model = TwoTowerRetriever(ensemble_size=2, item_id_embedding=False, **FAST).fit(positives)
    item_frame = positives.drop_duplicates("item_id").head(7).assign(item_id=-1)
    assert "item:item_id" not in model.encode_items(item_frame)  # the tower does not read it
    check_towers(model, tmp_path, model.user_ids_[:9], item_frame)


def test_dssm_multi_valued_and_sequence_features_export(frame, tmp_path):
    X = frame.drop(columns=["label", "rating", "timestamp"])
    rng = np.random.default_rng(0)
    items = X["item_id"].to_numpy()
    history = pd.Series([list(items[rng.integers(0, len(items), n)])
                         for n in rng.integers(0, 6, len(X))], index=X.index)
    X = X.assign(history=history)
    model = DSSMRecommender(sequence_features=["history"], **FAST).fit(X, frame["label"])
    user_rows = X.drop_duplicates("user_id").head(6)
    assert model.encode_users(user_rows)["user:history"].shape[0] == 6
    check_towers(model, tmp_path, user_rows, X.drop_duplicates("item_id").head(4))


def test_vocabularies_let_a_service_encode_raw_item_rows(positives, tmp_path):
    """Encoding a new item frame from vocabularies.json alone gives the graph's inputs."""
    model = TwoTowerRetriever(**FAST).fit(positives)
    pytest.importorskip("onnxscript")
    model.export_onnx(tmp_path)
    # Self-contained graphs: a service copies one file per tower.
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "item_tower.onnx", "user_tower.onnx", "vocabularies.json"]
    spec = json.loads((tmp_path / "vocabularies.json").read_text())
    rows = positives.drop_duplicates("item_id").head(5).assign(
        item_id=[3, 4, 999, 5, 6], category=["category_1", "unseen", "category_0", "category_2",
                                             "category_1"])

    def codes(values, vocabulary):
        lookup = {value: i + spec["codes"]["first_known"] for i, value in enumerate(vocabulary)}
        return [lookup.get(value, spec["codes"]["out_of_vocabulary"]) for value in values]

    inputs = {}
    for entry in spec["item"]["inputs"]:
        column = rows[entry["columns"][0]]
        if entry["kind"] == "categorical":
            inputs[entry["name"]] = np.array(codes(column, entry["vocabulary"]), dtype=np.int64)
        elif entry["kind"] == "multi":
            block = np.zeros((len(rows), entry["max_len"]), dtype=np.int64)
            for row, values in enumerate(column):
                block[row, : len(values)] = codes(values, entry["vocabulary"])[: entry["max_len"]]
            inputs[entry["name"]] = block
        else:
            inputs[entry["name"]] = rows[entry["columns"]].to_numpy(dtype=np.float32)
    assert {key: value.tolist() for key, value in inputs.items()} == {
        key: value.tolist() for key, value in model.encode_items(rows).items()}
    np.testing.assert_allclose(run_onnx(tmp_path / "item_tower.onnx", inputs),
                               model.transform_items(rows), atol=1e-4)
    assert spec["item"]["output"] == "item_embedding"
    assert [entry["name"] for entry in spec["user"]["inputs"]] == list(model.encode_users([1]))


def test_encode_needs_a_fitted_model():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TwoTowerRetriever().encode_users([1])
    with pytest.raises(NotFittedError):
        DSSMRecommender().export_onnx("unused")


def test_export_pooling_equals_embedding_bag():
    """The exported graphs pool with a gather and a scatter-add (ONNX has no EmbeddingBag):
    the same means as embedding_bag, empty bags and all-padding rows included."""
    import torch

    from skdssm.nn import _pooled_mean_in_onnx_ops, pooled_mean

    torch.manual_seed(0)
    embedding = torch.nn.Embedding(12, 4, padding_idx=0)
    codes = torch.tensor([3, 0, 5, 7, 7, 0, 0, 2, 11])
    offsets = torch.tensor([0, 3, 3, 5, 7])  # row 1 empty, row 3 padding only
    block = torch.tensor([[3, 0, 5], [0, 0, 0], [7, 7, 2]])
    for args in ((codes, offsets), (block, None)):
        expected = pooled_mean(embedding, *args)
        torch.testing.assert_close(_pooled_mean_in_onnx_ops(embedding.weight, *args), expected)
    assert not pooled_mean(embedding, codes, offsets)[[1, 3]].any()
