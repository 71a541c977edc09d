"""Recipe `encoder`: the vision encoder learns the CheXpert labels the offline labeler reads from the reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

import medvlm
from medvlm.evaluate.labeler import CHEXPERT_OBSERVATIONS
from medvlm.records import load_training
from medvlm.train.encoder_stage import (
    CHANGE_CLASSES,
    CHANGE_FINDINGS,
    IGNORE,
    IGNORE_CLASS,
    EncoderWithLabelHead,
    label_counts,
    label_loss_sums,
    pair_label_targets,
    positive_weights,
    report_label_targets,
)

COLUMN = {name: i for i, name in enumerate(CHEXPERT_OBSERVATIONS)}


def _records(tmp_path, rows):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows))
    return load_training(path), path


def _row(rid, image, task, answer):
    return {"id": rid, "image": image, "task": task,
            "conversations": [{"from": "human", "value": "<image>\nReport?"}, {"from": "gpt", "value": answer}]}


def test_report_records_become_one_target_row_per_image(tmp_path):
    records, path = _records(tmp_path, [
        _row("a-report", "a.png", "report", "Small left pleural effusion. Possible atelectasis. No pneumothorax."),
        _row("a-vqa", "a.png", "vqa", "yes"),  # not a report: gives no labels
        _row("b-report", "b.png", "report", "The heart is enlarged."),
        _row("b-report-2", "b.png", "report", "No cardiomegaly. Mild pulmonary edema."),
    ])
    images = report_label_targets(records, report_task="report", uncertain="ignore", image_folder=None,
                                  record_file=path)
    assert images.records_used == 3 and [p.rsplit("/", 1)[-1] for p in images.paths] == ["a.png", "b.png"]
    a, b = images.targets
    assert a[COLUMN["Pleural Effusion"]] == 1 and a[COLUMN["Pneumothorax"]] == 0 and a[COLUMN["Edema"]] == 0
    assert a[COLUMN["Atelectasis"]] == IGNORE  # uncertain: left out of the loss
    assert b[COLUMN["Cardiomegaly"]] == 1  # positive in one report, negative in the other: positive wins
    assert b[COLUMN["Edema"]] == 1
    counted = report_label_targets(records, report_task="report", uncertain="positive", image_folder=None,
                                   record_file=path)
    assert counted.targets[0, COLUMN["Atelectasis"]] == 1


def test_no_record_of_the_report_task_is_a_clear_error(tmp_path):
    records, path = _records(tmp_path, [_row("a", "a.png", "vqa", "yes")])
    with pytest.raises(ValueError, match=r"train.json: no training record has task='report' \(tasks found: \['vqa'\]\)"):
        report_label_targets(records, report_task="report", uncertain="ignore", image_folder=None, record_file=path)


@pytest.mark.slow
def test_encoder_recipe_trains_the_encoder_alone_and_saves_a_usable_model(tiny_cxr, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "medvlm.cli", "train", "recipe=encoder", f"data.train={tiny_cxr / 'train.json'}",
               f"run.output_dir={out}", "components.vision=full", "optim.max_steps=6", "optim.batch_size=4",
               "encoder.positive_weight=sqrt",
               "run.progress=false", "run.tensorboard=false",
               "model.preset_options={image_size: 32, patch_size: 8, vision_stem: conv, vision_hidden_size: 32, "
               "text_hidden_size: 64, vocab_size: 300}"]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = log[0]
    model, processor = medvlm.load(out / "model")
    encoder_params = sum(p.numel() for p in model.vision_tower.parameters())
    assert start["trainable_params"] == encoder_params + (32 + 1) * 14  # encoder + head (token mean), nothing else
    assert log[-1]["kind"] == "end" and log[-1]["step"] == 6
    with safe_open(out / "model" / "label_head.safetensors", "pt") as f:
        assert f.metadata()["observations"].split(",") == list(CHEXPERT_OBSERVATIONS)
        assert f.metadata()["pooling"] == "mean" and f.get_tensor("weight").shape == (14, 32)
    # the saved model is a whole medvlm model: the next stage starts from it
    pixels = processor.preprocess_image(tiny_cxr / "images" / sorted(p.name for p in (tiny_cxr / "images").iterdir())[0])
    assert model.encode_images(pixels[None]).shape[-1] == 32
    assert torch.isfinite(model.encode_images(pixels[None])).all()


def test_token_global_weighting_is_refused_for_the_encoder_recipe(tiny_cxr, tmp_path):
    from medvlm.config import build_config
    from medvlm.train import TrainConfig, train

    cfg = build_config(TrainConfig, {
        "recipe": "encoder", "data": {"train": str(tiny_cxr / "train.json")}, "components": {"vision": "full"},
        "model": {"preset": "tiny", "preset_options": {"image_size": 32, "patch_size": 8, "vision_hidden_size": 32,
                                                       "text_hidden_size": 64, "vocab_size": 300}},
        "optim": {"max_steps": 1, "batch_size": 4, "loss_weighting": "token_global"},
        "run": {"output_dir": str(tmp_path / "run"), "progress": False, "tensorboard": False}})
    with pytest.raises(ValueError, match="recipe 'encoder' has none of"):
        train(cfg)


def test_positive_weights_favour_rare_labels():
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, IGNORE], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(positive_weights(targets, "none"), torch.ones(3))
    torch.testing.assert_close(positive_weights(targets, "balanced"), torch.tensor([4.0, 1.0, 1.0]))  # 4 neg : 1 pos
    torch.testing.assert_close(positive_weights(targets, "sqrt"), torch.tensor([2.0, 1.0, 1.0]))
    many = torch.zeros(100, 1)
    many[0] = 1.0
    assert positive_weights(many, "balanced").item() == 20.0  # 99:1, capped
    with pytest.raises(ValueError, match="encoder.positive_weight='inverse'"):
        positive_weights(targets, "inverse")


def test_cls_pooling_reads_the_cls_token_and_needs_it_kept():
    from medvlm.models import TinyPresetConfig, build_model
    from medvlm.train.encoder_stage import EncoderWithLabelHead

    small = dict(image_size=32, patch_size=8, vision_hidden_size=32, text_hidden_size=64, vocab_size=300)
    model, _ = build_model(TinyPresetConfig(**small), texts=["No effusion."] * 10)
    with pytest.raises(ValueError, match="vision_feature_select='keep_cls'"):
        EncoderWithLabelHead(model.vision_tower, 32, pooling="cls")
    model, _ = build_model(TinyPresetConfig(**small, vision_feature_select="keep_cls"), texts=["No effusion."] * 10)
    labelled = EncoderWithLabelHead(model.vision_tower, 32, pooling="cls").eval()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        cls = model.vision_tower(pixels)[:, 0]
        torch.testing.assert_close(labelled(pixels), labelled.head(cls))


def test_mean_max_pooling_with_add_pooled_reads_the_two_summary_tokens():
    from medvlm.models import TinyPresetConfig, build_model
    from medvlm.train.encoder_stage import EncoderWithLabelHead

    small = dict(image_size=32, patch_size=8, vision_hidden_size=32, text_hidden_size=64, vocab_size=300)
    model, _ = build_model(TinyPresetConfig(**small, vision_feature_select="add_pooled"), texts=["No effusion."] * 10)
    labelled = EncoderWithLabelHead(model.vision_tower, 32, pooling="mean_max").eval()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.vision_tower(pixels)  # 16 patches, their mean, their max
        torch.testing.assert_close(labelled(pixels), labelled.head(torch.cat([tokens[:, 16], tokens[:, 17]], dim=-1)))


def test_the_encoder_stage_hands_its_label_head_to_a_findings_connector(tmp_path):
    import medvlm
    from medvlm.models import TinyPresetConfig, build_model
    from medvlm.train.encoder_stage import EncoderWithLabelHead, export

    small = dict(image_size=32, patch_size=8, vision_hidden_size=32, text_hidden_size=64, vocab_size=300,
                 connector_type="findings", connector_config={"pooling": "mean_max"})
    model, processor = build_model(TinyPresetConfig(**small), texts=["No effusion."] * 10)
    labelled = EncoderWithLabelHead(model.vision_tower, 32, pooling="mean_max")
    torch.nn.init.normal_(labelled.head.weight)
    export(model, labelled, processor, tmp_path / "model")
    loaded, _ = medvlm.load(tmp_path / "model")
    torch.testing.assert_close(loaded.connector.classifier.weight, labelled.head.weight.detach())
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # the connector's classifier reads what the head read: the same logits
        torch.testing.assert_close(loaded.connector.finding_logits(loaded.vision_tower.eval()(pixels)),
                                   labelled.eval()(pixels))


def test_pairs_get_the_change_their_report_states_per_finding(tmp_path):
    rows = [_row("p", ["cur.png", "prior.png"], "report",
                 "The left pleural effusion has increased since the prior study. New right pneumothorax. "
                 "The endotracheal tube has been removed. No pulmonary edema."),
            _row("q", "alone.png", "report", "No prior study is available for comparison. Small effusion.")]
    records, path = _records(tmp_path, rows)
    pairs = pair_label_targets(records, report_task="report", uncertain="ignore", image_folder=None,
                               record_file=path)
    assert [p and p.rsplit("/", 1)[-1] for p in pairs.prior_paths] == ["prior.png", None]
    stated = {f: CHANGE_CLASSES[int(c)] for f, c in zip(CHANGE_FINDINGS, pairs.change[0], strict=True)}
    assert stated["pleural_effusion"] == "increased" and stated["pneumothorax"] == "new"
    assert stated["ett"] == "resolved" and stated["edema"] == "none" and stated["nodule"] == "none"
    assert (pairs.change[1] == IGNORE_CLASS).all()  # no prior: nothing to learn about change
    assert pairs.targets[1, COLUMN["Pleural Effusion"]] == 1


def test_the_change_head_reads_both_images_and_its_loss_counts_the_pairs_with_a_prior():
    class Tokens(torch.nn.Module):  # a stand-in encoder: 4 tokens of width 8 from the mean pixel
        select = "drop_cls"

        def forward(self, pixels):
            return pixels.mean(dim=(1, 2, 3))[:, None, None].expand(-1, 4, 8) * torch.arange(1.0, 9.0)

    model = EncoderWithLabelHead(Tokens(), 8, pooling="mean_max", change_head=True)
    pairs = torch.rand(3, 2, 1, 4, 4)
    labels, change = model(pairs)
    assert labels.shape == (3, 14) and change.shape == (3, len(CHANGE_FINDINGS), len(CHANGE_CLASSES))
    torch.testing.assert_close(labels, model(pairs[:, 0]))  # the label head reads the current image
    batch = {"pixel_values": pairs, "labels": torch.zeros(3, 14),
             "change": torch.tensor([[1] * 10, [0] * 10, [IGNORE_CLASS] * 10])}
    sums, counts = label_loss_sums(model, batch)
    assert counts.tolist() == label_counts(batch).tolist() == [24, 24, 14]
    sums.sum().backward()
    assert model.change_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="encoder.change_head: true"):
        EncoderWithLabelHead(Tokens(), 8)(pairs)


def test_encoder_stage_with_change_head_hands_both_heads_to_pair_findings(tmp_path):
    from medvlm.config import build_config
    from medvlm.synth.cxr import CXRConfig
    from medvlm.synth.dataset import write_dataset
    from medvlm.train import TrainConfig, train
    data = tmp_path / "data"
    write_dataset(data, "cxr", 12, seed=1, config=CXRConfig(size_px=32, temporal=True), progress=False)
    connector = {"pooling": "mean_max", "change_findings": len(CHANGE_FINDINGS), "change_classes": len(CHANGE_CLASSES)}
    cfg = build_config(TrainConfig, {
        "recipe": "encoder", "data": {"train": str(data / "train.json")}, "components": {"vision": "full"},
        "encoder": {"pooling": "mean_max", "change_head": True},
        "model": {"preset": "tiny", "preset_options": {
            "image_size": 32, "patch_size": 8, "vision_hidden_size": 32, "text_hidden_size": 64, "vocab_size": 300,
            "connector_type": "pair_findings", "connector_config": connector}},
        "optim": {"max_steps": 2, "batch_size": 4},
        "run": {"output_dir": str(tmp_path / "run"), "progress": False, "tensorboard": False}})
    result = train(cfg)
    with safe_open(result.model_dir / "change_head.safetensors", "pt") as f:
        assert f.metadata()["findings"].split(",") == list(CHANGE_FINDINGS)
        head = f.get_tensor("weight")
    model, _ = medvlm.load(result.model_dir)
    torch.testing.assert_close(model.connector.change_classifier.weight, head)
    assert model.config.image_seq_length == 2 * 16 + 14 + len(CHANGE_FINDINGS)


def test_the_image_cache_changes_no_weight_and_a_negative_size_is_refused(tiny_cxr, tmp_path):
    from safetensors.torch import load_file

    from medvlm.config import build_config
    from medvlm.train import TrainConfig, train

    def run(name: str, cache_mb: int, image_cache=None):
        cfg = build_config(TrainConfig, {
            "recipe": "encoder", "data": {"train": str(tiny_cxr / "train.json"), "image_cache_mb": cache_mb},
            "components": {"vision": "full"},
            "model": {"preset": "tiny", "preset_options": {"image_size": 32, "patch_size": 8, "vision_hidden_size": 32,
                                                           "text_hidden_size": 64, "vocab_size": 300}},
            "optim": {"max_steps": 14, "batch_size": 4},  # 56 draws of 24 images: most come from the cache
            "run": {"output_dir": str(tmp_path / name), "progress": False, "tensorboard": False, "seed": 3}})
        return train(cfg, image_cache=image_cache)

    cached, plain = run("cached", 64), run("plain", 0)
    end = json.loads((cached.run_dir / "log.jsonl").read_text().splitlines()[-1])
    # each of the 22 training images decoded once; its 2 epochs + 2 batches of 4 read the rest from memory
    assert end["image_cache"]["misses"] == 22 and end["image_cache"]["hits"] == 2 * 22 + 2 * 4 - 22
    assert "image_cache" not in json.loads((plain.run_dir / "log.jsonl").read_text().splitlines()[-1])
    weights = load_file(cached.model_dir / "model.safetensors")
    for key, value in load_file(plain.model_dir / "model.safetensors").items():
        assert torch.equal(weights[key], value), key
    with pytest.raises(ValueError, match="data.image_cache_mb=-1"):
        run("bad", -1)


def test_runs_given_one_image_cache_decode_each_image_once(tiny_cxr, tmp_path):
    """train(cfg, image_cache=...): a second run (another stage in the same process) finds every image decoded."""
    from medvlm.config import build_config
    from medvlm.data.processor import ImageCache
    from medvlm.train import TrainConfig, train

    shared = ImageCache(64 * 2**20)
    ends = []
    for name in ("first", "second"):
        cfg = build_config(TrainConfig, {
            "recipe": "encoder", "data": {"train": str(tiny_cxr / "train.json")}, "components": {"vision": "full"},
            "model": {"preset": "tiny", "preset_options": {"image_size": 32, "patch_size": 8, "vision_hidden_size": 32,
                                                           "text_hidden_size": 64, "vocab_size": 300}},
            "optim": {"max_steps": 7, "batch_size": 4},  # an epoch of 22 images in 6 steps, then 4 again
            "run": {"output_dir": str(tmp_path / name), "progress": False, "tensorboard": False, "seed": 3}})
        result = train(cfg, image_cache=shared)
        ends.append(json.loads((result.run_dir / "log.jsonl").read_text().splitlines()[-1])["image_cache"])
    assert (ends[0]["misses"], ends[0]["hits"]) == (22, 4)  # the counts are each run's own
    assert (ends[1]["misses"], ends[1]["hits"]) == (0, 26)
    assert (shared.misses, shared.hits) == (22, 30)
