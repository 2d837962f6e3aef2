"""One prompt renderer for every command: task template → system prompt → chat template; and the stop tokens.

A :class:`Renderer` turns a :class:`~urlvr.types.Problem` into the text the model reads, the same way in
``urlvr train``, ``eval``, ``ttt``, ``collapse-step``, ``rank``, ``reproduce`` and the TRL adapter:

1. the task's template (``task.prompt(problem)``, e.g. ``"{question}\\nPlease reason step by step ..."``);
2. ``chat``: ``auto`` (default) uses the tokenizer's chat template when it has one, ``on`` requires one,
   ``off`` never uses it. With the chat template the task text is the user turn, the system prompt (if
   any) the system turn, and the generation prompt (assistant header) is appended. Without it, a system
   prompt is prepended as ``SYSTEM\\n\\n``;
3. BOS once: when the tokenizer adds BOS itself on encoding and the chat template wrote it too, the
   rendered text drops the template's copy.

:func:`stop_token_ids` is the set generation stops at: the tokenizer's EOS, the model's generation-config
EOS ids, and the chat end-of-turn tokens the vocabulary has (``<|im_end|>``, ``<|eot_id|>``,
``<end_of_turn>``, ``<|end|>``).

>>> from urlvr.testbed.tokenizer import char_tokenizer
>>> from urlvr.tasks import get_task
>>> task = get_task("arithmetic")
>>> r = Renderer(task.prompt, char_tokenizer(), chat="auto", system_prompt="Be exact.")
>>> r.uses_chat, r(task.examples("test", 1)[0].problem).startswith("Be exact.\\n\\n")
(False, True)
"""

from __future__ import annotations

from typing import Any, Callable

from urlvr.config import CHAT_MODES
from urlvr.errors import UrlvrError
from urlvr.types import Problem

__all__ = ["CHAT_MODES", "END_OF_TURN", "Renderer", "stop_token_ids"]

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
"""End-of-turn tokens of common chat templates; generation stops at those a vocabulary has."""


class Renderer:
    """``problem -> prompt text`` for one task and tokenizer (see the module docstring)."""

    def __init__(self, template: Callable[[Problem], str], tokenizer: Any, chat: str = "auto",
                 system_prompt: str | None = None):
        if chat not in CHAT_MODES:
            raise UrlvrError(f"chat={chat!r} is not one of: {', '.join(CHAT_MODES)}")
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat == "on" and not has_template:
            raise UrlvrError("chat=on but the model's tokenizer has no chat template; use chat=auto or chat=off")
        self.template, self.tokenizer = template, tokenizer
        self.chat, self.system_prompt = chat, system_prompt or None
        self.uses_chat = has_template and chat != "off"
        bos = getattr(tokenizer, "bos_token", None)
        self._bos = bos if bos and self.uses_chat and _adds_bos(tokenizer) else None

    def __call__(self, problem: Problem) -> str:
        text = self.template(problem)
        if not self.uses_chat:
            return f"{self.system_prompt}\n\n{text}" if self.system_prompt else text
        turns = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        turns.append({"role": "user", "content": text})
        out = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return out[len(self._bos):] if self._bos and out.startswith(self._bos) else out  # the encoder adds BOS

    def describe(self, problem: Problem) -> dict[str, Any]:
        """What a run records about its rendering: mode, system prompt and the rendered first prompt."""
        return {"chat": self.chat, "uses_chat_template": self.uses_chat, "system_prompt": self.system_prompt,
                "rendered": self(problem)}


def _adds_bos(tokenizer: Any) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    return bos_id is not None and tokenizer("x")["input_ids"][:1] == [bos_id]


def stop_token_ids(tokenizer: Any, model: Any = None) -> tuple[int, ...]:
    """Token ids generation stops at: EOS, the generation config's EOS ids, chat end-of-turn tokens in the vocabulary."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
    ids += [int(i) for i in (extra if isinstance(extra, (list, tuple)) else [extra]) if i is not None]
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN if t in vocab]
    return tuple(dict.fromkeys(ids))
