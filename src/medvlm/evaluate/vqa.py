"""VQA answer scores: MSLoRA-CR's scorer, LLaVA-Med's closed accuracy and open recall, a strict closed accuracy.

Every metric keeps the name of the scorer it reproduces, since the same words ("accuracy", "recall") mean
different things in different papers. Values are fractions in [0, 1]; the papers print them x100.

Text normalisation (`normalize_answer`) is LLaVA-Med's `normalize_word`, which MSLoRA-CR uses too: lower-case;
strip the punctuation ; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? ! (deleted when it touches a space or the text
has a digit,digit group, else replaced by a space); delete a period not followed by a digit (only the first 32
of them: the reference passes re.UNICODE, 32, where `re.sub` takes its count); number words zero..ten (and
"none") to digits; drop the articles a / an / the; expand contractions (dont -> don't).

MSLoRA-CR (`llava/eval/report_results.py`; prediction also loses "assistant:"):
  mslora_exact_match       normalised prediction == normalised reference, over ALL answers
  mslora_open_f1 / _precision / _recall
                           token F1 / precision / recall over OPEN answers (LLaVA-Med's `calculate_f1score`:
                           word counts, text normalised once more; 0 when no token is shared)
  mslora_open_bleu         NLTK `sentence_bleu`, cumulative 4-gram (weights 1/4 each), no smoothing, over OPEN
  mslora_open_bleu_1gram / _2gram / _3gram
                           NLTK `sentence_bleu` with weights (1,0,0,0), (0,1,0,0), (0,0,1,0): one n-gram order
                           only (times the brevity penalty), over OPEN answers
  mslora_closed_accuracy   over CLOSED answers: a hit when the reference equals or is contained in the prediction
LLaVA-Med (`llava/eval/run_eval_batch.py`, the version with both "missing line" fixes):
  llavamed_closed_accuracy over CLOSED answers: normalised reference contained in normalised prediction
  llavamed_open_recall     over OPEN answers: the token recall above (the "recall" of the LLaVA-Med paper)
medvlm:
  strict_closed_accuracy   over CLOSED answers: normalised prediction == normalised reference ("no, there is
                           none" does not count as "no"; "yes" contained in "yes and no" does not count either)

An answer without answer_type is OPEN, as in MSLoRA-CR. Keys of a group with no answers are left out, as
MSLoRA-CR leaves their rows out. `n`, `n_open`, `n_closed` count the answers.

The BLEU here is NLTK 3.x's `sentence_bleu` arithmetic re-done in one pass for the four weightings (same
clipped counts, `sys.float_info.min` for an n-gram order with no match, 0 when no unigram matches, same
floating-point operations), so the scores equal NLTK's bit for bit at a fraction of the time.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ANSWER_TYPES = ("OPEN", "CLOSED")

# ----------------------------------------------------------------------------------------------------------
# text normalisation (LLaVA-Med's normalize_word, kept quirk for quirk: the published numbers depend on it)

_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The reference pattern is "(?!<=\d)(\.)(?!\d)": its first group is a look-AHEAD for "<=" and a digit, which
# never matches at a period, so only "not followed by a digit" acts.
_PERIOD = re.compile(r"\.(?!\d)")
_MAX_PERIODS = 32  # the reference passes re.UNICODE (== 32) as re.sub's `count`
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset({"a", "an", "the"})
# The VQA evaluation toolkit's contraction table (its entries with capitals never match lower-cased text).
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}


@functools.lru_cache(maxsize=1 << 16)  # VQA answers repeat a lot ("yes", "no", class names)
def normalize_answer(text: str) -> str:
    """LLaVA-Med's / MSLoRA-CR's answer normalisation (see the module docstring); words joined by one space."""
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if mark not in text:  # replacing one mark never adds or removes another
            continue
        # the test looks at the original text, the replacement acts on the running result, as in the reference
        touches_space = (mark + " ") in text or (" " + mark) in text
        out = out.replace(mark, "" if (delete_all or touches_space) else " ")
    out = _PERIOD.sub("", out, count=_MAX_PERIODS)
    words = [_NUMBER_WORDS.get(w, w) for w in out.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words).replace(",", "")


# ----------------------------------------------------------------------------------------------------------
# per-answer scores


def token_f1(prediction: str, reference: str) -> tuple[float, float, float]:
    """(F1, precision, recall) over word counts, as LLaVA-Med's `calculate_f1score` (which MSLoRA-CR calls).

    Both texts are normalised (again) first. A shared word counts its prediction count as true positives; words
    only in the prediction are false positives, words only in the reference false negatives (with counts).
    All three are 0 when either side is empty or no word is shared.
    """
    return _token_f1_normalized(normalize_answer(prediction), normalize_answer(reference))


def _normalize_again(normalized: str) -> str:
    """normalize_answer(normalized) for a text that went through normalize_answer once, cheaply.

    The second pass changes a text only where periods are left, i.e. the 33rd and later ones.
    """
    return normalize_answer(normalized) if _PERIOD.search(normalized) else normalized


def _token_f1_normalized(prediction: str, reference: str) -> tuple[float, float, float]:
    pred_counts = Counter(prediction.split())
    ref_counts = Counter(reference.split())
    if not pred_counts or not ref_counts:
        return 0.0, 0.0, 0.0
    tp = sum(c for w, c in pred_counts.items() if w in ref_counts)
    if tp == 0:
        return 0.0, 0.0, 0.0
    fp = sum(c for w, c in pred_counts.items() if w not in ref_counts)
    fn = sum(c for w, c in ref_counts.items() if w not in pred_counts)
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return 2 * precision * recall / (precision + recall), precision, recall


# (cumulative 4-gram, 1-gram only, 2-gram only, 3-gram only): MSLoRA-CR's four sentence_bleu calls
_BLEU_WEIGHTS = ((0.25, 0.25, 0.25, 0.25), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0))


def nltk_sentence_bleus(hypothesis: Sequence[str], reference: Sequence[str]) -> tuple[float, ...]:
    """NLTK `sentence_bleu([reference], hypothesis, weights=w)` for the four weightings of `_BLEU_WEIGHTS`.

    No smoothing (NLTK's method0): an order with no clipped match counts as precision sys.float_info.min; no
    unigram match gives 0. Brevity penalty exp(1 - r/c) when c <= r.
    """
    precisions: list[float] = []
    for n in range(1, 5):
        hyp_ngrams = Counter(zip(*(hypothesis[i:] for i in range(n)), strict=False)) if len(hypothesis) >= n else Counter()
        ref_ngrams = Counter(zip(*(reference[i:] for i in range(n)), strict=False)) if len(reference) >= n else Counter()
        matched = sum((hyp_ngrams & ref_ngrams).values())  # clipped counts
        if n == 1 and matched == 0:
            return (0.0,) * len(_BLEU_WEIGHTS)
        total = max(1, sum(hyp_ngrams.values()))
        precisions.append(matched / total if matched else sys.float_info.min)
    hyp_len, ref_len = len(hypothesis), len(reference)
    brevity = 1 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return tuple(
        brevity * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights, precisions, strict=False) if p > 0))
        for weights in _BLEU_WEIGHTS
    )


# ----------------------------------------------------------------------------------------------------------
# statistics and aggregation


@dataclass
class VqaStats:
    """Per-answer scores (arrays of length n) from which every VQA metric is a mean over a subset.

    open_*: NaN for CLOSED answers; closed hits: NaN for OPEN answers. `aggregate(indices)` accepts repeated
    indices (a bootstrap resample).
    """

    is_open: np.ndarray  # (n,) bool
    exact_match: np.ndarray  # (n,) float 0/1
    open_f1: np.ndarray
    open_precision: np.ndarray
    open_recall: np.ndarray
    open_bleu: np.ndarray  # (n, 4): cumulative 4-gram, 1-, 2-, 3-gram only
    mslora_closed_hit: np.ndarray
    llavamed_closed_hit: np.ndarray
    llavamed_open_recall: np.ndarray
    strict_closed_hit: np.ndarray

    def __len__(self) -> int:
        return len(self.is_open)

    def per_sample(self) -> list[dict[str, float]]:
        """One dict per answer with the scores that apply to it (for CSV rows and example tables)."""
        rows = []
        for i in range(len(self)):
            if self.is_open[i]:
                row = {"exact_match": float(self.exact_match[i]), "open_f1": float(self.open_f1[i]),
                       "open_recall": float(self.open_recall[i]), "open_bleu": float(self.open_bleu[i, 0])}
            else:
                row = {"exact_match": float(self.exact_match[i]),
                       "closed_hit": float(self.mslora_closed_hit[i]),
                       "strict_closed_hit": float(self.strict_closed_hit[i])}
            rows.append(row)
        return rows

    def score(self) -> np.ndarray:
        """One score per answer to rank examples by: token F1 for OPEN answers, the strict hit for CLOSED."""
        return np.where(self.is_open, self.open_f1, self.strict_closed_hit)

    def aggregate(self, indices: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        is_open = self.is_open[idx]
        open_idx, closed_idx = idx[is_open], idx[~is_open]
        out: dict[str, float] = {}
        if len(idx):
            out["mslora_exact_match"] = float(self.exact_match[idx].mean())
        if len(open_idx):
            out["mslora_open_f1"] = float(self.open_f1[open_idx].mean())
            out["mslora_open_precision"] = float(self.open_precision[open_idx].mean())
            out["mslora_open_recall"] = float(self.open_recall[open_idx].mean())
            bleu = self.open_bleu[open_idx].mean(axis=0)
            out["mslora_open_bleu"] = float(bleu[0])
            out["mslora_open_bleu_1gram"] = float(bleu[1])
            out["mslora_open_bleu_2gram"] = float(bleu[2])
            out["mslora_open_bleu_3gram"] = float(bleu[3])
            out["llavamed_open_recall"] = float(self.llavamed_open_recall[open_idx].mean())
        if len(closed_idx):
            out["mslora_closed_accuracy"] = float(self.mslora_closed_hit[closed_idx].mean())
            out["llavamed_closed_accuracy"] = float(self.llavamed_closed_hit[closed_idx].mean())
            out["strict_closed_accuracy"] = float(self.strict_closed_hit[closed_idx].mean())
        out["n"] = int(len(idx))
        out["n_open"] = int(len(open_idx))
        out["n_closed"] = int(len(closed_idx))
        return out


def _answer_type(value: str | None, index: int, ids: Sequence | None) -> bool:
    """True for OPEN (also when missing, as in MSLoRA-CR), False for CLOSED; anything else is an error."""
    if value is None:
        return True
    kind = str(value).strip().upper()
    if kind not in ANSWER_TYPES:
        where = f"answer id {ids[index]!r}" if ids is not None else f"answer {index}"
        raise ValueError(f"{where}: answer_type {value!r} is neither OPEN nor CLOSED; fix the answers or "
                         "questions file (leave answer_type out to score the answer as OPEN)")
    return kind == "OPEN"


def vqa_statistics(predictions: Sequence[str], references: Sequence[str],
                   answer_types: Sequence[str | None] | None = None, ids: Sequence | None = None) -> VqaStats:
    """Score every answer once; `answer_types` holds "OPEN" / "CLOSED" / None (None and a missing list mean OPEN).

    ids: only to name the record in errors.
    """
    n = len(predictions)
    if len(references) != n:
        raise ValueError(f"{n} predictions but {len(references)} references; give one reference per prediction")
    types = [None] * n if answer_types is None else list(answer_types)
    if len(types) != n:
        raise ValueError(f"{n} predictions but {len(types)} answer types")
    nan = float("nan")
    is_open = np.zeros(n, dtype=bool)
    exact = np.zeros(n)
    f1, precision, recall, llava_recall = (np.full(n, nan) for _ in range(4))
    bleu = np.full((n, 4), nan)
    mslora_hit, llava_hit, strict_hit = (np.full(n, nan) for _ in range(3))
    bleu_cache: dict[tuple[str, str], tuple[float, ...]] = {}  # VQA answers repeat: score each pair once
    for i, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        is_open[i] = _answer_type(types[i], i, ids)
        # MSLoRA-CR: lower-case, drop "assistant:", strip, normalise, strip
        ref_norm = normalize_answer(str(reference).lower()).strip()
        pred_norm = normalize_answer(str(prediction).lower().replace("assistant:", "").strip()).strip()
        exact[i] = float(pred_norm == ref_norm)
        # LLaVA-Med: lower-case, normalise (no "assistant:" removal): the same text unless those differ
        llava_ref = ref_norm
        llava_pred = normalize_answer(str(prediction).lower())
        if is_open[i]:
            # token_f1 normalises its (already normalised) inputs once more, as the reference does
            f1[i], precision[i], recall[i] = _token_f1_normalized(_normalize_again(pred_norm),
                                                                  _normalize_again(ref_norm))
            key = (pred_norm, ref_norm)
            if key not in bleu_cache:
                bleu_cache[key] = nltk_sentence_bleus(pred_norm.split(), ref_norm.split())
            bleu[i] = bleu_cache[key]
            llava_recall[i] = (recall[i] if llava_pred == pred_norm else
                               _token_f1_normalized(_normalize_again(llava_pred), _normalize_again(llava_ref))[2])
        else:
            mslora_hit[i] = float(ref_norm == pred_norm or ref_norm in pred_norm)
            llava_hit[i] = float(llava_ref in llava_pred)
            strict_hit[i] = exact[i]
    return VqaStats(is_open, exact, f1, precision, recall, bleu, mslora_hit, llava_hit, llava_recall, strict_hit)


def vqa_metrics(predictions: Sequence[str], references: Sequence[str],
                answer_types: Sequence[str | None] | None = None) -> dict[str, float]:
    """All VQA metrics (fractions in [0, 1]) for paired predictions and references; see the module docstring."""
    return vqa_statistics(predictions, references, answer_types).aggregate()


def evaluate_vqa_file(answers_path: str | os.PathLike, references_path: str | os.PathLike | None = None,
                      out_path: str | os.PathLike | None = None, *, bootstrap: int = 0, seed: int = 0,
                      csv_path: str | os.PathLike | None = None,
                      html_path: str | os.PathLike | None = None) -> dict:
    """Score an answers file (any form `medvlm.records` reads) and optionally write metrics JSON, CSV and HTML.

    References and answer types come from the answers themselves, or from a questions file joined by id
    (`references_path`), see `medvlm.evaluate.report.paired_answers`. With bootstrap > 0 the result has
    `ci95: {key: [lo, hi]}` (percentile bootstrap, see `medvlm.evaluate.bootstrap`).
    """
    from medvlm.evaluate.bootstrap import bootstrap_ci
    from medvlm.evaluate.report import paired_answers, write_outputs

    pairs = paired_answers(answers_path, references_path)
    stats = vqa_statistics([p.prediction for p in pairs], [p.reference for p in pairs],
                           [p.answer_type for p in pairs], ids=[p.id for p in pairs])
    metrics: dict = stats.aggregate()
    if bootstrap:
        metrics["ci95"] = bootstrap_ci([stats], len(stats), replicates=bootstrap, seed=seed)
    write_outputs(metrics, pairs, stats.per_sample(), stats.score(), out_path=out_path, csv_path=csv_path,
                  html_path=html_path, title=f"VQA metrics: {os.fspath(answers_path)}",
                  score_name="token F1 (OPEN) or strict hit (CLOSED)")
    return metrics
