"""Chat templates: render a conversation to text segments, each marked learned (assistant) or not.

Rendering per segment and tokenising per segment makes label masking exact: a token is learned iff it comes
from a learned segment. The same segments, up to the generation prompt, are what the model sees at inference.

Templates (the explicit table `TEMPLATES`):
  plain             LLaVA pretraining: the image placeholders, then the caption + eos (the human's words dropped)
  llava_v1          "<system> USER: <q> ASSISTANT: <a></s>USER: ..." (LLaVA v1 / Vicuna)
  mistral_instruct  "[INST] <q> [/INST] <a></s>[INST] ..." (the system prompt, if any, opens the first [INST])
  chatml            "<|im_start|>user\n<q><|im_end|>\n<|im_start|>assistant\n<a><|im_end|>\n" (the tiny preset)
  tokenizer         the tokenizer's own jinja chat template (`tokenizer.chat_template`), split into segments by
                    rendering growing prefixes of the conversation
Roles are records' "system", "human" and "gpt" ("user"/"assistant" accepted as aliases).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
ROLE_ALIASES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt", "system": "system"}
LLAVA_SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True)
class Message:
    role: str  # "system", "human" or "gpt"
    text: str


@dataclass(frozen=True)
class Segment:
    text: str
    learn: bool  # True: assistant text the loss is computed on


def to_messages(turns: Sequence[Any]) -> list[Message]:
    """Records' Turn objects, {"from"/"role", "value"/"content"} dicts or Messages -> Messages."""
    messages = []
    for i, turn in enumerate(turns):
        if isinstance(turn, Message):
            messages.append(turn)
            continue
        if isinstance(turn, dict):
            role, text = turn.get("from", turn.get("role")), turn.get("value", turn.get("content"))
        else:
            role, text = getattr(turn, "role", None), getattr(turn, "value", getattr(turn, "text", None))
        if role not in ROLE_ALIASES or not isinstance(text, str):
            raise ValueError(f"turn {i}: expected a role in {sorted(ROLE_ALIASES)} and a text, got {turn!r}")
        messages.append(Message(ROLE_ALIASES[role], text))
    return messages


def _split_system(messages: list[Message], default: str | None) -> tuple[str | None, list[Message]]:
    if messages and messages[0].role == "system":
        return messages[0].text, messages[1:]
    return default, messages


def _check_alternation(messages: list[Message]) -> None:
    for i, m in enumerate(messages):
        expected = "human" if i % 2 == 0 else "gpt"
        if m.role != expected:
            raise ValueError(f"turn {i}: expected a {expected} turn (conversations alternate human, gpt, ...), "
                             f"got {m.role!r}")


class PlainTemplate:
    """LLaVA's pretraining format: image placeholders, then the caption; the human's words are not shown."""

    name = "plain"
    add_bos = True

    def stop_strings(self, tokenizer) -> list[str]:
        return [tokenizer.eos_token] if tokenizer.eos_token else []

    def render(self, messages: list[Message], *, add_generation_prompt: bool, eos_token: str,
               system_prompt: str | None = None) -> list[Segment]:
        _, messages = _split_system(messages, None)
        _check_alternation(messages)
        segments = []
        for m in messages:
            if m.role == "human":
                segments.append(Segment(IMAGE_PLACEHOLDER * m.text.count(IMAGE_PLACEHOLDER), False))
            else:
                segments.append(Segment(m.text + eos_token, True))
        return segments


class LlavaV1Template:
    """LLaVA v1: "<system> USER: <q> ASSISTANT: <a></s>"; learned: " <a></s>"."""

    name = "llava_v1"
    add_bos = True

    def stop_strings(self, tokenizer) -> list[str]:
        return [tokenizer.eos_token] if tokenizer.eos_token else []

    def render(self, messages: list[Message], *, add_generation_prompt: bool, eos_token: str,
               system_prompt: str | None = None) -> list[Segment]:
        system, messages = _split_system(messages, system_prompt if system_prompt is not None else LLAVA_SYSTEM_PROMPT)
        _check_alternation(messages)
        segments, prefix = [], (system + " ") if system else ""
        for m in messages:
            if m.role == "human":
                segments.append(Segment(f"{prefix}USER: {m.text} ASSISTANT:", False))
                prefix = ""
            else:
                segments.append(Segment(f" {m.text}{eos_token}", True))
        return segments


class MistralInstructTemplate:
    """Mistral instruct: "[INST] <q> [/INST] <a></s>"; a system prompt opens the first [INST] block."""

    name = "mistral_instruct"
    add_bos = True

    def stop_strings(self, tokenizer) -> list[str]:
        return [tokenizer.eos_token] if tokenizer.eos_token else []

    def render(self, messages: list[Message], *, add_generation_prompt: bool, eos_token: str,
               system_prompt: str | None = None) -> list[Segment]:
        system, messages = _split_system(messages, system_prompt)
        _check_alternation(messages)
        segments = []
        for i, m in enumerate(messages):
            if m.role == "human":
                text = f"{system}\n\n{m.text}" if (i == 0 and system) else m.text
                segments.append(Segment(f"[INST] {text} [/INST]", False))
            else:
                segments.append(Segment(f" {m.text}{eos_token}", True))
        return segments


class ChatMLTemplate:
    """ChatML: "<|im_start|>user\\n<q><|im_end|>\\n<|im_start|>assistant\\n<a><|im_end|>\\n"; learned: "<a><|im_end|>"."""

    name = "chatml"
    add_bos = False
    start, end = "<|im_start|>", "<|im_end|>"

    def stop_strings(self, tokenizer) -> list[str]:
        return [self.end] + ([tokenizer.eos_token] if tokenizer.eos_token else [])

    def render(self, messages: list[Message], *, add_generation_prompt: bool, eos_token: str,
               system_prompt: str | None = None) -> list[Segment]:
        system, messages = _split_system(messages, system_prompt)
        _check_alternation(messages)
        segments, prefix = [], (f"{self.start}system\n{system}{self.end}\n" if system else "")
        for m in messages:
            if m.role == "human":
                segments.append(Segment(f"{prefix}{self.start}user\n{m.text}{self.end}\n{self.start}assistant\n", False))
                prefix = ""
            else:
                segments.append(Segment(f"{m.text}{self.end}", True))
                segments.append(Segment("\n", False))
        return segments


class TokenizerChatTemplate:
    """The tokenizer's own jinja template. Learned spans come from rendering growing prefixes of the conversation:
    the text an assistant turn adds after the generation prompt is learned. Needs a template whose rendering of a
    conversation starts with the rendering of each of its prefixes (true of common templates; checked)."""

    name = "tokenizer"
    add_bos = False  # such templates write their own bos text

    def stop_strings(self, tokenizer) -> list[str]:
        return [tokenizer.eos_token] if tokenizer.eos_token else []

    def render(self, messages: list[Message], *, add_generation_prompt: bool, eos_token: str,
               system_prompt: str | None = None, tokenizer=None) -> list[Segment]:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'tokenizer' needs a tokenizer with a chat_template; pick another template "
                             "(plain, llava_v1, mistral_instruct, chatml)")
        system, messages = _split_system(messages, system_prompt)
        _check_alternation(messages)
        hf = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user" if m.role == "human" else "assistant", "content": m.text} for m in messages
        ]
        offset = 1 if system else 0

        def render(upto: int, generation_prompt: bool) -> str:
            return tokenizer.apply_chat_template(hf[: offset + upto], tokenize=False,
                                                 add_generation_prompt=generation_prompt)

        segments, done = [], ""

        def emit(text: str, learn: bool) -> None:
            nonlocal done
            if not text.startswith(done):
                raise ValueError("the tokenizer's chat template does not render a conversation as an extension "
                                 "of its prefixes, so assistant spans cannot be found; pick another template")
            if len(text) > len(done):
                segments.append(Segment(text[len(done):], learn))
            done = text

        for i, m in enumerate(messages):
            if m.role == "gpt":
                emit(render(i, True), False)
                emit(render(i + 1, False), True)
        emit(render(len(messages), add_generation_prompt), False)
        return segments


# template name -> template. The one place templates are registered.
TEMPLATES = {
    "plain": PlainTemplate(),
    "llava_v1": LlavaV1Template(),
    "mistral_instruct": MistralInstructTemplate(),
    "chatml": ChatMLTemplate(),
    "tokenizer": TokenizerChatTemplate(),
}


def get_template(name: str):
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"chat template {name!r}: use one of {sorted(TEMPLATES)}") from None


def render(template_name: str, turns: Sequence[Any], *, tokenizer, add_generation_prompt: bool = False,
           system_prompt: str | None = None) -> list[Segment]:
    """Segments of a conversation under the named template (see the module docstring)."""
    template = get_template(template_name)
    messages = to_messages(turns)
    if add_generation_prompt and (not messages or messages[-1].role != "human"):
        raise ValueError("a generation prompt needs a conversation that ends with a human turn")
    kwargs = {"tokenizer": tokenizer} if isinstance(template, TokenizerChatTemplate) else {}
    return template.render(messages, add_generation_prompt=add_generation_prompt,
                           eos_token=tokenizer.eos_token or "", system_prompt=system_prompt, **kwargs)
