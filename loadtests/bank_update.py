"""How fast a published label-bank version reaches requests while the server is under load, and what is lost.

Starts tritonserver on the exported repository with a scratch bank store, keeps `--concurrency`
callers sending `text_features` against one bank, and publishes `--updates` new versions of it
through the same server (`reelserve labels publish`'s code). For each update: the time from the
new `CURRENT` to the first answer that carries the new version (`pickup`, seen by any caller) and
to the last answer that still carried an older one (`switch`: every `preprocess` instance has
moved on, requests already in flight included). Prints those and how many calls were answered
and failed.

    python -m reelserve.loadtests.bank_update --updates 5 --concurrency 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from reelserve.client import VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.labels.publish import publish
from reelserve.labels.spec import BankSpec, LabelSpec
from reelserve.spec import contract as c
from reelserve.triton.server import TritonServer

from .served import replay_server_config

BANK = "live"
LABELS = ("a cat", "coffee", "music", "sports", "the beach", "a city street", "science", "fashion")
TEXTS = ["a kitten asleep on the sofa", "latte art in a small cafe"]


def _spec(version: int) -> BankSpec:
    """Version n has n + 1 labels, so an answer's label count tells which version scored it."""
    names = LABELS[: 2 + (version - 1) % (len(LABELS) - 1)]
    return BankSpec(BANK, tuple(LabelSpec(n, prompts=(n,)) for n in names))


def run(repository: Path, *, updates: int, concurrency: int, gap_s: float) -> dict:
    store = Path(tempfile.mkdtemp(prefix="reelserve-banks-"))
    cfg = replace(replay_server_config(repository), label_banks=store)
    answers: list[tuple[float, int]] = []  # (received at, version number)
    answered, failed = [0], [0]
    lock, stop = threading.Lock(), threading.Event()
    with TritonServer(cfg) as server:
        server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
        pid = server.pid
        with VideoFeaturesClient(server.grpc_url, deadline_s=30) as client:
            publish(client, _spec(1), store)

            def caller() -> None:
                while not stop.is_set():
                    try:
                        features = client.text_features(TEXTS, label_bank=BANK)
                    except Exception:
                        with lock:
                            failed[0] += 1
                        continue
                    now = time.monotonic()
                    with lock:
                        answered[0] += 1
                        answers.extend((now, int(f.label_bank_version.split("/")[1])) for f in features)

            threads = [threading.Thread(target=caller, daemon=True) for _ in range(concurrency)]
            for t in threads:
                t.start()
            start = time.monotonic()
            published: list[tuple[str, float]] = []
            for version in range(2, updates + 2):
                time.sleep(gap_s)
                bank = publish(client, _spec(version), store).bank
                published.append((bank.tag, time.monotonic()))
            time.sleep(max(gap_s, 2 * DEFAULT.banks.refresh_s + 1))
            stop.set()
            for t in threads:
                t.join(60)
            seconds = time.monotonic() - start
        restarted = server.pid != pid
    pickups, switches = [], []
    for tag, at in published:
        number = int(tag.split("/")[1])
        pickups.append(min((t for t, n in answers if n >= number), default=float("inf")) - at)
        switches.append(max((t for t, n in answers if n < number), default=at) - at)
    return {
        "updates": updates,
        "concurrency": concurrency,
        "refresh_s": DEFAULT.banks.refresh_s,
        "pickup_s": [round(p, 3) for p in pickups],
        "pickup_p50_s": round(float(np.median(pickups)), 3),
        "pickup_max_s": round(max(pickups), 3),
        "switch_s": [round(s, 3) for s in switches],
        "switch_max_s": round(max(switches), 3),
        "calls_answered": answered[0],
        "calls_failed": failed[0],
        "calls_per_s": round(answered[0] / seconds, 1),
        "server_restarted": restarted,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reelserve.loadtests.bank_update", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    parser.add_argument("--updates", type=int, default=5, help="versions published under load (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="callers sending all the time (default %(default)s)")
    parser.add_argument("--gap-s", type=float, default=2.0, help="seconds between updates (default %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    report = run(args.model_repository, updates=args.updates, concurrency=args.concurrency, gap_s=args.gap_s)
    for key, value in report.items():
        print(f"{key:16s} {value}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if report["calls_failed"] == 0 and report["switch_max_s"] < 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
