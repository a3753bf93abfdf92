"""`make bench`'s variant targets (`python -m serve_app.bench.variants`): P4 (the best int8 classifier against
torch fp32), P12 (SLO-aware selection against the fp32 variant alone) and P13 (response cache hit against an
uncached answer), measured side by side in one run and merged into docs/bench/bench.json by target id."""
