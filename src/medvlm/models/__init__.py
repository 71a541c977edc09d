"""The composed model: vision encoder + connector + causal LM (see modeling.py), its config, presets and tokenizer.

Importing this package registers MedVLMConfig / MedVLMForConditionalGeneration / MedVLMProcessor with transformers' Auto classes
(`register_auto_classes`, idempotent), so that after `import medvlm.models` (or any `medvlm.load`) `AutoConfig`,
`AutoModelForImageTextToText` and `AutoProcessor` `.from_pretrained(dir)` load medvlm directories.
`import medvlm` alone does not do this: it would import torch and transformers (several seconds) on every CLI call.
"""

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from medvlm.data.processor import MedVLMProcessor
from medvlm.models.configuration import MedVLMConfig
from medvlm.models.conv_vit import register_auto_classes as register_conv_vit_auto_classes
from medvlm.models.efficientnet import register_auto_classes as register_efficientnet_auto_classes
from medvlm.models.modeling import MedVLMForConditionalGeneration
from medvlm.models.presets import (
    PRESETS,
    ComposeConfig,
    TinyPresetConfig,
    build_model,
    set_generation_defaults,
)
from medvlm.models.tokenizer import train_tokenizer


def register_auto_classes() -> None:
    """Let transformers' AutoConfig, AutoModelForImageTextToText and AutoProcessor load model_type "medvlm"."""
    AutoConfig.register(MedVLMConfig.model_type, MedVLMConfig, exist_ok=True)
    AutoModelForImageTextToText.register(MedVLMConfig, MedVLMForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(MedVLMConfig, MedVLMProcessor, exist_ok=True)
    register_efficientnet_auto_classes()  # vision encoder model_type "medvlm_efficientnet_lite"
    register_conv_vit_auto_classes()  # vision encoder model_type "medvlm_conv_vit"


register_auto_classes()

__all__ = [
    "PRESETS",
    "ComposeConfig",
    "MedVLMConfig",
    "MedVLMForConditionalGeneration",
    "TinyPresetConfig",
    "build_model",
    "register_auto_classes",
    "set_generation_defaults",
    "train_tokenizer",
]
