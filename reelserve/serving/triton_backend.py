"""The glue between Triton's python backend and a `Step`: every `model.py` is one subclass line.

Only this module touches `triton_python_backend_utils`, and only inside the stub process.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from reelserve.spec.settings import read_sections
from reelserve.spec.topology import STEP_SECTIONS

from .errors import InvalidInputError
from .steps import STEPS, Step


class StepModel:
    """`TritonPythonModel` for the step named by the model's name in `config.pbtxt`."""

    steps: dict[str, type[Step]] = STEPS  # name -> Step class; the load tests' no-op floor swaps these

    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.logger = pb_utils.Logger
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.input_names = [i["name"] for i in config["input"]]
        self.output_dtypes = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        settings = read_sections(parameters, STEP_SECTIONS[self.name], self.name)  # strict: fails the load
        version_dir = Path(args["model_repository"]) / args["model_version"]
        start = time.perf_counter()
        self.step: Step = self.steps[self.name](settings, version_dir)
        self.logger.log_info(
            f"reelserve step {self.name} ready in {time.perf_counter() - start:.2f}s; "
            f"python {sys.executable}; numpy {np.__version__} from {np.__file__}"
        )

    def execute(self, requests: list) -> list:
        pb = self.pb
        inputs = [{name: self._input(r, name) for name in self.input_names} for r in requests]
        try:
            results = self.step.run(inputs)
        except InvalidInputError as e:  # a step that validates the whole batch at once
            results = [e] * len(requests)
        except Exception as e:  # never kill the stub: fail this batch, loudly, and keep serving
            self.logger.log_error(f"{self.name}: {traceback.format_exc()}")
            error = pb.TritonError(f"{self.name} failed: {type(e).__name__}: {e}", pb.TritonError.INTERNAL)
            return [pb.InferenceResponse(error=error) for _ in requests]
        responses = []
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, InvalidInputError):
                responses.append(pb.InferenceResponse(error=pb.TritonError(str(result), pb.TritonError.INVALID_ARG)))
                continue
            wanted = request.requested_output_names()
            tensors = [
                pb.Tensor(name, np.ascontiguousarray(value, dtype=self.output_dtypes[name]))
                for name, value in result.items()
                if name in wanted or not wanted
            ]
            responses.append(pb.InferenceResponse(output_tensors=tensors))
        return responses

    def _input(self, request, name: str) -> np.ndarray | None:
        tensor = self.pb.get_input_tensor_by_name(request, name)
        return None if tensor is None else tensor.as_numpy()

    def finalize(self) -> None:
        self.step = None
