"""The in-process ceiling computes what the server answers (same steps, same settings), so the
efficiency `make bench` reports compares like with like."""

from __future__ import annotations

import asyncio

import pytest

from reelserve.loadtests.bench import bench_item
from reelserve.loadtests.in_process import InProcessPipeline, InProcessTarget
from reelserve.loadtests.workload import WorkItem
from reelserve.serving.errors import InvalidInputError
from reelserve.spec import contract as c

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(model_repository):
    return InProcessPipeline(model_repository)


def test_the_pipeline_answers_what_the_server_answers(pipeline, client):
    item = bench_item()
    ours = pipeline.run(list(item.videos), list(item.texts))
    (served,) = client.video_features(list(item.videos), list(item.texts))
    embedding = ours[c.EMBEDDING.name][0]
    assert float(embedding @ served.embedding) > 0.9999
    assert tuple(int(x) for x in ours[c.SEMANTIC_IDS.name][0]) == tuple(served.semantic_ids)
    assert [t.decode() for t in ours[c.TAGS.name][0]] == [name for name, _ in served.tags]
    assert ours[c.OCR_TEXT.name][0][0].decode() == served.ocr_text


def test_bad_input_is_refused_as_the_server_refuses_it(pipeline):
    result = pipeline.run([b"not a video"], ["title"])
    assert isinstance(result, InvalidInputError) and "video" in str(result)


def test_the_target_reports_statuses(model_repository):
    async def go() -> list[str]:
        target = InProcessTarget(model_repository, name="ceiling", workers=2)
        try:
            good = bench_item()
            bad = WorkItem("broken", c.VIDEO_FEATURES, videos=(b"not a video",), texts=("t",))
            return list(await asyncio.gather(target.send(good), target.send(bad)))
        finally:
            await target.close()

    assert asyncio.run(go()) == ["OK", "INVALID_ARGUMENT"]
