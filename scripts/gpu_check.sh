#!/usr/bin/env bash
# One short run of the GPU path (fp16 on CUDA) on a lent GPU machine, which has torch and transformers but no
# Ray: prepare the tokenizers here (`scripts/gpu_check.sh prepare`, into .gpu/, git-ignored), then on the
# device: `bash scripts/gpu_check.sh` with `.gpu` carried.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = prepare ]; then
  mkdir -p .gpu/minilm .gpu/smollm2
  .venv/bin/python - <<'PY'
import shutil
from pathlib import Path
from serve_app.builders.sources import minilm_dir
from serve_app.builders.prepare import export_smollm2_tokenizer
for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(minilm_dir() / f, Path(".gpu/minilm") / f)
export_smollm2_tokenizer(Path(".gpu/smollm2"))
PY
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py --tokenizers .gpu | tee "${OUT:-/tmp}/gpu_check.json"
