import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from ml.evaluation import HIGHER_IS_BETTER, METRIC_DESCRIPTIONS, EvaluationError, binary_metrics

KEYS = {
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "accuracy",
    "f1",
    "precision",
    "recall",
    "threshold",
    "rows",
    "positive_rate",
}


def test_perfect_ranking_scores_one():
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9], threshold=0.5)
    assert set(m) == KEYS
    assert m["roc_auc"] == 1.0
    assert m["pr_auc"] == 1.0
    assert m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == 1.0
    assert m["rows"] == 4.0
    assert m["positive_rate"] == 0.5
    assert m["threshold"] == 0.5


def test_hand_computed_metrics():
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    m = binary_metrics(labels, scores, threshold=0.5)
    # Positive/negative pairs: 0.35 beats 0.1 but not 0.4; 0.8 beats both -> 3 of 4.
    assert m["roc_auc"] == pytest.approx(0.75)
    # Predicted [0, 0, 0, 1]: one true positive, one false negative.
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    assert m["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)


def test_score_equal_to_threshold_is_positive():
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.35)
    # Predicted [0, 1, 1, 1]: 0.35 >= 0.35 counts as positive.
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)


def test_no_predicted_positives_scores_zero_not_nan():
    m = binary_metrics([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], threshold=0.9)
    assert m["precision"] == 0.0
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0


def test_agrees_with_sklearn_on_random_data():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, size=500)
    scores = np.clip(0.3 * labels + rng.uniform(0, 0.7, size=500), 0, 1)
    m = binary_metrics(pd.Series(labels), scores, threshold=0.4)
    predicted = (scores >= 0.4).astype(int)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(labels, scores))
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, scores))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(labels, scores))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert m["f1"] == pytest.approx(skm.f1_score(labels, predicted))
    assert m["precision"] == pytest.approx(skm.precision_score(labels, predicted))
    assert m["recall"] == pytest.approx(skm.recall_score(labels, predicted))
    assert m["positive_rate"] == pytest.approx(labels.mean())
    assert m["rows"] == 500


def test_metrics_are_plain_json_floats():
    m = binary_metrics(np.array([True, False, True]), np.array([0.9, 0.2, 0.6], dtype=np.float32), threshold=0.5)
    assert all(type(value) is float for value in m.values())
    assert json.loads(json.dumps(m)) == m


def test_descriptions_cover_every_key_and_directions_only_metrics():
    assert set(METRIC_DESCRIPTIONS) == KEYS
    assert all(text and "\n" not in text for text in METRIC_DESCRIPTIONS.values())
    assert set(HIGHER_IS_BETTER) <= KEYS
    assert HIGHER_IS_BETTER["roc_auc"] is True
    assert HIGHER_IS_BETTER["log_loss"] is False
    assert HIGHER_IS_BETTER["brier"] is False


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1, 0], [0.1, 0.2, 0.3, 0.4], "3 labels but 4 scores"),
        ([0, 1, 2, 3, 1], [0.1, 0.2, 0.3, 0.4, 0.5], "labels must be 0/1, found values [2, 3]"),
        (["no", "yes"], [0.1, 0.2], "labels must be 0/1, found values ['no', 'yes']"),
        ([0, 1, 0, 1], [0.1, np.nan, np.nan, 0.4], "scores contain 2 NaN value(s)"),
        (
            [0, 1, 0, 1],
            [1.7, -0.2, 0.5, 3.0],
            "scores must be probabilities in [0, 1]; 3 value(s) outside, e.g. 1.7",
        ),
        (
            [0, 0, 0],
            [0.1, 0.2, 0.3],
            "holdout has only one class (all 0); ROC AUC is undefined — the holdout is too small or the labels are constant",
        ),
        ([1], [0.9], "holdout has only one class (all 1)"),
        ([], [], "holdout is empty"),
    ],
)
def test_bad_input_is_named(labels, scores, message):
    with pytest.raises(EvaluationError, match=re.escape(message)):
        binary_metrics(labels, scores, threshold=0.5)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_threshold_must_be_inside_the_unit_interval(threshold):
    with pytest.raises(EvaluationError, match=re.escape("threshold must be in (0, 1), got")):
        binary_metrics([0, 1], [0.2, 0.8], threshold=threshold)


def test_evaluation_error_is_a_value_error():
    assert issubclass(EvaluationError, ValueError)
