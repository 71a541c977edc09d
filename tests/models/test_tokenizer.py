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
