"""What both open_clip conversions share: the tensor names of open_clip's transformer block, the packed
attention projections, and a reader that says in one line what a checkpoint lacks or holds beyond what the
converter knows (`trendgen.model.open_clip_format`, `trendgen.model.open_clip_siglip`)."""

from __future__ import annotations

import torch
from torch import Tensor

from trendgen.errors import TrendgenError

__all__ = ["RESBLOCK", "StateReader", "block_pairs", "join_qkv", "split_qkv"]

# open_clip's `ResidualAttentionBlock` -> transformers' encoder layer (the attention's q|k|v are packed apart)
RESBLOCK = (
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("attn.out_proj", "self_attn.out_proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)


def block_pairs(oc: str, hf: str, names: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """(open_clip key, transformers key) of the weight and bias of each (open_clip, transformers) module."""
    return [(f"{oc}{a}.{w}", f"{hf}{b}.{w}") for a, b in names for w in ("weight", "bias")]


def split_qkv(packed: Tensor, hf: str, kind: str) -> dict[str, Tensor]:
    """A packed q|k|v weight or bias as transformers' three projections under the attention prefix `hf`."""
    q, k, v = packed.chunk(3)
    return {f"{hf}q_proj.{kind}": q, f"{hf}k_proj.{kind}": k, f"{hf}v_proj.{kind}": v}


def join_qkv(state: dict[str, Tensor], hf: str, kind: str) -> Tensor:
    """transformers' three projections under `hf`, packed q|k|v as open_clip keeps them."""
    return torch.cat([state[f"{hf}{p}_proj.{kind}"] for p in "qkv"])


class StateReader:
    """An open_clip state dict read by name: a missing tensor is one line, and so is any left unread."""

    def __init__(self, state: dict[str, Tensor], source: str) -> None:
        self.state, self.source, self.read = state, source, set()

    def __getitem__(self, key: str) -> Tensor:
        if key not in self.state:
            raise TrendgenError(f"open_clip model {self.source}: its weights lack {key!r}")
        self.read.add(key)
        return self.state[key]

    def check_all_read(self) -> None:
        extra = sorted(set(self.state) - self.read)
        if extra:
            raise TrendgenError(
                f"open_clip model {self.source}: weights the converter does not know: {extra[0]!r}"
            )
