"""MedVLMForConditionalGeneration: vision encoder -> connector -> causal LM, LLaVA-style.

    pixel_values (num_images, C, H, W)
      -> vision_tower  -> vision_features (num_images, vision_tokens, vision_dim)   [cacheable: alignment stage]
      -> connector     -> image_features  (num_images, image_seq_length, text_dim)
      -> spliced at the `<image>` token positions of input_ids (one block per image, in placeholder order)
      -> language_model (a full AutoModelForCausalLM) -> logits, loss on the labels that are not -100

Images of a batch are concatenated in the order their placeholders appear (sample 0's images first).
Generation passes pixel_values (or vision_features) on the first step only; later steps read the KV cache.

Pair connectors (tac, pair_concat, pair_findings; `images_per_placeholder` = 2): images come as current, prior,
current, prior, ...; each pair fills ONE placeholder's block. `prior_present` (num_pairs,) bool marks pairs whose
prior slot holds a stand-in (the current image) because the study has no prior; with
config.missing_prior="learned" the connector replaces those priors with its learned "no prior" embedding, with
"dummy" the stand-in is used as it is (Libra).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast

from medvlm.models.configuration import MedVLMConfig
from medvlm.models.connectors import (
    AttentionPoolConnector,
    PairConcatConnector,
    TemporalAlignmentConnector,
    connector_class,
)
from medvlm.models.language import build_language_model
from medvlm.models.vision import VisionEncoder, build_vision_model, selected_feature_dim


def _num_encoder_layers(vision_config) -> int:
    """Layers in the vision_feature_layer="all" stack: the encoder's transformer layers (embeddings excluded)."""
    layers = getattr(vision_config, "num_hidden_layers", None)
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"a layer-stack connector needs the encoder's num_hidden_layers; the "
                         f"{vision_config.model_type!r} config has {layers!r}")
    return layers


def _dtype_of(module: torch.nn.Module) -> torch.dtype:
    """The dtype a part computes in (parts may differ, e.g. a float32 encoder beside a bfloat16 LM)."""
    return next(p.dtype for p in module.parameters() if p.is_floating_point())


class MedVLMPreTrainedModel(PreTrainedModel):
    config_class = MedVLMConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, AttentionPoolConnector):
            init.normal_(module.queries, mean=0.0, std=0.02)
        if isinstance(module, TemporalAlignmentConnector):
            init.zeros_(module.prior_shift)
        if isinstance(module, TemporalAlignmentConnector | PairConcatConnector):
            if module.no_prior is not None:
                init.normal_(module.no_prior, mean=0.0, std=0.02)
        if isinstance(module, PairConcatConnector):
            init.normal_(module.role, mean=0.0, std=0.02)


class MedVLMForConditionalGeneration(MedVLMPreTrainedModel, GenerationMixin):
    """The composed model. Submodules: `vision_tower` (VisionEncoder), `connector`, `language_model` (causal LM)."""

    def __init__(self, config: MedVLMConfig):
        super().__init__(config)
        self.vision_tower = VisionEncoder(
            build_vision_model(config.vision_config),
            layer=config.vision_feature_layer,
            select=config.vision_feature_select,
            has_cls_token=config.vision_has_cls_token,
        )
        connector_cls = connector_class(config.connector_type)
        if config.vision_feature_layer == "all" and not connector_cls.accepts_layer_stack:
            raise ValueError(
                f"vision_feature_layer='all' gives (images, layers, tokens, dim) features, which the "
                f"{config.connector_type!r} connector does not take; pick one layer or a list of layers"
            )
        model_settings = {}  # what a connector needs to know about the model, beyond its own settings
        if connector_cls.accepts_layer_stack:
            model_settings["num_layers"] = _num_encoder_layers(config.vision_config)
        if connector_cls.images_per_placeholder == 2:
            model_settings["missing_prior"] = config.missing_prior
        self.connector = connector_cls(
            vision_dim=selected_feature_dim(config.vision_config.hidden_size, config.vision_feature_layer),
            text_dim=config.text_config.hidden_size,
            num_input_tokens=config.vision_tokens_per_image(),
            **config.connector_config,
            **model_settings,
        )
        self.language_model = build_language_model(config.text_config)
        # one config object per part, so that changes to a part (e.g. resized embeddings) are what gets saved
        config.vision_config = self.vision_tower.model.config
        config.text_config = self.language_model.config
        self.post_init()

    # --- embeddings: the language model's -----------------------------------------------------------------
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings):
        self.language_model.set_output_embeddings(new_embeddings)

    # --- images ---------------------------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (num_images, C, H, W) -> vision_features (num_images, tokens, dim); what the alignment
        stage may cache, since the encoder is frozen there."""
        return self.vision_tower(pixel_values.to(_dtype_of(self.vision_tower)))

    def get_image_features(
        self,
        pixel_values: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
        prior_present: torch.Tensor | None = None,
        finding_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """-> image_features (num_images / images_per_placeholder, image_seq_length, text_dim).

        pixel_values: (num_images, C, H, W), or (batch, images_per_sample, C, H, W) which is flattened in order.
        vision_features: precomputed `encode_images` output; used instead of running the encoder.
        prior_present: (num_pairs,) bool, pair connectors only (see the module docstring); None = all present.
        finding_targets: (num_images, num_labels), findings connectors only: the values their finding tokens carry
        instead of the classifier's, NaN where the classifier decides (training's findings.teacher_forcing).
        """
        if vision_features is None:
            if pixel_values is None:
                raise ValueError("get_image_features needs pixel_values or vision_features")
            if pixel_values.ndim == 5:
                pixel_values = pixel_values.flatten(0, 1)
            vision_features = self.encode_images(pixel_values)
        elif vision_features.ndim == 4 and self.config.vision_feature_layer != "all":
            vision_features = vision_features.flatten(0, 1)  # (batch, images_per_sample, tokens, dim)
        vision_features = vision_features.to(_dtype_of(self.connector))
        # findings connectors with finding_words read the language model's embedding table
        extra = ({"text_embeddings": self.get_input_embeddings()}
                 if getattr(self.connector, "reads_text_embeddings", False) else {})
        if finding_targets is not None:
            if not getattr(self.connector, "accepts_finding_targets", False):
                raise ValueError(f"finding_targets: the {self.config.connector_type!r} connector has no finding "
                                 "tokens; they go with the findings and pair_findings connectors")
            extra["finding_targets"] = finding_targets
        if self.config.images_per_placeholder == 2:
            return self.connector(vision_features, prior_present, **extra)
        return self.connector(vision_features, **extra)

    def _splice_images(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """Put image_features (num_images, image_seq_length, text_dim) at the image-token positions."""
        image_mask = input_ids == self.config.image_token_id  # (batch, seq)
        n_tokens = int(image_mask.sum())
        n_features = image_features.shape[0] * image_features.shape[1]
        if n_tokens != n_features:
            raise ValueError(
                f"the batch holds {n_tokens} image tokens but the images give {n_features} features "
                f"({image_features.shape[0]} images x {image_features.shape[1]} tokens). Each <image> placeholder "
                f"must be expanded to image_seq_length={self.config.image_seq_length} tokens (MedVLMProcessor does "
                "this) and every image needs its placeholder; check the number of images per sample"
            )
        mask = image_mask.unsqueeze(-1).expand_as(inputs_embeds)
        return inputs_embeds.masked_scatter(mask, image_features.to(inputs_embeds.dtype).reshape(-1))

    def embed_inputs(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
        prior_present: torch.Tensor | None = None,
        finding_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (batch, seq) -> inputs_embeds (batch, seq, text_dim) with the images at their image tokens.

        Generating from these embeddings (`generate(inputs_embeds=..., attention_mask=...)`) lets HF expand a batch
        for beam search or several samples per prompt without knowing which images belong to which sample.
        """
        inputs_embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is None and vision_features is None:
            return inputs_embeds
        image_features = self.get_image_features(pixel_values, vision_features, prior_present, finding_targets)
        return self._splice_images(input_ids, inputs_embeds, image_features)

    # --- forward ------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
        prior_present: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        finding_targets: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """input_ids (batch, seq) with image tokens; pixel_values (num_images, C, H, W) or vision_features
        (num_images, tokens, dim); prior_present (num_pairs,) bool for pair connectors; labels (batch, seq), -100
        where nothing is learned; finding_targets (num_images, num_labels) for findings connectors (see
        get_image_features).
        -> CausalLMOutputWithPast(loss, logits (batch, seq, vocab), past_key_values)."""
        kwargs.pop("return_dict", None)  # always a ModelOutput
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if pixel_values is not None and vision_features is not None:
            raise ValueError("give pixel_values or vision_features, not both")
        if inputs_embeds is None:
            no_images = pixel_values is None and vision_features is None
            if no_images and (past_key_values is None or past_key_values.get_seq_length() == 0):
                if bool((input_ids == self.config.image_token_id).any()):
                    raise ValueError(
                        "input_ids hold image tokens but neither pixel_values nor vision_features were given"
                    )
            inputs_embeds = self.embed_inputs(input_ids, pixel_values, vision_features, prior_present,
                                              finding_targets)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            return_dict=True,
            **kwargs,
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        past_key_values: Any | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
        prior_present: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        # Images enter once, at prefill; later steps find them in the KV cache.
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs["pixel_values"] = pixel_values
            model_inputs["vision_features"] = vision_features
            model_inputs["prior_present"] = prior_present
        return model_inputs
