"""Real text corpora that ship in packages: ImageNet-1k class names and ImageNet-21k concepts.

They come as data files inside the `timm` wheel (installed with --no-deps; `import timm` would
need torchvision), so we locate the folder without importing it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


def timm_info_dir() -> Path:
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("ImageNet class names come from timm's data files: pip install --no-deps timm")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"


def _tsv(path: Path) -> dict[str, str]:
    pairs = (line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line)
    return {k: v.strip() for k, v in pairs}


@dataclass(frozen=True)
class Concept:
    synset: str
    lemmas: tuple[str, ...]  # WordNet lemmas, most common first
    definition: str

    @property
    def name(self) -> str:
        return self.lemmas[0]


def imagenet_1k_classes() -> list[Concept]:
    """The 1,000 classes in the classifier's logit order (sorted WordNet ids)."""
    info = timm_info_dir()
    lemmas, definitions = _tsv(info / "imagenet_synset_to_lemma.txt"), _tsv(info / "imagenet_synset_to_definition.txt")
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    if len(synsets) != 1000:
        raise RuntimeError(f"expected 1000 ImageNet-1k synsets in {info}, found {len(synsets)}")
    return [_concept(s, lemmas, definitions) for s in synsets]


def imagenet_21k_concepts() -> list[Concept]:
    """All 21,8xx WordNet concepts with names and definitions: the semantic-ID fitting corpus."""
    info = timm_info_dir()
    lemmas, definitions = _tsv(info / "imagenet_synset_to_lemma.txt"), _tsv(info / "imagenet_synset_to_definition.txt")
    return [_concept(s, lemmas, definitions) for s in sorted(lemmas)]


def _concept(synset: str, lemmas: dict[str, str], definitions: dict[str, str]) -> Concept:
    names = tuple(n.strip() for n in lemmas[synset].split(",") if n.strip())
    return Concept(synset, names, definitions.get(synset, ""))
