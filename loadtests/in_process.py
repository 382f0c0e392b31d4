"""The in-process ceiling: the served steps, chained by hand in one process, with no server at all.

What a user could do on these cores without reelserve: load the exported repository's steps (the
same ONNX models, the same decoding, tokenizing, OCR and heads: `reelserve.serving.steps`, with
the settings the export wrote), and run an ensemble's calls one after the other per request,
several requests at once on a thread pool (ONNX Runtime and PyAV release the GIL). No gRPC, no
Triton, no batching across requests, no copies between processes. `make bench` reports serving
efficiency = reelserve's throughput / this one's.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT, ReelserveConfig
from reelserve.export.repository import read_step_settings
from reelserve.serving.errors import InvalidInputError
from reelserve.serving.steps import STEPS, Step
from reelserve.spec import contract as c
from reelserve.spec.topology import ensemble

from .workload import WorkItem

__all__ = ["InProcessPipeline", "InProcessTarget", "load_step"]


def load_step(repository: Path, model: str) -> Step:
    """One step of an exported repository, with the settings the export wrote for it."""
    return STEPS[model](read_step_settings(Path(repository) / model), Path(repository) / model / "1")


class InProcessPipeline:
    """One ensemble's steps, loaded from an exported repository and called in order."""

    def __init__(self, repository: Path, model: str = c.VIDEO_FEATURES, cfg: ReelserveConfig = DEFAULT) -> None:
        self.calls = ensemble(model, cfg).calls
        self.steps = {call.model: load_step(repository, call.model) for call in self.calls}

    def run(self, videos: list[bytes], texts: list[str]) -> dict[str, np.ndarray] | InvalidInputError:
        """One request (its items as one batch), through every step; the ensemble's tensors by name."""
        tensors: dict[str, np.ndarray | None] = {
            c.VIDEO.name: np.array([[v] for v in videos], dtype=object),
            c.TEXT.name: np.array([[t.encode()] for t in texts], dtype=object),
            c.LABEL_BANK.name: None,
        }
        for call in self.calls:  # ensemble tensor names are the steps' own (export/repository.py)
            (result,) = self.steps[call.model].run([{name: tensors.get(name) for name in call.inputs}])
            if isinstance(result, InvalidInputError):
                return result
            tensors.update(result)
        return tensors


class InProcessTarget:
    """A load-test target (`targets.Target`) that runs the pipeline on `workers` threads."""

    def __init__(self, repository: Path, *, name: str, workers: int = 8) -> None:
        self.name = name
        self.pipeline = InProcessPipeline(repository)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="in-process")

    async def send(self, item: WorkItem) -> str:
        if item.model != c.VIDEO_FEATURES:
            raise ValueError(f"the in-process ceiling runs {c.VIDEO_FEATURES} only, not {item.model}")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.pool, self.pipeline.run, list(item.videos), list(item.texts))
        return "INVALID_ARGUMENT" if isinstance(result, InvalidInputError) else "OK"

    async def close(self) -> None:
        self.pool.shutdown(wait=True)
