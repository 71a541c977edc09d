"""`findings`: LLaVA's MLP on the image tokens, plus one token per finding from a multi-label classifier.

A language model trained from scratch on a few thousand reports learns slowly to read a finding out of the image
tokens, even when the encoder separates it well (the demo's encoder: report labels at 0.89 micro F1 from its
label head, its reports 0.73). Classification-guided report generation gives the decoder the classifier's
verdicts directly (PromptMRG, Jin et al., AAAI 2024, writes them into the prompt as "diagnosis-driven" tokens);
here they are soft tokens, so the whole path stays differentiable:

    p = sigmoid(classifier(pool(image tokens)))                       (N, num_labels)
    finding_token[k] = label_embedding[k] + p[:, k] * present_embedding[k]   (N, num_labels, text_dim)
    output = concat(mlp(image tokens), finding_tokens)                 (N, tokens + num_labels, text_dim)

threshold: None (the default) passes p itself; a number passes the classifier's decision, 1 where p >= threshold
else 0, with p's gradient (straight-through). A classifier taught on the training images is surer on them than on
new ones (p near 0 or 1 in training, 0.3-0.7 on a hard test case): with soft p the language model learns to write a
finding only when p is near 1 and misses what the classifier finds at p = 0.6; with decisions it sees the same kind
of input in training and at test time.

finding_words: token ids of the words a report uses for each finding (one list per label; build_model resolves
"chexpert" to CHEXPERT_WORDS in the model's tokenizer). A finding that is present then also adds the mean input
embedding of its words, read from the language model's live embedding table at every forward:

    finding_token[k] = label_embedding[k] + p[:, k] * (present_embedding[k] + mean(E[words_k]))

With tied input / output embeddings (the tiny preset) the token carries the very vector the language model scores
"nodule" with, so writing the word is a copy instead of a mapping from an arbitrary vector to be learnt: the
demo's language model otherwise learns which finding is on slowly, and names a different one (a lesion the
classifier finds written as a pneumothorax or a consolidation).

finding_targets: training may give, per image, the values its finding tokens are to carry instead of the
classifier's (`forward(features, finding_targets=...)`, (N, num_labels), NaN where the classifier decides):
the training recipe's `findings.teacher_forcing` passes the labels of each training image's own report. A
classifier is imperfect on its training images too (the demo's: lesion 0.87, pneumothorax 0.90 F1 there), so a
language model taught on its decisions learns that a finding token is not to be trusted and half guesses from the
image tokens; taught on the report's labels, it writes what the tokens say, and at test time the tokens carry the
classifier's decisions (docs/training.md, "Teacher forcing the finding tokens").

pool: "mean" (the token mean) or "mean_max" ([mean, max] over the tokens: a finding that one patch sees stays
visible). The classifier is the encoder stage's label head when the model comes from one
(medvlm.train.encoder_stage copies it in, pooling and width checked), and keeps training with the connector
unless train_classifier=False.
"""

from __future__ import annotations

import torch
from torch import nn

from medvlm.models.connectors.mlp import mlp

POOLINGS = ("mean", "mean_max")
# what a report calls each CheXpert observation (medvlm.evaluate.labeler.CHEXPERT_OBSERVATIONS order): the words
# of connector_config finding_words="chexpert"
CHEXPERT_WORDS = ("normal", "cardiomediastinal", "cardiomegaly", "opacity", "nodule", "edema", "consolidation",
                  "pneumonia", "atelectasis", "pneumothorax", "effusion", "pleural", "fracture", "tube")


def finding_word_ids(tokenizer, words: tuple[str, ...] | list[str]) -> list[list[int]]:
    """The token ids of each word as it appears inside a sentence (" nodule": BPE vocabularies differ there)."""
    ids = [list(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) for word in words]
    empty = [w for w, i in zip(words, ids, strict=True) if not i]
    if empty:
        raise ValueError(f"finding_words: the tokenizer gives no tokens for {empty}")
    return ids


class FindingsConnector(nn.Module):
    """(N, tokens, vision_dim) -> (N, tokens + num_labels, text_dim)."""

    accepts_layer_stack = False
    images_per_placeholder = 1
    accepts_finding_targets = True

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int, num_labels: int = 14,
                 pooling: str = "mean_max", depth: int = 2, train_classifier: bool = True,
                 threshold: float | None = None, finding_words: list[list[int]] | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"findings connector pooling={pooling!r}: use one of {POOLINGS}")
        if num_labels < 1:
            raise ValueError(f"findings connector num_labels={num_labels}: give 1 or more")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"findings connector threshold={threshold}: give a probability in (0, 1), or None")
        self.pooling = pooling
        self.threshold = threshold
        self.train_classifier = train_classifier
        self.mlp = mlp(vision_dim, text_dim, depth)
        self.classifier = nn.Linear((2 if pooling == "mean_max" else 1) * vision_dim, num_labels)
        self.label_embedding = nn.Parameter(torch.randn(num_labels, text_dim) * 0.02)
        self.present_embedding = nn.Parameter(torch.randn(num_labels, text_dim) * 0.02)
        if finding_words is not None and (isinstance(finding_words, str) or len(finding_words) != num_labels
                                          or not all(finding_words)):
            raise ValueError(f"findings connector finding_words: give {num_labels} non-empty lists of token ids, "
                             f"one per label (build_model resolves \"chexpert\"), got {finding_words!r:.80}")
        # plain lists, not buffers: the config holds them, and a model loaded from weights saved without them
        # (e.g. an align stage run before finding_words was set) still gets them right
        self.finding_words = None if finding_words is None else [[int(i) for i in w] for w in finding_words]
        # padded (num_labels, width) ids and their mask, built once on the CPU (explicitly: transformers builds
        # models under a meta-device default when loading)
        self._word_ids = self._word_mask = None
        if self.finding_words is not None:
            width = max(len(w) for w in self.finding_words)
            self._word_ids = torch.tensor([w + [0] * (width - len(w)) for w in self.finding_words], device="cpu")
            self._word_mask = torch.tensor([[1.0] * len(w) + [0.0] * (width - len(w)) for w in self.finding_words],
                                           device="cpu")

    @classmethod
    def output_tokens(cls, num_input_tokens: int, num_labels: int = 14, **settings) -> int:
        return num_input_tokens + num_labels

    @property
    def reads_text_embeddings(self) -> bool:
        return self.finding_words is not None

    def present_vectors(self, text_embeddings: nn.Module | None) -> torch.Tensor:
        """(num_labels, text_dim): present_embedding, plus the mean embedding of each finding's words."""
        if self.finding_words is None:
            return self.present_embedding
        if text_embeddings is None:
            raise ValueError("this findings connector has finding_words: pass the language model's input "
                             "embeddings (text_embeddings=model.get_input_embeddings())")
        words = text_embeddings(self._word_ids.to(self.present_embedding.device))  # (labels, width, text_dim)
        mask = self._word_mask.to(words.device, words.dtype)[..., None]
        return self.present_embedding + ((words * mask).sum(1) / mask.sum(1)).to(self.present_embedding.dtype)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        mean = features.mean(dim=1)
        return torch.cat([mean, features.amax(dim=1)], dim=-1) if self.pooling == "mean_max" else mean

    def finding_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, tokens, vision_dim) -> (N, num_labels): the classifier's logits."""
        return self.classifier(self.pooled(features))

    def finding_values(self, features: torch.Tensor, finding_targets: torch.Tensor | None = None) -> torch.Tensor:
        """(N, tokens, vision_dim) -> (N, num_labels, 1): p, or the decisions at `threshold` (straight-through);
        where `finding_targets` (N, num_labels) holds a number instead of NaN, that number."""
        logits = self.finding_logits(features)
        if not self.train_classifier:  # keep the classifier as it came (no gradient, so no update)
            logits = logits.detach()
        p = torch.sigmoid(logits)
        if self.threshold is not None:
            p = (p >= self.threshold).to(p.dtype) + p - p.detach()  # forward: 0 / 1; backward: dp
        if finding_targets is not None:
            if finding_targets.shape != p.shape:
                raise ValueError(f"finding_targets {tuple(finding_targets.shape)} must match the images' finding "
                                 f"values {tuple(p.shape)} (one row of {p.shape[-1]} labels per image)")
            targets = finding_targets.to(device=p.device, dtype=p.dtype)
            p = torch.where(torch.isnan(targets), p, targets)
        return p.unsqueeze(-1)

    def forward(self, features: torch.Tensor, text_embeddings: nn.Module | None = None,
                finding_targets: torch.Tensor | None = None) -> torch.Tensor:
        present = self.present_vectors(text_embeddings)
        findings = self.label_embedding + self.finding_values(features, finding_targets) * present  # (N, labels, dim)
        return torch.cat([self.mlp(features), findings.to(features.dtype)], dim=1)

    def load_label_head(self, head: nn.Linear, pooling: str) -> None:
        """Start the classifier from a trained label head with the same pooling and shape."""
        if pooling != self.pooling or head.weight.shape != self.classifier.weight.shape:
            raise ValueError(
                f"the label head (pooling {pooling!r}, weight {tuple(head.weight.shape)}) does not fit the findings "
                f"connector (pooling {self.pooling!r}, weight {tuple(self.classifier.weight.shape)}): give "
                "encoder.pooling and connector_config.pooling the same value, and num_labels the head's count")
        copy_linear(self.classifier, head)


def copy_linear(target: nn.Linear, source: nn.Linear) -> None:
    """target's weight and bias := source's (same shapes; checked by the caller, whose message names the fix)."""
    with torch.no_grad():
        target.weight.copy_(source.weight)
        target.bias.copy_(source.bias)
