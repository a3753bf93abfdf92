"""GPU path check: the runtimes load in fp16 on CUDA, agree with fp32, and how fast they are (one short run), and
the summarizer on vLLM where vLLM is installed (P8).

Runs where only torch + transformers exist (the lent GPU machines have no Ray): it builds MiniLM-sized and
SmolLM2-sized random-weight models from configs, with the real tokenizers from `--tokenizers` (copied by
gpu_check.sh), so no weights need to travel.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM  # noqa: E402

from serve_app.runtime.classifier import TextClassifier  # noqa: E402
from serve_app.runtime.placement import Placement  # noqa: E402
from serve_app.runtime.summarizer import TextSummarizer  # noqa: E402


def median_ms(fn, n=10):
    fn()
    times = []
    for _ in range(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizers", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu-check"))
    args = ap.parse_args()
    assert torch.cuda.is_available(), "no CUDA device visible"
    torch.manual_seed(0)
    labels = ["business", "entertainment", "politics", "sports", "tech"]
    clf_dir, sum_dir = args.work / "clf", args.work / "sum"
    BertForSequenceClassification(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                             intermediate_size=1536, num_labels=5,
                                             id2label=dict(enumerate(labels)),
                                             label2id={n: i for i, n in enumerate(labels)})).save_pretrained(clf_dir)
    for f in (args.tokenizers / "minilm").iterdir():
        (clf_dir / f.name).write_bytes(f.read_bytes())
    LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                 num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
                                 bos_token_id=1, eos_token_id=2, pad_token_id=2)).save_pretrained(sum_dir)
    for f in (args.tokenizers / "smollm2").iterdir():
        (sum_dir / f.name).write_bytes(f.read_bytes())

    texts = [f"Article {i}: shares rose sharply as the bank reported profits. " * 20 for i in range(16)]
    gpu16 = TextClassifier(clf_dir, 256)
    assert gpu16.placement == Placement("cuda", torch.float16), gpu16.placement
    gpu32 = TextClassifier(clf_dir, 256, Placement("cuda", torch.float32))
    agree = sum(a["label"] == b["label"] for a, b in zip(gpu16.predict(texts), gpu32.predict(texts)))
    report = {
        "device": torch.cuda.get_device_name(),
        "classifier_fp16_fp32_label_agreement": f"{agree}/16",
        "classify_1_fp16_ms": median_ms(lambda: gpu16.predict(texts[:1])),
        "classify_16_fp16_ms": median_ms(lambda: gpu16.predict(texts, 16)),
        "classify_16_fp32_ms": median_ms(lambda: gpu32.predict(texts, 16)),
    }
    summ = TextSummarizer(sum_dir, 1024)
    assert summ.placement.dtype == torch.float16
    out = summ.summarize(texts[:1], [32])[0]
    report["summarize_1_fp16_ms_32_tokens"] = median_ms(lambda: summ.summarize(texts[:1], [32]), n=3)
    report["summarize_generated_tokens"] = out["generated_tokens"]
    # The sidecar's GPU path (NVML): the metric lines it would export on this machine.
    from prometheus_client import CollectorRegistry, generate_latest

    from serve_app.ops.sidecar import SidecarCollector

    registry = CollectorRegistry()
    registry.register(SidecarCollector(None))
    report["sidecar_gpu_lines"] = [line for line in generate_latest(registry).decode().splitlines()
                                   if line.startswith("gateway_gpu")]
    report["vllm"] = vllm_check(sum_dir, texts)
    print(json.dumps(report, indent=2))


def vllm_check(sum_dir: Path, texts: list[str]) -> dict:
    """P8: the summarizer on vLLM (fp16, CUDA graphs) through the gateway's engine class: tokens/s at 1 and 8
    streams and the first token's time. The GPU image has no vLLM and its wheel exceeds what a call can carry;
    where it is missing, the report says so."""
    import importlib.util
    import threading

    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vllm is not installed on this machine"}
    from serve_app.dataplane.generation import SamplingParams
    from serve_app.runtime.engines import Sequence
    from serve_app.runtime.vllm_summarizer import VllmSummarizer

    runtime = VllmSummarizer(sum_dir, 256)
    engine = runtime.start_engine(8)
    try:
        def run(batch: list[str]) -> tuple[int, float, float]:
            events, finished, started = [], [threading.Event() for _ in batch], time.perf_counter()
            for text, done in zip(batch, finished):
                def sink(event, done=done):
                    events.append((time.perf_counter(), event))
                    if event["type"] == "done":
                        done.set()
                engine.submit(Sequence(runtime.summary_prompt(text)[0], SamplingParams(64), sink))
            for done in finished:
                done.wait(120)
            tokens = sum(e["completion_tokens"] for _, e in events if e["type"] == "done")
            first = min(t for t, e in events if e["type"] == "token") - started
            return tokens, time.perf_counter() - started, first

        run(texts[:1])
        one, eight = run(texts[1:2]), run(texts[2:10])
        return {"dtype": runtime.dtype, "tokens_per_s_c1": one[0] / one[1], "ttft_c1_s": one[2],
                "tokens_per_s_c8": eight[0] / eight[1], "p5_c8_over_c1": (eight[0] / eight[1]) / (one[0] / one[1])}
    finally:
        engine.close()


if __name__ == "__main__":
    main()
