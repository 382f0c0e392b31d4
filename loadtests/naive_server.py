"""The baseline of `make bench`: the HTTP server a user would write around the same PyTorch models.

One uvicorn process, FastAPI, PyTorch eager on CPU, plain synchronous endpoints (FastAPI runs
them in its threadpool), one forward per request and no batching. It loads the heads from the
exported model repository, so its answers equal the served ensemble's and a benchmark measures
only the serving. Wire format: JSON, videos as base64.

    POST /video_features  {"video": "<base64 container bytes>", "text": "<title>"}
      -> {"embedding": [384 floats], "tags": [[name, score], ...], "label_scores": {label: score},
          "semantic_ids": [a, b, c], "ocr_text": "printed text", "text_truncated": false}
    POST /text_features   {"text": "..."} -> {"embedding": [...], "label_scores": {...}, "text_truncated": false}
    GET  /healthz         -> {"status": "ok"} (only once the models are loaded)

A bad input answers HTTP 400 `{"detail": "input '<field>': <why>"}`, the served ensemble's message.

Run: `python -m reelserve.loadtests.naive_server --model-repository model_repository --port 8080`,
or `with NaiveServer(repo) as s: ... s.url` from a test or the bench driver.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from reelserve.config import DEFAULT, cache_dir
from reelserve.serving.errors import InvalidInputError
from reelserve.serving.text_tokenize import video_text
from reelserve.spec import contract as c
from reelserve.triton.errors import ServerStartError
from reelserve.triton.ports import free_port
from reelserve.triton.process import ChildProcess, file_tail

_STOP_GRACE_S = 5.0
_POLL_S = 0.1
_LOG_TAIL_LINES = 30


class NaivePipeline:
    """The exported repository's models as one PyTorch eager pipeline; one call = one forward."""

    def __init__(self, model_repository: Path) -> None:
        import torch

        from reelserve.export.cpu import served_text_tower
        from reelserve.models.heads import load_fusion_heads
        from reelserve.models.pipeline import VideoFeaturesModel
        from reelserve.models.vision_tower import load_efficientnet_lite0
        from reelserve.serving.ocr import OnScreenTextReader

        self.torch = torch
        o = DEFAULT.ocr
        self.ocr = OnScreenTextReader(min_score=o.min_score, threads=o.ort_threads) if o.frames > 0 else None
        heads, meta = load_fusion_heads(Path(model_repository) / c.FUSION_HEADS / "1")
        text, self.tokenizer = served_text_tower(model_repository, DEFAULT)
        self.model = VideoFeaturesModel(load_efficientnet_lite0(), text, heads).eval()
        self.tag_names: list[str] = meta["tags"]
        self.labels: list[str] = meta.get("labels") or list(DEFAULT.heads.labels)

    def _tokens(self, text: str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON can carry lone surrogates
            raise InvalidInputError(c.TEXT.name, f"is not valid UTF-8 (bad character at offset {e.start})") from None
        ids, mask, truncated = self.tokenizer.encode([text])
        return self.torch.from_numpy(ids), self.torch.from_numpy(mask), bool(truncated[0])

    def _common(self, out, truncated: bool) -> dict[str, Any]:
        return {
            c.EMBEDDING.name: out.embedding[0].tolist(),
            c.LABEL_SCORES.name: dict(zip(self.labels, out.label_scores[0].tolist(), strict=True)),
            c.TEXT_TRUNCATED.name: truncated,
        }

    def video_features(self, video: bytes, text: str) -> dict[str, Any]:
        from reelserve.serving.video_decode import TextFrames, decode_clip

        ids, mask, truncated = self._tokens(text)  # the title is refused before any decoding, as preprocess does
        o = DEFAULT.ocr
        clip = decode_clip(video, DEFAULT.video, TextFrames(o.frames, o.max_side))
        printed = self.ocr.read_clip(clip.text_frames, o.max_chars) if self.ocr is not None else ""
        if printed:  # what the `ocr` step hands the text tower; `text_truncated` stays the title's
            ids, mask, _ = (
                self.torch.from_numpy(a) for a in self.tokenizer.encode_strings([video_text(text, printed)])
            )
        frames, frame_mask = (self.torch.from_numpy(a[None]) for a in (clip.frames, clip.mask))
        out = self.model(frames, frame_mask, ids, mask)
        tags = [[self.tag_names[int(i)], float(s)] for i, s in zip(out.tag_ids[0], out.tag_scores[0], strict=True)]
        return {
            **self._common(out, truncated),
            c.TAGS.name: tags,
            c.SEMANTIC_IDS.name: [int(x) for x in out.semantic_ids[0]],
            c.OCR_TEXT.name: printed,
        }

    def text_features(self, text: str) -> dict[str, Any]:
        """Text tower + heads with no frames, exactly as the served fusion step feeds a text-only call."""
        torch = self.torch
        ids, mask, truncated = self._tokens(text)
        if not bool(mask.any()):
            raise InvalidInputError(c.TEXT.name, "item 0 is empty; text_features needs text")
        with torch.inference_mode():
            vector = self.model.text(ids, mask)
            logits = torch.zeros(1, 1, len(self.tag_names))
            out = self.model.heads(logits, torch.zeros(1, 1, dtype=torch.bool), vector)
        return self._common(out, truncated)

    def warm_up(self) -> None:
        """One forward of each kind before /healthz says ready, so the first timed request is not a cold one."""
        torch = self.torch
        v = DEFAULT.video
        ids, mask, _ = self._tokens("warm up")
        frames = torch.zeros(1, v.num_frames, v.image_size, v.image_size, 3, dtype=torch.uint8)
        self.model(frames, torch.ones(1, v.num_frames, dtype=torch.bool), ids, mask)
        self.text_features("warm up")


class VideoRequest(BaseModel):
    video: str  # base64 of the container bytes
    text: str = ""


class TextRequest(BaseModel):
    text: str


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInputError(field, f"is not valid base64 ({e})") from None


def create_app(model_repository: Path, *, warm_up: bool = True):
    """The FastAPI app; loads the models now, so a process that answers /healthz is ready."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    pipeline = NaivePipeline(model_repository)
    if warm_up:
        pipeline.warm_up()
    app = FastAPI(title="naive torch-eager video features")

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # 400 like every other bad input (FastAPI's default is 422), naming the field as the ensemble does
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return JSONResponse({"detail": f"input '{field}': {first.get('msg', 'invalid request')}"}, status_code=400)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/" + c.VIDEO_FEATURES)
    def video_features(request: VideoRequest):  # plain dicts out, no response model: what a user writes
        try:
            return pipeline.video_features(_b64(request.video, c.VIDEO.name), request.text)
        except InvalidInputError as e:
            raise HTTPException(400, detail=str(e)) from None

    @app.post("/" + c.TEXT_FEATURES)
    def text_features(request: TextRequest):
        try:
            return pipeline.text_features(request.text)
        except InvalidInputError as e:
            raise HTTPException(400, detail=str(e)) from None

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reelserve.loadtests.naive_server",
        description="The naive baseline of `make bench`: FastAPI + uvicorn + PyTorch eager, one forward per request.",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=DEFAULT.server.model_repository,
        help="exported repository; the heads come from <repo>/fusion_heads/1 (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default: %(default)s)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default: %(default)s)")
    args = parser.parse_args(argv)
    heads_dir = args.model_repository / c.FUSION_HEADS / "1"
    if not (heads_dir / "heads.npz").is_file():
        parser.error(f"{heads_dir} has no heads.npz: run `reelserve export` first")

    import uvicorn

    app = create_app(args.model_repository)
    # No access log: Triton keeps none per request either, and it would cost every call a formatted line.
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level=args.log_level, access_log=False)
    return 0


class NaiveServer:
    """The naive server as a child process on a free loopback port; a context manager for tests and benches.

    The same child-process lifecycle as tritonserver's (`reelserve.triton.process.ChildProcess`):
    own session, output to a log file (a pipe nobody reads would block it), stopped with its
    group. The log tail is quoted if it dies or is not healthy within `ready_timeout_s`.
    """

    def __init__(
        self,
        model_repository: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 180.0,
        log_file: Path | None = None,
    ) -> None:
        self.model_repository = Path(model_repository)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.ready_timeout_s = ready_timeout_s
        self.log_path = Path(log_file) if log_file else cache_dir() / "logs" / f"naive-server-{self.port}.log"
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "reelserve.loadtests.naive_server",
            "--model-repository", str(self.model_repository.resolve()),
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip

    def start(self) -> NaiveServer:
        """Launch it and block until GET /healthz answers 200 (stopping it again if it never does)."""
        if self._child is not None and self._child.is_running():
            raise ServerStartError(f"naive server is already running (pid {self._child.pid})")
        # Its own session: a Ctrl-C in the terminal reaches only the driver, which stops us; an
        # orphan (nobody called stop()) gets the same SIGTERM grace as stop() gives.
        self._child = ChildProcess(
            self.command(),
            self.log_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            orphan_grace_s=_STOP_GRACE_S,
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        child = self._child
        assert child is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if not child.is_running():
                raise ServerStartError(
                    f"naive server exited before it was ready (exit code {child.returncode});"
                    f" last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1.0) as response:
                    if response.status == 200 and json.loads(response.read()).get("status") == "ok":
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"naive server at {self.url} not healthy after {self.ready_timeout_s:.0f} s;"
                    f" last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(_POLL_S)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return file_tail(self.log_path, lines)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL (of its group) after a few seconds; idempotent; returns the exit status."""
        if self._child is None:
            return 0
        return self._child.stop(_STOP_GRACE_S)

    def __enter__(self) -> NaiveServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
