"""The pipeline executor: runs one rank's instruction stream (Plan.stream) with
torch.distributed point-to-point operations (gloo on the CPU).

Per instruction: LoadInput takes the micro-batch's token ids; Recv*Start posts an irecv
into a buffer of the stream's shape and Recv*Finish waits for it; Forward runs the stage
(the last stage also computes the micro-batch's loss: summed token cross-entropy over the
global batch's real predictions, so the sum over micro-batches is the batch's mean whatever
the cut); Send*Start posts an isend and Send*Finish waits; Backward runs autograd from the
loss (last stage) or from the received gradient; FreeBuffer drops the micro-batch's tensors.
Gradients accumulate in the parameters across micro-batches: the caller steps the optimizer
once per global batch. Shapes are checked against the stream; every wait has a timeout.
"""
import datetime

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .models import IGNORE


class ExecutorError(RuntimeError):
    """The stream and the data disagree, or a peer did not answer in time."""


class PipelineExecutor:
    """module: this rank's stage; stage / stages: its place; ranks: the global ranks of the
    pipeline's stages (default 0 .. stages-1); hidden: the activation width."""

    def __init__(self, module, stage, stages, hidden, ranks=None, timeout_s=120.0):
        self.module, self.stage, self.stages, self.hidden = module, stage, stages, hidden
        self.ranks = list(ranks) if ranks is not None else list(range(stages))
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self.first, self.last = stage == 0, stage == stages - 1

    def _wait(self, work, what):
        try:
            ok = work.wait(self.timeout)
        except RuntimeError as e:
            raise ExecutorError(f"stage {self.stage}: {what}: {e}") from e
        if ok is False:
            raise ExecutorError(f"stage {self.stage}: {what}: no answer within "
                                f"{self.timeout.total_seconds():.0f} s")

    def run(self, stream, data, normaliser):
        """Execute `stream` (a list of Instr). data(mb) -> (ids, labels) of replica-local
        micro-batch mb; normaliser: the global batch's real predictions. Returns the sum of
        this rank's micro-batch losses (0.0 but on the last stage)."""
        store, recv, send = {}, {}, {}
        total = 0.0
        for k, ins in enumerate(stream):
            op, mb, peer = ins.op, ins.mb, ins.peer
            b, pin, ptg, h = ins.shape
            act_shape = (b, pin + ptg, self.hidden)
            where = f"instruction {k} ({op} of micro-batch {mb})"
            if op == "LoadInput":
                ids, labels = data(mb)
                if tuple(ids.shape) != (b, pin + ptg):
                    raise ExecutorError(f"stage {self.stage}: {where}: the data has shape "
                                        f"{tuple(ids.shape)}, the stream says {(b, pin + ptg)}")
                store[mb] = {"x": ids}
            elif op in ("RecvActivationStart", "RecvGradStart"):
                buf = torch.empty(act_shape)
                tag = 2 * mb + (op == "RecvGradStart")
                recv[(op[:8], mb)] = (buf, dist.irecv(buf, src=self.ranks[peer], tag=tag))
            elif op == "RecvActivationFinish":
                buf, work = recv.pop(("RecvActi", mb))
                self._wait(work, where)
                store[mb] = {"x": buf.requires_grad_()}
            elif op == "RecvGradFinish":
                buf, work = recv.pop(("RecvGrad", mb))
                self._wait(work, where)
                store[mb]["g"] = buf
            elif op == "Forward":
                st = store[mb]
                y = self.module(st["x"])
                if self.last:
                    _, labels = data(mb)
                    loss = F.cross_entropy(y.reshape(-1, y.shape[-1]), labels.reshape(-1),
                                           ignore_index=IGNORE, reduction="sum") / normaliser
                    st["loss"] = loss
                    total += float(loss.detach())
                else:
                    if tuple(y.shape) != act_shape:
                        raise ExecutorError(f"stage {self.stage}: {where}: output {tuple(y.shape)}, "
                                            f"the stream says {act_shape}")
                st["y"] = y
            elif op == "SendActivationStart":
                t = store[mb]["y"].detach().contiguous()
                send[("act", mb)] = (t, dist.isend(t, dst=self.ranks[peer], tag=2 * mb))
            elif op == "SendActivationFinish":
                t, work = send.pop(("act", mb))
                self._wait(work, where)
            elif op == "Backward":
                st = store[mb]
                if self.last:
                    st["loss"].backward()
                else:
                    torch.autograd.backward(st["y"], st["g"])
            elif op == "SendGradStart":
                g = store[mb]["x"].grad.contiguous()
                send[("grad", mb)] = (g, dist.isend(g, dst=self.ranks[peer], tag=2 * mb + 1))
            elif op == "SendGradFinish":
                t, work = send.pop(("grad", mb))
                self._wait(work, where)
            elif op == "FreeBuffer":
                store.pop(mb, None)
            else:
                raise ExecutorError(f"stage {self.stage}: {where}: unknown instruction")
        if recv or send:
            raise ExecutorError(f"stage {self.stage}: the stream ended with {len(recv)} receives "
                                f"and {len(send)} sends not finished")
        return total
