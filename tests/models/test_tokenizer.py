"""train_tokenizer: a byte-level BPE learned from the training texts, with single-token specials."""

from __future__ import annotations

from medvlm.models import train_tokenizer

TEXTS = ["Small left pleural effusion.", "The cardiac silhouette is enlarged.", "No pneumothorax."] * 10


def test_specials_are_single_tokens_and_text_round_trips():
    tokenizer = train_tokenizer(TEXTS, vocab_size=300, min_frequency=1)
    for special in ("<pad>", "<s>", "</s>", "<image>", "<|im_start|>", "<|im_end|>"):
        assert len(tokenizer(special, add_special_tokens=False)["input_ids"]) == 1, special
    text = "Ünseen wörds, 12 mm nodule!\n<image> and émojis 🫁"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: nothing is unknown


def test_merges_come_from_the_texts_and_training_is_deterministic():
    first = train_tokenizer(TEXTS, vocab_size=500, min_frequency=1)
    second = train_tokenizer(TEXTS, vocab_size=500, min_frequency=1)
    assert first.get_vocab() == second.get_vocab()
    assert len(first) <= 500
    seen, unseen = "pleural effusion", "qlwvrxz jkbdumfy"  # same length, letters never seen together
    assert len(first(seen, add_special_tokens=False)["input_ids"]) < len(first(unseen, add_special_tokens=False)["input_ids"]) / 3


def test_the_tiny_preset_learns_its_chat_templates_words():
    """Trained on the turns alone, "assistant" took 6 tokens in every exchange; with the template's words (once per
    exchange, specials cut out as the tokenizer cuts them) each role name is one token."""
    from medvlm.models import build_model
    from medvlm.models.presets import TinyPresetConfig, template_texts

    assert template_texts("chatml", exchanges=3) == ["\nuser\n\n\n\nassistant\n\n\n"] * 3
    assert len(template_texts("mistral_instruct", exchanges=0)) == 2  # BPE's minimum frequency
    assert template_texts("plain", exchanges=5) == [] and template_texts("tokenizer", exchanges=5) == []
    texts = ["Is the heart enlarged?", "no", "Findings?", "Small left pleural effusion."] * 10
    bare = train_tokenizer(texts, vocab_size=1024)
    assert len(bare("assistant", add_special_tokens=False)["input_ids"]) > 3  # the defect this fixes
    for template, words in (("chatml", ["user", "assistant"]), ("llava_v1", ["USER", "ASSISTANT"])):
        _, processor = build_model(TinyPresetConfig(template=template), texts=texts)
        sample = processor.encode([{"from": "human", "value": "Is the heart enlarged?"}, {"from": "gpt", "value": "no"}],
                                  [], pixels=False)
        pieces = processor.tokenizer.convert_ids_to_tokens(sample.input_ids)
        for word in words:
            assert any(piece.lstrip("Ġ") == word for piece in pieces), (template, word, pieces)
