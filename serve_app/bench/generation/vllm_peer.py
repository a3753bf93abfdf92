"""vLLM standalone, the generation bench's second peer engine: a child process of the bench (no Ray, no gateway
code in its path), which sends it runs as JSON lines on stdin and reads one JSON line back per run.

    {"prompts": [[ids], ...], "concurrency": 8, "max_new_tokens": 64}
    -> {"tokens": 512, "seconds": 9.1, "ttft_s": {"0": 0.41, ...}}

The engine is vLLM's own `AsyncLLM` at the best settings measured here and those vLLM's CPU guide recommends
(bf16 on a CPU with AMX, torch.compile on, tcmalloc and Intel OpenMP preloaded, `max_num_seqs` = the run's
concurrency, prefix caching on, `VLLM_CPU_KVCACHE_SPACE` and the OpenMP threads bound to the bench's threads:
serve_app/runtime/engines/vllm_engine.py's `cpu_environment`); requests come from a closed loop of `concurrency`
clients, as for the gateway, with the same prompt token ids and greedy decoding up to the same token limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time


async def closed_loop(llm, prompts: list[list[int]], concurrency: int, max_new_tokens: int, stop: list[int]):
    """The run through the bench's one load generator (bench/load.py), as the gateway's runs are driven."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    from serve_app.bench import load

    params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0, stop_token_ids=stop, detokenize=False,
                            output_kind=RequestOutputKind.DELTA)

    async def one(i: int) -> tuple[int, float]:
        started, first, tokens = time.perf_counter(), None, 0
        async for out in llm.generate({"prompt_token_ids": prompts[i]}, params, f"r{time.time_ns()}-{i}"):
            got = [t for t in out.outputs[0].token_ids if t not in stop]  # the gateway counts no stop token
            if first is None and out.outputs[0].token_ids:
                first = time.perf_counter() - started
            tokens += len(got)
        return tokens, first if first is not None else time.perf_counter() - started

    sample = await load.closed_loop(one, concurrency, max_requests=len(prompts), timeout_s=600.0)
    if sample.errors:
        raise RuntimeError(f"{sample.errors} vLLM requests failed; the first: {sample.first_error}")
    return {"tokens": sum(got for _, (got, _) in sample.answers.values()), "seconds": sample.seconds,
            "ttft_s": {i: ttft for i, (_, (_, ttft)) in sample.answers.items()}}


async def serve(folder: str, dtype: str, compiled: bool, threads: int, max_running: int, stop: list[int],
                out) -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    from serve_app.runtime.engines.vllm_engine import cpu_environment

    os.environ.update(cpu_environment(threads, 1.0))
    llm = AsyncLLM.from_engine_args(AsyncEngineArgs(model=folder, dtype=dtype, max_num_seqs=max_running,
                                                    max_model_len=2048, enforce_eager=not compiled,
                                                    enable_prefix_caching=True, seed=0))
    print(json.dumps({"ready": True}), file=out, flush=True)
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            run = json.loads(line)
            result = await closed_loop(llm, run["prompts"], run["concurrency"], run["max_new_tokens"], stop)
            print(json.dumps(result), file=out, flush=True)
    finally:
        llm.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--dtype", default="bfloat16", help="float32, bfloat16 or float16")
    parser.add_argument("--eager", action="store_true", help="no torch.compile (starts faster, runs slower)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-running", type=int, default=8)
    parser.add_argument("--stop", type=int, nargs="*", default=[])
    args = parser.parse_args()
    # Answers go to the real stdout; vLLM's own logging (stdout by default) goes to stderr with the rest.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    asyncio.run(serve(args.folder, args.dtype, not args.eager, args.threads, args.max_running, args.stop, out))


if __name__ == "__main__":  # vLLM's engine core is a spawned process: it re-imports this module
    main()
