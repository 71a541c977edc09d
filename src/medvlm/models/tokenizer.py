"""Train a small byte-level BPE tokenizer on the training texts (the `tiny` preset's tokenizer).

Byte-level: every string round-trips, nothing is unknown. The special tokens are single tokens that BPE never
splits: pad, bos, eos, `<image>` and the chat-template markers (ChatML's `<|im_start|>` / `<|im_end|>`).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
IMAGE_TOKEN = "<image>"
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, *CHAT_TOKENS)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with `vocab_size` entries (at most) learned from `texts`.

    Ids 0..5 are <pad>, <s>, </s>, <image>, <|im_start|>, <|im_end|>; then the 256 byte symbols; then merges.
    Deterministic: the same texts give the same tokenizer.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 256 + 1:
        raise ValueError(f"vocab_size={vocab_size} is too small: a byte-level BPE needs more than "
                         f"{len(SPECIAL_TOKENS) + 256} entries (specials + 256 bytes)")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        additional_special_tokens=[IMAGE_TOKEN, *CHAT_TOKENS],
        clean_up_tokenization_spaces=False,
    )
