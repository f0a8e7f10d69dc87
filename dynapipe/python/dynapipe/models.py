"""Small models in plain PyTorch, split into pipeline stages the way the planner splits them
(dp_stage_layers: layers evenly, in order, encoder first): a decoder-only GPT and a T5-style
encoder-decoder. Tokens are synthetic, deterministic per sample.

A stage module takes the tuple of tensors its predecessor sent (empty on the first stage)
and the micro-batch's data (a dict: token ids, labels, padding masks, "shape" = (micro-batch
size, padded input, padded target)), and returns the tuple it sends on (the last stage: the
logits). in_shapes / out_shapes give those tuples' shapes for a stream's (b, pin, ptgt), and
loss() the last stage's summed token loss."""
import ctypes

import torch
import torch.nn.functional as F
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


def token_loss(logits, labels):
    """Summed cross-entropy over the positions whose label is not IGNORE."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


class GPTStage(nn.Module):
    """Stage `stage` of `stages`: the embeddings on the first, its blocks, the final norm and
    head on the last. Sends (activations [b, T, hidden],)."""

    def __init__(self, gpt, stage, stages, first_layer, n_layers):
        super().__init__()
        self.first, self.last = stage == 0, stage == stages - 1
        self.hidden = gpt.hidden
        self.tok = gpt.tok if self.first else None
        self.pos = gpt.pos if self.first else None
        self.blocks = nn.ModuleList(gpt.blocks[first_layer:first_layer + n_layers])
        self.ln = gpt.ln if self.last else None
        self.head = gpt.head if self.last else None

    def in_shapes(self, b, pin, ptgt):
        return [] if self.first else [(b, pin + ptgt, self.hidden)]

    def out_shapes(self, b, pin, ptgt):
        return [(b, pin + ptgt, self.hidden)]

    def forward(self, xs, batch):
        if self.first:
            ids = batch["ids"]
            x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))[None]
        else:
            x = xs[0]
        for b in self.blocks:
            x = b(x)
        if self.last:
            x = self.head(self.ln(x))
        return (x,)

    def loss(self, ys, batch):
        return token_loss(ys[0], batch["labels"])


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
        return GPTStage(self, 0, 1, 0, self.layers)((), {"ids": ids})[0]

    def stage(self, cfg, stage):
        """The stage module of pipeline rank `stage` under planner config cfg (which must
        have layers_enc = self.layers), sharing this model's parameters."""
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


def lengths(samples):
    """(input_len, target_len) of each sample: a pair of lengths (synthetic tokens) or a
    dict with token ids ("input_ids", "target_ids"; lists or tensors)."""
    return [(len(s["input_ids"]), len(s["target_ids"])) if isinstance(s, dict) else
            (int(s[0]), int(s[1])) for s in samples]


def tokens_of(samples, i, vocab, seed=0, gpt=True):
    """Sample i's tokens: (input, target) tensors (GPT: the sequence as one tensor), its own
    token ids, or synthetic ones from its lengths."""
    s = samples[i]
    if isinstance(s, dict):
        a = torch.as_tensor(s["input_ids"], dtype=torch.long).reshape(-1)
        t = torch.as_tensor(s["target_ids"], dtype=torch.long).reshape(-1)
        return torch.cat([a, t]) if gpt else (a, t)
    if gpt:
        return sample_tokens(i, int(s[0]) + int(s[1]), vocab, seed)
    return (sample_tokens(i, int(s[0]), vocab, seed),
            sample_tokens(i + 1_000_000_007, int(s[1]), vocab, seed))


def gpt_batch(samples, idx, padded_len, vocab, seed=0):
    """A GPT micro-batch of the samples idx (input + target tokens each), right-padded to
    padded_len: {"ids" [b, T], "labels" [b, T] with IGNORE where nothing is predicted
    (next-token prediction over each sample's real tokens), "shape" (b, T, 0)}."""
    ids = torch.zeros(len(idx), padded_len, dtype=torch.long)
    labels = torch.full((len(idx), padded_len), IGNORE, dtype=torch.long)
    for r, i in enumerate(idx):
        t = tokens_of(samples, i, vocab, seed)
        L = len(t)
        if L > padded_len:
            raise ValueError(f"sample {i}: {L} tokens in a micro-batch padded to {padded_len}")
        ids[r, :L] = t
        labels[r, :L - 1] = t[1:]
    return {"ids": ids, "labels": labels, "shape": (len(idx), padded_len, 0)}


def real_predictions(samples):
    """Tokens predicted in a GPT batch: each sample's length - 1 (the loss's normaliser)."""
    return sum(a + b - 1 for a, b in lengths(samples))


# -- the T5-style encoder-decoder ------------------------------------------------------------

BOS = 1


class EncBlock(nn.Module):
    """Pre-norm bidirectional self-attention (padding keys masked) and MLP."""

    def __init__(self, hidden, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(),
                                 nn.Linear(4 * hidden, hidden))

    def forward(self, x, pad):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class DecBlock(nn.Module):
    """Pre-norm causal self-attention, cross-attention to the encoder's output (its padding
    masked), MLP."""

    def __init__(self, hidden, heads):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(hidden) for _ in range(3))
        self.self_attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.cross = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(),
                                 nn.Linear(4 * hidden, hidden))

    def forward(self, y, enc, enc_pad):
        T = y.shape[1]
        causal = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        h = self.ln1(y)
        y = y + self.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        h = self.ln2(y)
        y = y + self.cross(h, enc, enc, key_padding_mask=enc_pad, need_weights=False)[0]
        return y + self.mlp(self.ln3(y))


class T5Stage(nn.Module):
    """Global layers [first, first + n) of the encoder's E then the decoder's layers. Sends
    (encoder hidden,) while the encoder runs on, (encoder output,) when it ended at this
    stage, (encoder output, decoder hidden) once the decoder has started. The encoder's and
    the decoder's embeddings are separate, so no parameter lives on two stages."""

    def __init__(self, t5, stage, stages, first, n):
        super().__init__()
        E = t5.enc_layers
        self.first, self.last = stage == 0, stage == stages - 1
        self.hidden, self.lo, self.hi, self.E = t5.hidden, first, first + n, E
        self.enc_emb = nn.ModuleList([t5.enc_tok, t5.enc_pos]) if self.first else None
        self.enc = nn.ModuleList(t5.enc[min(first, E):min(first + n, E)])
        self.enc_ln = t5.enc_ln if first < E <= first + n else None
        starts_dec = first <= E < first + n
        self.dec_emb = nn.ModuleList([t5.dec_tok, t5.dec_pos]) if starts_dec else None
        self.dec = nn.ModuleList(t5.dec[max(first - E, 0):max(first + n - E, 0)])
        self.ln = t5.ln if self.last else None
        self.head = t5.head if self.last else None

    def _boundary(self, layer, b, pin, ptgt):
        """What crosses the boundary before global layer `layer`."""
        if layer <= self.E:
            return [(b, pin, self.hidden)]
        return [(b, pin, self.hidden), (b, ptgt, self.hidden)]

    def in_shapes(self, b, pin, ptgt):
        return [] if self.first else self._boundary(self.lo, b, pin, ptgt)

    def out_shapes(self, b, pin, ptgt):
        return self._boundary(self.hi, b, pin, ptgt)

    @staticmethod
    def _embed(emb, ids):
        return emb[0](ids) + emb[1](torch.arange(ids.shape[1]))[None]

    def forward(self, xs, batch):
        x = self._embed(self.enc_emb, batch["in_ids"]) if self.first else xs[0]
        y = xs[1] if len(xs) > 1 else None
        for blk in self.enc:
            x = blk(x, batch["in_pad"])
        if self.enc_ln is not None:
            x = self.enc_ln(x)  # the encoder's output, for every decoder layer
        if self.dec_emb is not None:
            y = self._embed(self.dec_emb, batch["tgt_in"])
        for blk in self.dec:
            y = blk(y, x, batch["in_pad"])
        if self.last:
            return (self.head(self.ln(y)),)
        return (x,) if self.hi <= self.E else (x, y)

    def loss(self, ys, batch):
        return token_loss(ys[0], batch["labels"])


class TinyT5(nn.Module):
    def __init__(self, vocab=256, hidden=64, enc_layers=2, dec_layers=2, heads=4, max_len=2048,
                 seed=0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.enc_tok = nn.Embedding(vocab, hidden)
            self.enc_pos = nn.Embedding(max_len, hidden)
            self.enc = nn.ModuleList(EncBlock(hidden, heads) for _ in range(enc_layers))
            self.enc_ln = nn.LayerNorm(hidden)
            self.dec_tok = nn.Embedding(vocab, hidden)
            self.dec_pos = nn.Embedding(max_len, hidden)
            self.dec = nn.ModuleList(DecBlock(hidden, heads) for _ in range(dec_layers))
            self.ln = nn.LayerNorm(hidden)
            self.head = nn.Linear(hidden, vocab, bias=False)
        self.vocab, self.hidden, self.max_len = vocab, hidden, max_len
        self.enc_layers, self.dec_layers = enc_layers, dec_layers

    def forward(self, batch):
        """The whole model on one micro-batch: the logits."""
        return T5Stage(self, 0, 1, 0, self.enc_layers + self.dec_layers)((), batch)[0]

    def stage(self, cfg, stage):
        """Pipeline rank `stage`'s module under cfg (layers_enc, layers_dec = the model's)."""
        if (cfg.layers_enc, cfg.layers_dec) != (self.enc_layers, self.dec_layers):
            raise ValueError(f"config has {cfg.layers_enc} + {cfg.layers_dec} layers, the model "
                             f"{self.enc_layers} + {self.dec_layers}")
        first = 0
        for s in range(stage + 1):
            e, d = ctypes.c_int(), ctypes.c_int()
            _lib.dp_stage_layers(ctypes.byref(cfg), s, ctypes.byref(e), ctypes.byref(d))
            if s < stage:
                first += e.value + d.value
        return T5Stage(self, stage, cfg.stages, first, e.value + d.value)


def t5_batch(samples, idx, pin, ptgt, vocab, seed=0):
    """A T5 micro-batch of the samples idx padded to (pin, ptgt): encoder ids, decoder inputs
    (BOS then the target shifted), labels (the target; IGNORE on padding), padding masks."""
    b = len(idx)
    in_ids = torch.zeros(b, pin, dtype=torch.long)
    tgt_in = torch.zeros(b, ptgt, dtype=torch.long)
    labels = torch.full((b, ptgt), IGNORE, dtype=torch.long)
    in_pad = torch.ones(b, pin, dtype=torch.bool)
    for r, i in enumerate(idx):
        src, tg = tokens_of(samples, i, vocab, seed, gpt=False)
        a, t = len(src), len(tg)
        if a > pin or t > ptgt:
            raise ValueError(f"sample {i}: ({a}, {t}) tokens in a micro-batch padded to "
                             f"({pin}, {ptgt})")
        in_ids[r, :a] = src
        tgt_in[r, 0] = BOS
        tgt_in[r, 1:t] = tg[:t - 1]
        labels[r, :t] = tg
        in_pad[r, :a] = False
    return {"in_ids": in_ids, "tgt_in": tgt_in, "labels": labels, "in_pad": in_pad,
            "shape": (b, pin, ptgt)}


def t5_first_fit(lens, pack_len, pack_target_len):
    """Packing's T5 rows, as the planner makes them: each (input, target) pair, in order, into
    the first row with room for both (rows of pack_len input and pack_target_len target
    tokens). Returns the rows, each a list of sample indices."""
    rows, used = [], []
    for i, (a, t) in enumerate(lens):
        if a > pack_len or t > pack_target_len:
            raise ValueError(f"sample {i} ({a}, {t}) is longer than a packed row "
                             f"({pack_len}, {pack_target_len})")
        r = next((r for r, (ua, ut) in enumerate(used)
                  if ua + a <= pack_len and ut + t <= pack_target_len), len(rows))
        if r == len(rows):
            rows.append([])
            used.append((0, 0))
        rows[r].append(i)
        used[r] = (used[r][0] + a, used[r][1] + t)
    return rows


def t5_packed_batch(samples, rows, pin, ptgt, vocab, seed=0):
    """Packing's T5 micro-batch: each row the concatenation of its samples' inputs (encoder)
    and of their decoder inputs, labels and targets (decoder), attention over the whole row
    (bidirectional in the encoder, causal in the decoder, the encoder's padding masked), as
    Megatron-style packing trains. Same keys as t5_batch."""
    b = len(rows)
    in_ids = torch.zeros(b, pin, dtype=torch.long)
    tgt_in = torch.zeros(b, ptgt, dtype=torch.long)
    labels = torch.full((b, ptgt), IGNORE, dtype=torch.long)
    in_pad = torch.ones(b, pin, dtype=torch.bool)
    for r, row in enumerate(rows):
        a0 = t0 = 0
        for i in row:
            src, tg = tokens_of(samples, i, vocab, seed, gpt=False)
            a, t = len(src), len(tg)
            if a0 + a > pin or t0 + t > ptgt:
                raise ValueError(f"row {r}: more tokens than its padded shape ({pin}, {ptgt})")
            in_ids[r, a0:a0 + a] = src
            in_pad[r, a0:a0 + a] = False
            tgt_in[r, t0] = BOS
            tgt_in[r, t0 + 1:t0 + t] = tg[:t - 1]
            labels[r, t0:t0 + t] = tg
            a0, t0 = a0 + a, t0 + t
    return {"in_ids": in_ids, "tgt_in": tgt_in, "labels": labels, "in_pad": in_pad,
            "shape": (b, pin, ptgt)}

