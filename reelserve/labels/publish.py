"""`reelserve labels publish`: a bank spec -> embeddings from the served model -> a new bank version.

Prompts and examples are embedded by the server being published to (`text_features`,
`video_features`), so prototypes live in exactly the space requests are embedded in; the version
is stamped with that space (`embedding_space`), and a server running another export refuses it.
Nothing is written unless every prompt and example was embedded: an example the server refuses
fails the publish, naming the label and item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reelserve.client import InvalidArgumentError, VideoFeaturesClient

from .prototypes import TEMPERATURE_RANGE, BuiltBank, LabelEmbeddings, build_bank
from .spec import BankSpec, Example
from .store import Bank, BankStore


class PublishError(RuntimeError):
    """The bank could not be built; the message names the label and item. No version was written."""


@dataclass(frozen=True)
class Published:
    bank: Bank
    built: BuiltBank


def _embed_texts(client: VideoFeaturesClient, texts: Sequence[str], where: str) -> list[np.ndarray]:
    if not texts:
        return []
    try:
        return [f.embedding for f in client.text_features_batched(list(texts))]
    except InvalidArgumentError as e:
        raise PublishError(f"{where}: the server refused a text: {e.details}") from None


def _embed_video(client: VideoFeaturesClient, example: Example, where: str) -> np.ndarray:
    try:
        data = Path(example.path or example.value).read_bytes()
    except OSError as e:
        raise PublishError(f"{where}: cannot read {example.value!r}: {e.strerror or e}") from None
    try:
        (features,) = client.video_features([data], [""])
    except InvalidArgumentError as e:
        raise PublishError(f"{where}: the server refused the video {example.value!r}: {e.details}") from None
    return features.embedding


def embed_spec(
    client: VideoFeaturesClient, spec: BankSpec, progress: Callable[[int], None] = lambda n: None
) -> list[LabelEmbeddings]:
    """Every prompt and example of `spec` embedded by the server; `progress(n)` after each n items."""
    out = []
    for i, label in enumerate(spec.labels):
        where = f"labels[{i}] ({label.name!r})"
        prompts = _embed_texts(client, label.prompts, f"{where} prompts")
        progress(len(label.prompts))
        examples = []
        for j, example in enumerate(label.examples):
            item = f"{where} examples[{j}]"
            if example.kind == "video":
                examples.append(_embed_video(client, example, item))
            else:
                examples.extend(_embed_texts(client, [example.value], item))
            progress(1)
        dim = len([*prompts, *examples][0])  # a spec's label has a prompt or an example
        out.append(LabelEmbeddings(label.name, _rows(prompts, dim), _rows(examples, dim)))
    return out


def _rows(vectors: list[np.ndarray], dim: int) -> np.ndarray:
    return np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)


def publish(
    client: VideoFeaturesClient,
    spec: BankSpec,
    store_root: Path,
    *,
    progress: Callable[[int], None] = lambda n: None,
) -> Published:
    """Embed, build, write the next version of `spec.name` into the store and make it current."""
    space = client.embedding_space()
    if not space:
        raise PublishError("the server's ensembles name no embedding space (a repository exported before label banks)")
    labels = embed_spec(client, spec, progress)
    try:
        built = build_bank(labels)
    except ValueError as e:
        raise PublishError(f"bank {spec.name!r}: {e}") from None
    report = {**built.report(), "spec": str(spec.source) if spec.source else None}
    bank = Bank(
        name=spec.name,
        version=0,  # the store numbers it
        labels=built.names,
        prototypes=np.asarray(built.prototypes, dtype=np.float32),
        temperature=built.temperature,
        calibrated=built.calibrated,
        embedding_space=space,
        report=report,
    )
    return Published(BankStore(store_root).publish(bank), built)


def summary(published: Published) -> list[str]:
    """What a publish built, one line per label and one for the temperature (printed by the CLI and the demo)."""
    bank, built = published.bank, published.built
    lines = [
        f"  {name:24s} {built.counts[name]['prompts']:3d} prompt(s) {built.counts[name]['examples']:3d} example(s)"
        for name in bank.labels
    ]
    if built.calibrated:
        floor = " (its floor: the examples separate cleanly)" if built.temperature <= TEMPERATURE_RANGE[0] else ""
        lines.append(
            f"  temperature {built.temperature:.4f}{floor} fitted by leave-one-out on {built.loo_items} examples: "
            f"accuracy {built.loo_accuracy:.3f}, ECE {built.ece:.3f}, NLL {built.nll:.3f}"
        )
    else:
        acc = f"; leave-one-out accuracy {built.loo_accuracy:.3f}" if built.loo_accuracy is not None else ""
        lines.append(f"  temperature {built.temperature:g} (uncalibrated: too few examples to fit one){acc}")
    return lines


def items_in(spec: BankSpec) -> int:
    return sum(len(label.prompts) + len(label.examples) for label in spec.labels)
