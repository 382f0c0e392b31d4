"""What the load test sends: a weighted mix of real feature calls, rendered once before the clock starts.

Short-video traffic is not one request repeated: uploads differ in length, resolution and codec,
and comment/caption embedding calls (text only) are cheap and frequent. A `RequestMix` holds
concrete payloads per kind and draws them with a seeded RNG, so two runs send the same sequence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from reelserve.spec import contract as c


@dataclass(frozen=True)
class WorkItem:
    """One feature call: `kind` names it in reports; `model` is the ensemble it hits."""

    kind: str
    model: str
    videos: tuple[bytes, ...] = ()
    texts: tuple[str, ...] = ()

    @property
    def payload_bytes(self) -> int:
        return sum(map(len, self.videos)) + sum(len(t.encode()) for t in self.texts)


@dataclass(frozen=True)
class Kind:
    """A request kind and how to render its payloads (called once, before the run)."""

    name: str
    model: str
    describe: str
    seconds: float = 0.0  # clip length; 0 = text only
    size: tuple[int, int] = (288, 512)  # (width, height)
    codec: str = "h264"


# The kinds a default mix draws from: short portrait uploads of three lengths, and text-only calls.
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("video_short", c.VIDEO_FEATURES, "2 s portrait 288x512 h264 + title", seconds=2.0),
        Kind("video_long", c.VIDEO_FEATURES, "8 s portrait 288x512 h264 + title", seconds=8.0),
        Kind("video_hd_vp9", c.VIDEO_FEATURES, "4 s 720x1280 vp9 + title", seconds=4.0, size=(720, 1280), codec="vp9"),
        Kind("text", c.TEXT_FEATURES, "one comment or caption, any language"),
    )
}

DEFAULT_MIX = {"video_short": 0.5, "video_long": 0.15, "video_hd_vp9": 0.05, "text": 0.3}

_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle_left")
_TEXTS = (
    "My cat Chelsea taking a nap",
    "我家的猫在窗边晒太阳",
    "Café de la mañana ☕",
    "ロケット打ち上げの瞬間",
    "what a cute kitten, where was this filmed?",
    "Motorrad-Tour am Wochenende",
    "Астронавт на орбите",
    "this espresso looks amazing 😍 #coffee #morning",
)


def parse_mix(spec: str) -> dict[str, float]:
    """`"video_short=0.7,text=0.3"` -> weights; names must be in `KINDS`, weights positive."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, weight = part.partition("=")
        if not sep or name not in KINDS:
            raise ValueError(f"mix entry {part!r}: want NAME=WEIGHT with NAME in {sorted(KINDS)}")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise ValueError(f"mix entry {part!r}: weight {weight!r} is not a number") from None
        if not mix[name] > 0:
            raise ValueError(f"mix entry {part!r}: weight must be > 0")
    if not mix:
        raise ValueError("the request mix is empty")
    return mix


@dataclass
class RequestMix:
    """Payloads per kind and their weights; `draw()` picks the next request."""

    weights: dict[str, float]
    items: dict[str, list[WorkItem]]
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._names = list(self.weights)
        self._cum = [sum(list(self.weights.values())[: i + 1]) for i in range(len(self._names))]

    def draw(self) -> WorkItem:
        name = self._rng.choices(self._names, cum_weights=self._cum)[0]
        return self._rng.choice(self.items[name])

    def describe(self) -> dict[str, dict]:
        total = sum(self.weights.values())
        return {
            name: {
                "weight": w / total,
                "model": KINDS[name].model,
                "what": KINDS[name].describe,
                "mean_payload_bytes": round(sum(i.payload_bytes for i in self.items[name]) / len(self.items[name])),
            }
            for name, w in self.weights.items()
        }


def build_mix(weights: dict[str, float], *, variants: int = 3, seed: int = 0) -> RequestMix:
    """Render `variants` payloads per kind (different photos, moves and titles), deterministically."""
    from reelserve.samples import load_photo, render_clip

    rng = random.Random(seed)
    items: dict[str, list[WorkItem]] = {}
    for name in weights:
        kind = KINDS[name]
        items[name] = []
        for v in range(variants):
            text = _TEXTS[rng.randrange(len(_TEXTS))]
            if kind.seconds == 0:
                items[name].append(WorkItem(name, kind.model, texts=(text,)))
                continue
            clip = render_clip(
                load_photo(_PHOTOS[(v + len(items)) % len(_PHOTOS)]),
                seconds=kind.seconds,
                size=kind.size,
                codec=kind.codec,
                motion=("zoom", "pan", "still")[v % 3],
                seed=v,
            )
            items[name].append(WorkItem(name, kind.model, videos=(clip,), texts=(text,)))
    return RequestMix(dict(weights), items, seed=seed)


def single_item_mix(item: WorkItem) -> RequestMix:
    """A mix of one fixed request (the side-by-side benchmark sends the same call to every server)."""
    return RequestMix({item.kind: 1.0}, {item.kind: [item]})
