"""`import_llava` / `medvlm import llava`: checkpoints in the original LLaVA layout (a full run, an alignment run's
mm_projector.bin, a LoRA run) become medvlm models whose logits equal the composition written out by hand:
vision hidden states -> projector with the checkpoint's weights -> language model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch.nn import functional as F
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from medvlm.api import load
from medvlm.cli import main
from medvlm.interop import to_llava
from medvlm.interop.llava_export import compare_logits
from medvlm.interop.llava_import import LlavaImportError, import_llava

HUB_TOWER = "openai/clip-vit-large-patch14-336"
TEXTS = ["The heart is enlarged. Small left pleural effusion.", "No pneumothorax. Lungs are clear."] * 5
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _llava_tokenizer() -> PreTrainedTokenizerFast:
    """A Llama-like tokenizer as LLaVA ships it: no <image> token (LLaVA splices images at index -200)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=300, min_frequency=1, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict:
    """A tiny CLIP vision folder, a tiny Llama LM folder (the 'vicuna' base) and projector weights."""
    root = tmp_path_factory.mktemp("llava_parts")
    torch.manual_seed(1)
    vision = CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=4, intermediate_size=64, projection_dim=16))
    vision.save_pretrained(root / "clip")
    (root / "clip" / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": CLIP_MEAN, "image_std": CLIP_STD, "crop_size": 32, "size": 32}))
    tokenizer = _llava_tokenizer()
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=False))
    lm.save_pretrained(root / "vicuna")
    tokenizer.save_pretrained(root / "vicuna")
    projectors = {
        "mlp2x_gelu": {"model.mm_projector.0.weight": torch.randn(64, 32) * 0.2, "model.mm_projector.0.bias": torch.randn(64),
                       "model.mm_projector.2.weight": torch.randn(64, 64) * 0.2, "model.mm_projector.2.bias": torch.randn(64)},
        "linear": {"model.mm_projector.weight": torch.randn(64, 32) * 0.2, "model.mm_projector.bias": torch.randn(64)},
    }
    return {"root": root, "vision": vision.eval(), "lm": lm.eval(), "tokenizer": tokenizer, "projectors": projectors}


def _llava_config(parts, projector_type: str, vision_tower: str, **extra) -> dict:
    config = json.loads((parts["root"] / "vicuna" / "config.json").read_text())
    config |= {"model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"], "mm_vision_tower": vision_tower,
               "mm_projector_type": projector_type, "mm_hidden_size": 32, "mm_vision_select_layer": -2,
               "mm_vision_select_feature": "patch", "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
               "mm_use_im_patch_token": False, "tokenizer_model_max_length": 512, **extra}
    return config


def _full_checkpoint(parts, folder: Path, projector_type="mlp2x_gelu", weights="safetensors", lm=None,
                     **config) -> Path:
    """What LLaVA's finetuning writes: the LM's weights with model.mm_projector.* beside them, mm_* config keys."""
    folder.mkdir(parents=True)
    lm = lm or parts["lm"]
    state = {k: v.clone() for k, v in lm.state_dict().items()} | parts["projectors"][projector_type]
    if weights == "safetensors":
        save_file(state, folder / "model.safetensors")
    else:
        torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(_llava_config(parts, projector_type, HUB_TOWER, **config)))
    parts["tokenizer"].save_pretrained(folder)
    return folder


def _by_hand(parts, projector_type, model, processor, lm=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(imported model's logits, hand-composed logits) on one image and prompt, over the checkpoint's vocabulary."""
    image = (torch.rand(40, 32, 3) * 255).to(torch.uint8).numpy()
    sample = processor.encode_prompt("Is there an effusion?", [image])
    input_ids = torch.tensor([sample.input_ids])
    lm = lm or parts["lm"]
    with torch.no_grad():
        ours = model(input_ids=input_ids, pixel_values=sample.pixel_values).logits
        hidden = parts["vision"](pixel_values=sample.pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]
        w = parts["projectors"][projector_type]
        if projector_type == "linear":
            features = F.linear(hidden, w["model.mm_projector.weight"], w["model.mm_projector.bias"])
        else:
            features = F.linear(F.gelu(F.linear(hidden, w["model.mm_projector.0.weight"], w["model.mm_projector.0.bias"])),
                                w["model.mm_projector.2.weight"], w["model.mm_projector.2.bias"])
        is_image = input_ids == model.config.image_token_id
        embeds = lm.get_input_embeddings()(input_ids.masked_fill(is_image, 0))
        embeds[is_image] = features.reshape(-1, features.shape[-1])
        expected = lm(inputs_embeds=embeds).logits
    return ours[..., : expected.shape[-1]], expected


@pytest.mark.parametrize(("projector_type", "weights"), [("mlp2x_gelu", "safetensors"), ("linear", "bin")])
def test_full_checkpoint_gives_the_hand_composed_logits(parts, tmp_path, projector_type, weights):
    src = _full_checkpoint(parts, tmp_path / "llava", projector_type, weights)
    summary = import_llava(src, tmp_path / "medvlm", vision_tower=parts["root"] / "clip")
    assert summary.kind == "full"
    model, processor = load(tmp_path / "medvlm")
    assert processor.config.template == "llava_v1" and processor.config.resize_mode == "pad"
    assert processor.config.image_mean == pytest.approx(CLIP_MEAN)  # from the vision folder's preprocessor config
    ours, expected = _by_hand(parts, projector_type, model, processor)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_a_vocabulary_padded_beyond_the_tokenizer_keeps_every_row(parts, tmp_path):
    """Qwen2-style checkpoints have more embedding rows than tokens; <image> then reuses a padding row."""
    padded = LlamaForCausalLM(parts["lm"].config.__class__(**{**parts["lm"].config.to_dict(),
                                                              "vocab_size": len(parts["tokenizer"]) + 8})).eval()
    src = _full_checkpoint(parts, tmp_path / "llava", lm=padded, vocab_size=len(parts["tokenizer"]) + 8)
    import_llava(src, tmp_path / "medvlm", vision_tower=parts["root"] / "clip")
    model, processor = load(tmp_path / "medvlm")
    assert model.config.text_config.vocab_size == len(parts["tokenizer"]) + 8
    ours, expected = _by_hand(parts, "mlp2x_gelu", model, processor, lm=padded)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_an_imported_checkpoint_exports_to_transformers_llava(parts, tmp_path):
    """The round trip a LLaVA user wants: original layout -> medvlm -> transformers' Llava, logits unchanged."""
    src = _full_checkpoint(parts, tmp_path / "llava")
    import_llava(src, tmp_path / "medvlm", vision_tower=parts["root"] / "clip")
    model, processor = load(tmp_path / "medvlm")
    llava, _ = to_llava(model, processor)
    assert compare_logits(model, processor, llava) <= 1e-5


def test_a_hub_name_for_the_vision_tower_needs_a_local_folder(parts, tmp_path):
    src = _full_checkpoint(parts, tmp_path / "llava")
    with pytest.raises(LlavaImportError, match=r"mm_vision_tower='openai/clip-vit-large-patch14-336'.*--vision-tower"):
        import_llava(src, tmp_path / "medvlm")
    assert not (tmp_path / "medvlm").exists()


def test_alignment_run_projector_bin_on_the_base_language_model(parts, tmp_path):
    """LLaVA's pretraining stage writes config.json + mm_projector.bin; the LM is the base it started from."""
    src = tmp_path / "pretrain"
    src.mkdir()
    torch.save(parts["projectors"]["mlp2x_gelu"], src / "mm_projector.bin")
    (src / "config.json").write_text(json.dumps(_llava_config(parts, "mlp2x_gelu", HUB_TOWER)))
    with pytest.raises(LlavaImportError, match="--model-base"):
        import_llava(src, tmp_path / "medvlm", vision_tower=parts["root"] / "clip")
    summary = import_llava(src, tmp_path / "medvlm", vision_tower=parts["root"] / "clip",
                           model_base=parts["root"] / "vicuna")
    assert summary.kind == "projector"
    model, processor = load(tmp_path / "medvlm")
    ours, expected = _by_hand(parts, "mlp2x_gelu", model, processor)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_lora_run_is_merged_as_peft_applies_it(parts, tmp_path):
    """LLaVA's LoRA folder: adapter_config.json + adapter_model + non_lora_trainables.bin (the projector)."""
    src = tmp_path / "lora"
    reference = get_peft_model(LlamaForCausalLM.from_pretrained(parts["root"] / "vicuna"),
                               LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, param in reference.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)  # PEFT starts B at zero: make the delta count
    reference.save_pretrained(src)
    adapter_config = json.loads((src / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = "lmsys/vicuna-7b-v1.5"  # a hub name, as LLaVA writes it
    (src / "adapter_config.json").write_text(json.dumps(adapter_config))
    torch.save({"base_model.model." + k: v for k, v in parts["projectors"]["mlp2x_gelu"].items()},
               src / "non_lora_trainables.bin")
    (src / "config.json").write_text(json.dumps(_llava_config(parts, "mlp2x_gelu", HUB_TOWER)))

    with pytest.raises(LlavaImportError, match="base model='lmsys/vicuna-7b-v1.5'.*--model-base"):
        import_llava(src, tmp_path / "medvlm", vision_tower=parts["root"] / "clip")
    summary = import_llava(src, tmp_path / "medvlm", vision_tower=parts["root"] / "clip",
                           model_base=parts["root"] / "vicuna")
    assert (summary.kind, summary.lora_modules) == ("lora", 4)  # q_proj and v_proj in 2 layers
    model, processor = load(tmp_path / "medvlm")
    ours, expected = _by_hand(parts, "mlp2x_gelu", model, processor, lm=reference.eval())
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("config", "message"), [
    ({"mm_use_im_start_end": True}, "mm_use_im_start_end"),
    ({"image_aspect_ratio": "anyres"}, "anyres"),
    ({"mm_projector_type": "identity"}, "mm_projector_type='identity'"),
    ({"mm_hidden_size": 1024}, "mm_hidden_size=1024"),
])
def test_what_medvlm_cannot_read_is_named(parts, tmp_path, config, message):
    src = _full_checkpoint(parts, tmp_path / "llava", **config)
    with pytest.raises(LlavaImportError, match=message):
        import_llava(src, tmp_path / "medvlm", vision_tower=parts["root"] / "clip")


def test_cli_import(parts, tmp_path, capsys):
    src = _full_checkpoint(parts, tmp_path / "llava")
    out = tmp_path / "medvlm"
    assert main(["import", "llava", str(src), str(out), "--vision-tower", str(parts["root"] / "clip")]) == 0
    assert (out / "config.json").is_file() and (out / "medvlm_processor.json").is_file()
    assert main(["import", "llava", str(src), str(tmp_path / "other")]) == 1
    assert "--vision-tower" in capsys.readouterr().err
