"""Refused requests must leave no in-flight state in Triton.

Triton 2.51 leaks an ensemble request (and can break a sibling step's stub) when one step fails
while a parallel branch of the same request is running; `preprocess` therefore refuses requests
before the ensemble fans out. This test starts its own server so that the shutdown it checks
is not shared with other tests.
"""

from __future__ import annotations

import time

import pytest

from reelserve.client import InvalidArgumentError, VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.samples import SampleVideo, malformed_videos
from reelserve.spec import contract as c
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

pytestmark = pytest.mark.integration


def test_refused_requests_leave_no_inflight_inferences(model_repository) -> None:
    cfg = on_free_ports(DEFAULT.server, model_repository)
    good = SampleVideo("cat", "t", "chelsea", "still", "h264").render(seconds=0.5)
    server = TritonServer(cfg).start()
    try:
        server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
        with VideoFeaturesClient(server.grpc_url) as client:
            refused = 0
            for _ in range(2):
                for video in malformed_videos().values():
                    with pytest.raises(InvalidArgumentError):
                        client.video_features([video], ["title"])
                    refused += 1
                with pytest.raises(InvalidArgumentError):
                    client.video_features([good], [b"\xff"])
                with pytest.raises(InvalidArgumentError):
                    client.text_features([""])
                refused += 2
            assert len(client.video_features([good], ["still serving"])) == 1
        start = time.perf_counter()
        server.stop()
        stop_s = time.perf_counter() - start
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    leaked = [line for line in log.splitlines() if "in-flight inferences" in line and "has " in line]
    assert not leaked, f"{refused} refusals left in-flight requests behind:\n" + "\n".join(leaked[-3:])
    assert stop_s < 15, f"shutdown took {stop_s:.1f}s (waiting on in-flight requests?)"
