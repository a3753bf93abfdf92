"""`make bench`: the gateway against the raw model and a naive server, side by side in one run; and the other
measurements of the gateway (generation, soak, feature costs), all started from here.

    __main__.py      `make bench`: starts Ray, the gateway, the naive server and the peers, runs the suite, reports
    suite.py         the measurements and the targets P1-P9, from a running Serve instance
    load.py          closed-loop load generators (HTTP JSON, OIP REST, OIP gRPC, in-process raw batcher)
    naive_server.py  FastAPI + transformers, one request -> one forward pass: what users write themselves
    peers.py         the peers (LitServe, plain Ray Serve); peer_model.py what they serve; litserve_peer.py its API
    report.py        table, JSON and PNG plots
    harness.py       free ports, a local Ray and the gateway on them, p50 of sequential calls, the progress line
    generation/      P5, P10, P11: the summarizer's continuous batching and streaming (also on its own)
    soak/            `make soak`: steady load, every answer checked, RSS before/during/after
    costs/           one-off measurements of single features: metrics, pipelines, protocols, registry pulls
"""
