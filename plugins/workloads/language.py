"""The torch side of the `tinylm` workload: a character-level decoder-only transformer trained on
the text of the standard library's `pydoc_data.topics` (Python's own help topics, installed with
every Python, so no download and no data folder).

autotune.plugins.workloads.catalog registers `tinylm` without importing this module; its factory
imports it when called, so torch loads only when the workload is built.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

# Small enough that 200 steps of 64 windows train in ~10 s on 2 idle CPU cores (measured: 8.4 s,
# and 1.1 s for the validations); see the factory, autotune.plugins.workloads.catalog.tinylm.
BLOCK_SIZE = 64
D_MODEL = 64
N_LAYERS = 2
N_HEADS = 4
VAL_FRACTION = 0.1


def corpus() -> str:
    """The help topics of `pydoc_data.topics`, in key order, one blank line apart. The text is
    the running Python's own, so the vocabulary and the numbers differ a little between Python
    versions (not between runs)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


class CharVocabulary:
    """Every distinct character of a text, in code-point order; a character's id is its index."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.ids = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.ids[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class CharWindows(Dataset):
    """Non-overlapping windows of `block_size + 1` characters of an encoded text: item i is
    `{"input_ids": chars[0:block], "labels": chars[1:block+1]}` of window i, so `labels[t]` is the
    character after `input_ids[t]`. A tail shorter than a window is left out."""

    def __init__(self, ids: torch.Tensor, block_size: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1 but got {block_size}.")
        self.ids = ids
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.ids) // (self.block_size + 1)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range (the set has {len(self)})")
        start = index * (self.block_size + 1)
        window = self.ids[start : start + self.block_size + 1]
        return {"input_ids": window[:-1], "labels": window[1:]}


def tinylm_datasets(block_size: int = BLOCK_SIZE) -> tuple[CharVocabulary, CharWindows, CharWindows]:
    """(vocabulary, train, val): the corpus split by position, the first 90% to train on and the
    last 10% to validate on (a split by position keeps validation text unseen, as a random split
    of overlapping-context windows would not)."""
    text = corpus()
    vocab = CharVocabulary(text)
    ids = vocab.encode(text)
    cut = int(len(ids) * (1 - VAL_FRACTION))
    return vocab, CharWindows(ids[:cut], block_size), CharWindows(ids[cut:], block_size)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads}).")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        # (B, T, C) -> (B, heads, T, C / heads)
        q, k, v = (t.view(batch, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """A GPT-style decoder: token + learned position embeddings, `n_layers` pre-LN blocks, a final
    LayerNorm and a linear head to next-token logits, `forward(ids[B, T]) -> logits[B, T, vocab]`.

    Initialised as nanoGPT does (normal(0, 0.02), residual projections scaled by
    1/sqrt(2 * n_layers)), so the first loss is close to ln(vocab_size) (a little below it when
    tied: the head then already favours repeating the input character). With `tie_weights` the
    head shares the token embedding's matrix (GPT-2, nanoGPT).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int = BLOCK_SIZE,
        d_model: int = D_MODEL,
        n_layers: int = N_LAYERS,
        n_heads: int = N_HEADS,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.tokens.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for residual in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(residual.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        if length > self.block_size:
            raise ValueError(f"sequence of {length} tokens is longer than block_size {self.block_size}")
        x = self.tokens(ids) + self.positions(torch.arange(length, device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def train_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over every token of the batch."""
    logits = model(batch["input_ids"])
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten())


def evaluate(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """val_loss (mean token cross-entropy), perplexity (exp of it) and next-character accuracy.

    Every sample holds the same number of tokens, so the means over tokens are also the means
    over samples that the engine's contract asks for (and that it weights processes by)."""
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct, tokens = 0, 0
    for batch in batches:
        logits = model(batch["input_ids"]).flatten(0, 1).float()
        labels = batch["labels"].flatten()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double().cpu()
        correct += int((logits.argmax(dim=1) == labels).sum().item())
        tokens += labels.numel()
    val_loss = float(loss_sum) / max(tokens, 1)
    # a diverged model's loss can pass exp's range (~709): its perplexity is then infinite
    perplexity = math.exp(val_loss) if val_loss < 700 else math.inf
    return {"val_loss": val_loss, "perplexity": perplexity, "accuracy": correct / max(tokens, 1)}
