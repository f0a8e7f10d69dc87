"""Pipeline training of one global batch at a time (torch.distributed, one stage per rank;
with cfg.dp_size = D replicas, rank = replica * stages + stage): rank 0 plans the batch
(DynaPipe or a baseline, the micro-batches split over the replicas; in a background thread
while the previous batch trains, when the batch is handed to plan_ahead() first), checks
every pipeline's streams and broadcasts the plan; every rank builds its replica's micro-batches' data, runs
its stream with the executor, all-reduces its stage's gradients with the same stage of the
other replicas, and steps its optimizer once. The loss is normalised by the whole batch's
real predictions, so one step means the same whatever the cut and the replica count."""
import threading
import time

import torch
import torch.distributed as dist

from . import check_streams, plan as make_plan, DynapipeValueError
from . import models
from .executor import PipelineExecutor


def shutdown():
    """End torch.distributed the way every rank of a pipeline should: a barrier, then
    destroy the group. A rank that destroys its gloo group and exits while a peer still works
    can abort at exit ("terminate called without an active exception"), and torchrun then
    stops the others mid-work."""
    dist.barrier()
    dist.destroy_process_group()


def packed_rows(toks, idx_rows, pack_len):
    """Packing's data: rows [r0, r1) of the batch's tokens `toks` (its samples concatenated
    in order) cut into rows of pack_len. Next-token labels within each row."""
    r0, r1 = idx_rows
    ids = torch.zeros(r1 - r0, pack_len, dtype=torch.long)
    labels = torch.full((r1 - r0, pack_len), models.IGNORE, dtype=torch.long)
    for r in range(r0, r1):
        row = toks[r * pack_len:(r + 1) * pack_len]
        ids[r - r0, :len(row)] = row
        labels[r - r0, :len(row) - 1] = row[1:]
    return {"ids": ids, "labels": labels, "shape": (r1 - r0, pack_len, 0)}


class PipelineTrainer:
    """model: a models.TinyGPT or models.TinyT5 (the same initial weights on every rank); cm,
    cfg: the planner's cost model and config (stages x dp_size = the world size; the layers
    and hidden size the model's); method: dynapipe, padding, packing or token_budget;
    keep_grads: keep each step's gradients (after the all-reduce, before the step) in
    last_grads, for checks."""

    def __init__(self, model, cm, cfg, method="dynapipe", lr=1e-3, timeout_s=120.0,
                 keep_grads=False):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        S, D = cfg.stages, cfg.dp_size
        if S * D != self.world:
            raise DynapipeValueError("EINVAL", f"a plan for {S} stages x {D} replicas on "
                                     f"{self.world} ranks")
        self.model, self.cm, self.cfg, self.method = model, cm, cfg, method
        self.t5 = isinstance(model, models.TinyT5)
        self.S, self.D = S, D
        self.keep_grads = keep_grads  # last_grads: each step's gradients (for checks)
        self.last_grads = None
        self.stage_id, self.replica = self.rank % S, self.rank // S
        self.stage = model.stage(cfg, self.stage_id)
        self.opt = torch.optim.AdamW(self.stage.parameters(), lr=lr)
        self.exe = PipelineExecutor(self.stage, self.stage_id, S,
                                    ranks=[self.replica * S + s for s in range(S)],
                                    timeout_s=timeout_s)
        # Every rank creates every stage's group, in the same order (torch.distributed's rule).
        self.groups = [dist.new_group([q * S + s for q in range(D)]) for s in range(S)] \
            if D > 1 else None

    def _plan_msg(self, lens):
        """Rank 0's planning of one batch (lengths): the message every rank receives, or the
        error that stops every rank."""
        try:
            p = make_plan(self.cm, self.cfg, lens, self.method)
            streams = [[p.stream(s, q) for s in range(self.S)] for q in range(self.D)]
            for q in range(self.D):
                check_streams(streams[q])
            rows, by_mb = 0, {}
            for j, m in enumerate(p.microbatches):  # packing rows: consecutive, in order
                by_mb[j] = (m.samples, m.padded_input, m.padded_target, (rows, rows + m.mbs))
                rows += m.mbs
            mbs = [[by_mb[j] for j in p.local[q]] for q in range(self.D)]
            return {"mbs": mbs, "all": list(by_mb.values()), "streams": streams,
                    "plan_s": p.plan_seconds, "predicted_ms": p.iteration_ms}
        except DynapipeValueError as e:
            return {"error": e.message, "status": e.status}
        except Exception as e:  # anything else reaches every rank too: none waits forever
            return {"error": f"{type(e).__name__}: {e}", "status": "EINVAL"}

    def plan_ahead(self, samples):
        """Start planning a later batch now, in a background thread of rank 0, while this
        rank trains; pass the handle to that batch's step(). Other ranks get None (they
        receive rank 0's plan in step)."""
        if self.rank != 0:
            return None
        lens = models.lengths(samples)
        box = {"lens": lens}

        def work():
            box["msg"] = self._plan_msg(lens)

        box["thread"] = threading.Thread(target=work, daemon=True, name="dynapipe-planner")
        box["thread"].start()
        return box

    def _plan(self, lens, ahead=None):
        msg, wait = [None], 0.0
        if self.rank == 0:
            if ahead is not None and ahead["lens"] != lens:
                msg[0] = {"error": "plan_ahead() was given another batch than step()",
                          "status": "EINVAL"}
            elif ahead is not None:
                t0 = time.perf_counter()
                ahead["thread"].join()
                wait = time.perf_counter() - t0
                msg[0] = ahead["msg"]
            else:
                t0 = time.perf_counter()
                msg[0] = self._plan_msg(lens)
                wait = time.perf_counter() - t0
            msg[0]["wait_s"] = wait
        dist.broadcast_object_list(msg, src=0)  # every rank learns of a refusal, none waits
        if "error" in msg[0]:
            raise DynapipeValueError(msg[0]["status"], "the batch was not planned: " +
                                     msg[0]["error"])
        return msg[0]

    def step(self, samples, ahead=None):
        """Train on one global batch: samples are dicts of token ids ("input_ids",
        "target_ids") or (input_len, target_len) pairs (synthetic tokens); ahead: the
        handle plan_ahead(samples) returned, if it was planned ahead. Returns a dict: loss,
        tokens (real), seconds (the whole step), plan_seconds (the planner's time),
        plan_wait_seconds (how long the step waited for it: all of it unless planned
        ahead), predicted_ms (the planner's simulated iteration), micro_batches."""
        t0 = time.perf_counter()
        lens = models.lengths(samples)
        p = self._plan(lens, ahead)
        vocab = self.model.vocab

        packing = self.method == "packing"
        toks = torch.cat([models.tokens_of(samples, i, vocab) for i in range(len(samples))]) \
            if packing and not self.t5 else None  # the batch concatenated, once
        t5_rows = models.t5_first_fit(lens, self.cfg.pack_len, self.cfg.pack_target_len) \
            if packing and self.t5 else None

        def build(mb):
            idx, pin, ptgt, rows = mb
            if t5_rows is not None:
                mine = t5_rows[rows[0]:rows[1]]
                if sorted(i for r in mine for i in r) != sorted(idx):
                    raise DynapipeValueError("ECHECK", f"packing: rows {rows[0]}..{rows[1] - 1} "
                                             "hold other samples than the planner's micro-batch")
                return models.t5_packed_batch(samples, mine, pin, ptgt, vocab)
            if self.t5:
                return models.t5_batch(samples, idx, pin, ptgt, vocab)
            if packing:
                return packed_rows(toks, rows, pin)
            return models.gpt_batch(samples, idx, pin, vocab)

        data = [build(mb) for mb in p["mbs"][self.replica]]  # this replica's only
        # The batch's real predictions, from the lengths (what the labels hold): T5 each
        # target token (packed or not); GPT each token but a sample's last; packing each token but a row's last.
        total = sum(a + b for a, b in lens)
        if self.t5:
            norm = sum(b for _, b in lens)
        elif packing:
            norm = total - p["all"][-1][3][1]  # rows in all: the last micro-batch's end row
        else:
            norm = total - len(lens)
        loss = self.exe.run(p["streams"][self.replica][self.stage_id], lambda j: data[j], norm)
        if self.groups:  # the replicas' gradients summed: the whole batch's
            for prm in self.stage.parameters():
                if prm.grad is None:
                    prm.grad = torch.zeros_like(prm)
                dist.all_reduce(prm.grad, group=self.groups[self.stage_id])
        if self.keep_grads:
            self.last_grads = {id(prm): prm.grad.clone() for prm in self.stage.parameters()
                               if prm.grad is not None}
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        losses = [None] * self.world
        dist.all_gather_object(losses, loss)
        out = [sum(losses[q * self.S + self.S - 1] for q in range(self.D))]
        return {"loss": out[0], "tokens": sum(a + b for a, b in lens),
                "seconds": time.perf_counter() - t0, "plan_seconds": p["plan_s"],
                "plan_wait_seconds": p["wait_s"],
                "predicted_ms": p["predicted_ms"], "micro_batches": len(p["all"])}
