"""Report metrics BLEU-1..4, ROUGE-L and CIDEr-D, equal to pycocoevalcap 1.2 after its PTB tokenisation.

Per-sample sufficient statistics are computed once (:func:`nlg_statistics`); :meth:`NlgStats.aggregate`
then scores any subset of samples cheaply, which is what bootstrap confidence intervals need:

- BLEU (pycocoevalcap's corpus BLEU, "closest" reference length, its smoothing constants) is recomputed
  from the summed clipped n-gram counts and lengths of the selected samples.
- ROUGE-L (LCS F-measure with beta = 1.2, best precision and recall over references) is a per-sample
  mean.
- CIDEr-D (n = 4, sigma = 6, clipping, x10) needs document frequencies from the references of the
  evaluated set. By default they are fixed on the full set, so a subset's CIDEr is the mean of the
  full-set per-sample scores (the usual bootstrap of a per-sample metric); ``cider_df="subset"``
  recomputes them from the selected samples' references, as pycocoevalcap would on that subset
  (a repeated index counts as another image).

Scores are on pycocoevalcap's scales: BLEU and ROUGE-L in [0, 1], CIDEr about 0-10.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medvlm.evaluate.ptb import ptb_tokenize_batch

BLEU_N = 4
CIDER_N = 4
CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2
# pycocoevalcap's BLEU smoothing: (correct + TINY) / (guess + SMALL).
_BLEU_TINY = 1e-15
_BLEU_SMALL = 1e-9

NGram = tuple[str, ...]


def _ngram_counts(words: list[str], n: int) -> Counter[NGram]:
    counts: Counter[NGram] = Counter()
    for k in range(1, n + 1):
        counts.update(zip(*(words[i:] for i in range(k))))
    return counts


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (bit-parallel, O(|a||b|/64))."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def rouge_l(candidate: str, references: Sequence[str]) -> float:
    """pycocoevalcap's ROUGE-L of one tokenised candidate against its tokenised references."""
    cand = candidate.split(" ")  # split(" ") as pycocoevalcap: "" is one empty token
    best_p = best_r = 0.0
    for ref in references:
        ref_toks = ref.split(" ")
        lcs = lcs_length(ref_toks, cand)
        best_p = max(best_p, lcs / len(cand))
        best_r = max(best_r, lcs / len(ref_toks))
    if best_p == 0 or best_r == 0:
        return 0.0
    return (1 + ROUGE_BETA**2) * best_p * best_r / (best_r + ROUGE_BETA**2 * best_p)


def _bleu_from_counts(correct: np.ndarray, guess: np.ndarray, test_len: np.ndarray, ref_len: np.ndarray) -> np.ndarray:
    """BLEU-1..n as pycocoevalcap computes it; inputs (..., n) and (...); returns (..., n)."""
    ratios = (correct.astype(np.float64) + _BLEU_TINY) / (guess.astype(np.float64) + _BLEU_SMALL)
    products = np.cumprod(ratios, axis=-1)
    bleu = products ** (1.0 / np.arange(1, correct.shape[-1] + 1))
    length_ratio = (test_len + _BLEU_TINY) / (ref_len + _BLEU_SMALL)
    with np.errstate(divide="ignore", over="ignore"):
        brevity = np.where(length_ratio < 1, np.exp(1 - 1 / length_ratio), 1.0)
    return bleu * brevity[..., None]


def _cider_weights(
    counts: Counter[NGram], doc_freq: Counter[NGram], log_n_docs: float
) -> tuple[dict[NGram, float], np.ndarray, int]:
    """tf-idf weights of one text, the norm per n-gram order and its length (number of bigrams)."""
    weights: dict[NGram, float] = {}
    sq = [0.0] * CIDER_N
    for ngram, tf in counts.items():
        w = float(tf) * (log_n_docs - math.log(max(1.0, doc_freq.get(ngram, 0.0))))
        weights[ngram] = w
        sq[len(ngram) - 1] += w * w
    # pycocoevalcap's "length" counts bigrams, not words (a quirk kept for parity).
    length = sum(tf for ngram, tf in counts.items() if len(ngram) == 2)
    return weights, np.sqrt(np.array(sq)), length


def _cider_scores(hyp_counts: list[Counter[NGram]], ref_counts: list[list[Counter[NGram]]]) -> np.ndarray:
    """Per-sample CIDEr-D with document frequencies from exactly these samples' references."""
    doc_freq: Counter[NGram] = Counter()
    for refs in ref_counts:
        doc_freq.update(set().union(*refs))
    log_n_docs = math.log(float(len(ref_counts)))
    ref_cache: dict[int, tuple[dict[NGram, float], np.ndarray, int]] = {}
    scores = np.zeros(len(hyp_counts))
    for i, (hyp, refs) in enumerate(zip(hyp_counts, ref_counts)):
        vec_h, norm_h, len_h = _cider_weights(hyp, doc_freq, log_n_docs)
        total = np.zeros(CIDER_N)
        for ref in refs:
            key = id(ref)
            if key not in ref_cache:
                ref_cache[key] = _cider_weights(ref, doc_freq, log_n_docs)
            vec_r, norm_r, len_r = ref_cache[key]
            val = np.zeros(CIDER_N)
            for ngram, w_h in vec_h.items():
                w_r = vec_r.get(ngram)
                if w_r is not None:
                    val[len(ngram) - 1] += min(w_h, w_r) * w_r
            nonzero = (norm_h != 0) & (norm_r != 0)
            val[nonzero] /= norm_h[nonzero] * norm_r[nonzero]
            delta = float(len_h - len_r)
            total += val * math.exp(-(delta**2) / (2 * CIDER_SIGMA**2))
        scores[i] = total.mean() / len(refs) * 10.0
    return scores


@dataclass
class NlgStats:
    """Per-sample statistics of BLEU, ROUGE-L and CIDEr-D; aggregate any subset with :meth:`aggregate`.

    Arrays have one row per sample (N). ``bleu_correct`` / ``bleu_guess``: (N, 4) clipped matches and
    candidate n-gram counts; ``test_len`` / ``ref_len``: (N,) candidate length and closest reference length.
    """

    predictions_tokenized: list[str]
    references_tokenized: list[list[str]]
    bleu_correct: np.ndarray
    bleu_guess: np.ndarray
    test_len: np.ndarray
    ref_len: np.ndarray
    per_sample_rouge_l: np.ndarray
    per_sample_cider: np.ndarray
    _hyp_counts: list[Counter[NGram]] = field(repr=False)
    _ref_counts: list[list[Counter[NGram]]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.predictions_tokenized)

    @property
    def per_sample_bleu(self) -> np.ndarray:
        """(N, 4) sentence BLEU-1..4 as pycocoevalcap's per-image list."""
        return _bleu_from_counts(self.bleu_correct, self.bleu_guess, self.test_len, self.ref_len)

    @property
    def per_sample_bleu4(self) -> np.ndarray:
        return self.per_sample_bleu[:, 3]

    def aggregate(self, indices: np.ndarray | Sequence[int] | None = None, *, cider_df: str = "full") -> dict[str, float]:
        """Corpus scores of the samples at ``indices`` (all when None; repeats allowed, as in a bootstrap).

        Returns ``bleu1..bleu4``, ``rouge_l`` and ``cider``. ``cider_df``: "full" keeps the document
        frequencies of the whole set (default, fast), "subset" recomputes them from the selected samples.
        """
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("aggregate needs at least one sample index")
        bleu = _bleu_from_counts(
            self.bleu_correct[idx].sum(axis=0),
            self.bleu_guess[idx].sum(axis=0),
            np.float64(self.test_len[idx].sum()),
            np.float64(self.ref_len[idx].sum()),
        )
        if cider_df == "full":
            cider = float(self.per_sample_cider[idx].mean())
        elif cider_df == "subset":
            cider = float(
                _cider_scores([self._hyp_counts[i] for i in idx], [self._ref_counts[i] for i in idx]).mean()
            )
        else:
            raise ValueError(f"cider_df must be 'full' or 'subset', got {cider_df!r}")
        out = {f"bleu{k + 1}": float(bleu[k]) for k in range(BLEU_N)}
        out["rouge_l"] = float(self.per_sample_rouge_l[idx].mean())
        out["cider"] = cider
        return out


def normalize_references(references: Sequence[str] | Sequence[Sequence[str]], n_predictions: int) -> list[list[str]]:
    """References as one list per sample; checks counts and types, naming the bad index."""
    if len(references) != n_predictions:
        raise ValueError(
            f"got {n_predictions} predictions but {len(references)} references; give one reference "
            "(or one list of references) per prediction"
        )
    out: list[list[str]] = []
    for i, ref in enumerate(references):
        refs = [ref] if isinstance(ref, str) else list(ref)
        if not refs:
            raise ValueError(f"references[{i}] is an empty list; every sample needs at least one reference")
        for j, r in enumerate(refs):
            if not isinstance(r, str):
                raise TypeError(f"references[{i}][{j}] is {type(r).__name__}, expected str")
        out.append(refs)
    return out


def _check_predictions(predictions: Sequence[str]) -> list[str]:
    if isinstance(predictions, str):
        raise TypeError("predictions must be a list of strings, not one string")
    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise TypeError(f"predictions[{i}] is {type(p).__name__}, expected str")
    if not predictions:
        raise ValueError("no predictions to score")
    return list(predictions)


def tokenize_pairs(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]
) -> tuple[list[str], list[list[str]]]:
    """PTB-tokenise predictions and references as pycocoevalcap's pipeline does (two batches, in order)."""
    preds = _check_predictions(predictions)
    refs = normalize_references(references, len(preds))
    flat = ptb_tokenize_batch([r for rs in refs for r in rs])
    tok_refs: list[list[str]] = []
    pos = 0
    for rs in refs:
        tok_refs.append(flat[pos : pos + len(rs)])
        pos += len(rs)
    return ptb_tokenize_batch(preds), tok_refs


def nlg_statistics(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenized: bool = False,
) -> NlgStats:
    """Per-sample statistics for BLEU-1..4, ROUGE-L and CIDEr-D.

    ``references``: one string or one list of strings per prediction. Texts are PTB-tokenised
    (lower-cased, punctuation removed) unless ``tokenized`` says they already are.
    """
    if tokenized:
        preds = _check_predictions(predictions)
        refs = normalize_references(references, len(preds))
    else:
        preds, refs = tokenize_pairs(predictions, references)
    n = len(preds)
    correct = np.zeros((n, BLEU_N), dtype=np.int64)
    guess = np.zeros((n, BLEU_N), dtype=np.int64)
    test_len = np.zeros(n, dtype=np.float64)
    ref_len = np.zeros(n, dtype=np.float64)
    rouge = np.zeros(n, dtype=np.float64)
    hyp_counts: list[Counter[NGram]] = []
    ref_counts: list[list[Counter[NGram]]] = []
    for i, (pred, rs) in enumerate(zip(preds, refs)):
        words = pred.split()  # BLEU and CIDEr split on any whitespace, ROUGE-L on " " (pycocoevalcap)
        counts = _ngram_counts(words, BLEU_N)
        r_counts = [_ngram_counts(r.split(), BLEU_N) for r in rs]
        max_ref: dict[NGram, int] = {}
        for rc in r_counts:
            for ngram, c in rc.items():
                if c > max_ref.get(ngram, 0):
                    max_ref[ngram] = c
        for ngram, c in counts.items():
            correct[i, len(ngram) - 1] += min(c, max_ref.get(ngram, 0))
        length = len(words)
        guess[i] = [max(0, length - k) for k in range(BLEU_N)]
        test_len[i] = length
        # pycocoevalcap's "closest": min over (|ref - test|, ref), ties to the shorter reference
        ref_len[i] = min((abs(len(r.split()) - length), len(r.split())) for r in rs)[1]
        rouge[i] = rouge_l(pred, rs)
        hyp_counts.append(counts)
        ref_counts.append(r_counts)
    return NlgStats(
        predictions_tokenized=preds,
        references_tokenized=refs,
        bleu_correct=correct,
        bleu_guess=guess,
        test_len=test_len,
        ref_len=ref_len,
        per_sample_rouge_l=rouge,
        per_sample_cider=_cider_scores(hyp_counts, ref_counts),
        _hyp_counts=hyp_counts,
        _ref_counts=ref_counts,
    )


def report_nlg_metrics(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]
) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D of generated reports against references, as pycocoevalcap reports them."""
    return nlg_statistics(predictions, references).aggregate()
