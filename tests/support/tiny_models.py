"""Tiny random-weight models with the real tokenizers, for plumbing tests (built in seconds, never trained)."""

from __future__ import annotations

import shutil
from pathlib import Path

from serve_app.builders.sources import minilm_dir

TINY_LABELS = ["alpha", "beta", "gamma"]
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def build_tiny_classifier(out: Path, seed: int = 0, initializer_range: float = 0.02, hidden_size: int = 32,
                          num_hidden_layers: int = 2) -> Path:
    """`initializer_range` well above BERT's 0.02 gives a random model whose predictions vary with the text;
    `hidden_size` 384 and 6 layers make one as slow as MiniLM (a slow variant for selection tests)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                     num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=128,
                     num_labels=len(TINY_LABELS),
                     initializer_range=initializer_range,
                     id2label=dict(enumerate(TINY_LABELS)), label2id={n: i for i, n in enumerate(TINY_LABELS)})
    BertForSequenceClassification(cfg).save_pretrained(out)
    for name in _TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, out / name)
    return out


def build_tiny_summarizer(out: Path, tokenizer_dir: Path, seed: int = 0, initializer_range: float = 0.02,
                          tie_word_embeddings: bool = True) -> Path:
    """A 2-layer llama with SmolLM2's tokenizer and chat template. With the defaults it repeats one token; untied
    embeddings and a wider `initializer_range` give varied text (what streaming and stop-string tests need)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=tie_word_embeddings, initializer_range=initializer_range, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_seq2seq(out: Path, seed: int = 0) -> Path:
    """A 1+1-layer BART with the MiniLM (BERT WordPiece) tokenizer: a seq2seq summarizer without a chat template."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    # BERT vocabulary ids: [PAD]=0, [CLS]=101, [SEP]=102.
    cfg = BartConfig(vocab_size=30522, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                     pad_token_id=0, bos_token_id=101, eos_token_id=102, decoder_start_token_id=102,
                     forced_eos_token_id=None)
    BartForConditionalGeneration(cfg).save_pretrained(out)
    for name in _TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, out / name)
    return out
