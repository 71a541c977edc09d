"""METEOR 1.5 through one long-lived jar process, equal to pycocoevalcap's Meteor."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from medvlm.evaluate.meteor import MeteorScorer, corpus_meteor_from_stats
from medvlm.evaluate.nlg import tokenize_pairs

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR 1.5 runs in Java")


@pytest.fixture(scope="module")
def meteor():
    # One Java process for the whole module: starting the jar (paraphrase tables) takes seconds.
    with MeteorScorer() as scorer:
        yield scorer


@pytest.fixture(scope="module")
def report_pairs(realdata):
    path = realdata / "mslora_cr_results" / "finetune_lora_MSLoRA-CR-ORTHO-64-64_llava_med_v1.5" / "iu-x-ray"
    rows = [json.loads(line) for line in (path / "answer-file.jsonl").read_text().splitlines()]
    return [r["text"] for r in rows][:120], [r["gt"] for r in rows][:120]


class _PycocoMeteorOnProcess:
    """pycocoevalcap's Meteor protocol code, run on an already started jar process (no second JVM)."""

    def __init__(self, process):
        from pycocoevalcap.meteor.meteor import Meteor

        self.meteor_p = process
        self.lock = threading.Lock()
        self.compute_score = Meteor.compute_score.__get__(self)
        self._stat = Meteor._stat.__get__(self)


def test_equal_to_pycocoevalcap_meteor_on_real_reports(meteor, report_pairs):
    predictions, references = report_pairs
    stats = meteor.score(predictions, references)
    hyps, refs = tokenize_pairs(predictions, references)  # what pycocoevalcap's pipeline feeds its Meteor
    reference = _PycocoMeteorOnProcess(meteor._process)
    score, per_segment = reference.compute_score({i: refs[i] for i in range(len(hyps))}, {i: [h] for i, h in enumerate(hyps)})
    np.testing.assert_allclose(stats.per_segment, per_segment, atol=1e-9)
    assert stats.aggregate()["meteor"] == pytest.approx(score, abs=1e-9)
    # some generated reports here equal their reference word for word: the jar's corpus score treats
    # those specially (see corpus_meteor_from_stats), and the parity above covers that
    assert stats.aggregate()["meteor_segment_mean"] == pytest.approx(np.mean(per_segment))


def test_subset_score_equals_the_jar_on_that_subset(meteor, report_pairs):
    predictions, references = report_pairs
    stats = meteor.score(predictions, references)
    subset = np.array([0, 0, 3, 5, 8, 13, 21, 34, 55, 89])  # with a repeat, as in a bootstrap resample
    _, jar_score = meteor.evaluate_statistics(stats.stats[subset])
    assert stats.aggregate(subset)["meteor"] == pytest.approx(jar_score, abs=1e-12)
    assert corpus_meteor_from_stats(stats.stats[subset]) == pytest.approx(jar_score, abs=1e-12)


def test_one_process_serves_calls_from_several_threads(meteor):
    results = {}

    def work(i):
        results[i] = meteor.score(["no pleural effusion."] * 20, ["No effusion or pneumothorax."] * 20).per_segment

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = results[0]
    assert all(np.array_equal(first, r) for r in results.values()) and 0 < first[0] < 1


def test_multiple_references_and_a_perfect_match(meteor):
    stats = meteor.score(["Heart size is normal.", "No effusion."], [["Heart size is normal."], ["x", "No effusion."]])
    assert stats.per_segment[0] == pytest.approx(1.0, abs=1e-3)
    assert stats.per_segment[1] > 0.9


def test_closed_scorer_and_missing_java_say_what_to_do():
    with pytest.raises(RuntimeError, match="not on PATH"):
        MeteorScorer(java="no-such-java-binary")
    scorer = MeteorScorer()
    scorer.close()
    scorer.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(["a"], ["a"])
