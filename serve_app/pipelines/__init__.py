"""Declarative pipelines: model calls composed by chain, split, fan-out and fuse. Plain Python, no Ray.

`spec` declares the graph (pydantic), `validate` checks it against the served models at load time, `fusion`
holds the math, and `engine` runs a graph over any `call(model, texts, params)` coroutine.
"""
