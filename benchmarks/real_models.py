"""Real architectures from the real-model suite (tests/zoo), timed like the fixed set:
plain forward, the default trace and torchinfo's summary, interleaved, as ratios.

Needs torchvision, timm and transformers (the zoo's venv: `make bench` runs it
there) and torchinfo; prints one JSON object per model for the harness."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import layerlens as ll

from .timing import interleaved

# One of each kind the performance issue names.
NAMES = (
    "tv/resnet18", "tv/mobilenet_v3_small", "tv/efficientnet_b0", "tv/convnext_tiny", "tv/vit",
    "hf/bert", "hf/gpt2", "hf/t5", "hf/whisper", "hf/llama", "timm/efficientnet_b0", "timm/vit_tiny",
)  # fmt: skip


def measure(name: str, rounds: int) -> dict[str, float]:
    """Median seconds of the plain forward, the default trace and torchinfo for one model."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "zoo"))
    from catalog import MODELS  # type: ignore[import-not-found]

    model, args, kwargs = MODELS[name]()

    def plain() -> None:
        with torch.no_grad():
            model(*args, **kwargs)

    variants: dict[str, Callable[[], object]] = {
        "plain": plain,
        "stats": lambda: ll.trace(model, args, kwargs=kwargs),
    }
    try:
        import torchinfo

        data: Any = dict(kwargs) if kwargs else list(args)
        variants["torchinfo"] = lambda: torchinfo.summary(model, input_data=data, verbose=0)
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interleaved(variants, rounds)


def main() -> int:
    torch.set_num_threads(1)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for name in NAMES:
        print(json.dumps({"model": name, **measure(name, rounds)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
