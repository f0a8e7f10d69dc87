"""Small models in plain PyTorch, split into pipeline stages the way the planner splits them
(dp_stage_layers: layers evenly, in order): a decoder-only GPT. Tokens are synthetic,
deterministic per sample."""
import torch
from torch import nn

from . import _lib

IGNORE = -100


class Block(nn.Module):
    """Pre-norm causal self-attention and MLP."""

    def __init__(self, hidden, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(),
                                 nn.Linear(4 * hidden, hidden))

    def forward(self, x):
        T = x.shape[1]
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class GPTStage(nn.Module):
    """Stage `stage` of `stages`: the embeddings on the first, its blocks, the final norm and
    head on the last. Input: token ids [b, T] (first) or activations [b, T, hidden]."""

    def __init__(self, gpt, stage, stages, first_layer, n_layers):
        super().__init__()
        self.first, self.last = stage == 0, stage == stages - 1
        self.tok = gpt.tok if self.first else None
        self.pos = gpt.pos if self.first else None
        self.blocks = nn.ModuleList(gpt.blocks[first_layer:first_layer + n_layers])
        self.ln = gpt.ln if self.last else None
        self.head = gpt.head if self.last else None

    def forward(self, x):
        if self.first:
            T = x.shape[1]
            x = self.tok(x) + self.pos(torch.arange(T))[None]
        for b in self.blocks:
            x = b(x)
        if self.last:
            x = self.head(self.ln(x))
        return x


class TinyGPT(nn.Module):
    def __init__(self, vocab=256, hidden=64, layers=4, heads=4, max_len=512, seed=0):
        super().__init__()
        g = torch.random.fork_rng()
        with g:
            torch.manual_seed(seed)
            self.tok = nn.Embedding(vocab, hidden)
            self.pos = nn.Embedding(max_len, hidden)
            self.blocks = nn.ModuleList(Block(hidden, heads) for _ in range(layers))
            self.ln = nn.LayerNorm(hidden)
            self.head = nn.Linear(hidden, vocab, bias=False)
        self.vocab, self.hidden, self.layers, self.max_len = vocab, hidden, layers, max_len

    def forward(self, ids):
        return GPTStage(self, 0, 1, 0, self.layers)(ids)

    def stage(self, cfg, stage):
        """The stage module of pipeline rank `stage` under planner config cfg (which must
        have layers_enc = self.layers), sharing this model's parameters."""
        import ctypes
        if cfg.layers_enc != self.layers:
            raise ValueError(f"config has {cfg.layers_enc} layers, the model {self.layers}")
        first = 0
        for s in range(stage + 1):
            e, d = ctypes.c_int(), ctypes.c_int()
            _lib.dp_stage_layers(ctypes.byref(cfg), s, ctypes.byref(e), ctypes.byref(d))
            if s < stage:
                first += e.value
        return GPTStage(self, stage, cfg.stages, first, e.value)


def sample_tokens(index, length, vocab, seed=0):
    """The synthetic tokens of sample `index`: the same on every rank and in every run."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return torch.randint(0, vocab, (length,), generator=g)


def gpt_batch(samples, idx, padded_len, vocab, seed=0):
    """A GPT micro-batch of the samples idx (input + target tokens each), right-padded to
    padded_len: (ids [b, T], labels [b, T] with IGNORE where nothing is predicted: next-token
    prediction over each sample's real tokens)."""
    ids = torch.zeros(len(idx), padded_len, dtype=torch.long)
    labels = torch.full((len(idx), padded_len), IGNORE, dtype=torch.long)
    for r, i in enumerate(idx):
        L = samples[i][0] + samples[i][1]
        if L > padded_len:
            raise ValueError(f"sample {i}: {L} tokens in a micro-batch padded to {padded_len}")
        t = sample_tokens(i, L, vocab, seed)
        ids[r, :L] = t
        labels[r, :L - 1] = t[1:]
    return ids, labels


def real_predictions(samples):
    """Tokens predicted in a batch: each sample's length - 1 (the loss's normaliser)."""
    return sum(a + b - 1 for a, b in samples)
