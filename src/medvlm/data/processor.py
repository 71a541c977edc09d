"""MedVLMProcessor: images -> pixel tensors, conversations -> token ids + labels, with `<image>` expansion.

Images: files are read with `medvlm.imaging.load_image` (PNG/JPEG/TIFF/BMP/DICOM); arrays are taken as they are.
Values are scaled to [0, 1] (integer images by their bit depth; float images, e.g. windowed DICOM, must already be
in [0, 1]: anything else is an error), gray is repeated to 3 channels (or RGB averaged to 1 when the encoder takes 1), then
  resize_mode="pad":     pad to a square with the mean colour, keeping the aspect ratio (LLaVA's expand2square),
                         then resize;
  resize_mode="stretch": resize straight to image_size x image_size.
Resizing is bicubic (PIL, per channel in float32, so 16-bit images keep their precision); then (x - mean) / std.

Temporal pairs (Libra): a sample with two images [current, prior] is a pair when the model's connector takes pairs
(`images_per_placeholder` = 2: tac, pair_concat, pair_findings) or when its text has one shared placeholder.
Both record spellings, one shared `<image>` or one `<image>` per image, are normalised to the connector's
convention:
  pair connector:         ONE placeholder for the pair (a second placeholder is removed); pixel_values hold
                          [current, prior]; a sample with only the current image gets the current image again in
                          the prior slot (Libra's dummy prior) and prior_present=[False] (the model's
                          config.missing_prior decides whether that stand-in or a learned "no prior" embedding is used);
  single-image connector: each image its own placeholder (a shared one gets a second placeholder right after it):
                          the prior is just a second image.

Text: the chat template renders the conversation into segments (see medvlm.data.templates); each segment is
tokenised on its own, every `<image>` becomes `image_seq_length` image tokens, and labels copy the ids of learned
(assistant) segments and are -100 elsewhere (image tokens included).
Truncation (training samples only) cuts at `max_length` from the end, never inside or before an image's tokens:
a sample whose image tokens do not fit is an error.

Settings are saved as `medvlm_processor.json` beside the tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medvlm.data.templates import IMAGE_PLACEHOLDER, get_template, render, to_messages
from medvlm.fileio import atomic_write_json
from medvlm.temporal.records import without_second_placeholder

PROCESSOR_FILE = "medvlm_processor.json"
IGNORE_INDEX = -100
RESIZE_MODES = ("pad", "stretch")


@dataclass
class ProcessorConfig:
    """What the processor needs besides the tokenizer; saved as medvlm_processor.json."""

    image_seq_length: int
    image_size: int = 224
    num_channels: int = 3
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    resize_mode: str = "pad"
    template: str = "chatml"
    system_prompt: str | None = None
    max_length: int = 2048
    images_per_placeholder: int = 1

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode={self.resize_mode!r}: use one of {RESIZE_MODES}")
        get_template(self.template)
        for name in ("image_mean", "image_std"):
            value = list(getattr(self, name))
            if len(value) != self.num_channels:
                raise ValueError(f"{name} has {len(value)} values for {self.num_channels} channels")
            setattr(self, name, [float(v) for v in value])


@dataclass
class EncodedSample:
    """One processed sample: input_ids (seq,), labels (seq,) or None, pixel_values (num_images, C, H, W) or None;
    prior_present: for pair connectors, one flag per pair (False: the prior slot holds a stand-in), else None;
    finding_targets: (num_images, num_labels) for findings connectors in training (NaN: the classifier decides;
    medvlm.train.finding_targets), else None."""

    input_ids: list[int]
    labels: list[int] | None
    pixel_values: torch.Tensor | None
    prior_present: list[bool] | None = None
    finding_targets: torch.Tensor | None = None

    @property
    def num_images(self) -> int:
        return 0 if self.pixel_values is None else int(self.pixel_values.shape[0])


def _scale_to_unit(pixels: np.ndarray, bits_stored: int | None, name: str) -> np.ndarray:
    """Any image array -> float32 in [0, 1]: integers by their bit depth; floats must already be in [0, 1]."""
    if np.issubdtype(pixels.dtype, np.integer):
        bits = bits_stored or np.iinfo(pixels.dtype).bits
        return np.clip(pixels.astype(np.float32) / float(2**bits - 1), 0.0, 1.0)
    unit = pixels.astype(np.float32)
    low, high = float(unit.min()), float(unit.max())
    if low < -1e-6 or high > 1 + 1e-6 or not np.isfinite(unit).all():
        raise ValueError(f"image {name}: float pixels must lie in [0, 1], found {low:g}..{high:g}; window them "
                         "first (medvlm.imaging windows CT/DICOM values) or pass integer pixels")
    return np.clip(unit, 0.0, 1.0)


def _drop_second_placeholder(messages: list) -> list:
    """The messages with the second `<image>` (and a newline right after it) removed."""
    seen, out = 0, []
    for m in messages:
        text, seen = without_second_placeholder(m.text, seen)
        out.append(m if text == m.text else type(m)(m.role, text))
    return out


def _add_second_placeholder(messages: list) -> list:
    """The messages with a second `<image>` right after the first (one placeholder per image of a pair)."""
    out = []
    done = False
    for m in messages:
        if not done and IMAGE_PLACEHOLDER in m.text:
            m = type(m)(m.role, m.text.replace(IMAGE_PLACEHOLDER, f"{IMAGE_PLACEHOLDER}\n{IMAGE_PLACEHOLDER}", 1))
            done = True
        out.append(m)
    return out


class ImageCache:
    """Preprocessed images kept in memory by path and preprocessing settings, until `max_bytes` are held (later
    images are not added), so that the epochs after the first skip decoding and resizing. A gray image's identical
    channels are kept once. Processors with other settings (size, channels, mean, std, resize mode) can share one
    cache: their images do not mix. Assumes the files do not change while it lives (a training run, or stages
    run one after another: `train(cfg, image_cache=...)`); per process (each DataLoader worker has its own)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = self.misses = 0
        self._store: dict[str, tuple[torch.Tensor, int]] = {}  # path -> (tensor kept, times to repeat it)

    def get(self, key: str) -> torch.Tensor | None:
        found = self._store.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        pixels, repeat = found
        return pixels.repeat(repeat, 1, 1) if repeat > 1 else pixels.clone()  # a copy: callers may change theirs

    def put(self, key: str, pixels: torch.Tensor) -> None:
        channels = pixels.shape[0]
        if channels > 1 and all(torch.equal(pixels[0], pixels[c]) for c in range(1, channels)):
            kept, repeat = pixels[:1].clone(), channels
        else:
            kept, repeat = pixels.clone(), 1
        size = kept.numel() * kept.element_size()
        if key not in self._store and self.bytes + size <= self.max_bytes:
            self._store[key] = (kept, repeat)
            self.bytes += size


class MedVLMProcessor:
    """Turns (images, conversation) into model inputs and generated ids back into text.

    tokenizer: a transformers tokenizer holding the `<image>` token; config: ProcessorConfig.
    image_cache: an ImageCache for image files, or None (the default; training sets one: data.image_cache_mb).
    """

    def __init__(self, tokenizer, config: ProcessorConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.image_cache: ImageCache | None = None
        self._piece_memo: dict[str, tuple[int, ...]] = {}  # text piece -> token ids (see _piece_ids)
        self._piece_memo_vocab = len(tokenizer)  # the vocabulary size the memo was made with
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {IMAGE_PLACEHOLDER!r} token; add it as a special token "
                             "(build_model does this) before making a processor")
        self.template = get_template(config.template)

    # --- images -------------------------------------------------------------------------------------------
    def load_pixels(self, image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """A path or an array -> float32 (H, W, num_channels) in [0, 1]."""
        return self._to_channels(self._unit_pixels(image))

    def _unit_pixels(self, image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """A path or an array -> float32 (H, W, 1 or 3) in [0, 1], channels as stored."""
        if isinstance(image, np.ndarray):
            pixels, bits, name = image, None, "array"
        else:
            from medvlm.imaging import load_image

            loaded = load_image(image)
            pixels, bits, name = loaded.pixels, loaded.meta.bits_stored, os.fspath(image)
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3)):
            raise ValueError(f"image {name}: expected (H, W) or (H, W, 3) pixels, got shape {pixels.shape}")
        unit = _scale_to_unit(pixels, bits, name)
        return unit[:, :, None] if unit.ndim == 2 else unit

    def _to_channels(self, unit: np.ndarray) -> np.ndarray:
        """(H, W, 1 or 3) -> (H, W, num_channels): gray repeated, or colour averaged."""
        channels = self.config.num_channels
        if unit.shape[2] == 1 and channels == 3:
            return np.repeat(unit, 3, axis=2)
        if unit.shape[2] == 3 and channels == 1:
            return unit.mean(axis=2, keepdims=True)
        return unit

    def preprocess_image(self, image: str | os.PathLike | np.ndarray) -> torch.Tensor:
        """A path or an array -> normalised (num_channels, image_size, image_size) float32 tensor.

        Pad to a square with the mean colour (resize_mode "pad") or stretch, bicubic resize, clip to [0, 1],
        normalise. A gray image is resized once and then repeated into the channels (the same numbers as resizing
        each copy); an image already square at image_size is not resampled. With an `image_cache`, a file
        preprocessed before comes from memory."""
        if self.image_cache is not None and not isinstance(image, np.ndarray):
            key = f"{self._image_settings()}|{os.fspath(image)}"
            cached = self.image_cache.get(key)
            if cached is None:
                cached = self._preprocess(image)
                self.image_cache.put(key, cached)
            return cached
        return self._preprocess(image)

    def _image_settings(self) -> str:
        """What _preprocess depends on besides the file: an ImageCache key prefix."""
        c = self.config
        return f"{c.image_size},{c.num_channels},{c.image_mean},{c.image_std},{c.resize_mode}"

    def _preprocess(self, image: str | os.PathLike | np.ndarray) -> torch.Tensor:
        from PIL import Image

        unit = self._unit_pixels(image)
        if not (unit.shape[2] == 1 and self.config.num_channels == 3):
            unit = self._to_channels(unit)  # colour to gray before resizing, as load_pixels gives it
        size = self.config.image_size
        mean = np.asarray(self.config.image_mean, dtype=np.float32)
        std = np.asarray(self.config.image_std, dtype=np.float32)
        h, w, c = unit.shape
        if self.config.resize_mode == "pad" and h != w:
            if c == 1 and len(set(mean.tolist())) != 1:
                unit = self._to_channels(unit)  # channels with different means pad with different values
                c = unit.shape[2]
            side = max(h, w)
            square = np.empty((side, side, c), dtype=np.float32)
            square[:] = mean[:c] if c == len(mean) else mean[0]  # the mean colour normalises to 0
            top, left = (side - h) // 2, (side - w) // 2
            square[top:top + h, left:left + w] = unit
            unit = square
        if unit.shape[:2] == (size, size):
            resized = np.moveaxis(unit, 2, 0)
        else:
            resized = np.stack([
                np.asarray(Image.fromarray(np.ascontiguousarray(unit[:, :, i])).resize((size, size),
                                                                                     Image.Resampling.BICUBIC))
                for i in range(unit.shape[2])], axis=0)
        resized = np.clip(resized, 0.0, 1.0)  # (C, size, size); bicubic overshoot clipped
        if resized.shape[0] != self.config.num_channels:
            resized = np.repeat(resized, self.config.num_channels, axis=0)
        normalised = (resized - mean[:, None, None]) / std[:, None, None]
        return torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32))

    def preprocess_images(self, images: Sequence[str | os.PathLike | np.ndarray]) -> torch.Tensor | None:
        """-> (num_images, C, H, W), or None for no images."""
        if not images:
            return None
        return torch.stack([self.preprocess_image(image) for image in images])

    # --- text ---------------------------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        """Text with `<image>` placeholders -> ids, each placeholder expanded to image_seq_length image tokens."""
        ids: list[int] = []
        pieces = text.split(IMAGE_PLACEHOLDER)
        for i, piece in enumerate(pieces):
            if i:
                ids += [self.image_token_id] * self.config.image_seq_length
            if piece:
                ids += self._piece_ids(piece)
        return ids

    _PIECE_MEMO_SIZE = 100_000

    def _piece_ids(self, piece: str) -> list[int]:
        """The ids of a text piece, remembered: chat template parts and prompts repeat in every sample."""
        memo = self._piece_memo
        if self._piece_memo_vocab != len(self.tokenizer):  # a token added since: forget everything
            memo.clear()
            self._piece_memo_vocab = len(self.tokenizer)
        found = memo.get(piece)
        if found is None:
            found = tuple(self.tokenizer(piece, add_special_tokens=False)["input_ids"])
            if len(memo) <= self._PIECE_MEMO_SIZE:
                memo[piece] = found
        return list(found)

    def _with_placeholders(self, messages: list, num_images: int, where: str) -> list:
        """Check the placeholder count; with none at all, prepend them to the first human turn (LLaVA's habit)."""
        per = self.config.images_per_placeholder
        count = sum(m.text.count(IMAGE_PLACEHOLDER) for m in messages)
        if count == 0 and num_images:
            if num_images % per:
                raise ValueError(f"{where}: {num_images} images, but each {IMAGE_PLACEHOLDER} takes {per}")
            first = next((i for i, m in enumerate(messages) if m.role == "human"), None)
            if first is None:
                raise ValueError(f"{where}: images given but the conversation has no human turn")
            messages = list(messages)
            m = messages[first]
            messages[first] = type(m)(m.role, f"{IMAGE_PLACEHOLDER}\n" * (num_images // per) + m.text)
        elif count * per != num_images:
            raise ValueError(
                f"{where}: the text has {count} {IMAGE_PLACEHOLDER} placeholder(s) but {num_images} image(s) were "
                f"given ({per} image(s) per placeholder with this connector); give one placeholder per image"
            )
        return messages

    def _arrange_pair(self, messages: list, images: list, where: str) -> tuple[list, list, list[bool] | None]:
        """Normalise a [current, prior] sample to this connector's convention (see the module docstring).
        -> (messages, images, prior_present)."""
        count = sum(m.text.count(IMAGE_PLACEHOLDER) for m in messages)
        if self.config.images_per_placeholder == 2:
            if not images:
                return messages, images, None
            if len(images) > 2:
                raise ValueError(f"{where}: {len(images)} images, but this model's pair connector takes the current "
                                 "image and at most one prior ([current, prior])")
            has_prior = len(images) == 2
            if count == 2 and has_prior:
                messages = _drop_second_placeholder(messages)
            elif count > 1:
                raise ValueError(f"{where}: {count} {IMAGE_PLACEHOLDER} placeholders for {len(images)} image(s); a "
                                 "pair connector takes [current, prior] at one placeholder (or one per image)")
            return messages, [images[0], images[1] if has_prior else images[0]], [has_prior]
        if len(images) == 2 and count == 1:  # Libra's shared placeholder: one per image for this connector
            messages = _add_second_placeholder(messages)
        return messages, images, None

    def encode(
        self,
        conversation: Sequence[Any],
        images: Sequence[str | os.PathLike | np.ndarray] = (),
        *,
        prior_image: str | os.PathLike | np.ndarray | None = None,
        add_generation_prompt: bool = False,
        truncate: bool = True,
        where: str = "sample",
        pixels: bool = True,
    ) -> EncodedSample:
        """A conversation (records' Turns, {"from", "value"} dicts or Messages) and its images -> EncodedSample.

        images: in placeholder order; [current, prior] for a temporal pair. prior_image: the prior given apart
        (a record's named `prior` key): the same as images=[current, prior_image].
        add_generation_prompt: the conversation ends with a human turn and the model is to answer (no labels).
        where: names the sample in error messages (e.g. "train.json record 17").
        pixels: False leaves pixel_values None (the images only set the placeholders: token counts, cached features).
        """
        images = list(images)
        if prior_image is not None:
            if len(images) != 1:
                raise ValueError(f"{where}: a prior image goes with exactly one current image, got {len(images)} "
                                 "images")
            images.append(prior_image)
        messages, images, prior_present = self._arrange_pair(to_messages(conversation), images, where)
        messages = self._with_placeholders(messages, len(images), where)
        segments = render(self.config.template, messages, tokenizer=self.tokenizer,
                          add_generation_prompt=add_generation_prompt, system_prompt=self.config.system_prompt)
        input_ids: list[int] = []
        labels: list[int] = []
        if self.template.add_bos and self.tokenizer.bos_token_id is not None:
            input_ids.append(self.tokenizer.bos_token_id)
            labels.append(IGNORE_INDEX)
        for segment in segments:
            ids = self._tokenize(segment.text)
            input_ids += ids
            labels += [i if segment.learn and i != self.image_token_id else IGNORE_INDEX for i in ids]
        if truncate and not add_generation_prompt and len(input_ids) > self.config.max_length:
            input_ids, labels = self._truncate(input_ids, labels, where)
        return EncodedSample(input_ids=input_ids, labels=None if add_generation_prompt else labels,
                             pixel_values=self.preprocess_images(images) if pixels else None,
                             prior_present=prior_present)

    def _truncate(self, input_ids: list[int], labels: list[int], where: str) -> tuple[list[int], list[int]]:
        max_length = self.config.max_length
        image_positions = [i for i, t in enumerate(input_ids) if t == self.image_token_id]
        if image_positions and image_positions[-1] >= max_length:
            raise ValueError(
                f"{where}: the image tokens end at position {image_positions[-1] + 1}, beyond max_length={max_length}"
                f"; raise max_length, use fewer images, or a connector with fewer tokens per image"
            )
        return input_ids[:max_length], labels[:max_length]

    def encode_prompt(self, prompt: str | None, images: Sequence[str | os.PathLike | np.ndarray] = (),
                      prior_image: str | os.PathLike | np.ndarray | None = None) -> EncodedSample:
        """One question (None or "" = images only, e.g. for report generation) -> a generation-ready sample."""
        return self.encode([{"from": "human", "value": prompt or ""}], images, prior_image=prior_image,
                           add_generation_prompt=True, where="prompt")

    # --- output -------------------------------------------------------------------------------------------
    @property
    def stop_token_ids(self) -> list[int]:
        """Token ids that end an answer (eos, and the template's end-of-turn marker)."""
        ids = []
        for text in self.template.stop_strings(self.tokenizer):
            token_id = self.tokenizer.convert_tokens_to_ids(text)
            if token_id is not None and token_id != self.tokenizer.unk_token_id and token_id not in ids:
                ids.append(token_id)
        return ids

    def decode(self, token_ids: Sequence[int] | torch.Tensor) -> str:
        """Generated ids -> answer text: stops at the first stop token, special tokens dropped, stripped."""
        ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
        stops = set(self.stop_token_ids)
        for i, t in enumerate(ids):
            if t in stops:
                ids = ids[:i]
                break
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def batch_decode(self, sequences) -> list[str]:
        return [self.decode(s) for s in sequences]

    # --- save / load --------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        atomic_write_json(directory / PROCESSOR_FILE, dataclasses.asdict(self.config))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **hub_options: Any) -> MedVLMProcessor:
        """Load from a local directory. hub_options: what AutoProcessor passes along; unused (no hub access)."""
        from transformers import AutoTokenizer

        directory = Path(directory)
        path = directory / PROCESSOR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no processor settings here; is {directory} a medvlm model directory?")
        settings = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(ProcessorConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"{path}: unknown processor settings {unknown}; known: {sorted(known)}")
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(directory), local_files_only=True)
        return cls(tokenizer, ProcessorConfig(**settings))
