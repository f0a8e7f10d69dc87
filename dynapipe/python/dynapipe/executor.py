"""The pipeline executor: runs one rank's instruction stream (Plan.stream) with
torch.distributed point-to-point operations (gloo on the CPU).

Per instruction: LoadInput takes the micro-batch's data; Recv*Start posts an irecv for each
tensor crossing the boundary (the stage module's in_shapes / out_shapes for the stream's
shape: one for a GPT, one or two for a T5, whose decoder also needs the encoder's output)
and Recv*Finish waits for them; Forward runs the stage (the last stage also computes the
micro-batch's loss: summed token cross-entropy over the global batch's real predictions, so
the sum over micro-batches is the batch's mean whatever the cut); Send*Start posts an isend
per tensor and Send*Finish waits; Backward runs autograd from the loss (last stage) or from
the received gradients; FreeBuffer drops the micro-batch's tensors.
Gradients accumulate in the parameters across micro-batches: the caller steps the optimizer
once per global batch. Shapes are checked against the stream; every wait has a timeout.
"""
import datetime

import torch
import torch.distributed as dist


class ExecutorError(RuntimeError):
    """The stream and the data disagree, or a peer did not answer in time."""


class PipelineExecutor:
    """module: this rank's stage (a models stage module); stage / stages: its place; ranks:
    the global ranks of the pipeline's stages (default 0 .. stages-1)."""

    def __init__(self, module, stage, stages, ranks=None, timeout_s=120.0):
        self.module, self.stage, self.stages = module, stage, stages
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
        """Execute `stream` (a list of Instr). data(mb) -> the replica-local micro-batch mb's
        dict (token ids, labels, masks, "shape" (b, padded input, padded target)) for the
        stage module; normaliser: the global batch's real predictions. Returns the sum of
        this rank's micro-batch losses (0.0 but on the last stage)."""
        m = self.module
        store, recv, send = {}, {}, {}
        total = 0.0

        def tag(mb, grad, i):  # one tag per micro-batch, direction and tensor
            return 8 * mb + 4 * grad + i

        for k, ins in enumerate(stream):
            op, mb, peer = ins.op, ins.mb, ins.peer
            b, pin, ptg, _ = ins.shape
            where = f"instruction {k} ({op} of micro-batch {mb})"
            if op == "LoadInput":
                batch = data(mb)
                if tuple(batch["shape"]) != (b, pin, ptg):
                    raise ExecutorError(f"stage {self.stage}: {where}: the data has shape "
                                        f"{tuple(batch['shape'])}, the stream says {(b, pin, ptg)}")
                store[mb] = {"xs": ()}
            elif op in ("RecvActivationStart", "RecvGradStart"):
                grad = op == "RecvGradStart"
                shapes = m.out_shapes(b, pin, ptg) if grad else m.in_shapes(b, pin, ptg)
                bufs = [torch.empty(sh) for sh in shapes]
                works = [dist.irecv(t, src=self.ranks[peer], tag=tag(mb, grad, i))
                         for i, t in enumerate(bufs)]
                recv[(grad, mb)] = (bufs, works)
            elif op in ("RecvActivationFinish", "RecvGradFinish"):
                grad = op == "RecvGradFinish"
                bufs, works = recv.pop((grad, mb))
                for w in works:
                    self._wait(w, where)
                if grad:
                    store[mb]["g"] = bufs
                else:
                    store[mb] = {"xs": tuple(t.requires_grad_() for t in bufs)}
            elif op == "Forward":
                st = store[mb]
                batch = data(mb)
                ys = m(st["xs"], batch)
                if self.last:
                    loss = m.loss(ys, batch) / normaliser
                    st["loss"] = loss
                    total += float(loss.detach())
                else:
                    want = [tuple(sh) for sh in m.out_shapes(b, pin, ptg)]
                    if [tuple(y.shape) for y in ys] != want:
                        raise ExecutorError(f"stage {self.stage}: {where}: outputs "
                                            f"{[tuple(y.shape) for y in ys]}, the stream says {want}")
                st["ys"] = ys
            elif op in ("SendActivationStart", "SendGradStart"):
                grad = op == "SendGradStart"
                st = store[mb]
                if grad:  # an input the stage did not use gets a zero gradient
                    ts = [(x.grad if x.grad is not None else torch.zeros_like(x)).contiguous()
                          for x in st["xs"]]
                else:
                    ts = [y.detach().contiguous() for y in st["ys"]]
                send[(grad, mb)] = (ts, [dist.isend(t, dst=self.ranks[peer], tag=tag(mb, grad, i))
                                         for i, t in enumerate(ts)])
            elif op in ("SendActivationFinish", "SendGradFinish"):
                ts, works = send.pop((op == "SendGradFinish", mb))
                for w in works:
                    self._wait(w, where)
            elif op == "Backward":
                st = store[mb]
                if self.last:
                    st["loss"].backward()
                else:
                    torch.autograd.backward(st["ys"], st["g"])
            elif op == "FreeBuffer":
                store.pop(mb, None)
            else:
                raise ExecutorError(f"stage {self.stage}: {where}: unknown instruction")
        if recv or send:
            raise ExecutorError(f"stage {self.stage}: the stream ended with {len(recv)} receives "
                                f"and {len(send)} sends not finished")
        return total
