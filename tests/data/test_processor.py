"""MedVLMProcessor: image tensors, <image> expansion, label masking, truncation, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medvlm.data.processor import IGNORE_INDEX, MedVLMProcessor

CONVERSATION = [
    {"from": "human", "value": "<image>\nIs there an effusion?"},
    {"from": "gpt", "value": "Yes, on the left."},
    {"from": "human", "value": "How large?"},
    {"from": "gpt", "value": "Small."},
]


def _learned_text(processor, sample) -> str:
    ids = [i for i, label in zip(sample.input_ids, sample.labels, strict=True) if label != IGNORE_INDEX]
    return processor.tokenizer.decode(ids)


@pytest.mark.parametrize(("template", "learned"), [
    ("chatml", "Yes, on the left.<|im_end|>Small.<|im_end|>"),
    ("llava_v1", " Yes, on the left.</s> Small.</s>"),
    ("mistral_instruct", " Yes, on the left.</s> Small.</s>"),
])
def test_only_assistant_tokens_are_learned(make_processor, template, learned):
    processor = make_processor(template=template)
    sample = processor.encode(CONVERSATION, [np.zeros((8, 8), np.uint8)])
    assert _learned_text(processor, sample) == learned
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token


def test_each_placeholder_becomes_image_seq_length_unlearned_image_tokens(make_processor):
    processor = make_processor(image_seq_length=5)
    sample = processor.encode(CONVERSATION, [np.zeros((8, 8), np.uint8)])
    positions = [i for i, t in enumerate(sample.input_ids) if t == processor.image_token_id]
    assert len(positions) == 5 and positions == list(range(positions[0], positions[0] + 5))
    assert all(sample.labels[i] == IGNORE_INDEX for i in positions)
    assert sample.pixel_values.shape == (1, 3, 16, 16)


def test_missing_placeholders_are_prepended_and_wrong_counts_refused(make_processor):
    processor = make_processor()
    images = [np.zeros((8, 8), np.uint8)] * 2
    sample = processor.encode([{"from": "human", "value": "Compare."}, {"from": "gpt", "value": "Stable."}], images)
    assert sample.input_ids.count(processor.image_token_id) == 8
    with pytest.raises(ValueError, match="record 7: the text has 1 <image> placeholder"):
        processor.encode(CONVERSATION, images * 2, where="record 7")  # (2 images at 1 placeholder: a Libra pair)


def test_truncation_keeps_the_images_and_refuses_when_they_do_not_fit(make_processor):
    long_answer = [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "effusion " * 200}]
    image = [np.zeros((8, 8), np.uint8)]
    sample = make_processor(max_length=40).encode(long_answer, image)
    assert len(sample.input_ids) == len(sample.labels) == 40
    assert sample.input_ids.count(make_processor().image_token_id) == 4
    with pytest.raises(ValueError, match="beyond max_length=6"):
        make_processor(max_length=6).encode(long_answer, image)


def test_generation_prompt_has_no_labels_and_ends_before_the_answer(make_processor):
    processor = make_processor()
    prompt = processor.encode_prompt("Is there an effusion?", [np.zeros((8, 8), np.uint8)])
    train = processor.encode(CONVERSATION[:2], [np.zeros((8, 8), np.uint8)])
    assert prompt.labels is None
    assert train.input_ids[: len(prompt.input_ids)] == prompt.input_ids


def test_gray_becomes_three_channels_and_pad_keeps_the_aspect_ratio(make_processor):
    processor = make_processor(image_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3, resize_mode="pad")
    wide = np.full((8, 32), 255, np.uint8)  # white, 4x wider than tall
    pixels = processor.preprocess_image(wide)
    assert pixels.shape == (3, 16, 16)
    assert torch.equal(pixels[0], pixels[1]) and torch.equal(pixels[0], pixels[2])
    assert pixels[:, 0].abs().max() < 1e-5  # padding rows hold the mean colour -> 0
    assert pixels[:, 8].min() > 0.99  # the image band in the middle stays white (1.0 after normalisation)
    stretched = make_processor(image_size=16, resize_mode="stretch").preprocess_image(wide)
    assert stretched.min() > 0.99


def _reference_preprocess(processor, pixels: np.ndarray) -> torch.Tensor:
    """The plain definition: every channel padded and resized on its own, clipped, normalised."""
    config = processor.config
    unit = processor.load_pixels(pixels)
    mean, std = np.asarray(config.image_mean, np.float32), np.asarray(config.image_std, np.float32)
    if config.resize_mode == "pad":
        h, w, c = unit.shape
        side = max(h, w)
        square = np.empty((side, side, c), np.float32)
        square[:] = mean
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = unit
        unit = square
    size = config.image_size
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(unit[:, :, i])).resize((size, size),
                                                                                    Image.Resampling.BICUBIC))
                for i in range(unit.shape[2])]
    resized = np.clip(np.stack(channels), 0, 1)
    return torch.from_numpy(((resized - mean[:, None, None]) / std[:, None, None]).astype(np.float32))


@pytest.mark.parametrize("mean", [[0.5] * 3, [0.48, 0.45, 0.41]])
@pytest.mark.parametrize("mode", ["pad", "stretch"])
@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 3), (10, 14), (14, 10, 3), (40, 40), (16, 16, 1)])
def test_fast_paths_give_the_plain_definitions_numbers(make_processor, mean, mode, shape):
    """Gray resized once then repeated, and no resampling at the target size: bit-identical to the definition."""
    processor = make_processor(image_size=16, image_mean=mean, image_std=[0.26, 0.25, 0.27], resize_mode=mode)
    pixels = np.random.default_rng(0).random(shape).astype(np.float32)
    assert torch.equal(processor.preprocess_image(pixels), _reference_preprocess(processor, pixels))


def test_image_cache_returns_the_same_tensors_and_keeps_gray_once(make_processor, tmp_path):
    from medvlm.data.processor import ImageCache

    Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 24), dtype=np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    plain = make_processor()
    cached = make_processor()
    cached.image_cache = ImageCache(max_bytes=2 * 16 * 16 * 4 * 3)
    for name in ("g.png", "c.png", "g.png", "c.png"):
        first = cached.preprocess_image(tmp_path / name)
        assert torch.equal(first, plain.preprocess_image(tmp_path / name))
        first += 1  # a caller changing its tensor does not change the cache
    assert (cached.image_cache.hits, cached.image_cache.misses) == (2, 2)
    assert cached.image_cache.bytes == 16 * 16 * 4 * (1 + 3)  # the gray image once, the colour one in full
    other = make_processor(image_size=8)  # other settings sharing the cache get their own entries
    other.image_cache = cached.image_cache
    assert torch.equal(other.preprocess_image(tmp_path / "g.png"), make_processor(image_size=8).preprocess_image(
        tmp_path / "g.png")) and other.image_cache.misses == 3
    small = ImageCache(max_bytes=16 * 16 * 4)  # room for one gray image
    small.put("a", plain.preprocess_image(tmp_path / "c.png"))
    assert small.bytes == 0 and small.get("a") is None  # too large: not kept, nothing lost


def test_text_pieces_are_tokenized_once_and_forgotten_when_the_vocabulary_grows(make_processor):
    processor = make_processor()
    image = [np.zeros((8, 8), np.uint8)]
    first = processor.encode(CONVERSATION, image).input_ids
    piece = "Yes, on the left.<|im_end|>"  # one of the pieces the chat template cuts the turns into
    assert piece in processor._piece_memo
    processor._piece_memo[piece] = (0,)  # a wrong entry shows whether the memo answers
    assert processor.encode(CONVERSATION, image).input_ids != first
    processor._piece_memo_vocab -= 1  # as if a token had been added since: the memo is forgotten
    assert processor.encode(CONVERSATION, image).input_ids == first


def test_files_are_read_with_their_bit_depth(make_processor, tmp_path):
    processor = make_processor(image_size=8, image_mean=[0.0] * 3, image_std=[1.0] * 3, resize_mode="stretch")
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "white16.png")
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "gray_rgb.png")
    assert torch.allclose(processor.preprocess_image(tmp_path / "white16.png"), torch.ones(3, 8, 8))
    assert torch.allclose(processor.preprocess_image(tmp_path / "gray_rgb.png"), torch.full((3, 8, 8), 128 / 255))


def test_real_jpeg_pair_from_libra(realdata, make_processor):
    processor = make_processor(image_size=32)
    folder = realdata / "libra_example"
    sample = processor.encode([{"from": "human", "value": "<image> current, <image> prior: changes?"}],
                              [folder / "current.jpg", folder / "prior.jpg"], add_generation_prompt=True)
    assert sample.pixel_values.shape == (2, 3, 32, 32)
    assert -1.0 <= float(sample.pixel_values.min()) < float(sample.pixel_values.max()) <= 1.0
    assert not torch.equal(sample.pixel_values[0], sample.pixel_values[1])


def test_float_pixels_outside_the_unit_range_are_refused(make_processor):
    with pytest.raises(ValueError, match=r"float pixels must lie in \[0, 1\], found -1000..400"):
        make_processor().preprocess_image(np.array([[-1000.0, 400.0]], np.float32))


def test_save_and_load_give_the_same_encoding(make_processor, tmp_path):
    processor = make_processor(template="llava_v1", system_prompt="Be brief.", max_length=99)
    processor.save_pretrained(tmp_path)
    loaded = MedVLMProcessor.from_pretrained(tmp_path)
    assert loaded.config == processor.config
    image = [np.arange(64, dtype=np.uint8).reshape(8, 8)]
    a, b = processor.encode(CONVERSATION, image), loaded.encode(CONVERSATION, image)
    assert a.input_ids == b.input_ids and a.labels == b.labels
    assert torch.equal(a.pixel_values, b.pixel_values)


def test_decode_stops_at_the_end_of_turn(make_processor):
    processor = make_processor()
    ids = processor.tokenizer("Small.<|im_end|>\nignored", add_special_tokens=False)["input_ids"]
    assert processor.decode(ids) == "Small."
