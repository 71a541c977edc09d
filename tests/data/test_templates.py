"""Chat templates: the text each one renders and the spans it marks as learned."""

from __future__ import annotations

import pytest

from medvlm.data.templates import TEMPLATES, render

CONVERSATION = [
    {"from": "human", "value": "<image>\nIs there an effusion?"},
    {"from": "gpt", "value": "Yes, on the left."},
    {"from": "human", "value": "How large?"},
    {"from": "gpt", "value": "Small."},
]
CHATML_JINJA = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _learned(segments) -> list[str]:
    return [s.text for s in segments if s.learn]


def test_llava_v1_renders_the_vicuna_format(tokenizer):
    segments = render("llava_v1", CONVERSATION, tokenizer=tokenizer, system_prompt="SYS")
    assert "".join(s.text for s in segments) == (
        "SYS USER: <image>\nIs there an effusion? ASSISTANT: Yes, on the left.</s>"
        "USER: How large? ASSISTANT: Small.</s>"
    )
    assert _learned(segments) == [" Yes, on the left.</s>", " Small.</s>"]


def test_mistral_instruct_and_chatml_learn_only_the_answers(tokenizer):
    mistral = render("mistral_instruct", CONVERSATION, tokenizer=tokenizer)
    assert "".join(s.text for s in mistral).startswith("[INST] <image>\nIs there an effusion? [/INST] Yes")
    assert _learned(mistral) == [" Yes, on the left.</s>", " Small.</s>"]
    chatml = render("chatml", CONVERSATION, tokenizer=tokenizer)
    assert _learned(chatml) == ["Yes, on the left.<|im_end|>", "Small.<|im_end|>"]


def test_plain_keeps_the_images_and_the_caption_only(tokenizer):
    segments = render("plain", CONVERSATION[:2], tokenizer=tokenizer)
    assert [(s.text, s.learn) for s in segments] == [("<image>", False), ("Yes, on the left.</s>", True)]


def test_tokenizer_chat_template_is_split_into_the_same_spans():
    from medvlm.models import train_tokenizer

    own = train_tokenizer(["a b c"], vocab_size=300, min_frequency=1)
    own.chat_template = CHATML_JINJA
    segments = render("tokenizer", CONVERSATION, tokenizer=own)
    assert _learned(segments) == ["Yes, on the left.<|im_end|>\n", "Small.<|im_end|>\n"]
    prompt = render("tokenizer", CONVERSATION[:3], tokenizer=own, add_generation_prompt=True)
    assert "".join(s.text for s in prompt).endswith("How large?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name", sorted(set(TEMPLATES) - {"tokenizer"}))
def test_generation_prompt_is_the_training_prefix(tokenizer, name):
    """What the model sees before answering at inference is exactly what preceded the answer in training."""
    train = render(name, CONVERSATION[:2], tokenizer=tokenizer)
    prompt = render(name, CONVERSATION[:1], tokenizer=tokenizer, add_generation_prompt=True)
    first_learned = next(i for i, s in enumerate(train) if s.learn)
    assert [s.text for s in train[:first_learned]] == [s.text for s in prompt]


def test_conversations_must_alternate(tokenizer):
    with pytest.raises(ValueError, match="turn 1: expected a gpt turn"):
        render("chatml", [CONVERSATION[0], CONVERSATION[2]], tokenizer=tokenizer)
