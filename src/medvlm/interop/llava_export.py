"""Export a medvlm model to transformers' `LlavaForConditionalGeneration` (+ `LlavaProcessor`), where it maps exactly.

    export_llava("runs/x/model", "runs/x/llava")   # then, without medvlm:
    LlavaForConditionalGeneration.from_pretrained("runs/x/llava"); AutoProcessor.from_pretrained("runs/x/llava")

What maps (each checked by the tests: same input_ids + pixel_values -> the same logits to 1e-5):
  vision encoder   clip_vision_model, siglip_vision_model, vit, dinov2 (Llava builds `AutoModel.from_config`;
                   a ViT gets a pooler Llava never calls, written as zeros so that nothing loads uninitialised)
  connector        mlp2x_gelu with depth 2 -> LlavaMultiModalProjector (linear_1, GELU, linear_2);
                   linear -> the same projector with an identity activation and linear_2 = the identity matrix
                   (exact, at the cost of text_dim^2 extra weights)
  feature layer    an int or a list of ints (concatenated along the feature dim, as Llava does)
  feature select   drop_cls -> "default" (CLS dropped); keep_cls, or an encoder without CLS -> "full"
  language model   the causal LMs in LLAVA_TEXT_MODELS, whose logits are `lm_head(base model output)`
What does not: spatial_pool / attn_pool / pair connectors (tac, pair_concat, pair_findings), vision_feature_layer="all",
  cls_only and add_pooled, 1-channel encoders, EfficientNet, LMs outside LLAVA_TEXT_MODELS; export says which and why.

The processor: medvlm's tokenizer (with `<image>`), a `LlavaImageProcessorPil` (no torchvision) set to medvlm's
resize mode, size and mean/std, and a jinja chat template that renders medvlm's template. Pixels differ a little:
medvlm resizes in float32, transformers' PIL processors resize 8-bit images (PIL rounds and clips between its two
resampling passes). On a real 3056x2544 radiograph at 336 px: mean 0.3/255, 99.9% within 1.3/255, a few pixels
at sharp edges up to 10/255. Logits agree exactly for the same pixel_values.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from medvlm.data.templates import LLAVA_SYSTEM_PROMPT, get_template

# model_type of the vision config -> checked to give the same hidden states inside Llava (tests/interop)
LLAVA_VISION_MODELS = ("clip_vision_model", "siglip_vision_model", "vit", "dinov2")
# model_type of the text config -> causal LMs whose logits are lm_head(AutoModel output), as Llava computes them
LLAVA_TEXT_MODELS = ("llama", "mistral", "qwen2", "phi3", "gemma")
# medvlm connector_type -> Llava projector_hidden_act
LLAVA_PROJECTORS = {"mlp2x_gelu": "gelu", "linear": "linear"}


class LlavaExportError(ValueError):
    """The model has a part that transformers' Llava cannot express; the message lists every such part."""


def llava_select_strategy(select: str, has_cls_token: bool) -> str | None:
    """medvlm's vision_feature_select -> Llava's vision_feature_select_strategy (None: no equivalent)."""
    if select == "drop_cls":
        return "default" if has_cls_token else "full"
    if select == "keep_cls":
        return "full"
    return None


def llava_incompatibilities(model) -> list[str]:
    """Why `model` (a MedVLMForConditionalGeneration) cannot become a Llava checkpoint; [] when it can."""
    config = model.config
    problems = []
    vision_type = config.vision_config.model_type
    if vision_type not in LLAVA_VISION_MODELS:
        problems.append(f"vision encoder {vision_type!r} is not one Llava is checked to run the same way "
                        f"(supported: {', '.join(LLAVA_VISION_MODELS)})")
    elif getattr(config.vision_config, "num_channels", 3) != 3:
        problems.append("the vision encoder takes 1-channel images; Llava's image processors give RGB")
    text_type = config.text_config.model_type
    if text_type not in LLAVA_TEXT_MODELS:
        problems.append(f"language model {text_type!r} is not one whose logits Llava computes the same way "
                        f"(supported: {', '.join(LLAVA_TEXT_MODELS)})")
    if config.connector_type not in LLAVA_PROJECTORS:
        problems.append(f"connector {config.connector_type!r} has no Llava equivalent (Llava's projector is "
                        "linear-activation-linear per token; mlp2x_gelu and linear map onto it)")
    elif config.connector_type == "mlp2x_gelu" and config.connector_config.get("depth", 2) != 2:
        problems.append(f"connector mlp2x_gelu with depth={config.connector_config['depth']}: Llava's projector "
                        "has exactly 2 linear layers")
    layer = config.vision_feature_layer
    if not (isinstance(layer, int) or (isinstance(layer, list) and all(isinstance(i, int) for i in layer))):
        problems.append(f"vision_feature_layer={layer!r}: Llava takes one layer index or a list of them")
    if llava_select_strategy(config.vision_feature_select, config.vision_has_cls_token) is None:
        problems.append(f"vision_feature_select={config.vision_feature_select!r}: Llava keeps all tokens or "
                        "drops the first one, nothing else")
    return problems


def llava_config(model):
    """The LlavaConfig of a model that passed `llava_incompatibilities`."""
    from transformers import LlavaConfig

    config = model.config
    text_config = config.text_config
    return LlavaConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=config.image_token_id,
        image_seq_length=config.image_seq_length,
        projector_hidden_act=LLAVA_PROJECTORS[config.connector_type],
        vision_feature_select_strategy=llava_select_strategy(config.vision_feature_select,
                                                             config.vision_has_cls_token),
        vision_feature_layer=config.vision_feature_layer,
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )


def _llava_name(name: str, lm_prefix: str) -> str | None:
    """A medvlm weight or buffer name -> its Llava name; None for the connector (mapped by llava_state_dict)."""
    if name.startswith("vision_tower.model."):
        return "model.vision_tower." + name.removeprefix("vision_tower.model.")
    if name.startswith("connector."):
        return None
    if name.startswith("language_model." + lm_prefix):
        return "model.language_model." + name.removeprefix("language_model." + lm_prefix)
    if name.startswith("language_model.lm_head."):
        return name.removeprefix("language_model.")
    raise LlavaExportError(f"weight {name!r} has no place in a Llava checkpoint")


def _lm_prefix(model) -> str:
    lm = model.language_model
    if lm.get_output_embeddings() is not getattr(lm, "lm_head", None):
        raise LlavaExportError(f"language model {type(lm).__name__} keeps its output layer outside `lm_head`")
    return lm.base_model_prefix + "."


def llava_state_dict(model) -> dict[str, torch.Tensor]:
    """medvlm parameter names -> Llava's (`model.vision_tower.*`, `model.multi_modal_projector.*`,
    `model.language_model.*`, `lm_head.*`). Tensors are shared with `model`, not copied, except the identity
    matrix that stands in for the missing second layer of a `linear` connector."""
    lm_prefix = _lm_prefix(model)
    state = {}
    for name, tensor in model.state_dict().items():
        llava_name = _llava_name(name, lm_prefix)
        if llava_name is not None:
            state[llava_name] = tensor
    connector = model.connector
    projector = "model.multi_modal_projector."
    if model.config.connector_type == "mlp2x_gelu":
        first, second = connector.mlp[0], connector.mlp[2]
        state |= {projector + "linear_1.weight": first.weight, projector + "linear_1.bias": first.bias,
                  projector + "linear_2.weight": second.weight, projector + "linear_2.bias": second.bias}
    else:  # linear: linear_1 = the projection, identity activation, linear_2 = identity
        proj = connector.proj
        text_dim = proj.weight.shape[0]
        state |= {projector + "linear_1.weight": proj.weight, projector + "linear_1.bias": proj.bias,
                  projector + "linear_2.weight": torch.eye(text_dim, dtype=proj.weight.dtype),
                  projector + "linear_2.bias": torch.zeros(text_dim, dtype=proj.weight.dtype)}
    return state


def llava_image_processor(processor_config):
    """A LlavaImageProcessorPil doing medvlm's resize (pad to a square with the mean colour, or stretch), bicubic,
    then (x / 255 - mean) / std."""
    from transformers import LlavaImageProcessorPil

    size = {"height": processor_config.image_size, "width": processor_config.image_size}
    return LlavaImageProcessorPil(
        do_pad=processor_config.resize_mode == "pad",
        size=size,
        crop_size=dict(size),  # a no-op after resizing to the square size; LlavaProcessor reads the token grid here
        do_center_crop=True,
        resample=3,  # PIL bicubic, as medvlm
        image_mean=list(processor_config.image_mean),
        image_std=list(processor_config.image_std),
    )


# --- chat templates: medvlm's templates written in jinja, for the exported processor -----------------------
# Content may be a string (with "<image>" in it) or a list of {"type": "image"} / {"type": "text"} items; an
# image item renders as "<image>\n", medvlm's placeholder line.
_CONTENT = (
    "{% macro content(c) %}{% if c is string %}{{ c }}{% else %}{% for item in c %}"
    "{% if item.type == 'image' %}<image>\n{% elif item.type == 'text' %}{{ item.text }}{% endif %}"
    "{% endfor %}{% endif %}{% endmacro %}"
)
_SYSTEM = (
    "{% if messages and messages[0].role == 'system' %}{% set system = content(messages[0].content) %}"
    "{% set turns = messages[1:] %}{% else %}{% set system = DEFAULT %}{% set turns = messages %}{% endif %}"
)
_JINJA = {
    "chatml": _CONTENT + _SYSTEM + (
        "{% if system %}<|im_start|>system\n{{ system }}<|im_end|>\n{% endif %}"
        "{% for m in turns %}{% if m.role == 'user' %}"
        "<|im_start|>user\n{{ content(m.content) }}<|im_end|>\n<|im_start|>assistant\n"
        "{% else %}{{ content(m.content) }}<|im_end|>\n{% endif %}{% endfor %}"
    ),
    "llava_v1": _CONTENT + _SYSTEM + (
        "BOS{% if system %}{{ system }} {% endif %}"
        "{% for m in turns %}{% if m.role == 'user' %}USER: {{ content(m.content) }} ASSISTANT:"
        "{% else %} {{ content(m.content) }}{{ eos_token }}{% endif %}{% endfor %}"
    ),
    "mistral_instruct": _CONTENT + _SYSTEM + (
        "BOS{% for m in turns %}{% if m.role == 'user' %}"
        "[INST] {% if loop.first and system %}{{ system }}\n\n{% endif %}{{ content(m.content) }} [/INST]"
        "{% else %} {{ content(m.content) }}{{ eos_token }}{% endif %}{% endfor %}"
    ),
    "plain": _CONTENT + (
        "BOS{% for m in messages %}{% if m.role == 'user' %}"
        "{% if m.content is string %}{{ '<image>' * (m.content.count('<image>')) }}{% else %}"
        "{% for item in m.content if item.type == 'image' %}<image>{% endfor %}{% endif %}"
        "{% elif m.role == 'assistant' %}{{ content(m.content) }}{{ eos_token }}{% endif %}{% endfor %}"
    ),
}


def _tokenizer_adds_bos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


def llava_chat_template(processor) -> str | None:
    """A jinja chat template rendering what medvlm's template renders for the same conversation.

    Template "tokenizer" keeps the tokenizer's own template (its content must then be strings holding "<image>").
    """
    name = processor.config.template
    if name == "tokenizer":
        return getattr(processor.tokenizer, "chat_template", None)
    template = _JINJA[name]
    default = processor.config.system_prompt
    if name == "llava_v1" and default is None:
        default = LLAVA_SYSTEM_PROMPT
    template = template.replace("DEFAULT", repr(default) if default else "none")
    # medvlm puts bos first for these templates; the tokenizer may already add it when the processor tokenises
    bos = "{{ bos_token }}" if get_template(name).add_bos and not _tokenizer_adds_bos(processor.tokenizer) else ""
    return template.replace("BOS", bos, 1)


def llava_processor(model, processor):
    """The LlavaProcessor of an exportable model: medvlm's tokenizer, image settings and chat template."""
    from transformers import LlavaProcessor

    config = model.config
    strategy = llava_select_strategy(config.vision_feature_select, config.vision_has_cls_token)
    llava = LlavaProcessor(
        image_processor=llava_image_processor(processor.config),
        tokenizer=processor.tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=strategy,
        chat_template=llava_chat_template(processor),
        num_additional_image_tokens=1 if config.vision_has_cls_token else 0,
    )
    if llava.image_token_id != config.image_token_id:
        raise LlavaExportError(f"the tokenizer encodes {llava.image_token!r} as {llava.image_token_id}, but the model's "
                               f"image_token_id is {config.image_token_id}")
    grid = config.vision_config.image_size // config.vision_config.patch_size
    tokens = grid * grid + llava.num_additional_image_tokens - (1 if strategy == "default" else 0)
    if tokens != config.image_seq_length:
        raise LlavaExportError(f"LlavaProcessor would expand <image> to {tokens} tokens, the model takes "
                               f"{config.image_seq_length}")
    return llava


def _zero_unused_vision_pooler(llava_model, missing: list[str]) -> list[str]:
    """ViT inside Llava has a pooler (Llava never calls it) that medvlm's ViT lacks: fill it with zeros."""
    pooler = [k for k in missing if k.startswith("model.vision_tower.pooler.")]
    module_names = {k.rsplit(".", 1)[0] for k in pooler}
    for module_name in module_names:
        module = llava_model.get_submodule(module_name)
        for param_name, param in list(module.named_parameters(recurse=False)):
            setattr(module, param_name, torch.nn.Parameter(torch.zeros(param.shape, dtype=param.dtype)))
    return [k for k in missing if k not in pooler]


def to_llava(model, processor):
    """(MedVLMForConditionalGeneration, MedVLMProcessor) -> (LlavaForConditionalGeneration, LlavaProcessor),
    sharing the weights (no copy). Raises LlavaExportError naming every part Llava cannot express."""
    from transformers import LlavaForConditionalGeneration

    problems = llava_incompatibilities(model)
    if problems:
        raise LlavaExportError("this model cannot be written as a transformers Llava checkpoint: "
                               + "; ".join(problems))
    llava_proc = llava_processor(model, processor)
    with torch.device("meta"):  # no second copy of the weights: they are assigned below
        llava = LlavaForConditionalGeneration(llava_config(model))
    result = llava.load_state_dict(llava_state_dict(model), strict=False, assign=True)
    missing = _zero_unused_vision_pooler(llava, list(result.missing_keys))
    tied = "lm_head.weight" if llava.config.tie_word_embeddings else None
    missing = [k for k in missing if k != tied]
    if missing or result.unexpected_keys:
        raise LlavaExportError(f"weights do not line up with Llava's: missing {missing}, "
                               f"unexpected {list(result.unexpected_keys)}")
    if tied:
        llava.tie_weights()
    # buffers left out of state_dict (rotary frequencies, position ids) come across as they are
    lm_prefix = _lm_prefix(model)
    for name, buffer in model.named_buffers():
        llava_name = _llava_name(name, lm_prefix)
        if llava_name is not None:
            owner, _, leaf = llava_name.rpartition(".")
            llava.get_submodule(owner)._buffers[leaf] = buffer
    leftover = [n for n, t in [*llava.named_parameters(), *llava.named_buffers()] if t.is_meta]
    if leftover:
        raise LlavaExportError(f"Llava weights with no medvlm counterpart: {leftover}")
    llava.generation_config = model.generation_config
    llava.eval()
    return llava, llava_proc


def export_llava(model_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the medvlm model in `model_dir` as a transformers Llava checkpoint with its processor to `out_dir`.

    Raises LlavaExportError (a ValueError) naming each part with no Llava equivalent. Returns out_dir.
    """
    from medvlm.api import load
    from medvlm.fileio import atomic_dir

    model, processor = load(model_dir)
    llava, llava_proc = to_llava(model, processor)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        llava.save_pretrained(tmp)
        llava_proc.save_pretrained(tmp)
    return out_dir


def compare_logits(model, processor, llava, seed: int = 0) -> float:
    """Max |logits difference| between the medvlm model and its Llava export on one random image and prompt
    (the same input_ids and pixel_values for both)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    size = processor.config.image_size
    image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    sample = processor.encode_prompt("Describe the findings.", [image])
    input_ids = torch.tensor([sample.input_ids])
    with torch.no_grad():
        ours = model(input_ids=input_ids, pixel_values=sample.pixel_values).logits
        theirs = llava(input_ids=input_ids, pixel_values=sample.pixel_values).logits
    return float((ours - theirs).abs().max())

