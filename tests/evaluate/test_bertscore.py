"""BERTScore with the packaged all-MiniLM-L6-v2, equal to the bert-score package on the same model."""

from __future__ import annotations

import numpy as np
import pytest

from medvlm.evaluate.bertscore import (
    bertscore_minilm_f1,
    bertscore_statistics,
    default_model_path,
    report_bertscore,
)

PREDICTIONS = [
    "Heart size is normal. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly with small bilateral effusions.",
    "The lungs are clear.",
    "No acute cardiopulmonary abnormality.",
    "Right lower lobe consolidation, concerning for pneumonia.",
]
REFERENCES = [
    "The heart is normal in size. No effusion or pneumothorax.",
    "Cardiomegaly. Small pleural effusions bilaterally.",
    "Clear lungs without focal consolidation.",
    "No acute disease.",
    "Left upper lobe nodule.",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_equal_to_bert_score_package_with_the_same_model():
    bert_score = pytest.importorskip("bert_score")
    stats = bertscore_statistics(PREDICTIONS, REFERENCES)
    precision, recall, f1 = bert_score.score(
        PREDICTIONS, REFERENCES, model_type=str(default_model_path()), num_layers=6, batch_size=2
    )
    np.testing.assert_allclose(stats.precision, precision.numpy(), atol=1e-5)
    np.testing.assert_allclose(stats.recall, recall.numpy(), atol=1e-5)
    np.testing.assert_allclose(stats.f1, f1.numpy(), atol=1e-5)
    # several references: each of P, R, F1 is the maximum over references, as in bert-score
    multi = [[REFERENCES[i], REFERENCES[(i + 1) % 5]] for i in range(5)]
    _, _, f1_multi = bert_score.score(PREDICTIONS, multi, model_type=str(default_model_path()), num_layers=6)
    np.testing.assert_allclose(bertscore_minilm_f1(PREDICTIONS, multi), f1_multi.numpy(), atol=1e-5)


def test_named_keys_and_ordering_of_similar_and_unrelated_reports():
    scores = report_bertscore(PREDICTIONS[:1] * 2, [PREDICTIONS[0], "Left upper lobe nodule."])
    assert set(scores) == {"bertscore_minilm_precision", "bertscore_minilm_recall", "bertscore_minilm_f1"}
    f1 = bertscore_minilm_f1(PREDICTIONS[:1] * 2, [PREDICTIONS[0], "Left upper lobe nodule."])
    assert f1[0] == pytest.approx(1.0, abs=1e-5) and f1[1] < 0.8


def test_empty_text_scores_zero_and_subsets_average():
    stats = bertscore_statistics(["", "No effusion."], ["No effusion.", "No effusion."])
    assert stats.f1[0] == 0.0 and stats.f1[1] == pytest.approx(1.0, abs=1e-5)
    assert stats.aggregate([1, 1])["bertscore_minilm_f1"] == pytest.approx(stats.f1[1])
