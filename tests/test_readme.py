"""The README's usage block runs as written (on a slice of MovieLens-100K, with few epochs)."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import skdssm.datasets
from skdssm import DSSMRecommender
from tests.conftest import REPO_ROOT

N_USERS = 20


def readme_usage_block() -> str:
    """The first ``python`` block of README.md: the usage lines."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def with_defaults(function, **defaults) -> tuple:
    """``function.__defaults__`` with some of its keyword defaults replaced."""
    parameters = [p for p in inspect.signature(function).parameters.values()
                  if p.default is not inspect.Parameter.empty]
    return tuple(defaults.get(p.name, p.default) for p in parameters)


@pytest.mark.realdata
def test_readme_usage_block_runs_as_written(movielens_home, monkeypatch, capsys):
    fetch = skdssm.datasets.fetch_movielens

    def first_users(variant, data_home=None, **kwargs):
        # The block's own call, on the shared copy and cut to its first users so it runs fast.
        data = fetch(variant, data_home=movielens_home, download=False)
        keep = data.users["user_id"].head(N_USERS)
        for part in ("frame", "interactions", "users"):
            data[part] = data[part][data[part]["user_id"].isin(keep)].reset_index(drop=True)
        return data

    monkeypatch.setattr(skdssm.datasets, "fetch_movielens", first_users)
    monkeypatch.setattr(DSSMRecommender.__init__, "__defaults__",
                        with_defaults(DSSMRecommender.__init__, max_epochs=2, random_state=0))
    namespace: dict = {}
    exec(compile(readme_usage_block(), "README.md", "exec"), namespace)

    search, model, users = namespace["search"], namespace["model"], namespace["users"]
    recommended = search.predict_topk(users, k=10)
    assert recommended.shape == (3, 10)
    assert all(len(set(row)) == 10 for row in recommended)
    np.testing.assert_array_equal(recommended, search.best_estimator_.predict_topk(users, k=10))
    assert model.predict_topk(users["user_id"], k=10).shape == (3, 10)
    out = capsys.readouterr().out
    assert "ROC AUC" in out and str(recommended[0][0]) in out
