"""`export_llava` / `medvlm export --to llava`: a medvlm model becomes a transformers Llava checkpoint that plain
transformers loads (no medvlm import) and that gives the same logits; models Llava cannot express are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from medvlm.api import save
from medvlm.cli import main
from medvlm.data.templates import render, to_messages
from medvlm.interop import LlavaExportError, export_llava, to_llava
from medvlm.interop.llava_export import LLAVA_TEXT_MODELS, LLAVA_VISION_MODELS, compare_logits

# Runs in a fresh interpreter that never imports medvlm: what a user of the exported folder has.
PLAIN_TRANSFORMERS = r"""
import json, sys
import numpy as np
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

request = json.loads(sys.argv[1])
results = {}
for name, folder in request["folders"].items():
    inputs = torch.load(f"{folder}/../inputs.pt", weights_only=True)
    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"]).logits
    image = np.load(f"{folder}/../image.npy")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there an effusion?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    encoded = processor(text=text, images=[image], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    results[name] = {"logits": logits, "input_ids": encoded["input_ids"], "pixel_values": encoded["pixel_values"],
                     "image_processor": type(processor.image_processor).__name__, "generated": generated}
assert not any(m.startswith("medvlm") for m in sys.modules), "the exported folder needed medvlm"
torch.save(results, request["out"])
"""


def test_exported_folder_loads_in_plain_transformers_with_the_same_logits(compose, tmp_path):
    variants = {  # the two projector mappings, CLS dropped / kept, one layer / a list, tied / untied embeddings
        "clip_mlp": compose("clip_vision_model", connector_type="mlp2x_gelu", vision_feature_layer=-2),
        "siglip_linear": compose("siglip_vision_model", text_overrides={"tie_word_embeddings": True},
                                 connector_type="linear", vision_feature_layer=[-1, -2]),
        "clip_keep_cls": compose("clip_vision_model", vision_feature_select="keep_cls", template="llava_v1"),
    }
    image = (np.random.default_rng(0).random((40, 32, 3)) * 255).astype(np.uint8)  # not square: padded
    expected, folders = {}, {}
    for name, (model, processor) in variants.items():
        save(model, processor, tmp_path / name / "medvlm")
        export_llava(tmp_path / name / "medvlm", tmp_path / name / "llava")
        sample = processor.encode_prompt("Is there an effusion?", [image])
        inputs = {"input_ids": torch.tensor([sample.input_ids]), "pixel_values": sample.pixel_values}
        torch.save(inputs, tmp_path / name / "inputs.pt")
        np.save(tmp_path / name / "image.npy", image)
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
            expected[name] = (model(**inputs).logits, generated, inputs)
        folders[name] = str(tmp_path / name / "llava")

    request = json.dumps({"folders": folders, "out": str(tmp_path / "results.pt")})
    subprocess.run([sys.executable, "-c", PLAIN_TRANSFORMERS, request], check=True, timeout=120,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    results = torch.load(tmp_path / "results.pt", weights_only=True)

    for name, (logits, generated, inputs) in expected.items():
        theirs = results[name]
        torch.testing.assert_close(theirs["logits"], logits, atol=1e-5, rtol=0)
        assert theirs["generated"].tolist() == generated.tolist(), name  # greedy decoding, same stop settings
        # the exported processor prompts and tokenises as medvlm does ...
        assert theirs["input_ids"].tolist() == inputs["input_ids"].tolist(), name
        # ... and its PIL image processor (no torchvision) resizes 8-bit pixels: within a few 1/255 steps of
        # medvlm's float resize, after normalisation by std 0.5
        assert theirs["image_processor"] == "LlavaImageProcessorPil"
        assert theirs["pixel_values"].shape == inputs["pixel_values"].shape
        assert float((theirs["pixel_values"] - inputs["pixel_values"]).abs().max()) < 0.05



SMALL_TEXT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 128}
TEXT_MODELS = {
    "llama": SMALL_TEXT, "mistral": {**SMALL_TEXT, "head_dim": 16}, "qwen2": SMALL_TEXT, "phi3": SMALL_TEXT,
    "gemma": {**SMALL_TEXT, "num_key_value_heads": 1, "head_dim": 16},
}


def test_every_listed_architecture_is_tested():
    assert set(TEXT_MODELS) == set(LLAVA_TEXT_MODELS)


@pytest.mark.parametrize("vision_type", LLAVA_VISION_MODELS)
def test_each_supported_vision_encoder_maps_exactly(vision_type, compose):
    model, processor = compose(vision_type)
    llava, _ = to_llava(model, processor)
    assert compare_logits(model, processor, llava) <= 1e-5


@pytest.mark.parametrize("text_type", sorted(TEXT_MODELS))
def test_each_supported_language_model_maps_exactly(text_type, compose):
    model, processor = compose("clip_vision_model", text={"model_type": text_type, **TEXT_MODELS[text_type]})
    llava, _ = to_llava(model, processor)
    assert compare_logits(model, processor, llava) <= 1e-5


@pytest.mark.parametrize("template", ["chatml", "llava_v1", "mistral_instruct", "plain"])
def test_exported_chat_template_renders_like_medvlm(template, compose):
    model, processor = compose(template=template, system_prompt=None if template == "llava_v1" else "Be brief.")
    _, llava_processor = to_llava(model, processor)
    conversation = [{"from": "human", "value": "<image>\nIs there an effusion?"}, {"from": "gpt", "value": "Yes."},
                    {"from": "human", "value": "Which side?"}]
    segments = render(template, to_messages(conversation), tokenizer=processor.tokenizer, add_generation_prompt=True,
                      system_prompt=processor.config.system_prompt)
    ours = (processor.tokenizer.bos_token if processor.template.add_bos else "") + "".join(s.text for s in segments)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there an effusion?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
        {"role": "user", "content": [{"type": "text", "text": "Which side?"}]},
    ]
    assert llava_processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == ours


@pytest.mark.parametrize(("fields", "reason"), [
    ({"connector_type": "spatial_pool", "connector_config": {"stride": 2}}, "connector 'spatial_pool' has no Llava"),
    ({"connector_type": "mlp2x_gelu", "connector_config": {"depth": 3}}, "exactly 2 linear layers"),
    ({"vision_feature_select": "cls_only"}, "vision_feature_select='cls_only'"),
    ({"vision_feature_select": "add_pooled"}, "vision_feature_select='add_pooled'"),
    ({"text": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4}}, "language model 'gpt2'"),
])
def test_a_model_llava_cannot_express_is_refused_with_the_reason(fields, reason, compose):
    model, processor = compose(**fields)
    with pytest.raises(LlavaExportError, match=reason):
        to_llava(model, processor)


def test_cli_export_writes_the_folder_or_explains_the_refusal(compose, tmp_path, capsys):
    model, processor = compose()
    save(model, processor, tmp_path / "model")
    assert main(["export", "--to", "llava", str(tmp_path / "model"), str(tmp_path / "llava")]) == 0
    assert json.loads((tmp_path / "llava" / "config.json").read_text())["model_type"] == "llava"

    pooled, pooled_processor = compose(connector_type="spatial_pool", connector_config={"stride": 2})
    save(pooled, pooled_processor, tmp_path / "pooled")
    assert main(["export", "--to", "llava", str(tmp_path / "pooled"), str(tmp_path / "pooled_llava")]) == 1
    assert "connector 'spatial_pool' has no Llava equivalent" in capsys.readouterr().err
    assert not (tmp_path / "pooled_llava").exists()
