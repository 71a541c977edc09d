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

p: as in `findings` (soft, or the decisions at `threshold`). The image tokens stay (sizes, sides and devices are in them, and "increased" needs both sizes).
Missing prior: "dummy" (Libra): the prior is the current image again, so both verdicts agree; "learned": where
prior_present is False the prior's tokens are a learned "no prior" block and the prior term of each finding token
a learned `no_prior_finding[k]`.
"""

from __future__ import annotations

import torch
from torch import nn

from medvlm.models.connectors.findings import FindingsConnector
from medvlm.models.connectors.tac import MISSING_PRIOR_MODES


class PairFindingsConnector(FindingsConnector):
    """(num_pairs * 2, tokens, vision_dim) [+ prior_present (num_pairs,) bool]
    -> (num_pairs, 2 * tokens + num_labels, text_dim)."""

    images_per_placeholder = 2

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int, num_labels: int = 14,
                 pooling: str = "mean_max", depth: int = 2, train_classifier: bool = True,
                 threshold: float | None = None, missing_prior: str = "dummy"):
        super().__init__(vision_dim, text_dim, num_input_tokens, num_labels=num_labels, pooling=pooling, depth=depth,
                         train_classifier=train_classifier, threshold=threshold)
        if missing_prior not in MISSING_PRIOR_MODES:
            raise ValueError(f"missing_prior={missing_prior!r}: use one of {MISSING_PRIOR_MODES}")
        self.role = nn.Parameter(torch.zeros(2, text_dim))
        self.prior_embedding = nn.Parameter(torch.randn(num_labels, text_dim) * 0.02)
        learned = missing_prior == "learned"
        self.no_prior = nn.Parameter(torch.zeros(num_input_tokens, text_dim)) if learned else None
        self.no_prior_finding = nn.Parameter(torch.zeros(num_labels, text_dim)) if learned else None

    @classmethod
    def output_tokens(cls, num_input_tokens: int, num_labels: int = 14, **settings) -> int:
        return 2 * num_input_tokens + num_labels

    def forward(self, features: torch.Tensor, prior_present: torch.Tensor | None = None) -> torch.Tensor:
        if features.ndim != 3 or features.shape[0] % 2:
            raise ValueError(f"pair_findings takes (num_pairs * 2, tokens, dim) features (current, prior, ...), "
                             f"got {tuple(features.shape)}")
        values = self.finding_values(features)  # (2P, num_labels, 1): both images through the one classifier
        p_now, p_before = values[0::2], values[1::2]
        projected = self.mlp(features)  # (2P, tokens, text_dim)
        current, prior = projected[0::2], projected[1::2]
        before = p_before * self.prior_embedding  # (P, num_labels, text_dim)
        if self.no_prior is not None and prior_present is not None:
            present = prior_present.to(features.device)[:, None, None]
            prior = torch.where(present, prior, self.no_prior.to(prior.dtype).expand_as(prior))
            before = torch.where(present, before, self.no_prior_finding.to(before.dtype).expand_as(before))
        findings = self.label_embedding + p_now * self.present_embedding + before
        return torch.cat([current + self.role[0], prior + self.role[1], findings.to(features.dtype)], dim=1)
