"""``python -m skdssm demo`` and the command lines of the examples."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from skdssm import _demo
from skdssm.baselines import PopularityRecommender
from skdssm.datasets import fetch_movielens
from skdssm.metrics import make_topk_scorer
from tests.conftest import REPO_ROOT

EXAMPLES = sorted(path.name for path in (REPO_ROOT / "examples").glob("*.py"))


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args", [("-m", "skdssm", "--help"),
                                  ("-m", "skdssm", "demo", "--help")])
def test_command_line_help_exits_zero(args):
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m skdssm" in result.stdout


def test_command_line_without_a_command_is_a_usage_error():
    result = run("-m", "skdssm")
    assert result.returncode == 2
    assert "required: COMMAND" in result.stderr


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_has_help_and_a_quick_flag(example):
    result = run(str(REPO_ROOT / "examples" / example), "--help")
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout


@pytest.mark.realdata
def test_demo_prints_classifier_and_ranking_metrics(movielens_home, single_thread, capsys):
    _demo.main(["--data-home", str(movielens_home), "--no-download", "--max-epochs", "1"])
    out = capsys.readouterr().out
    assert "DSSMRecommender(max_epochs=1, random_state=0)" in out
    auc = float(re.search(r"ROC AUC (\d\.\d+)", out).group(1))
    assert 0.6 < auc <= 1.0
    assert re.search(r"accuracy 0\.\d{4}\s+log-loss 0\.\d{4}", out)
    model_recall, popularity_recall = map(float, re.search(
        r"Recall@10 DSSMRecommender (\d\.\d+)\s+PopularityRecommender (\d\.\d+)", out).groups())
    # The baseline line is the real baseline on the demo's own holdout.
    frame = fetch_movielens("100k", data_home=movielens_home, download=False).frame
    (X_train, _), (X_test, y_test) = _demo.user_holdout(frame, random_state=0)
    expected = make_topk_scorer("recall")(PopularityRecommender().fit(X_train), X_test, y_test)
    assert popularity_recall == pytest.approx(expected, abs=5e-5)
    assert 0 <= model_recall <= 1
    # Recommendations are titles with their number of training ratings.
    assert re.search(r"^  .*\| +1\. .+ \(\d{4}\) \(\d+\)$", out, flags=re.MULTILINE)
    assert out.count("top-10 recommended") == 3
