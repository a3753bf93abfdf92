"""Classify texts with an ONNX model and its tokenizer; needs only onnxruntime, tokenizers and numpy.

    python run.py "first text" "second text"     or one text per line on stdin
Prints one JSON object per text: {"label": ..., "score": ..., "probabilities": {...}}.
This file is copied into edge bundles by `gateway edge-bundle`; it must not import the gateway.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent


class EdgeClassifier:
    def __init__(self, folder: Path = HERE, threads: int = 0):
        meta = json.loads((folder / "labels.json").read_text())
        self.labels = meta["labels"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(meta["max_length"])
        self.tokenizer.enable_padding(pad_id=meta["pad_id"], pad_token=meta["pad_token"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def classify(self, texts):
        encodings = self.tokenizer.encode_batch(list(texts))
        arrays = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                  "token_type_ids": [e.type_ids for e in encodings]}
        feed = {name: np.asarray(arrays[name], dtype=np.int64) for name in self.inputs}
        logits = self.session.run(None, feed)[0].astype(np.float64)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append({"label": self.labels[best], "score": float(row[best]),
                        "probabilities": dict(zip(self.labels, map(float, row)))})
        return out


if __name__ == "__main__":
    texts = sys.argv[1:] or [line.strip() for line in sys.stdin if line.strip()]
    for result in EdgeClassifier().classify(texts):
        print(json.dumps(result))
