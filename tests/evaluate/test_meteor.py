"""METEOR 1.5 from a jar loaded with a filtered paraphrase table, equal to pycocoevalcap's Meteor.

pycocoevalcap's own `Meteor` (its jar parsing the whole paraphrase table, ~10 s) is started once for the module
and is the reference. The paraphrase index lives in the shared cache ($MEDVLM_CACHE or ~/.cache/medvlm), like
the pretrained models: the first run on a machine builds it (~15-25 s, with a progress bar), later runs load it.
"""

from __future__ import annotations

import glob
import gzip
import json
import shutil
import threading

import numpy as np
import pytest

from medvlm.evaluate.meteor import (
    MeteorScorer,
    ParaphraseIndex,
    build_paraphrase_index,
    corpus_meteor_from_stats,
)
from medvlm.evaluate.nlg import tokenize_pairs

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR 1.5 runs in Java")

_PARAPHRASE_STAGE = slice(16, 20)  # statistics of the 4th matching stage (paraphrases)


@pytest.fixture(scope="module")
def pycoco():
    """pycocoevalcap's Meteor as is: the reference for every value here."""
    from pycocoevalcap.meteor.meteor import Meteor

    reference = Meteor()
    yield reference
    reference.meteor_p.kill()
    reference.meteor_p.wait()


def _pycoco_scores(pycoco, hyps: list[str], refs: list[list[str]]) -> tuple[float, np.ndarray]:
    score, per_segment = pycoco.compute_score({i: refs[i] for i in range(len(hyps))}, {i: [h] for i, h in enumerate(hyps)})
    return score, np.array(per_segment)


def _pycoco_stats(pycoco, hyps: list[str], refs: list[list[str]]) -> np.ndarray:
    return np.array([[float(x) for x in pycoco._stat(h, r).split()] for h, r in zip(hyps, refs, strict=True)])


@pytest.fixture(scope="module")
def index():
    return ParaphraseIndex.ensure()  # built into the shared cache on a machine's first run


@pytest.fixture(scope="module")
def meteor(index):
    with MeteorScorer() as scorer:
        yield scorer


@pytest.fixture(scope="module")
def report_pairs(realdata):
    """The 3 x 666 generated-vs-reference IU X-ray reports of the MSLoRA-CR answer files."""
    predictions, references = [], []
    for path in sorted(glob.glob(str(realdata / "mslora_cr_results" / "*" / "iu-x-ray" / "answer-file.jsonl"))):
        rows = [json.loads(line) for line in open(path).read().splitlines()]
        predictions += [r["text"] for r in rows]
        references += [r["gt"] for r in rows]
    assert len(predictions) == 3 * 666
    return predictions, references


@pytest.fixture(scope="module")
def paraphrase_pairs(index):
    """Hypothesis/reference pairs built from table entries (phrase in one, its paraphrase in the other), with
    punctuation the jar's normaliser splits off; a filter that lost an entry would lose a match here."""
    pairs = []
    for word in ("effusion", "enlarged", "pneumothorax", "normal", "opacity", "heart", "lungs", "x-ray", "can't"):
        wid = index.word_ids.get(word)
        if wid is None:
            continue
        lines = np.searchsorted(index.line_offsets, np.flatnonzero(index.token_ids == wid), side="right") - 1
        entry = int(lines[lines % 2 == 0][0]) // 2  # the first entry with the word in its phrase
        phrase, paraphrase = (" ".join(index.words[t] for t in index.token_ids[index.line_offsets[k]:index.line_offsets[k + 1]])
                              for k in (2 * entry, 2 * entry + 1))
        pairs.append((f"the {phrase}, as seen (x-ray) ...", f"The {paraphrase.upper()}; as seen on x-ray."))
        pairs.append((f"no {paraphrase}: don't worry", f"{phrase} isn't present &amp; the heart\u2019s fine"))
    assert len(pairs) >= 8
    return [h for h, _ in pairs], [[r] for _, r in pairs]


def test_equal_to_pycocoevalcap_on_real_reports(meteor, pycoco, report_pairs):
    predictions, references = report_pairs
    stats = meteor.score(predictions, references)
    hyps, refs = tokenize_pairs(predictions, references)  # what pycocoevalcap's pipeline feeds its Meteor
    score, per_segment = _pycoco_scores(pycoco, hyps, refs)
    np.testing.assert_array_equal(stats.per_segment, per_segment)
    assert stats.aggregate()["meteor"] == pytest.approx(score, abs=1e-12)
    assert stats.stats[:, _PARAPHRASE_STAGE].sum() > 1000  # paraphrases matched: the filtered table is used
    # some generated reports here equal their reference word for word: the jar's corpus score treats
    # those specially (see corpus_meteor_from_stats), and the parity above covers that
    assert stats.aggregate()["meteor_segment_mean"] == pytest.approx(np.mean(per_segment))
    np.testing.assert_array_equal(stats.stats[:150], _pycoco_stats(pycoco, hyps[:150], refs[:150]))


def test_paraphrase_matches_equal_pycocoevalcap(paraphrase_pairs, pycoco):
    hyps, refs = paraphrase_pairs
    for start in (0, 1):  # each kind of pair on its own jar: one must not bring the entries the other needs
        with MeteorScorer() as scorer:
            ours = scorer.segment_statistics(hyps[start::2], refs[start::2])
        np.testing.assert_array_equal(ours, _pycoco_stats(pycoco, hyps[start::2], refs[start::2]))
        assert (ours[:, _PARAPHRASE_STAGE].sum(axis=1) > 0).mean() > 0.5  # most pairs match through a paraphrase


def test_a_reused_scorer_restarts_only_when_new_texts_need_more_paraphrases(paraphrase_pairs, pycoco):
    hyps, refs = paraphrase_pairs
    with MeteorScorer() as scorer:
        scorer.segment_statistics(hyps[:2], refs[:2])
        assert scorer.jar_starts == 1
        scorer.segment_statistics(hyps[:1], refs[:1])  # needs nothing new: same jar
        assert scorer.jar_starts == 1
        later = scorer.segment_statistics(hyps, refs)  # new words: the jar restarts with both tables' entries
        assert scorer.jar_starts == 2
        again = scorer.segment_statistics(hyps[:2], refs[:2])
        assert scorer.jar_starts == 2
    np.testing.assert_array_equal(later, _pycoco_stats(pycoco, hyps, refs))
    np.testing.assert_array_equal(again, later[:2])


def test_subset_score_equals_the_jar_on_that_subset(meteor, report_pairs):
    predictions, references = report_pairs
    stats = meteor.score(predictions[:120], references[:120])
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


def test_index_of_a_table_gives_back_its_entries(tmp_path):
    entries = [("0.5", "no", "not"), ("0.015432594889040002", "pleural effusion", "effusion"),
               ("1e-05", "heart size", "cardiac silhouette"), ("0.25", "no", "none at all"),
               ("0.125", "x-ray", "radiograph")]
    table = tmp_path / "paraphrase-test.gz"
    table.write_bytes(gzip.compress("".join(f"{p}\n{a}\n{b}\n" for p, a, b in entries).encode()))
    build_paraphrase_index(table, tmp_path / "index", progress=False, piece_bytes=40)  # pieces cut between lines
    index = ParaphraseIndex.load(tmp_path / "index")
    assert len(index) == 5 and index.words == sorted({w for _, a, b in entries for w in f"{a} {b}".split()})
    index.write_table(tmp_path / "all.gz", np.arange(5))
    assert gzip.decompress((tmp_path / "all.gz").read_bytes()) == gzip.decompress(table.read_bytes())
    ids = index.word_ids
    # an entry is kept when some segment holds its phrase on one side and its paraphrase on the other
    kept = index.entries_for_segments([{ids["no"], ids["heart"]}, {ids["effusion"]}],
                                      [{ids["not"], ids["size"]}, {ids["pleural"], ids["effusion"]}])
    assert kept.tolist() == [0, 1]
    # ... in the same segment: "no" and "none at all" are in different segments here
    assert index.entries_for_segments([{ids["no"]}, set()], [set(), {ids["none"], ids["at"], ids["all"]}]).tolist() == []
    # with more than 64 segments too (segments 0 and 64 share a bit of the first, folded pass)
    hyps, refs = [set() for _ in range(100)], [set() for _ in range(100)]
    hyps[0], refs[64] = {ids["no"]}, {ids["not"]}
    assert index.entries_for_segments(hyps, refs).tolist() == []
    refs[0] = {ids["not"]}
    assert index.entries_for_segments(hyps, refs).tolist() == [0]


def test_malformed_table_is_refused_with_the_reason(tmp_path):
    table = tmp_path / "bad.gz"
    table.write_bytes(gzip.compress(b"0.5\nno\nnot\n0.25\nno\n"))
    with pytest.raises(ValueError, match="not a positive multiple of 3"):
        build_paraphrase_index(table, tmp_path / "index", progress=False)
    table.write_bytes(gzip.compress(b"0.5\nno\n\n"))
    with pytest.raises(ValueError, match="line 3 has no word"):
        build_paraphrase_index(table, tmp_path / "index", progress=False)


def test_closed_scorer_and_missing_java_say_what_to_do():
    with pytest.raises(RuntimeError, match="not on PATH"):
        MeteorScorer(java="no-such-java-binary")
    scorer = MeteorScorer()
    scorer.close()
    scorer.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(["a"], ["a"])
