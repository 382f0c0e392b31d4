"""`reelserve labels ...`: publish, list and roll back label banks; the Label Studio loop (suggest, import)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from reelserve.config import DEFAULT, LABEL_BANKS_DIR
from reelserve.spec import contract as c


def _fail(message: str) -> int:
    print(f"reelserve labels: {message}", file=sys.stderr)
    return 2


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-banks", type=Path, default=LABEL_BANKS_DIR, help="the bank store (default: %(default)s)")


def _server_args(p: argparse.ArgumentParser) -> None:
    url = f"127.0.0.1:{DEFAULT.server.grpc_port}"
    p.add_argument("--url", default=url, help="reelserve's gRPC address (default %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("REELSERVE_API_KEY"), help="default: $REELSERVE_API_KEY")
    p.add_argument("--deadline-s", type=float, default=60.0, help="per call, retries included (default %(default)s)")


def _client(args: argparse.Namespace):
    from reelserve.client import VideoFeaturesClient

    return VideoFeaturesClient(args.url, api_key=args.api_key, deadline_s=args.deadline_s)


def _bar(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=True if quiet else None)  # None: bars only on a terminal


def cmd_publish(args: argparse.Namespace) -> int:
    from reelserve.client import ReelserveError

    from .publish import PublishError, items_in, publish, summary
    from .spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as e:
        return _fail(str(e))
    try:
        with _client(args) as client, _bar(items_in(spec), f"embedding {spec.name}", args.quiet) as bar:
            result = publish(client, spec, args.label_banks, progress=bar.update)
    except (PublishError, ReelserveError) as e:
        return _fail(f"{args.spec}: nothing published: {e}")
    print(f"published {result.bank.tag} to {args.label_banks} (embedding space {result.bank.embedding_space})")
    print("\n".join(summary(result)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .store import BankError, BankStore

    store = BankStore(args.label_banks)
    names = [args.bank] if args.bank else store.banks()
    if not names:
        print(f"no label banks in {args.label_banks} (the server still serves the exported `default`)")
        return 0
    for name in names:
        try:
            versions, current = store.versions(name), store.current(name)
        except BankError as e:
            return _fail(str(e))
        if not versions:
            return _fail(f"no bank {name!r} in {args.label_banks}; there are {store.banks()}")
        print(f"{name}: current {current}")
        for v in versions:
            mark = "*" if v == current else " "
            try:
                bank = store.read(name, v)
            except BankError as e:
                print(f"  {mark} {v:4d}  unreadable: {e}")
                continue
            r = bank.report
            acc = f"loo acc {r['loo_accuracy']:.3f}" if r.get("loo_accuracy") is not None else "no loo"
            cal = "calibrated" if bank.calibrated else "uncalibrated"
            print(
                f"  {mark} {v:4d}  {len(bank.labels):3d} labels  T {bank.temperature:.4f} "
                f"({cal})  {acc}  space {bank.embedding_space}"
            )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from .store import BankError, BankStore

    store = BankStore(args.label_banks)
    try:
        before = store.current(args.bank)
        store.set_current(args.bank, args.version)
    except BankError as e:
        return _fail(f"cannot roll {args.bank} back to {args.version}: {e}")
    print(f"{args.bank}: current {before} -> {args.version} (new requests within the servers' refresh interval)")
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from reelserve.client import ReelserveError

    from .label_studio import Suggestion, labeling_config, suggest_tasks, url_for

    suggestions, names = [], None
    try:
        with _client(args) as client, _bar(len(args.videos), f"scoring with {args.bank}", args.quiet) as bar:
            for path in args.videos:
                try:
                    data = path.read_bytes()
                except OSError as e:
                    return _fail(f"{path}: {e.strerror or e}")
                (f,) = client.video_features([data], [""], label_bank=args.bank)
                names = list(f.label_probs)
                suggestions.append(
                    Suggestion(
                        video=url_for(path, prefix=args.url_prefix, root=args.root),
                        text=f.ocr_text,
                        label_probs=f.label_probs,
                        label_entropy=f.label_entropy,
                        label_margin=f.label_margin,
                        model_version=f"{c.VIDEO_FEATURES}:{f.model_version} bank {f.label_bank_version}",
                    )
                )
                bar.update(1)
    except ReelserveError as e:
        return _fail(f"nothing written: {e}")
    except ValueError as e:  # a path outside --root
        return _fail(str(e))
    tasks = suggest_tasks(suggestions, top_k=args.top_k)
    args.out.write_text(json.dumps(tasks, indent=1, ensure_ascii=False), encoding="utf-8")
    config = args.out.with_suffix(".labeling-config.xml")
    config.write_text(labeling_config(names or []), encoding="utf-8")
    print(f"wrote {len(tasks)} Label Studio tasks, most uncertain first, to {args.out}; labeling config {config}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .label_studio import LabelStudioFormatError, load_export
    from .spec import Example, SpecError, add_examples, dump_spec, load_spec

    try:
        spec = load_spec(args.spec)
        if spec.name != args.bank:
            return _fail(f"{args.spec} is the spec of bank {spec.name!r}, not {args.bank!r}")
        annotated = load_export(args.export, prefix=args.url_prefix, root=args.root)
        additions: dict[str, list[Example]] = {}
        for item in annotated:
            if item.video:
                path = Path(item.video)
                additions.setdefault(item.label, []).append(Example("video", str(path), path.resolve()))
        updated = add_examples(spec, additions)
        dump_spec(updated, args.spec)
    except (SpecError, LabelStudioFormatError, ValueError) as e:
        return _fail(str(e))
    before = sum(len(x.examples) for x in spec.labels)
    after = sum(len(x.examples) for x in updated.labels)
    print(
        f"{args.spec}: {after - before} example(s) added from {len(annotated)} annotated task(s); "
        f"`reelserve labels publish {args.spec}` serves them"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`reelserve labels` and its commands."""
    labels = sub.add_parser(
        "labels",
        help="label banks: publish few-shot banks to a running server, list, roll back; Label Studio loop",
        description="Label banks are versioned data the server scores against (README, 'Label banks and few-shot').",
    )
    cmds = labels.add_subparsers(dest="labels_command", required=True, metavar="COMMAND")

    p = cmds.add_parser(
        "publish",
        help="embed a bank spec through the server and write a new version",
        description="Embed the spec's prompts and examples with the running server, build prototypes, fit the"
        " temperature by leave-one-out, write the next version atomically and make it current.",
    )
    p.add_argument("spec", type=Path, help="the bank spec (YAML)")
    _server_args(p)
    _store_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_publish)

    p = cmds.add_parser("list", help="banks, versions and which is current", description="Read the bank store.")
    p.add_argument("bank", nargs="?", help="only this bank")
    _store_arg(p)
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser(
        "rollback", help="make an earlier version current", description="Point BANK's CURRENT at VERSION."
    )
    p.add_argument("bank")
    p.add_argument("version", type=int)
    _store_arg(p)
    p.set_defaults(func=cmd_rollback)

    p = cmds.add_parser(
        "suggest",
        help="Label Studio tasks with pre-annotations, most uncertain first",
        description="Score videos against a bank and write Label Studio import tasks (predictions with scores)"
        " ordered by entropy, plus the labeling config to create the project with.",
    )
    p.add_argument("videos", type=Path, nargs="+", help="video files")
    p.add_argument("--bank", required=True, help="the label bank to score with")
    p.add_argument("--out", type=Path, required=True, help="tasks JSON to write")
    p.add_argument("--top-k", type=int, default=1, help="predictions per task (default %(default)s)")
    p.add_argument("--url-prefix", default=None, help="e.g. '/data/local-files/?d=' for Label Studio's local files")
    p.add_argument("--root", type=Path, default=None, help="LOCAL_FILES_DOCUMENT_ROOT, with --url-prefix")
    _server_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_suggest)

    p = cmds.add_parser(
        "import",
        help="add a Label Studio export's annotated videos to a bank spec as examples",
        description="Read a Label Studio JSON export and append each annotated video to its label's examples.",
    )
    p.add_argument("export", type=Path, help="Label Studio JSON export")
    p.add_argument("--bank", required=True, help="the bank the spec describes")
    p.add_argument("--spec", type=Path, required=True, help="the bank spec to update (YAML)")
    p.add_argument("--url-prefix", default=None, help="as given to suggest")
    p.add_argument("--root", type=Path, default=None, help="as given to suggest")
    p.set_defaults(func=cmd_import)
