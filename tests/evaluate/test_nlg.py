"""BLEU, ROUGE-L and CIDEr-D equal to pycocoevalcap 1.2, with fast subset aggregation for bootstrap."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge, my_lcs

from medvlm.evaluate.nlg import lcs_length, nlg_statistics, report_nlg_metrics


def _coco_scores(predictions_tok: list[str], references_tok: list[list[str]], indices=None):
    """pycocoevalcap's own scorers fed the same tokenised text (as its COCOEvalCap does)."""
    idx = range(len(predictions_tok)) if indices is None else indices
    gts = {i: references_tok[i] for i in idx}
    res = {i: [predictions_tok[i]] for i in idx}
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per_image = Rouge().compute_score(gts, res)
    cider, cider_per_image = Cider().compute_score(gts, res)
    return bleu, np.array(bleu_per_image).T, rouge, rouge_per_image, cider, cider_per_image


@pytest.fixture(scope="module")
def iu_xray_pairs(realdata):
    path = realdata / "mslora_cr_results" / "finetune_lora_MSLoRA-CR-ORTHO-64-64_llava_med_v1.5" / "iu-x-ray"
    rows = [json.loads(line) for line in (path / "answer-file.jsonl").read_text().splitlines()]
    return [r["text"] for r in rows], [r["gt"] for r in rows]


def test_equal_to_pycocoevalcap_on_666_real_report_pairs(iu_xray_pairs):
    predictions, references = iu_xray_pairs
    stats = nlg_statistics(predictions, references)
    scores = stats.aggregate()
    bleu, bleu_per_image, rouge, rouge_per_image, cider, cider_per_image = _coco_scores(
        stats.predictions_tokenized, stats.references_tokenized
    )
    for k in range(4):
        assert scores[f"bleu{k + 1}"] == pytest.approx(bleu[k], abs=1e-6)
    assert scores["rouge_l"] == pytest.approx(rouge, abs=1e-6)
    assert scores["cider"] == pytest.approx(cider, abs=1e-6)
    np.testing.assert_allclose(stats.per_sample_bleu, bleu_per_image, atol=1e-6)
    np.testing.assert_allclose(stats.per_sample_rouge_l, rouge_per_image, atol=1e-6)
    np.testing.assert_allclose(stats.per_sample_cider, cider_per_image, atol=1e-6)
    assert scores["cider"] > 0.5 and 0 < scores["bleu4"] < scores["bleu1"] < 1


def test_subset_scores_equal_pycocoevalcap_run_on_that_subset(iu_xray_pairs):
    predictions, references = iu_xray_pairs
    stats = nlg_statistics(predictions[:200], references[:200])
    subset = np.arange(0, 200, 3)
    scores = stats.aggregate(subset, cider_df="subset")
    bleu, _, rouge, _, cider, _ = _coco_scores(stats.predictions_tokenized, stats.references_tokenized, subset)
    assert [scores[f"bleu{k + 1}"] for k in range(4)] == pytest.approx(bleu, abs=1e-9)
    assert scores["rouge_l"] == pytest.approx(rouge, abs=1e-9)
    assert scores["cider"] == pytest.approx(cider, abs=1e-9)
    # default: document frequencies of the full set, so CIDEr is the mean of the per-sample scores
    assert stats.aggregate(subset)["cider"] == pytest.approx(stats.per_sample_cider[subset].mean())


def test_bootstrap_resample_with_repeats_sums_bleu_statistics():
    stats = nlg_statistics(["no effusion.", "heart is normal in size."], ["No pleural effusion.", "Heart size normal."])
    doubled_first = stats.aggregate([0, 0, 1])
    correct = stats.bleu_correct[[0, 0, 1]].sum(axis=0)
    assert correct[0] == 2 * 2 + 3  # unigram matches: "no", "effusion" twice; "heart", "size", "normal"
    assert doubled_first["bleu1"] != stats.aggregate()["bleu1"]


def test_multiple_references_per_report():
    predictions = ["No acute cardiopulmonary process.", "Mild cardiomegaly."]
    references = [["No acute process.", "No acute cardiopulmonary disease."], ["Cardiomegaly, mild."]]
    stats = nlg_statistics(predictions, references)
    bleu, _, rouge, _, cider, _ = _coco_scores(stats.predictions_tokenized, stats.references_tokenized)
    scores = stats.aggregate()
    assert [scores[f"bleu{k + 1}"] for k in range(4)] == pytest.approx(bleu, abs=1e-9)
    assert scores["rouge_l"] == pytest.approx(rouge) and scores["cider"] == pytest.approx(cider)


def test_identical_reports_score_one_on_bleu_and_rouge():
    scores = report_nlg_metrics(["Heart size is normal. Lungs are clear."] * 3, ["Heart size is normal. Lungs are clear."] * 3)
    assert scores["bleu4"] == pytest.approx(1.0) and scores["rouge_l"] == pytest.approx(1.0)
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}


def test_empty_prediction_scores_zero_like_pycocoevalcap():
    stats = nlg_statistics(["", "no effusion"], ["No effusion.", "No effusion."])
    assert stats.per_sample_rouge_l[0] == 0.0 and stats.per_sample_cider[0] == 0.0
    assert stats.per_sample_bleu[0, 0] < 1e-6


def test_bit_parallel_lcs_equals_the_dynamic_programme():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 25))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 25))]
        assert lcs_length(a, b) == my_lcs(a, b)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        nlg_statistics(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"references\[0\] is an empty list"):
        nlg_statistics(["a"], [[]])
    with pytest.raises(TypeError, match=r"predictions\[1\]"):
        nlg_statistics(["a", None], ["a", "b"])
