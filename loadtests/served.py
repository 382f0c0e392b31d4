"""The server a load test starts: the defaults on free ports, with Triton's response cache off.

Load tests replay a handful of payloads rendered before the clock starts. With the response cache
on, every repeat after the first would be answered from the cache, and the figures would measure
cache lookups instead of the compute an upload costs. `cache_bench` measures the cache on purpose.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reelserve.config import DEFAULT, ServerConfig
from reelserve.triton.ports import on_free_ports


def replay_server_config(model_repository: Path | str, base: ServerConfig = DEFAULT.server) -> ServerConfig:
    """`base` on free ports, serving `model_repository`, every answer computed."""
    return replace(on_free_ports(base, Path(model_repository)), response_cache_mib=0)
