"""`pair_findings`: the `findings` connector for a current + prior pair (Libra's input, PromptMRG's finding tokens).

A report's change words ("new", "resolved", "increased") compare the two studies finding by finding. `pair_concat`
and `tac` leave that comparison to the language model, which must first find each finding in two sets of image
tokens. Here one classifier (the encoder stage's label head, as in `findings`) reads both images, and each
finding's token carries both verdicts, so "present now, absent before" is two numbers side by side:

    features (num_pairs * 2, tokens, vision_dim)          current, prior, current, prior, ... (placeholder order)
    p_now    = sigmoid(classifier(pool(current)))          (P, num_labels)
    p_before = sigmoid(classifier(pool(prior)))            (P, num_labels)
    finding_token[k] = label_embedding[k] + p_now[:, k] * present_embedding[k]
                                          + p_before[:, k] * prior_embedding[k]       (P, num_labels, text_dim)
    output = concat(mlp(current) + role[0], mlp(prior) + role[1], finding_tokens)
                                                           (P, 2 * tokens + num_labels, text_dim)

p: as in `findings` (soft, or the decisions at `threshold`). The image tokens stay (sizes, sides and devices are
in them, and "increased" needs both sizes).

change_findings > 0 adds one token per finding of a change classifier on [pool(current), pool(prior)] (the
encoder stage's change head, `encoder.change_head`, copied in: medvlm.train.encoder_stage.CHANGE_FINDINGS and
CHANGE_CLASSES, none / new / resolved / increased / decreased / unchanged):

    q = softmax(change_classifier([pool(current), pool(prior)]))   (P, change_findings, change_classes)
    change_token[j] = change_label_embedding[j] + q[:, j] @ change_class_embedding   (P, change_findings, text_dim)

appended after the finding tokens; with `threshold` set, q is the one-hot of its most likely class (straight-through).
Missing prior: "dummy" (Libra): the prior is the current image again, so both verdicts agree; "learned": where
prior_present is False the prior's tokens are a learned "no prior" block and the prior term of each finding token
a learned `no_prior_finding[k]` (and each change token a learned `no_prior_change[j]`).
"""

from __future__ import annotations

import torch
from torch import nn

from medvlm.models.connectors.findings import FindingsConnector, copy_linear
from medvlm.models.connectors.tac import MISSING_PRIOR_MODES


class PairFindingsConnector(FindingsConnector):
    """(num_pairs * 2, tokens, vision_dim) [+ prior_present (num_pairs,) bool]
    -> (num_pairs, 2 * tokens + num_labels + change_findings, text_dim)."""

    images_per_placeholder = 2

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int, num_labels: int = 14,
                 pooling: str = "mean_max", depth: int = 2, train_classifier: bool = True,
                 threshold: float | None = None, change_findings: int = 0, change_classes: int = 6,
                 missing_prior: str = "dummy", finding_words: list[list[int]] | None = None):
        super().__init__(vision_dim, text_dim, num_input_tokens, num_labels=num_labels, pooling=pooling, depth=depth,
                         train_classifier=train_classifier, threshold=threshold, finding_words=finding_words)
        if missing_prior not in MISSING_PRIOR_MODES:
            raise ValueError(f"missing_prior={missing_prior!r}: use one of {MISSING_PRIOR_MODES}")
        self.role = nn.Parameter(torch.zeros(2, text_dim))
        self.prior_embedding = nn.Parameter(torch.randn(num_labels, text_dim) * 0.02)
        learned = missing_prior == "learned"
        self.no_prior = nn.Parameter(torch.zeros(num_input_tokens, text_dim)) if learned else None
        self.no_prior_finding = nn.Parameter(torch.zeros(num_labels, text_dim)) if learned else None
        if change_findings < 0 or change_classes < 2:
            raise ValueError(f"pair_findings change_findings={change_findings}, change_classes={change_classes}: "
                             "give change_findings >= 0 (0: no change tokens) and change_classes >= 2")
        self.change_classifier = None
        if change_findings:
            self.change_shape = (change_findings, change_classes)
            self.change_classifier = nn.Linear(2 * self.classifier.in_features, change_findings * change_classes)
            self.change_label_embedding = nn.Parameter(torch.randn(change_findings, text_dim) * 0.02)
            self.change_class_embedding = nn.Parameter(torch.randn(change_classes, text_dim) * 0.02)
            self.no_prior_change = nn.Parameter(torch.zeros(change_findings, text_dim)) if learned else None

    @classmethod
    def output_tokens(cls, num_input_tokens: int, num_labels: int = 14, change_findings: int = 0, **settings) -> int:
        return 2 * num_input_tokens + num_labels + change_findings

    def change_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(num_pairs * 2, tokens, vision_dim) -> (num_pairs, change_findings, change_classes)."""
        pooled = self.pooled(features)
        logits = self.change_classifier(torch.cat([pooled[0::2], pooled[1::2]], dim=-1))
        return logits.view(len(logits), *self.change_shape)

    def change_tokens(self, features: torch.Tensor, prior_present: torch.Tensor | None) -> torch.Tensor:
        logits = self.change_logits(features)
        if not self.train_classifier:
            logits = logits.detach()
        q = torch.softmax(logits, dim=-1)
        if self.threshold is not None:  # the most likely class, straight-through
            q = nn.functional.one_hot(q.argmax(-1), q.shape[-1]).to(q.dtype) + q - q.detach()
        tokens = self.change_label_embedding + q @ self.change_class_embedding  # (P, change_findings, text_dim)
        if self.no_prior_change is not None and prior_present is not None:
            present = prior_present.to(features.device)[:, None, None]
            tokens = torch.where(present, tokens, self.no_prior_change.to(tokens.dtype).expand_as(tokens))
        return tokens

    def load_change_head(self, head: nn.Linear) -> None:
        """Start the change classifier from the encoder stage's change head (same pooling, findings and classes)."""
        if head.weight.shape != self.change_classifier.weight.shape:
            raise ValueError(
                f"the change head (weight {tuple(head.weight.shape)}) does not fit the pair_findings change "
                f"classifier (weight {tuple(self.change_classifier.weight.shape)}): give connector_config "
                "change_findings / change_classes the encoder stage's counts and the same pooling")
        copy_linear(self.change_classifier, head)

    def forward(self, features: torch.Tensor, prior_present: torch.Tensor | None = None,
                text_embeddings: nn.Module | None = None, finding_targets: torch.Tensor | None = None) -> torch.Tensor:
        if features.ndim != 3 or features.shape[0] % 2:
            raise ValueError(f"pair_findings takes (num_pairs * 2, tokens, dim) features (current, prior, ...), "
                             f"got {tuple(features.shape)}")
        # (2P, num_labels, 1): both images through the one classifier; finding_targets (2P, num_labels) in the
        # same current, prior order
        values = self.finding_values(features, finding_targets)
        p_now, p_before = values[0::2], values[1::2]
        projected = self.mlp(features)  # (2P, tokens, text_dim)
        current, prior = projected[0::2], projected[1::2]
        before = p_before * self.prior_embedding  # (P, num_labels, text_dim)
        if self.no_prior is not None and prior_present is not None:
            present = prior_present.to(features.device)[:, None, None]
            prior = torch.where(present, prior, self.no_prior.to(prior.dtype).expand_as(prior))
            before = torch.where(present, before, self.no_prior_finding.to(before.dtype).expand_as(before))
        findings = self.label_embedding + p_now * self.present_vectors(text_embeddings) + before
        parts = [current + self.role[0], prior + self.role[1], findings.to(features.dtype)]
        if self.change_classifier is not None:
            parts.append(self.change_tokens(features, prior_present).to(features.dtype))
        return torch.cat(parts, dim=1)
