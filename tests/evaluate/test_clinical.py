"""Clinical F1 over CheXpert labels: sklearn's definitions, the "+" variants, bootstrap-ready aggregation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from medvlm.evaluate.clinical import CHEXPERT5, CHEXPERT_OBSERVATIONS, clinical_metrics, clinical_statistics

LABELS = ("positive", "negative", "uncertain", "not_mentioned")


def random_labels(rng, n):
    return [{obs: LABELS[rng.integers(4)] for obs in CHEXPERT_OBSERVATIONS} for _ in range(n)]


def as_matrix(labels, positive):
    return np.array([[row[obs] in positive for obs in CHEXPERT_OBSERVATIONS] for row in labels], dtype=int)


def test_matches_sklearn_micro_and_macro_f1():
    rng = np.random.default_rng(0)
    pred, ref = random_labels(rng, 40), random_labels(rng, 40)
    # make one observation positive nowhere: sklearn's zero_division=0 scores it 0 in the macro mean
    for row in pred + ref:
        row["Fracture"] = "negative"
    scores = clinical_statistics(pred, ref).aggregate()
    five = [CHEXPERT_OBSERVATIONS.index(o) for o in CHEXPERT5]
    for suffix, positive in (("", ("positive",)), ("_plus", ("positive", "uncertain"))):
        y_pred, y_true = as_matrix(pred, positive), as_matrix(ref, positive)
        for name, cols in (("14", slice(None)), ("5", five)):
            for average in ("micro", "macro"):
                expected = f1_score(y_true[:, cols], y_pred[:, cols], average=average, zero_division=0)
                assert scores[f"clinical_{average}_f1_{name}{suffix}"] == pytest.approx(expected, abs=1e-12)
    assert scores["per_observation"]["Fracture"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_hand_computed_case():
    def labels(**positives):
        row = dict.fromkeys(CHEXPERT_OBSERVATIONS, "not_mentioned")
        row.update({k.replace("_", " "): v for k, v in positives.items()})
        return row

    ref = [labels(Cardiomegaly="positive", Edema="uncertain"), labels(Pleural_Effusion="positive")]
    pred = [labels(Cardiomegaly="positive", Edema="positive"), labels(Pleural_Effusion="negative")]
    scores = clinical_statistics(pred, ref).aggregate()
    # strict: TP = Cardiomegaly; FP = Edema (uncertain reference counts as negative); FN = Pleural Effusion
    assert scores["clinical_micro_f1_5"] == pytest.approx(2 / (2 + 1 + 1))
    # macro over the 5: Cardiomegaly 1, Edema 0, Pleural Effusion 0, Atelectasis and Consolidation 0
    assert scores["clinical_macro_f1_5"] == pytest.approx(1 / 5)
    # "+": the uncertain Edema reference is positive, so Edema becomes a TP
    assert scores["clinical_micro_f1_5_plus"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    per = scores["per_observation"]["Pleural Effusion"]
    assert (per["precision"], per["recall"], per["f1"], per["support"]) == (0.0, 0.0, 0.0, 1)
    assert scores["per_observation"]["Cardiomegaly"]["f1"] == 1.0


def test_aggregate_on_indices_equals_scoring_the_subset():
    rng = np.random.default_rng(1)
    pred, ref = random_labels(rng, 30), random_labels(rng, 30)
    stats = clinical_statistics(pred, ref)
    assert len(stats) == 30
    indices = rng.integers(0, 30, size=30)  # a bootstrap resample, with repeats
    resampled = clinical_statistics([pred[i] for i in indices], [ref[i] for i in indices]).aggregate()
    assert stats.aggregate(indices) == resampled


def test_clinical_metrics_labels_the_texts():
    references = ["Moderate cardiomegaly. No pleural effusion.", "Small right pleural effusion."]
    assert clinical_metrics(references, references)["clinical_micro_f1_14"] == 1.0
    predictions = ["Heart size is normal. No pleural effusion.", "Small right pleural effusion."]
    scores = clinical_metrics(predictions, references)
    # Cardiomegaly missed (FN); effusion found (TP); No Finding predicted for report 1 (FP)
    assert scores["clinical_micro_f1_14"] == pytest.approx(2 / (2 + 1 + 1))
    assert scores["per_observation"]["Cardiomegaly"]["recall"] == 0.0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="one reference per prediction"):
        clinical_statistics([{}], [])
    incomplete = dict.fromkeys(CHEXPERT_OBSERVATIONS[:-1], "negative")
    full = dict.fromkeys(CHEXPERT_OBSERVATIONS, "negative")
    with pytest.raises(ValueError, match="predicted labels, report 0: no label for observation 'Support Devices'"):
        clinical_statistics([incomplete], [full])
