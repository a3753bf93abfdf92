"""The baseline users would otherwise write: FastAPI + transformers, one request -> one forward pass, fp32,
started with uvicorn. Deliberately plain (no batching, no ONNX), but not careless: the model loads once and
inference runs under `inference_mode` in FastAPI's thread pool.

    python -m serve_app.bench.naive_server MODEL_DIR --port 8100 [--max-length 128]
"""

from __future__ import annotations

import argparse

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class Request(BaseModel):
    texts: list[str]


def create_app(model_dir: str, max_length: int) -> FastAPI:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    labels = model.config.id2label
    app = FastAPI()

    @app.post("/classify")
    def classify(request: Request) -> dict:
        enc = tokenizer(request.texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        with torch.inference_mode():
            probs = torch.softmax(model(**enc).logits, dim=-1)
        return {"results": [{"label": labels[int(p.argmax())], "score": float(p.max())} for p in probs]}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model_dir, args.max_length), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
