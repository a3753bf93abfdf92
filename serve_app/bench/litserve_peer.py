"""The LitServe peer's API (see bench/peers.py). At module level because LitServe pickles it into its
inference worker process."""

from __future__ import annotations

import litserve as ls

from serve_app.bench.peer_model import BATCH, answer, load_model


class ClassifierAPI(ls.LitAPI):
    def __init__(self, model_dir: str, max_length: int, **options):
        super().__init__(**options)
        self.model_dir = model_dir
        self.max_length = max_length

    def setup(self, device):
        self.model = load_model(self.model_dir, self.max_length)

    def decode_request(self, request):
        return request["text"]

    def batch(self, inputs):
        return list(inputs)

    def predict(self, texts):
        return self.model.predict(texts, BATCH)

    def unbatch(self, outputs):
        return outputs

    def encode_response(self, output):
        return answer(output)
