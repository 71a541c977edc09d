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


def _ngram_counts(words: list[str], n: int) -> list[Counter[NGram]]:
    """Counts of the 1..n-grams of ``words``, one Counter per order."""
    return [Counter(zip(*(words[i:] for i in range(k)), strict=False)) for k in range(1, n + 1)]


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


_CiderVector = tuple[list[dict[NGram, float]], list[float], int]


def _cider_vector(counts: list[Counter[NGram]], idf: dict[NGram, float], log_n_docs: float) -> _CiderVector:
    """tf-idf weights of one text per n-gram order, their norms, and its length (number of bigrams)."""
    weights = [{g: tf * idf.get(g, log_n_docs) for g, tf in order.items()} for order in counts]
    norms = [math.sqrt(sum(w * w for w in order.values())) for order in weights]
    # pycocoevalcap's "length" counts bigrams, not words (a quirk kept for parity).
    return weights, norms, sum(counts[1].values())


def _cider_scores(hyp_counts: list[list[Counter[NGram]]], ref_counts: list[list[list[Counter[NGram]]]]) -> np.ndarray:
    """Per-sample CIDEr-D with document frequencies from exactly these samples' references."""
    doc_freq: Counter[NGram] = Counter()
    for refs in ref_counts:
        doc_freq.update(set().union(*(order for ref in refs for order in ref)))
    log_n_docs = math.log(float(len(ref_counts)))
    # An n-gram absent from the references has document frequency 0, counted as 1 (idf = log N).
    idf = {g: log_n_docs - math.log(df) for g, df in doc_freq.items()}
    gauss = 2 * CIDER_SIGMA**2
    ref_cache: dict[int, _CiderVector] = {}
    scores = np.zeros(len(hyp_counts))
    for i, (hyp, refs) in enumerate(zip(hyp_counts, ref_counts, strict=True)):
        vec_h, norm_h, len_h = _cider_vector(hyp, idf, log_n_docs)
        total = 0.0
        for ref in refs:
            cached = ref_cache.get(id(ref))
            if cached is None:
                cached = ref_cache[id(ref)] = _cider_vector(ref, idf, log_n_docs)
            vec_r, norm_r, len_r = cached
            penalty = math.exp(-float(len_h - len_r) ** 2 / gauss)
            for k in range(CIDER_N):
                h, r = vec_h[k], vec_r[k]
                val = sum(min(h[g], r[g]) * r[g] for g in h.keys() & r.keys())
                if norm_h[k] != 0 and norm_r[k] != 0:
                    val /= norm_h[k] * norm_r[k]
                total += val * penalty
        scores[i] = total / CIDER_N / len(refs) * 10.0
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
    _hyp_counts: list[list[Counter[NGram]]] = field(repr=False)
    _ref_counts: list[list[list[Counter[NGram]]]] = field(repr=False)

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
    hyp_counts: list[list[Counter[NGram]]] = []
    ref_counts: list[list[list[Counter[NGram]]]] = []
    for i, (pred, rs) in enumerate(zip(preds, refs, strict=True)):
        words = pred.split()  # BLEU and CIDEr split on any whitespace, ROUGE-L on " " (pycocoevalcap)
        counts = _ngram_counts(words, BLEU_N)
        r_counts = [_ngram_counts(r.split(), BLEU_N) for r in rs]
        for k in range(BLEU_N):
            if len(r_counts) == 1:
                max_ref = r_counts[0][k]
            else:
                max_ref = Counter()
                for rc in r_counts:
                    max_ref |= rc[k]  # elementwise max
            hyp_k = counts[k]
            correct[i, k] = sum(min(hyp_k[g], max_ref[g]) for g in hyp_k.keys() & max_ref.keys())  # clipped
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
