"""scikit-learn's estimator checks over DSSMRecommender and TwoTowerRetriever.

Most checks feed numpy arrays, which the estimators refuse by design: X is a DataFrame whose id
columns (``user_col``, ``item_col``) name users and items. Those checks are listed as expected
failures with that reason; the behaviour they check is tested below on DataFrames instead.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdssm import DSSMRecommender, TwoTowerRetriever

# Integer id columns, so that the checks which do pass a DataFrame ([0, 1] columns) apply.
TINY = dict(user_col=0, item_col=1, hidden_dims=(8,), embedding_dim=4, max_epochs=2,
            batch_size=64, early_stopping=False, random_state=0)

ARRAY_INPUT = ("feeds a numpy array, memmap or list-like X; X must be a DataFrame with id "
               "columns, and fit raises a TypeError saying so")
ARRAY_CHECKS = [
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes",
    "check_sample_weights_not_an_array", "check_sample_weights_list",
    "check_all_zero_sample_weights_error", "check_sample_weights_shape",
    "check_sample_weights_not_overwritten", "check_sample_weight_equivalence_on_dense_data",
    "check_complex_data", "check_dtype_object", "check_pipeline_consistency",
    "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged",
    "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in", "check_fit1d",
    "check_fit2d_predict1d",
]
TESTED_ON_FRAMES = {
    "check_estimators_empty_data_messages": "test_empty_frame_is_a_value_error",
    "check_estimators_nan_inf": "test_missing_and_infinite_values_name_the_column",
}
CLASSIFIER_ON_FRAMES = {
    "check_classifier_data_not_an_array": "test_classifier_labels_on_frames",
    "check_classifiers_one_label": "test_classifier_labels_on_frames",
    "check_classifiers_one_label_sample_weights": "test_classifier_labels_on_frames",
    "check_classifiers_classes": "test_classifier_labels_on_frames",
    "check_classifiers_train": "test_classifier_labels_on_frames",
    "check_classifiers_regression_target": "test_classifier_labels_on_frames",
    "check_supervised_y_no_nan": "test_classifier_labels_on_frames",
    "check_supervised_y_2d": "test_classifier_labels_on_frames",
    "check_decision_proba_consistency": "test_classifier_keeps_string_labels_and_pandas_inputs",
    "check_requires_y_none": "test_classifier_labels_on_frames",
}


def _expected_failures(estimator) -> dict:
    failures = dict.fromkeys(ARRAY_CHECKS, ARRAY_INPUT)
    tested = {**TESTED_ON_FRAMES,
              **(CLASSIFIER_ON_FRAMES if isinstance(estimator, DSSMRecommender) else {})}
    failures.update({check: f"{ARRAY_INPUT}; on DataFrames: {test}"
                     for check, test in tested.items()})
    return failures


@parametrize_with_checks([DSSMRecommender(**TINY), TwoTowerRetriever(**TINY)],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


FRAME = pd.DataFrame({0: [1, 1, 2, 2, 3, 3], 1: [1, 2, 1, 2, 1, 2]})
LABELS = np.array([0, 1, 1, 0, 0, 1])


@pytest.mark.parametrize("make", [lambda: DSSMRecommender(**TINY),
                                  lambda: TwoTowerRetriever(**TINY)])
def test_empty_frame_is_a_value_error(make):
    y = LABELS[:0] if isinstance(make(), DSSMRecommender) else None
    with pytest.raises(ValueError, match="X has 0 rows"):
        make().fit(FRAME.iloc[:0], y)


@pytest.mark.parametrize("value, word", [(np.nan, "missing"), (np.inf, "infinite")])
@pytest.mark.parametrize("make", [lambda: DSSMRecommender(**TINY),
                                  lambda: TwoTowerRetriever(**TINY)])
def test_missing_and_infinite_values_name_the_column(make, value, word):
    X = FRAME.assign(price=[value, 1.0, 2.0, 3.0, 4.0, 5.0])
    y = LABELS if isinstance(make(), DSSMRecommender) else None
    with pytest.raises(ValueError, match=f"Column 'price' contains 1 {word}"):
        make().fit(X, y)


def test_retriever_rejects_infinite_ratings():
    with pytest.raises(ValueError, match="y contains missing or infinite values"):
        TwoTowerRetriever(**TINY).fit(FRAME, np.array([1.0, 2.0, np.inf, 4.0, 5.0, 3.0]))


@pytest.mark.parametrize("y, message", [
    (None, "needs y"),
    (np.ones(6, dtype=int), r"exactly two classes .* classes \[1\]"),
    (np.linspace(0.1, 0.9, 6), "continuous"),
    (np.array([0, 1, np.inf, 1, 0, 1]), "infinity"),
    (LABELS[:5], "one label per row of X"),
    (LABELS[:, None], "1-D"),
])
def test_classifier_labels_on_frames(y, message):
    with pytest.raises(ValueError, match=message):
        DSSMRecommender(**TINY).fit(FRAME, y)


def test_classifier_keeps_string_labels_and_pandas_inputs():
    labels = pd.Series(np.where(LABELS == 1, "liked", "disliked"))
    model = DSSMRecommender(**TINY).fit(FRAME, labels)
    np.testing.assert_array_equal(model.classes_, ["disliked", "liked"])
    assert set(model.predict(FRAME)) <= {"disliked", "liked"}
    proba = model.predict_proba(FRAME)
    assert proba.shape == (6, 2)
    np.testing.assert_array_equal(proba[:, 1] > 0.5, model.decision_function(FRAME) > 0)
