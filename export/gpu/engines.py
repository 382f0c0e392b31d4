"""ONNX (plugin graph) -> TensorRT engine, and a small runner to check and time engines.

Strongly typed networks: the precision is the ONNX graph's (see `plugin_onnx`), so an fp16 graph
gives an fp16 engine with no builder flags that could silently promote or demote layers. One
optimisation profile per engine covers batch, frames and tokens (min/opt/max from the
config); a persistent timing cache makes rebuilds take seconds instead of minutes.

Needs `tensorrt` and a GPU; importing this module does not (TensorRT is imported on use).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

Shape = tuple[int, ...]
Profile = Mapping[str, tuple[Shape, Shape, Shape]]  # input -> (min, opt, max)


class EngineBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuildReport:
    engine: str
    seconds: float
    bytes: int
    tensorrt: str


def _trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EngineBuildError(
            "building TensorRT engines needs the 'tensorrt' package and an NVIDIA GPU; "
            "use --onnx-only on a machine without them"
        ) from e
    from . import plugins  # noqa: F401  (registers the reelserve::* plugins; needs tensorrt)

    return trt


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    profile: Profile,
    *,
    timing_cache: Path,
    workspace_bytes: int = 4 << 30,
    optimization_level: int = 3,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Parse `onnx_path`, build a strongly typed engine for `profile`, write `engine_path`."""
    trt = _trt()
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if names != set(profile):
        raise EngineBuildError(f"{onnx_path}: network inputs {sorted(names)} != profile inputs {sorted(profile)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.builder_optimization_level = optimization_level
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    log(f"building {engine_path.name} (TensorRT {trt.__version__}) ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {engine_path} (see its log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return BuildReport(
        str(engine_path), round(time.perf_counter() - start, 1), engine_path.stat().st_size, trt.__version__
    )


class EngineRunner:
    """Runs a serialized engine on torch CUDA tensors (parity checks and benchmarks)."""

    def __init__(self, engine_path: Path) -> None:
        import torch

        trt = _trt()
        self._torch = torch
        self._trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise EngineBuildError(f"TensorRT could not load {engine_path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def _torch_dtype(self, name: str):
        t, trt = self._torch, self._trt
        table = {
            trt.float32: t.float32,
            trt.float16: t.float16,
            trt.bfloat16: t.bfloat16,
            trt.int32: t.int32,
            trt.int64: t.int64,
            trt.int8: t.int8,
            trt.uint8: t.uint8,
            trt.bool: t.bool,
        }
        return table[self.engine.get_tensor_dtype(name)]

    def __call__(self, feeds: Mapping[str, object], stream=None) -> dict[str, object]:
        torch = self._torch
        stream = stream or torch.cuda.current_stream()
        keep = {}
        for name in self.inputs:
            x = feeds[name].to("cuda", self._torch_dtype(name)).contiguous()
            keep[name] = x
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, x.data_ptr())
        out = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out[name] = torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")
            self.context.set_tensor_address(name, out[name].data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineBuildError("TensorRT execution failed")
        stream.synchronize()
        return out
