"""Config -> the objects the loop needs: model + processor, the training dataset, validation.

Kept apart from the loop so that recipe.py reads as the loop it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from medvlm.data.collator import Collator
from medvlm.data.dataset import TrainingDataset, text_stats
from medvlm.data.processor import EncodedSample, ImageCache, MedVLMProcessor
from medvlm.records import TrainingRecord, load_training
from medvlm.train.config import TrainConfig


def build_model_and_processor(cfg: TrainConfig, image_cache: ImageCache | None = None):
    """(model, processor, training records) from `cfg.model` and `cfg.data.train`; the processor keeps decoded
    images in `image_cache`, or in a new ImageCache of data.image_cache_mb (none when 0).

    A preset trains its tokenizer on the training texts (unless it brings its own: `trains_tokenizer` False, as
    `pretrained`); the processor it builds is saved under `run.output_dir/processor` on the first run and reused
    on resume, so a resumed run has the very same tokenizer.
    """
    from medvlm.api import load
    from medvlm.models.presets import PRESETS, ComposeConfig, build_model

    if not cfg.data.train:
        raise ValueError("data.train is empty: give the training records file (LLaVA conversations JSON/JSONL)")
    records = load_training(cfg.data.train, image_folder=cfg.data.image_folder, skip_bad=cfg.data.skip_bad)
    if not records:
        raise ValueError(f"{cfg.data.train}: no training records")
    m = cfg.model
    if m.init_from:
        model, processor = load(m.init_from)
        model.train()
    elif m.compose is not None:
        model, processor = build_model(ComposeConfig(**m.compose))
    elif m.preset:
        if m.preset not in PRESETS:
            raise ValueError(f"model.preset={m.preset!r}: use one of {sorted(PRESETS)}")
        preset = PRESETS[m.preset](**m.preset_options)
        saved = Path(cfg.run.output_dir) / "processor"
        if (saved / "medvlm_processor.json").is_file():
            processor = MedVLMProcessor.from_pretrained(saved)
            model, processor = build_model(preset, tokenizer=processor.tokenizer)
        else:
            texts = _texts(records) if preset.trains_tokenizer else None
            model, processor = build_model(preset, texts=texts)
            processor.save_pretrained(saved)
    else:
        raise ValueError("model: set one of init_from, compose or preset")
    if cfg.data.max_length:
        processor.config.max_length = cfg.data.max_length
    if cfg.data.image_cache_mb < 0:
        raise ValueError(f"data.image_cache_mb={cfg.data.image_cache_mb}: give a size in MiB, or 0 for no cache")
    if image_cache is None and cfg.data.image_cache_mb:
        image_cache = ImageCache(cfg.data.image_cache_mb * 2**20)
    processor.image_cache = image_cache
    return model, processor, records


def _texts(records: list[TrainingRecord]) -> list[str]:
    return [turn.value for record in records for turn in record.conversations]


@dataclass
class TrainingData:
    dataset: torch.utils.data.Dataset
    collate: Any
    validation: Any | None  # medvlm.train.validate.Validation


def build_training_data(cfg: TrainConfig, model, processor: MedVLMProcessor, records, run_dir: Path, accelerator):
    plain = dataset = TrainingDataset(records, processor, image_folder=cfg.data.image_folder,
                                      record_file=cfg.data.train)
    collate = Collator(processor.tokenizer.pad_token_id, padding_side="right")
    if cfg.run.cache_vision_features:
        with accelerator.main_process_first():
            cache_dir = Path(cfg.run.feature_cache_dir) if cfg.run.feature_cache_dir else run_dir / "feature_cache"
            dataset = CachedFeatureDataset.build(dataset, model, cache_dir,
                                                 progress=cfg.run.progress and accelerator.is_main_process)
        collate = FeatureCollator(collate)
    if cfg.findings.teacher_forcing > 0:
        from medvlm.train import finding_targets
        from medvlm.train.components import base_model

        dataset = finding_targets.wrap(dataset, plain, cfg, base_model(model).connector)
    validation = None
    if cfg.data.validation:
        from medvlm.train.validate import Validation

        validation = Validation.from_file(cfg, processor)
    return TrainingData(dataset=dataset, collate=collate, validation=validation)


class CachedFeatureDataset(torch.utils.data.Dataset):
    """Samples whose images are replaced by the frozen encoder's features, computed once and stored.

    The cache is `features.safetensors` (one tensor per distinct image path, key = its index in `paths.txt`)
    in `cache_dir`; it is rebuilt when the image list or the encoder's weights differ. Token ids are
    encoded once, in memory.
    """

    def __init__(self, samples: list[EncodedSample], image_keys: list[list[int]], features: dict[str, torch.Tensor],
                 tasks: list[str | None] | None = None):
        self.samples, self.image_keys, self.features = samples, image_keys, features
        self._tasks = tasks if tasks is not None else [None] * len(samples)

    @classmethod
    def build(cls, dataset: TrainingDataset, model, cache_dir: Path, progress: bool = True, batch_size: int = 32):
        from medvlm.train.components import base_model

        paths: dict[str, int] = {}
        image_keys = []
        for record in dataset.records:
            keys = []
            for p in dataset.image_paths(record):
                keys.append(paths.setdefault(str(p), len(paths)))
            image_keys.append(keys)
        fingerprint = _encoder_fingerprint(base_model(model).vision_tower, list(paths), dataset.processor.config)
        cache_file = cache_dir / "features.safetensors"
        features: dict[str, torch.Tensor] = {}
        if cache_file.is_file():
            stored = load_file(cache_file)
            if stored.get("__fingerprint__") is not None and torch.equal(stored["__fingerprint__"], fingerprint):
                features = stored
        if not features:
            vision = base_model(model)
            ordered = list(paths)
            was_training = vision.training
            vision.eval()
            with torch.no_grad():
                for start in tqdm(range(0, len(ordered), batch_size), disable=not progress, desc="caching features",
                                  unit="batch"):
                    chunk = ordered[start : start + batch_size]
                    pixels = dataset.processor.preprocess_images(chunk)
                    encoded = vision.encode_images(pixels)
                    for offset, tensor in enumerate(encoded):
                        features[str(start + offset)] = tensor.contiguous().clone()
            vision.train(was_training)
            features["__fingerprint__"] = fingerprint
            cache_dir.mkdir(parents=True, exist_ok=True)
            from medvlm.fileio import atomic_path

            with atomic_path(cache_file) as tmp:
                save_file(features, tmp)
        samples = [dataset.text_sample(index) for index in range(len(dataset))]
        return cls(samples, image_keys, features, dataset.tasks())

    def __len__(self) -> int:
        return len(self.samples)

    def lengths(self) -> list[int]:
        return [text_stats(sample)[0] for sample in self.samples]

    def tasks(self) -> list[str | None]:
        return list(self._tasks)

    def labelled_tokens(self) -> list[int]:
        return [text_stats(sample)[1] for sample in self.samples]

    def __getitem__(self, index: int) -> EncodedSample:
        sample = self.samples[index]
        keys = self.image_keys[index]
        pixel_values = torch.stack([self.features[str(k)] for k in keys]) if keys else None
        if sample.prior_present == [False]:  # a pair without prior: the current image stands in (see the processor)
            pixel_values = torch.cat([pixel_values, pixel_values])
        return EncodedSample(sample.input_ids, sample.labels, pixel_values, sample.prior_present)


class FeatureCollator:
    """The usual collator, with the stacked cached features passed as `vision_features`."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, samples):
        batch = self.collate(samples)
        if "pixel_values" in batch:
            batch["vision_features"] = batch.pop("pixel_values")
        return batch


def _encoder_fingerprint(vision_model, paths: list[str], processor_config) -> torch.Tensor:
    """A small tensor that changes when the encoder weights, its feature selection, the image preprocessing or the
    image list change."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr((vision_model.layer, vision_model.select, processor_config)).encode())
    for name, tensor in sorted(vision_model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(float(tensor.float().sum())).encode())
    h.update("\n".join(paths).encode())
    return torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8).clone()

