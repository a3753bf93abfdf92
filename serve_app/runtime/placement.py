"""What every model runtime shares: device choice, loading rules, and identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Placement:
    device: str
    dtype: torch.dtype


def pick_placement(prefer_gpu: bool = True) -> Placement:
    """fp16 on a GPU when one is visible to this process; fp32 on CPU (fp16 matmuls are slow there)."""
    if prefer_gpu and torch.cuda.is_available():
        return Placement("cuda", torch.float16)
    return Placement("cpu", torch.float32)


def check_model_folder(path: Path) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path} (fix: run `make models` or correct 'source')")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json; 'source' must be a Hugging Face checkpoint folder")
