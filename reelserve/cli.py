"""`reelserve` command line: export, serve, demo, labels, semantic-ids, loadtest."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from reelserve import __version__
from reelserve.config import DEFAULT, LABEL_BANKS_DIR, ReelserveConfig


def _server_args(p: argparse.ArgumentParser) -> None:
    s = DEFAULT.server
    p.add_argument("--model-repository", type=Path, default=s.model_repository, help="default: %(default)s")
    p.add_argument("--host", default=s.host, help="address to bind (default %(default)s: loopback only)")
    p.add_argument("--grpc-port", type=int, default=s.grpc_port, help="default: %(default)s")
    p.add_argument("--http-port", type=int, default=s.http_port, help="default: %(default)s")
    p.add_argument("--metrics-port", type=int, default=s.metrics_port, help="default: %(default)s")
    p.add_argument("--log-file", type=Path, default=None, help="tritonserver log (default: under ~/.cache/reelserve)")
    p.add_argument(
        "--label-banks",
        type=Path,
        default=LABEL_BANKS_DIR,
        help="label-bank store the server reads, published to by `reelserve labels publish` (default: %(default)s)",
    )
    p.add_argument(
        "--response-cache-mib",
        type=_non_negative,
        default=s.response_cache_mib,
        help="Triton response cache for vision, OCR and text steps, MiB; 0 turns it off (default: %(default)s)",
    )


def _access_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-key",
        default=os.environ.get("REELSERVE_API_KEY"),
        help="require the header 'x-api-key: KEY' for everything but health/metadata (default: $REELSERVE_API_KEY)",
    )
    p.add_argument("--tls-cert", type=Path, default=None, help="gRPC TLS: server certificate (PEM)")
    p.add_argument("--tls-key", type=Path, default=None, help="gRPC TLS: the certificate's private key (PEM)")


def _config(args: argparse.Namespace) -> ReelserveConfig:
    s = DEFAULT.server
    server = replace(
        DEFAULT.server,
        model_repository=args.model_repository,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_file=args.log_file,
        label_banks=getattr(args, "label_banks", None),
        response_cache_mib=getattr(args, "response_cache_mib", s.response_cache_mib),
        api_key=getattr(args, "api_key", None) or None,
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
    )
    return replace(DEFAULT, server=server)


def export_config(args: argparse.Namespace) -> ReelserveConfig:
    """The export's configuration: the defaults with the text tower, OCR frames and speech model asked for."""
    return replace(
        DEFAULT,
        text=replace(DEFAULT.text, tower=args.text_tower),
        ocr=replace(DEFAULT.ocr, frames=args.ocr_frames),
        asr=replace(DEFAULT.asr, model=args.asr),
    )


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def cmd_export(args: argparse.Namespace) -> int:
    if args.target == "gpu":
        return _export_gpu(args)
    if args.onnx_only:
        print("reelserve export: --onnx-only applies to --target gpu", file=sys.stderr)
        return 2
    from reelserve.export.asr_model import AsrModelError
    from reelserve.export.cpu import export_cpu
    from reelserve.export.parity import ExportError

    try:
        cfg = export_config(args)
        report = export_cpu(
            args.out, cfg, force=args.force, progress=not args.quiet, embedding_cache=not args.no_embedding_cache
        )
    except (ExportError, AsrModelError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    if not report.reused:
        for step, rows in report.parity.items():
            for row in rows:
                print(
                    f"parity {step:15s} {row['output']:14s} max|err| {row['max_abs_error']:.2e}  "
                    f"min cosine {row['min_cosine']:.6f}"
                )
        ids = report.semantic_ids
        stats = ids.get("stats", {})
        levels = ", ".join(
            f"L{level['level']} used {level['utilisation']:.0%} perplexity {level['perplexity']:.0f}"
            for level in stats.get("levels", [])
        )
        print(
            f"semantic IDs {ids.get('version')} on {ids.get('corpus_size')} {ids.get('corpus')}: {levels}; "
            f"collision rate {stats.get('collision_rate')}, max {stats.get('max_items_per_code')} items per code"
        )
        hits = report.embedding_cache_hits
        cached = f", {hits} text-vector sets from the cache" if hits else ""
        print(f"export took {sum(report.seconds.values()):.1f}s{cached}: {report.seconds}")
    print(f"model repository ready: {args.out}")
    return 0


def _export_gpu(args: argparse.Namespace) -> int:
    from reelserve.export.gpu.engines import EngineBuildError
    from reelserve.export.gpu.target import export_gpu
    from reelserve.export.parity import ExportError

    if args.out == DEFAULT.server.model_repository:
        print("reelserve export --target gpu: give --out DIR (the CPU repository stays where it is)", file=sys.stderr)
        return 2
    try:
        cfg = export_config(args)
        report = export_gpu(
            args.out, cfg, onnx_only=args.onnx_only, cpu_repository=args.cpu_repository, progress=not args.quiet
        )
    except (ExportError, EngineBuildError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    for key, entry in report["graphs"].items():
        for check in ("cpu_parity", "engine_parity"):
            rows = entry.get(check)
            if isinstance(rows, str):
                print(f"{check:13s} {key:22s} {rows}")
            for row in rows if isinstance(rows, list) else []:
                print(
                    f"{check:13s} {key:22s} {row['output']:13s} max|err| {row['max_abs_error']:.2e}  "
                    f"min cosine {row['min_cosine']:.6f}"
                )
    what = "ONNX graphs and repository configs (no engines: --onnx-only)" if args.onnx_only else "engines"
    print(f"GPU target ready in {args.out} ({what}); report: {args.out / 'gpu-report.json'}")
    return 0


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from reelserve.export.gpu.check import run

    return run(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from reelserve.triton.errors import ServerStartError
    from reelserve.triton.server import TritonServer
    from reelserve.triton.supervise import serve

    cfg = _config(args).server
    if args.replicas < 1:
        print(f"reelserve serve: --replicas must be at least 1, got {args.replicas}", file=sys.stderr)
        return 2
    try:
        if args.replicas > 1:
            from reelserve.frontdoor.deployment import replica_layout
            from reelserve.frontdoor.serve import serve_front_door

            return serve_front_door(replica_layout(cfg, args.replicas))
        probe = {"ssl": True, "root_certificates": str(cfg.tls_cert)} if cfg.tls_cert else None
        return serve(TritonServer(cfg, probe_tls=probe))
    except ServerStartError as e:
        print(f"reelserve serve: {e}", file=sys.stderr)
        return 1


def cmd_loadtest(args: argparse.Namespace) -> int:
    from reelserve.loadtests import harness

    return harness.main(args=args)


def cmd_demo(args: argparse.Namespace) -> int:
    from reelserve.demo import run_demo
    from reelserve.triton.errors import ServerStartError

    try:
        return run_demo(DEFAULT, rounds=args.rounds, repository=args.model_repository)
    except ServerStartError as e:
        print(f"reelserve demo: {e}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelserve", description="Short-video features served by NVIDIA Triton.")
    parser.add_argument("--version", action="version", version=f"reelserve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "export",
        help="build the model repository (ONNX encoders, fitted heads, Triton configs)",
        description="Export real pretrained towers to ONNX, fit the heads, write the Triton repository."
        " Reuses an up-to-date repository unless --force.",
    )
    p.add_argument(
        "--target",
        choices=["cpu", "gpu"],
        default="cpu",
        help="cpu: python backend + ONNX Runtime; gpu: TensorRT engines with our Triton-kernel plugins",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT.server.model_repository,
        help="cpu: the model repository (default: %(default)s); gpu: a folder for ONNX, engines and the GPU repository",
    )
    p.add_argument("--force", action="store_true", help="cpu: rebuild even if the repository is up to date")
    p.add_argument(
        "--no-embedding-cache",
        action="store_true",
        help="cpu: embed class names and the semantic-ID corpus again even if cached"
        " ($REELSERVE_CACHE_DIR, default ~/.cache/reelserve; =off disables it)",
    )
    p.add_argument(
        "--text-tower",
        choices=["e5", "minilm"],
        default=DEFAULT.text.tower,
        help="e5: multilingual-e5-small, ~100 languages (default); minilm: all-MiniLM-L6-v2, English only",
    )
    p.add_argument(
        "--ocr-frames",
        type=_non_negative,
        default=DEFAULT.ocr.frames,
        help="frames per video the ocr step reads for on-screen text (default %(default)s; 0 turns OCR off)",
    )
    from reelserve.export.asr_model import MODELS as ASR_MODELS

    p.add_argument(
        "--asr",
        choices=ASR_MODELS,
        default=DEFAULT.asr.model,
        help="speech model of the video_features_full ensemble: base (Whisper base, 99 languages; default),"
        " tiny-en (Whisper tiny.en, English only, ~3x cheaper), off (no asr step, no video_features_full)",
    )
    p.add_argument(
        "--onnx-only",
        action="store_true",
        help="gpu: write the plugin ONNX graphs and repository configs, build no engines (no GPU needed)",
    )
    p.add_argument(
        "--cpu-repository",
        type=Path,
        default=DEFAULT.server.model_repository,
        help="gpu: where the CPU export lives (python steps' artifacts; exported if stale; default: %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "gpu-check",
        help="GPU runbook: build every TensorRT engine, check parity, time TensorRT vs eager vs torch.compile",
        description="Needs an NVIDIA GPU and TensorRT (refuses, saying why, elsewhere). Writes OUT/gpu-benchmark.json.",
    )
    from reelserve.export.gpu.check import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_gpu_check)

    p = sub.add_parser(
        "serve",
        help="run tritonserver replicas on the model repository behind an nginx front door (loopback by default)",
        description="Start the tritonserver bundled in nvidia-pytriton and keep it serving (a dead server or"
        " python-backend stub is restarted); Ctrl-C or SIGTERM stops it. Model control over the API is off."
        " With --replicas N > 1, N tritonservers (ports: each base port + 10k for replica k) run behind a front"
        " door on the public ports: nginx (Debian's package) balancing over one relay per replica, which never"
        " passes a caller's cancel on to Triton (a cancelled ensemble call crashes tritonserver 2.51) and sends"
        " a call whose replica died to another one; each replica is restarted on its own. --replicas 1: one"
        " tritonserver on the public ports, no nginx.",
    )
    _server_args(p)
    _access_args(p)
    p.add_argument(
        "--replicas",
        type=int,
        default=DEFAULT.server.replicas,
        help="tritonserver replicas behind the nginx front door; 1 = a single server, no front door"
        " (default %(default)s)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "demo",
        help="export if needed, serve, send real short videos, print features",
        description="End-to-end demo on clips rendered from scikit-image's photos.",
    )
    p.add_argument(
        "--model-repository", type=Path, default=DEFAULT.server.model_repository, help="default: %(default)s"
    )
    p.add_argument("--rounds", type=int, default=10, help="latency rounds over all clips (default %(default)s)")
    p.set_defaults(func=cmd_demo)

    from reelserve.export.semantic_id_report import add_parser as add_semantic_ids
    from reelserve.labels.cli import add_parser as add_labels

    add_labels(sub)
    add_semantic_ids(sub)

    from reelserve.loadtests import harness_options

    p = sub.add_parser(
        "loadtest",
        help="open-loop / closed-loop load with real request mixes; JSON + PNG/HTML report",
        description=harness_options.__doc__.split("\n\n")[1].replace("\n", " "),
    )
    harness_options.build_parser(p)
    p.set_defaults(func=cmd_loadtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
