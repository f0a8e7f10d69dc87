"""Pipeline training of one global batch at a time (torch.distributed, one stage per rank):
rank 0 plans the batch (DynaPipe or a baseline), checks every rank's stream and broadcasts
the plan; every rank builds its micro-batches' data, runs its stream with the executor and
steps its optimizer once. The loss is normalised by the batch's real predictions, so one
step means the same whatever the number of micro-batches."""
import time

import torch
import torch.distributed as dist

from . import check_streams, plan as make_plan, DynapipeValueError
from . import models
from .executor import PipelineExecutor


def packed_rows(samples, idx_rows, pack_len, vocab, seed=0):
    """Packing's data: the batch's samples concatenated in order and cut into rows of
    pack_len; rows [r0, r1) of it. Next-token labels within each row."""
    toks = torch.cat([models.sample_tokens(i, a + b, vocab, seed) for i, (a, b) in enumerate(samples)])
    r0, r1 = idx_rows
    ids = torch.zeros(r1 - r0, pack_len, dtype=torch.long)
    labels = torch.full((r1 - r0, pack_len), models.IGNORE, dtype=torch.long)
    for r in range(r0, r1):
        row = toks[r * pack_len:(r + 1) * pack_len]
        ids[r - r0, :len(row)] = row
        labels[r - r0, :len(row) - 1] = row[1:]
    return ids, labels


class PipelineTrainer:
    """model: a models.TinyGPT (the same initial weights on every rank); cm, cfg: the
    planner's cost model and config (cfg.stages = the world size, cfg.layers_enc and hidden
    the model's); method: dynapipe, padding, packing or token_budget."""

    def __init__(self, model, cm, cfg, method="dynapipe", lr=1e-3, timeout_s=120.0):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if cfg.stages != self.world or cfg.dp_size != 1:
            raise DynapipeValueError("EINVAL", f"a plan for {cfg.stages} stages x {cfg.dp_size} "
                                     f"replicas on {self.world} ranks")
        self.model, self.cm, self.cfg, self.method = model, cm, cfg, method
        self.stage = model.stage(cfg, self.rank)
        self.opt = torch.optim.AdamW(self.stage.parameters(), lr=lr)
        self.exe = PipelineExecutor(self.stage, self.rank, self.world, model.hidden,
                                    timeout_s=timeout_s)

    def _plan(self, samples):
        msg = [None]
        if self.rank == 0:
            try:
                p = make_plan(self.cm, self.cfg, samples, self.method)
                streams = [p.stream(s) for s in range(self.world)]
                check_streams(streams)
                rows, mbs = 0, []
                for j in p.local[0]:
                    m = p.microbatches[j]
                    n = p._r.mb[j].mbs
                    mbs.append((m.samples, m.padded_input, (rows, rows + n)))
                    rows += n
                msg[0] = {"mbs": mbs, "streams": streams, "plan_s": p.plan_seconds,
                          "predicted_ms": p.iteration_ms}
            except DynapipeValueError as e:
                msg[0] = {"error": e.message, "status": e.status}
        dist.broadcast_object_list(msg, src=0)  # every rank learns of a refusal, none waits
        if "error" in msg[0]:
            raise DynapipeValueError(msg[0]["status"], "the batch was not planned: " +
                                     msg[0]["error"])
        return msg[0]

    def step(self, samples):
        """Train on one global batch of (input_len, target_len) samples. Returns a dict:
        loss, tokens (real), seconds (the whole step, planning included), plan_seconds,
        predicted_ms (the planner's simulated iteration), micro_batches."""
        t0 = time.perf_counter()
        p = self._plan(samples)
        vocab = self.model.vocab
        if self.method == "packing":
            data_all = [packed_rows(samples, rows, pin, vocab) for _, pin, rows in p["mbs"]]
        else:
            data_all = [models.gpt_batch(samples, idx, pin, vocab) for idx, pin, _ in p["mbs"]]
        norm = sum(int((lab != models.IGNORE).sum()) for _, lab in data_all)
        loss = self.exe.run(p["streams"][self.rank], lambda j: data_all[j], norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        out = [loss]
        dist.broadcast_object_list(out, src=self.world - 1)
        return {"loss": out[0], "tokens": sum(a + b for a, b in samples),
                "seconds": time.perf_counter() - t0, "plan_seconds": p["plan_s"],
                "predicted_ms": p["predicted_ms"], "micro_batches": len(p["mbs"])}
