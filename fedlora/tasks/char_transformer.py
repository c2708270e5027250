"""A tiny character-level transformer language model (GPT-style, pre-norm).

Written so that a numpy runtime can mirror it operation by operation: attention is spelled
out (scores, causal mask, softmax, weighted sum) instead of calling
``F.scaled_dot_product_attention``; there is no dropout; LayerNorm uses torch's default
``eps=1e-5``; GELU is the tanh approximation.

Module names are a contract: factorization and the device runtime find the dense layers by
``blocks.{i}.attn.{q,k,v,o}``, ``blocks.{i}.ffn.{fc1,fc2}`` and ``head``.

Notation in shape comments: B batch, T time (≤ context), C = d_model, nh heads,
hs = C / nh head size, V vocabulary size.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions ≤ t only."""

    def __init__(self, d_model: int, n_heads: int, context: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.o = nn.Linear(d_model, d_model)
        # True where attention is allowed; a buffer, not a parameter, and not saved
        allowed = torch.tril(torch.ones(context, context, dtype=torch.bool))
        self.register_buffer("allowed", allowed.view(1, 1, context, context), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        q = self.q(x).view(B, T, nh, hs)  # (B, T, nh, hs)
        k = self.k(x).view(B, T, nh, hs)
        v = self.v(x).view(B, T, nh, hs)
        blocked = ~self.allowed[0, 0, :T, :T]
        # One head at a time, and q, k, v dropped before the output projection: the
        # largest temporary is one head's (T, T) score matrix, not every head's at once,
        # which is part of what lets a 256 KB microcontroller train at the full context.
        # The arithmetic is unchanged.
        y = torch.cat([self._head(q[:, :, h], k[:, :, h], v[:, :, h], blocked) for h in range(nh)], dim=-1)  # (B, T, C)
        del q, k, v
        return self.o(y)

    @staticmethod
    def _head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        """One head: q, k, v (B, T, hs) -> (B, T, hs)."""
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, T, T)
        scores.masked_fill_(blocked, float("-inf"))  # in place: one (T, T) temporary fewer
        return torch.softmax(scores, dim=-1) @ v  # rows of the weights sum to 1


class FeedForward(nn.Module):
    """Position-wise MLP: ``fc2(gelu_tanh(fc1(x)))``."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(d_ff, d_model)

    #: tokens per slice of the hidden activations
    SLICE = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The 4×-wide hidden activations are made a few tokens at a time: what backward
        # saves is unchanged, but the transient peak of a forward pass shrinks by
        # T / SLICE — part of what lets a 256 KB microcontroller train. Same arithmetic
        # per token.
        parts = [self.fc2(self.act(self.fc1(part))) for part in x.split(self.SLICE, dim=1)]  # (B, ≤SLICE, C) each
        return torch.cat(parts, dim=1)  # (B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + ffn(ln2(x))``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, context: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, context)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class CharTransformer(nn.Module):
    """Token ids (B, T) → next-token logits (B, T, V), with learned positions, T ≤ ``context``."""

    def __init__(
        self,
        vocab_size: int,
        context: int = 64,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int = 256,
    ):
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, context) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(_init_weights)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        if T > self.context:
            raise ValueError(f"sequence of {T} tokens is longer than the context of {self.context}")
        positions = torch.arange(T, device=tokens.device)
        x = self.tok_emb(tokens) + self.pos_emb(positions)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))  # (B, T, V)


def _init_weights(module: nn.Module) -> None:
    # GPT-2's initialisation: small normal weights keep the residual stream near unit scale
    # at the start, so the untrained model predicts a near-uniform distribution
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear):
        nn.init.zeros_(module.bias)
