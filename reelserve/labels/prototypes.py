"""Label prototypes from prompts and few-shot examples, a calibrated temperature, and how good the bank is.

Every vector here is an embedding the served model returned: unit norm, so cosine = dot product.

**The prototype of a label** (one unit vector per label, what a request is scored against):

- `p = normalize(mean(prompt embeddings))` when the label has prompts;
- `e = normalize(mean(example embeddings))` when it has support examples (videos or texts);
- both: `normalize(w * e + (1 - w) * p)` with `w = n / (n + k)`, n the number of examples and
  k = `PROMPT_WEIGHT_IN_EXAMPLES` = 2 — the prompts count as two examples' worth. One example
  moves a prompted label a third of the way, ten examples make up 5/6 of it: a shrinkage of
  the few-shot mean toward the zero-shot prior, as Tip-Adapter mixes its zero-shot and cache
  logits;
- only one of them: just `p` or just `e`.

**Scores** of an embedding x: `cos = x @ prototypes.T`, `probs = softmax(cos / T)`,
`entropy = H(probs) / log(C)` in [0, 1] (0 when C == 1) and `margin = top1 - top2` of the
probabilities (top1 when C == 1).

**The temperature T** is fitted by leave-one-out: each support example is scored against the
prototypes with its own label's prototype rebuilt without it (an example whose label would then
be empty is skipped), and T minimises the mean negative log-likelihood of the true labels over
those cosine rows (a log-spaced grid over `TEMPERATURE_RANGE`, then golden-section search). It
is fitted only from `MIN_CALIBRATION_EXAMPLES` = 4 rows spanning at least 2 labels; otherwise the
bank keeps `DEFAULT_TEMPERATURE` = 0.05, a CLIP-like sharpness that is *uncalibrated*
(`calibrated=False`): its probabilities rank labels but are not frequencies.

The leave-one-out accuracy, ECE and NLL reported with a bank are measured on the same rows the
temperature was fitted on, so ECE is optimistic; accuracy does not depend on T.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PROMPT_WEIGHT_IN_EXAMPLES = 2.0  # k: the prompts weigh as much as this many examples
DEFAULT_TEMPERATURE = 0.05  # uncalibrated, CLIP-like (logit scale 20)
MIN_CALIBRATION_EXAMPLES = 4  # leave-one-out rows needed (spanning >= 2 labels) to fit T
# T is searched in here, log-spaced. Never sharper than the default: a few clean support clips make the
# leave-one-out NLL fall all the way to the floor, and every answer, even for a clip about none of
# the labels, would come out one-hot (measured on the demo bank: entropy 1e-5 off topic at T = 0.01).
TEMPERATURE_RANGE = (DEFAULT_TEMPERATURE, 2.0)
_GRID_POINTS = 60
_GOLDEN_STEPS = 40
_EPS = 1e-12


@dataclass(frozen=True)
class LabelEmbeddings:
    """One label's embedded prompts [P, E] and support examples [N, E]; P or N may be 0."""

    name: str
    prompts: np.ndarray
    examples: np.ndarray


@dataclass(frozen=True)
class BuiltBank:
    """Prototypes and temperature, with what leave-one-out measured (None where nothing was)."""

    names: tuple[str, ...]
    prototypes: np.ndarray  # [C, E] float32, unit rows, read-only
    temperature: float
    calibrated: bool
    loo_accuracy: float | None
    ece: float | None
    nll: float | None
    loo_items: int
    counts: dict[str, dict[str, int]]  # name -> {"prompts": P, "examples": N}

    def report(self) -> dict:
        """The JSON-ready summary a published version carries."""
        return {
            "temperature": self.temperature,
            "calibrated": self.calibrated,
            "loo_accuracy": self.loo_accuracy,
            "ece": self.ece,
            "nll": self.nll,
            "loo_items": self.loo_items,
            "counts": {name: dict(c) for name, c in self.counts.items()},
        }


def _rows(vectors: object, what: str, dim: int | None = None) -> np.ndarray:
    """[n, E] float64 unit rows; re-normalised so that cosine = dot product even after fp16 transport."""
    a = np.asarray(vectors, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array [n, E], got shape {list(a.shape)}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{what}: embedding size {a.shape[1]}, expected {dim} like the others")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: non-finite values (NaN or inf)")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if a.shape[0] and norms.min() < 1e-6:
        raise ValueError(f"{what}: row {int(norms.argmin())} is a zero vector")
    return a / np.maximum(norms, _EPS)


def _normalize(v: np.ndarray, what: str) -> np.ndarray:
    norm = np.linalg.norm(v)
    if norm < 1e-6:
        raise ValueError(f"{what} is a zero vector (embeddings that cancel out); no direction to score against")
    return v / norm


def _mix(p: np.ndarray | None, e: np.ndarray | None, n: int) -> np.ndarray:
    """The prototype rule, on already-normalised means (either may be None, not both)."""
    if e is None or n == 0:
        return p
    if p is None:
        return e
    w = n / (n + PROMPT_WEIGHT_IN_EXAMPLES)
    return w * e + (1.0 - w) * p


def _prototype(prompts: np.ndarray, examples: np.ndarray, what: str) -> np.ndarray:
    p = _normalize(prompts.mean(axis=0), f"{what}: the mean prompt embedding") if len(prompts) else None
    e = _normalize(examples.mean(axis=0), f"{what}: the mean example embedding") if len(examples) else None
    if p is None and e is None:
        raise ValueError(f"{what}: no prompt and no example embeddings")
    return _normalize(_mix(p, e, len(examples)), f"{what}: the prototype")


def prototype(prompts: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """One label's prototype [E] float32 from prompts [P, E] and examples [N, E] (the module's rule)."""
    prompts = _rows(prompts, "prompts")
    examples = _rows(examples, "examples", prompts.shape[1])
    return _prototype(prompts, examples, "label").astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    ez = np.exp(z)
    return ez / ez.sum(axis=1, keepdims=True)


def scores(
    embeddings: np.ndarray, prototypes: np.ndarray, temperature: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cos [B, C], probs [B, C], entropy [B], margin [B]), float32, for unit embeddings [B, E]."""
    x = np.asarray(embeddings, dtype=np.float64)
    protos = np.asarray(prototypes, dtype=np.float64)
    if x.ndim != 2 or protos.ndim != 2 or x.shape[1] != protos.shape[1] or protos.shape[0] == 0:
        raise ValueError(f"embeddings {list(x.shape)} and prototypes {list(protos.shape)}: expected [B, E] and [C, E]")
    if not (np.isfinite(x).all() and np.isfinite(protos).all()):
        raise ValueError("embeddings or prototypes hold non-finite values")
    if isinstance(temperature, bool) or not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    cos = x @ protos.T
    probs = _softmax(cos / temperature)
    classes = protos.shape[0]
    if classes == 1:
        entropy = np.zeros(len(x))
        margin = probs[:, 0]
    else:
        plogp = probs * np.log(np.maximum(probs, np.finfo(np.float64).tiny))
        entropy = np.clip(-plogp.sum(axis=1) / math.log(classes), 0.0, 1.0)
        top2 = np.sort(probs, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    f32 = np.float32
    return cos.astype(f32), probs.astype(f32), entropy.astype(f32), margin.astype(f32)


def _check_rows(cos_rows: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cos = np.asarray(cos_rows, dtype=np.float64)
    y = np.asarray(targets)
    if cos.ndim != 2 or y.shape != (cos.shape[0],) or cos.shape[0] == 0:
        raise ValueError(f"expected rows [M, C] with M >= 1 and targets [M], got {list(cos.shape)} and {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= cos.shape[1]:
        raise ValueError(f"targets must be integer label indices in [0, {cos.shape[1]})")
    if not np.isfinite(cos).all():
        raise ValueError("non-finite values in the rows")
    return cos, y.astype(np.int64)


def _nll(cos: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true labels under softmax(cos / T)."""
    z = cos / temperature
    top = z.max(axis=1)
    logsumexp = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float(np.mean(logsumexp - z[np.arange(len(y)), y]))


def fit_temperature(cos_rows: np.ndarray, targets: np.ndarray) -> float:
    """The T in `TEMPERATURE_RANGE` minimising the mean NLL of `targets` under softmax(cos_rows / T).

    The NLL is convex in 1/T, hence unimodal in log T: a coarse log grid finds the bracket and
    golden-section search refines it. Separable rows drive T to the range's lower end.
    """
    cos, y = _check_rows(cos_rows, targets)
    if cos.shape[1] < 2:
        raise ValueError("fitting a temperature needs at least 2 labels")
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    grid = np.linspace(lo, hi, _GRID_POINTS)
    losses = [_nll(cos, y, math.exp(g)) for g in grid]
    best = int(np.argmin(losses))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, _GRID_POINTS - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _nll(cos, y, math.exp(c)), _nll(cos, y, math.exp(d))
    for _ in range(_GOLDEN_STEPS):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _nll(cos, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _nll(cos, y, math.exp(d))
    candidates = [(losses[best], grid[best]), (fc, c), (fd, d)]
    return float(math.exp(min(candidates)[1]))


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 10) -> float:
    """ECE: |accuracy - confidence| of the top label, averaged over equal-width confidence bins (lo, hi]."""
    p, y = _check_rows(probs, targets)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / len(y))


def _leave_one_out(
    prompts: list[np.ndarray], examples: list[np.ndarray], protos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine rows [M, C] of every support example against the prototypes with its own one rebuilt without it."""
    rows, targets = [], []
    for label, (ps, xs) in enumerate(zip(prompts, examples, strict=True)):
        n = len(xs)
        if n == 0 or (n == 1 and len(ps) == 0):
            continue
        p = _normalize(ps.mean(axis=0), "mean prompt") if len(ps) else None
        cos = xs @ protos.T  # [n, C]
        if n > 1:
            rest = (xs.sum(axis=0)[None, :] - xs) / (n - 1)  # [n, E]: the mean of the others
            norms = np.linalg.norm(rest, axis=1, keepdims=True)
            usable = norms[:, 0] >= 1e-6  # the others may cancel out; such a row has no prototype
            e = rest / np.maximum(norms, _EPS)
            own = _mix(p, e, n - 1)
            own = own / np.maximum(np.linalg.norm(own, axis=1, keepdims=True), _EPS)
            usable &= np.linalg.norm(own, axis=1) >= 0.5
        else:  # the only example: the label falls back to its prompts
            own, usable = p[None, :], np.ones(1, dtype=bool)
        cos[:, label] = np.sum(xs * own, axis=1)
        rows.append(cos[usable])
        targets.append(np.full(int(usable.sum()), label, dtype=np.int64))
    if not rows:
        return np.zeros((0, protos.shape[0])), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(targets)


def build_bank(labels: Sequence[LabelEmbeddings]) -> BuiltBank:
    """Prototypes for `labels` (in order), a leave-one-out temperature and the bank's quality report."""
    if not labels:
        raise ValueError("a bank needs at least one label")
    names = tuple(label.name for label in labels)
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"label names must be non-empty strings, got {name!r}")
        if name in seen:
            raise ValueError(f"duplicate label name {name!r}")
        seen.add(name)
    dim: int | None = None
    prompts, examples = [], []
    for label in labels:
        ps = _rows(label.prompts, f"label {label.name!r} prompts", dim)
        dim = ps.shape[1]
        xs = _rows(label.examples, f"label {label.name!r} examples", dim)
        if len(ps) + len(xs) == 0:
            raise ValueError(f"label {label.name!r}: no prompt and no example embeddings")
        prompts.append(ps)
        examples.append(xs)
    protos = np.stack([_prototype(ps, xs, f"label {n!r}") for n, ps, xs in zip(names, prompts, examples, strict=True)])
    cos, y = _leave_one_out(prompts, examples, protos)
    calibrated = len(y) >= MIN_CALIBRATION_EXAMPLES and len(np.unique(y)) >= 2
    temperature = fit_temperature(cos, y) if calibrated else DEFAULT_TEMPERATURE
    accuracy = ece = nll = None
    if len(y) and len(labels) >= 2:
        accuracy = float(np.mean(cos.argmax(axis=1) == y))
        ece = expected_calibration_error(_softmax(cos / temperature), y)
        nll = _nll(cos, y, temperature)
    out = protos.astype(np.float32)
    out.setflags(write=False)
    counts = {n: {"prompts": len(ps), "examples": len(xs)} for n, ps, xs in zip(names, prompts, examples, strict=True)}
    return BuiltBank(names, out, float(temperature), calibrated, accuracy, ece, nll, len(y), counts)
