"""Summarizer runtime: a causal chat LM such as SmolLM2, or a seq2seq checkpoint folder."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from serve_app.runtime.classifier import load_torch_model
from serve_app.runtime.placement import Placement, check_model_folder, pick_placement
from serve_app.runtime.processing import chunks, cut_generation, summary_messages
from serve_app.runtime.variant import read_variant

SEQ2SEQ_PREFIX = "summarize: "


class TextSummarizer:
    """Greedy (deterministic) summaries. `summarize` is synchronous and meant to run in a worker thread."""

    def __init__(self, path: Path, max_length: int | None = None, placement: Placement | None = None,
                 do_sample: bool = False):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        check_model_folder(path)
        self.placement = placement or pick_placement()
        cfg = AutoConfig.from_pretrained(path)
        self.seq2seq = bool(getattr(cfg, "is_encoder_decoder", False))
        auto = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.variant = read_variant(path)
        if self.variant.runtime != "torch" or self.variant.pruned_heads:
            raise ValueError(f"{path}: summarizers run on torch without removed heads; this variant is "
                             f"{self.variant.transforms}")
        self.model = load_torch_model(path, self.variant, self.placement, auto).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # Padding is state of the fast tokenizer's shared backend, set by each call (see runtime/classifier.py):
        # prompts tokenized on the event loop and a batch padded on a worker thread take turns.
        self.tokenizer_lock = threading.Lock()
        # Batched decoder-only generation needs left padding so every prompt ends where generation starts.
        self.tokenizer.padding_side = "right" if self.seq2seq else "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model_limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 1024)
        self.model_limit = model_limit
        self.max_length = min(max_length, model_limit) if max_length else model_limit
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
        self.do_sample = do_sample

    def _prompt(self, text: str) -> tuple[str, bool, int]:
        """Cut the article (not the instructions) to max_length tokens and wrap it in the model's prompt."""
        with self.tokenizer_lock:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        truncated = len(ids) > self.max_length
        if truncated:
            text = self.tokenizer.decode(ids[: self.max_length], skip_special_tokens=True)
        if self.seq2seq:
            return SEQ2SEQ_PREFIX + text, truncated, min(len(ids), self.max_length)
        if self.tokenizer.chat_template:
            prompt = self.tokenizer.apply_chat_template(summary_messages(text), tokenize=False,
                                                        add_generation_prompt=True)
        else:
            prompt = f"Article: {text}\nSummary:"
        return prompt, truncated, min(len(ids), self.max_length)

    # -- prompts for the generation engine (decoder-only models) ---------------------------------------------
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

    def start_engine(self, max_running: int, prefill_chunk: int, on_change=None):
        """The continuous-batching engine over this model (decoder-only models only)."""
        from serve_app.runtime.generation import GenerationEngine

        if self.seq2seq:
            raise ValueError("continuous batching needs a decoder-only model")
        return GenerationEngine(self.model, self.decode, self.stop_ids, max_running, prefill_chunk,
                                self.placement.device, on_change)

    @torch.inference_mode()
    def summarize(self, texts: list[str], max_new_tokens: list[int], micro_batch: int = 4) -> list[dict]:
        prompts = [self._prompt(t) for t in texts]
        results: list[dict] = []
        for start, chunk in zip(range(0, len(texts), micro_batch), chunks(prompts, micro_batch)):
            limits = max_new_tokens[start : start + len(chunk)]
            # Chat templates already hold the special tokens the model expects.
            with self.tokenizer_lock:
                enc = self.tokenizer([p for p, _, _ in chunk], return_tensors="pt", padding=True,
                                     add_special_tokens=self.seq2seq, return_token_type_ids=False)
            enc = enc.to(self.placement.device)
            out = self.model.generate(**enc, max_new_tokens=max(limits), do_sample=self.do_sample,
                                      pad_token_id=self.tokenizer.pad_token_id)
            generated = out if self.seq2seq else out[:, enc["input_ids"].shape[1]:]
            for row, (_, truncated, n_in), limit in zip(generated.tolist(), chunk, limits):
                if self.seq2seq and row and row[0] == self.model.config.decoder_start_token_id:
                    row = row[1:]
                kept, reason = cut_generation(row, limit, self.stop_ids)
                results.append({
                    "summary": self.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                    "truncated": truncated,
                    "input_tokens": n_in,
                    "generated_tokens": len(kept),
                    "finish_reason": reason,
                })
        return results
