"""Connectors: map vision features (num_images, tokens, vision_dim) to LM embeddings (num_images, out_tokens, text_dim).

Every connector class takes `(vision_dim, text_dim, num_input_tokens, **settings)` and has
`output_tokens(num_input_tokens, **settings) -> int` (a classmethod), so that the token count per image
(`image_seq_length`) is known before any weights exist. `accepts_layer_stack` says whether it takes
(num_images, layers, tokens, dim) features (vision_feature_layer="all").

Pair connectors (Libra's current + prior): `images_per_placeholder` says how many consecutive images one
`<image>` placeholder consumes. `tac`, `pair_concat` and `pair_findings` take 2: they receive (num_pairs * 2, [layers,] tokens, dim)
in placeholder order (current, prior, current, prior, ...), an optional `prior_present` (num_pairs,) bool, and
return (num_pairs, out_tokens, text_dim): ONE block of tokens per pair. The other connectors take 1 image per
placeholder; with them a prior is simply a second image with its own placeholder (see medvlm.data.processor).
"""

from medvlm.models.connectors.attn_pool import AttentionPoolConnector
from medvlm.models.connectors.findings import FindingsConnector
from medvlm.models.connectors.linear import LinearConnector
from medvlm.models.connectors.mlp import MLPConnector
from medvlm.models.connectors.pair_concat import PairConcatConnector
from medvlm.models.connectors.pair_findings import PairFindingsConnector
from medvlm.models.connectors.spatial_pool import SpatialPoolConnector
from medvlm.models.connectors.tac import TemporalAlignmentConnector

# connector_type -> class. The one place connectors are registered.
CONNECTORS = {
    "linear": LinearConnector,
    "mlp2x_gelu": MLPConnector,
    "spatial_pool": SpatialPoolConnector,
    "attn_pool": AttentionPoolConnector,
    "tac": TemporalAlignmentConnector,
    "pair_concat": PairConcatConnector,
    "findings": FindingsConnector,
    "pair_findings": PairFindingsConnector,
}


def connector_class(connector_type: str):
    try:
        return CONNECTORS[connector_type]
    except KeyError:
        raise ValueError(f"connector_type={connector_type!r}: use one of {sorted(CONNECTORS)}") from None


__all__ = ["CONNECTORS", "AttentionPoolConnector", "FindingsConnector", "LinearConnector", "MLPConnector",
           "PairConcatConnector", "PairFindingsConnector", "SpatialPoolConnector", "TemporalAlignmentConnector",
           "connector_class"]
