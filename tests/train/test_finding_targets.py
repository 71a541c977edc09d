"""findings.teacher_forcing: in training, the finding tokens carry each image's report labels."""

from __future__ import annotations

import json
import math

import pytest
import torch

from medvlm.data.collator import collate
from medvlm.data.dataset import TrainingDataset
from medvlm.data.processor import EncodedSample
from medvlm.evaluate.labeler import CHEXPERT_OBSERVATIONS
from medvlm.records import load_training
from medvlm.train.finding_targets import FindingTargetsDataset, force, image_label_table

COLUMN = {name: i for i, name in enumerate(CHEXPERT_OBSERVATIONS)}
NAN = float("nan")


def test_collate_stacks_targets_per_image_with_nan_rows_for_samples_without():
    with_targets = EncodedSample([1, 2], [1, 2], torch.zeros(2, 3, 4, 4), finding_targets=torch.ones(2, 5))
    without = EncodedSample([1], [1], torch.zeros(1, 3, 4, 4))
    text_only = EncodedSample([1, 2, 3], [1, 2, 3], None)
    batch = collate([with_targets, text_only, without], pad_token_id=0)
    assert batch["finding_targets"].shape == (3, 5)
    assert torch.equal(batch["finding_targets"][:2], torch.ones(2, 5))
    assert torch.isnan(batch["finding_targets"][2]).all()
    assert "finding_targets" not in collate([without, text_only], pad_token_id=0)


def _row(rid, images, task, answer):
    return {"id": rid, "image": images, "task": task,
            "conversations": [{"from": "human", "value": "<image>\nSay?"}, {"from": "gpt", "value": answer}]}


def test_every_record_of_an_image_gets_its_reports_labels_and_a_prior_gets_nan(tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png", "old.png"):
        Image.new("L", (32, 32)).save(tmp_path / name)
    rows = [_row("a-report", "a.png", "report", "There is a small left pleural effusion. No pneumothorax."),
            _row("a-vqa", "a.png", "vqa", "yes"),
            _row("b-vqa", "b.png", "vqa", "no"),  # no report for b: the classifier decides
            _row("a-pair", ["a.png", "old.png"], "report", "Possible pneumothorax. Mild cardiomegaly.")]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows))
    records = load_training(path)
    table = image_label_table(records, report_task="report", uncertain="ignore", image_folder=None,
                              record_file=path)
    row = table[str(tmp_path / "a.png")]
    # both report records of a.png (the pair's current image) merge: a positive or uncertain mention outranks a
    # negation, and uncertain="ignore" leaves the classifier to decide (NaN)
    assert row[COLUMN["Pleural Effusion"]] == 1.0 and row[COLUMN["Cardiomegaly"]] == 1.0
    assert math.isnan(row[COLUMN["Pneumothorax"]]) and row[COLUMN["Edema"]] == 0.0
    assert set(table) == {str(tmp_path / "a.png")}

    from medvlm.models.presets import TinyPresetConfig, build_model

    _, processor = build_model(TinyPresetConfig(image_size=32, patch_size=8, vision_hidden_size=32,
                                                text_hidden_size=64, vocab_size=300),
                               texts=[r.conversations[1].value for r in records] * 5)
    plain = TrainingDataset(records, processor, record_file=path)
    paths = [[str(p) for p in plain.image_paths(r)] for r in records]
    dataset = FindingTargetsDataset(plain, paths, table)
    assert torch.equal(dataset[1].finding_targets[0].nan_to_num(-1), row.nan_to_num(-1))  # the VQA record of a
    assert torch.isnan(dataset[2].finding_targets).all()
    pair = dataset[3].finding_targets
    assert pair.shape == (2, 14) and torch.isnan(pair[1]).all()
    assert dataset.lengths() == plain.lengths() and dataset.tasks() == plain.tasks()


def test_force_keeps_rows_with_the_given_probability():
    targets = torch.ones(4000, 3)
    assert force(targets, 1.0) is targets
    torch.manual_seed(0)
    kept = ~torch.isnan(force(targets, 0.3)).any(dim=1)
    assert abs(float(kept.float().mean()) - 0.3) < 0.03
    rows = force(targets, 0.5)
    assert (torch.isnan(rows).all(dim=1) | (rows == 1).all(dim=1)).all()  # whole images, never single labels


def _train_cfg(tiny_cxr, tmp_path, name, connector="findings", forcing=1.0, recipe="finetune"):
    from medvlm.config import build_config
    from medvlm.train import TrainConfig

    return build_config(TrainConfig, {
        "recipe": recipe, "data": {"train": str(tiny_cxr / "train.json")},
        "components": {"vision": "frozen", "connector": "full", "language": "full" if recipe == "finetune" else "frozen"},
        "model": {"preset": "tiny", "preset_options": {
            "image_size": 32, "patch_size": 8, "vision_hidden_size": 32, "text_hidden_size": 64, "vocab_size": 300,
            "connector_type": connector}},
        "findings": {"teacher_forcing": forcing},
        "optim": {"max_steps": 3, "batch_size": 4},
        "run": {"output_dir": str(tmp_path / name), "progress": False, "tensorboard": False, "seed": 3,
                "cache_vision_features": True}})


def test_teacher_forcing_changes_what_the_language_model_learns_from(tiny_cxr, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from medvlm.models.connectors.findings import FindingsConnector
    from medvlm.train import train

    seen = []
    original = FindingsConnector.forward

    def spy(self, features, text_embeddings=None, finding_targets=None):
        seen.append(finding_targets)
        return original(self, features, text_embeddings, finding_targets)

    monkeypatch.setattr(FindingsConnector, "forward", spy)
    forced = train(_train_cfg(tiny_cxr, tmp_path, "forced"))
    assert len(seen) == 3 and all(t is not None and t.shape == (4, 14) for t in seen)
    assert all(bool((~torch.isnan(t)).any()) for t in seen)  # the report and VQA records both carry labels
    seen.clear()
    plain = train(_train_cfg(tiny_cxr, tmp_path, "plain", forcing=0.0))
    assert seen == [None] * 3
    a, b = load_file(forced.model_dir / "model.safetensors"), load_file(plain.model_dir / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("language_model."))


def test_teacher_forcing_is_refused_where_it_has_no_meaning(tiny_cxr, tmp_path):
    from medvlm.train import train

    with pytest.raises(ValueError, match="findings.teacher_forcing=1.5: give a probability"):
        train(_train_cfg(tiny_cxr, tmp_path, "range", forcing=1.5))
    with pytest.raises(ValueError, match="teacher_forcing=1.0: the model's connector .* has no finding tokens"):
        train(_train_cfg(tiny_cxr, tmp_path, "mlp", connector="mlp2x_gelu"))
