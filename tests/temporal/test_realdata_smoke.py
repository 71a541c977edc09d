"""A tiny tac model, trained a few steps on temporal synthetic studies, reports on Libra's real current + prior pair."""

from __future__ import annotations

import json
import math

import pytest

from medvlm.cli import main


@pytest.fixture(scope="module")
def tiny_tac_model(tiny_temporal_cxr, tmp_path_factory):
    from medvlm.config import build_config
    from medvlm.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tac_run")
    cfg = build_config(TrainConfig, {
        "recipe": "finetune",
        "model": {"preset": "tiny", "preset_options": {
            "image_size": 32, "patch_size": 8, "vision_hidden_size": 32, "text_hidden_size": 64, "vocab_size": 512,
            "connector_type": "tac", "vision_feature_layer": "all", "missing_prior": "learned"}},
        "data": {"train": str(tiny_temporal_cxr / "train.json")},
        "components": {"vision": "full", "connector": "full", "language": "full"},
        "optim": {"lr": 1e-3, "batch_size": 4, "max_steps": 3},
        "run": {"output_dir": str(out), "progress": False, "tensorboard": False},
    })
    result = train(cfg)
    assert result.steps == 3
    return result.model_dir


def test_generate_with_a_real_prior_and_without_one(tiny_tac_model, realdata, capsys):
    pair = realdata / "libra_example"
    common = ["generate", "--model", str(tiny_tac_model), "--image", str(pair / "current.jpg"),
              "--max-new-tokens", "8", "--json"]
    assert main(common + ["--prior", str(pair / "prior.jpg")]) == 0
    with_prior = json.loads(capsys.readouterr().out)
    assert len(with_prior) == 1 and isinstance(with_prior[0], str)
    assert main(common) == 0  # no prior: the model's missing-prior mode (saved in its config)
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert json.loads((tiny_tac_model / "config.json").read_text())["missing_prior"] == "learned"


def test_predict_answers_temporal_questions(tiny_tac_model, tiny_temporal_cxr, tmp_path):
    import medvlm
    from medvlm.infer.options import GenerationOptions
    from medvlm.infer.predict import predict
    from medvlm.records import load_answers, load_questions

    questions = [q for q in load_questions(tiny_temporal_cxr / "test.jsonl") if q.answer_type == "report"]
    assert any(len(q.images) == 2 for q in questions)
    model, processor = medvlm.load(tiny_tac_model)
    summary = predict(model, processor, questions, tmp_path / "answers.jsonl", image_folder=tiny_temporal_cxr,
                      options=GenerationOptions(max_new_tokens=4), progress=False)
    assert summary.answered == len(questions) == len(load_answers(tmp_path / "answers.jsonl"))


def test_align_with_cached_features_trains_a_tac_model(tiny_temporal_cxr, tmp_path):
    """The frozen-encoder feature cache keeps pairs and missing priors (layer stacks for tac)."""
    from medvlm.config import build_config
    from medvlm.train import TrainConfig, train

    cfg = build_config(TrainConfig, {
        "recipe": "align",
        "model": {"preset": "tiny", "preset_options": {
            "image_size": 32, "patch_size": 8, "vision_hidden_size": 32, "text_hidden_size": 64, "vocab_size": 512,
            "connector_type": "tac", "vision_feature_layer": "all", "missing_prior": "learned"}},
        "data": {"train": str(tiny_temporal_cxr / "train.json")},
        "optim": {"batch_size": 8, "max_steps": 2},
        "run": {"output_dir": str(tmp_path / "align"), "progress": False, "tensorboard": False,
                "cache_vision_features": True},
    })
    result = train(cfg)
    assert result.steps == 2 and math.isfinite(result.train_loss)
