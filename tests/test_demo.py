"""`medvlm demo` end to end on a tiny budget: both presets into one OUT, one report showing both, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medvlm.demo import DemoConfig, run_demo

TINY_BUDGET = dict(studies=24, test_fraction=0.1, size_px=32, encoder_steps=3, align_steps=2, finetune_steps=2, batch_size=8, max_new_tokens=8,
                   validate_every_steps=1000, meteor=False, bertscore=False, workers=1, progress=False,
                   preset_options={"patch_size": 8, "vision_stem": "conv", "vision_hidden_size": 32, "text_hidden_size": 64,
                                   "vocab_size": 300, "connector_type": "findings",
                                   "connector_config": {"pooling": "mean_max", "train_classifier": False,
                                                        "threshold": 0.5}})


@pytest.mark.slow
def test_tiny_then_pretrained_demo_share_data_and_one_report(tmp_path):
    out = tmp_path / "demo_out"
    tiny = run_demo(DemoConfig(out=str(out), **TINY_BUDGET))
    columns = {"model", "blank_images", "most_frequent"}
    assert set(tiny.metrics) == columns
    test_questions = len((out / "data" / "test.jsonl").read_text().splitlines())
    assert all(sum(tiny.metrics[c][f"n_{kind}"] for kind in ("report", "closed", "open")) == test_questions
               for c in columns)
    assert 0 <= tiny.metrics["model"]["clinical_micro_f1_14"] <= 1
    assert (out / "finetune" / "model" / "model.safetensors").is_file()
    assert (out / "encoder" / "model" / "label_head.safetensors").is_file()  # the encoder stage ran first
    # its label head became the findings connector's classifier
    head = load_file(out / "encoder" / "model" / "label_head.safetensors")
    encoder_stage = load_file(out / "encoder" / "model" / "model.safetensors")
    assert torch.equal(encoder_stage["connector.classifier.weight"], head["weight"])
    finetuned = load_file(out / "finetune" / "model" / "model.safetensors")  # and stayed as it was (demo default)
    assert torch.equal(finetuned["connector.classifier.weight"], head["weight"])
    page = tiny.report_html.read_text()
    assert "Tiny preset" in page and "Pretrained preset" not in page and "data:image/png;base64," in page

    # rerunning resumes: nothing is trained or answered again, the answers stay as they were
    answers = (out / "answers.jsonl").read_text()
    again = run_demo(DemoConfig(out=str(out), **TINY_BUDGET))
    assert (out / "answers.jsonl").read_text() == answers
    assert again.metrics["model"] == tiny.metrics["model"]

    try:
        from medvlm.models.pretrained import resolve

        resolve("efficientnet-lite0"), resolve("smollm2-135m-instruct")
    except ImportError as error:  # the pretrained extra is not installed
        pytest.skip(str(error))
    pretrained = run_demo(DemoConfig(out=str(out), preset="pretrained", pretrained_steps=1, pretrained_batch_size=2,
                                     pretrained_image_size=32, pretrained_questions_per_type=1,
                                     **{k: v for k, v in TINY_BUDGET.items() if k != "preset_options"}))
    kinds = {json.loads(line)["answer_type"] for line in (out / "data" / "test.jsonl").read_text().splitlines()}
    record = json.loads((out / "pretrained" / "metrics.json").read_text())
    assert record["preset"] == "pretrained" and record["questions"] == len(kinds)  # the first of each answer type
    assert set(pretrained.metrics) == columns | {"tiny"}  # the tiny model scored on the same questions
    assert all(pretrained.metrics[c]["n_report"] == pretrained.metrics[c]["n_closed"] == 1
               for c in pretrained.metrics)
    page = pretrained.report_html.read_text()
    assert "Tiny preset" in page and "Pretrained preset" in page


def test_the_demo_recipe_files_are_the_recipes_the_demo_runs():
    from medvlm.config import build_config, load_config
    from medvlm.demo import tiny_stage_recipes
    from medvlm.train import TrainConfig

    configs = Path(__file__).resolve().parents[1] / "configs"
    recipes = tiny_stage_recipes(DemoConfig(), Path("demo_out/data"), Path("demo_out"))
    assert list(recipes) == ["encoder", "align", "finetune"]
    for stage, recipe in recipes.items():
        assert load_config(TrainConfig, configs / f"demo_{stage}.yaml") == build_config(TrainConfig, recipe), stage
