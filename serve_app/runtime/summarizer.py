"""Summarizer runtime on torch: a causal chat LM such as SmolLM2, or a seq2seq checkpoint folder."""

from __future__ import annotations

from pathlib import Path

import torch

from serve_app.runtime.classifier import load_torch_model
from serve_app.runtime.placement import Placement, check_model_folder, pick_placement
from serve_app.runtime.processing import chunks, cut_generation
from serve_app.runtime.prompts import PromptedModel
from serve_app.runtime.variant import read_variant


class TextSummarizer(PromptedModel):
    """The torch runtime of a summarizer (a Hugging Face folder): the continuous-batching engine for decoder-only
    models, static greedy `summarize` batches for seq2seq ones (synchronous: run it in a worker thread)."""

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
        tokenizer = AutoTokenizer.from_pretrained(path)
        # Batched decoder-only generation needs left padding so every prompt ends where generation starts.
        tokenizer.padding_side = "right" if self.seq2seq else "left"
        model_limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 1024)
        eos = self.model.generation_config.eos_token_id
        self._init_prompts(tokenizer, max_length, model_limit, set(eos if isinstance(eos, list) else [eos]))
        self.do_sample = do_sample

    def start_engine(self, max_running: int, prefill_chunk: int | None = None, on_change=None,
                     reuse_prompts: bool = False):  # noqa: ARG002 - the torch engine keeps no prompt cache
        """The torch continuous-batching engine over this model (decoder-only models only)."""
        from serve_app.runtime.engines.torch_engine import TorchEngine

        if self.seq2seq:
            raise ValueError("continuous batching needs a decoder-only model")
        return TorchEngine(self.model, self.decode, self.stop_ids, max_running, prefill_chunk or 64,
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
