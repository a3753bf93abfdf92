"""Optimize → evaluate → gate → register. No Ray: transforms run on torch models and ONNX files in-process.

    plan.py      what a user asked for (`--prune heads:0.25 --quantize int8 --runtime onnx`), validated
    prune.py     random, magnitude (L1, per layer or global) and head (stability-ranked, removed) pruning
    onnx.py      ONNX export, onnxruntime graph fusion, int8 dynamic and int4 weight-only quantization
    build.py     a parent folder + a plan -> a variant folder with its runtime.json
    evaluate.py  quality (held-out accuracy, ROUGE-L), size, latency and throughput, side by side
    pipeline.py  the loop: build, evaluate parent and variant, gate, register with lineage
    report.py    every variant of both models in one table and a plot
    edge.py      a folder with an ONNX model, its tokenizer and a runner that needs only onnxruntime
"""
