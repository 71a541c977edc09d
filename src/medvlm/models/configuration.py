"""MedVLMConfig: everything the composed model (vision encoder + connector + causal LM) needs to be rebuilt.

Image preprocessing (size, mean/std, resize mode) and the chat template live in the processor's own config
(`medvlm_processor.json`, see medvlm.data.processor); this config holds what the weights depend on.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from medvlm.models.connectors import connector_class
from medvlm.models.connectors.tac import MISSING_PRIOR_MODES
from medvlm.models.vision import num_selected_tokens, vision_spec


class MedVLMConfig(PreTrainedConfig):
    """Config of `MedVLMForConditionalGeneration`.

    vision_config: config of a vision encoder listed in `medvlm.models.vision.VISION_ENCODERS` (ViT, CLIP vision,
        SigLIP vision, DINOv2); text_config: config of any `AutoModelForCausalLM` architecture.
    connector_type: a key of `medvlm.models.connectors.CONNECTORS`; connector_config: its settings
        (e.g. {"stride": 2} for spatial_pool, {"num_queries": 16} for attn_pool).
    vision_feature_layer: int, list of ints (concatenated along the feature dim) or "all" (stacked).
    vision_feature_select: "drop_cls", "keep_cls", "cls_only" or "add_pooled" (medvlm.models.vision).
    vision_has_cls_token: None = as the encoder table says for this architecture.
    image_token_id: id of `<image>` in the tokenizer; each placeholder is expanded to `image_seq_length` of them.
    image_seq_length: LM tokens per placeholder (per image; per current + prior pair for a pair connector);
        computed from the encoder and connector when None.
    missing_prior: for pair connectors (tac, pair_concat, pair_findings), what stands in for an absent prior
        image: "dummy" (Libra: the current image again) or "learned" (a learned "no prior" embedding inside the
        connector).
    """

    model_type: ClassVar[str] = "medvlm"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="vit"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    connector_type: str = "mlp2x_gelu"
    connector_config: dict | None = None
    vision_feature_layer: int | list[int] | str = -2
    vision_feature_select: str = "drop_cls"
    vision_has_cls_token: bool | None = None
    image_token_id: int | None = None
    image_seq_length: int | None = None
    missing_prior: str = "dummy"
    tie_word_embeddings: bool = False  # the language model ties its own embeddings when its config says so

    def __post_init__(self, **kwargs: Any):
        super().__post_init__(**kwargs)
        if self.connector_config is None:
            self.connector_config = {}
        if self.missing_prior not in MISSING_PRIOR_MODES:
            raise ValueError(f"missing_prior={self.missing_prior!r}: use one of {MISSING_PRIOR_MODES}")
        if self.vision_has_cls_token is None:
            self.vision_has_cls_token = vision_spec(self.vision_config).has_cls_token
        expected = self.expected_image_seq_length()
        if self.image_seq_length is None:
            self.image_seq_length = expected
        elif self.image_seq_length != expected:
            raise ValueError(
                f"image_seq_length={self.image_seq_length} but the encoder and the {self.connector_type!r} connector "
                f"give {expected} tokens per image; leave image_seq_length unset to have it computed"
            )

    def vision_tokens_per_image(self) -> int:
        """Tokens per image leaving the vision encoder (after CLS selection)."""
        return num_selected_tokens(self.vision_config, self.vision_feature_select, self.vision_has_cls_token)

    def expected_image_seq_length(self) -> int:
        cls = connector_class(self.connector_type)
        return cls.output_tokens(self.vision_tokens_per_image(), **self.connector_config)

    @property
    def images_per_placeholder(self) -> int:
        return connector_class(self.connector_type).images_per_placeholder
