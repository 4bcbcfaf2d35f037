"""What a dataset looks like to a model: input kind, shape and class count."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DataSpec:
    """Shape contract between a datamodule and a model."""

    kind: Literal["image", "tokens"]
    input_shape: tuple[int, ...]
    num_classes: int
    vocab_size: int | None = None
    name: str = ""


class DataUnavailableError(FileNotFoundError):
    """The dataset's files are not on disk and may not be downloaded."""
