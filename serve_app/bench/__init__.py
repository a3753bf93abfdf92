"""`make bench`: the gateway against the raw model and a naive server, side by side in one run.

    load.py          closed-loop load generators (HTTP JSON, OIP REST, OIP gRPC, in-process raw batcher)
    naive_server.py  FastAPI + transformers, one request -> one forward pass: what users write themselves
    suite.py         the measurements and the targets P1-P9, from a running Serve instance
    report.py        table, JSON and PNG plots
    __main__.py      starts Ray and Serve, the naive server, runs the suite, writes the report
"""
