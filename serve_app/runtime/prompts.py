"""Prompts of a generation model, shared by every engine: the same article gives the same token ids whichever
engine decodes them (torch, llama.cpp), so answers and benchmarks compare like for like.

The Hugging Face tokenizer in the version's folder (with the model's chat template) makes the prompt ids and
decodes the answer; engines only see ids.
"""

from __future__ import annotations

import threading

from serve_app.runtime.processing import summary_messages

SEQ2SEQ_PREFIX = "summarize: "


class PromptedModel:
    """Token ids for summaries, chats and raw completions, and text back from ids. Subclasses set `tokenizer`,
    `model_limit` (positions one sequence may use), `max_length` (article tokens kept) and `stop_ids`."""

    seq2seq = False

    def _init_prompts(self, tokenizer, max_length: int | None, model_limit: int, stop_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        # Padding and truncation are state of the fast tokenizer's shared backend, set by each call (see
        # runtime/classifier.py): prompts tokenized on the event loop and a batch on a worker thread take turns.
        self.tokenizer_lock = threading.Lock()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_limit = model_limit
        self.max_length = min(max_length, model_limit) if max_length else model_limit
        self.stop_ids = {i for i in [*stop_ids, self.tokenizer.eos_token_id] if i is not None}

    def _prompt(self, text: str) -> tuple[str, bool, int]:
        """Cut the article (not the instructions) to max_length tokens and wrap it in the model's prompt."""
        with self.tokenizer_lock:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        truncated = len(ids) > self.max_length
        if truncated:
            text = self.tokenizer.decode(ids[: self.max_length], skip_special_tokens=True)
        n_in = min(len(ids), self.max_length)
        if self.seq2seq:
            return SEQ2SEQ_PREFIX + text, truncated, n_in
        if self.tokenizer.chat_template:
            prompt = self.tokenizer.apply_chat_template(summary_messages(text), tokenize=False,
                                                        add_generation_prompt=True)
        else:
            prompt = f"Article: {text}\nSummary:"
        return prompt, truncated, n_in

    def summary_prompt(self, text: str) -> tuple[list[int], bool, int]:
        """Token ids of the summary prompt for an article, whether it was cut, and the article's token count."""
        prompt, truncated, n_in = self._prompt(text)
        return self._ids(prompt), truncated, n_in

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        """Token ids of a chat (OpenAI `messages`) with the model's chat template, ready for the reply."""
        if not self.tokenizer.chat_template:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return self._ids(text)
        return self._ids(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def completion_prompt(self, prompt: str) -> list[int]:
        """Token ids of a raw prompt (OpenAI `completions`), no template."""
        return self._ids(prompt)

    def _ids(self, text: str) -> list[int]:
        # Templates and raw prompts already hold whatever special tokens the model expects.
        with self.tokenizer_lock:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)
