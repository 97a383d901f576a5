"""Metrics against scikit-learn and hand-computed values; invalid outputs; clear spec errors."""
import math

import pytest
from sklearn import metrics as skm

from promptlab.scoring.base import wilson_interval
from promptlab.scoring.labels import MetricError, confidence_interval, confusion_matrix, invalid_rate, parse_metric

LABELS = ("Neutral", "supportive", "unsupportive")
GOLD = ["neutral", "neutral", "neutral", "supportive", "supportive", "unsupportive", "unsupportive", "neutral"]
PRED = ["neutral", "supportive", None, "supportive", "neutral", "unsupportive", None, "neutral"]


def test_accuracy_counts_invalid_as_wrong():
    assert parse_metric("accuracy", LABELS).score(GOLD, PRED) == pytest.approx(4 / 8)


def test_recall_precision_specificity_by_hand():
    assert parse_metric("recall:unsupportive", LABELS).score(GOLD, PRED) == pytest.approx(1 / 2)
    assert parse_metric("precision:supportive", LABELS).score(GOLD, PRED) == pytest.approx(1 / 2)
    # specificity for 'neutral': 4 non-neutral gold; correctly answered as another *valid* label: 2 (supportive, unsupportive)
    assert parse_metric("specificity:Neutral", LABELS).score(GOLD, PRED) == pytest.approx(2 / 4)


def test_global_metrics_match_sklearn_with_invalid_as_its_own_class():
    p = ["<invalid>" if x is None else x for x in PRED]
    labels = sorted(set(GOLD))
    assert parse_metric("macro_f1", LABELS).score(GOLD, PRED) == pytest.approx(
        skm.f1_score(GOLD, p, labels=labels, average="macro", zero_division=0))
    assert parse_metric("mcc", LABELS).score(GOLD, PRED) == pytest.approx(skm.matthews_corrcoef(GOLD, p))
    assert parse_metric("cohen_kappa", LABELS).score(GOLD, PRED) == pytest.approx(skm.cohen_kappa_score(GOLD, p))
    assert parse_metric("balanced_accuracy", LABELS).score(GOLD, PRED) == pytest.approx((2 / 4 + 1 / 2 + 1 / 2) / 3)
    assert parse_metric("f1:supportive", LABELS).score(GOLD, PRED) == pytest.approx(
        skm.f1_score(GOLD, p, labels=["supportive"], average="macro", zero_division=0))


def test_undefined_metric_is_nan_not_zero():
    assert math.isnan(parse_metric("recall:supportive", LABELS).score(["neutral"], ["neutral"]))


@pytest.mark.parametrize("spec,message", [
    ("acuracy", "unknown metric 'acuracy'. Valid metrics: accuracy"),
    ("recall:happy", "unknown label 'happy'.*Labels are: Neutral, supportive, unsupportive"),
    ("recall", "needs a label"),
    ("accuracy:neutral", "takes no label"),
])
def test_bad_specs_list_the_valid_choices(spec, message):
    with pytest.raises(MetricError, match=message):
        parse_metric(spec, LABELS)


def test_label_in_spec_is_matched_normalized():
    m = parse_metric("RECALL: neutral ", LABELS)
    assert (m.name, m.label, m.label_display) == ("recall", "neutral", "Neutral")
    assert "recall of label 'Neutral'" in m.describe()


def test_wilson_interval_matches_reference_values():
    # Reference: Wilson 95% for 8/10 is (0.4902, 0.9433); for 0/20 the lower bound is 0.
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 20)[0] == 0.0


def test_bootstrap_ci_brackets_the_score():
    m = parse_metric("macro_f1", LABELS)
    gold, pred = GOLD * 10, PRED * 10
    lo, hi = confidence_interval(m, gold, pred, seed=1)
    assert lo <= m.score(gold, pred) <= hi and hi - lo < 0.5


def test_confusion_matrix_has_an_invalid_column():
    cm = confusion_matrix(GOLD, PRED, LABELS)
    assert cm.columns.tolist() == ["Neutral", "supportive", "unsupportive", "(invalid)"]
    assert cm.loc["Neutral", "(invalid)"] == 1 and cm.to_numpy().sum() == len(GOLD)
    assert invalid_rate(PRED) == pytest.approx(2 / 8)
