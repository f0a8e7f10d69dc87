"""The data-loader hook: a training script's DataLoader of global batches becomes a stream of
pipeline-trained steps.

  loader = DataLoader(dataset, batch_size=64, collate_fn=list)   # a batch: a list of samples
  trainer = dynapipe.train.PipelineTrainer(model, cm, cfg)        # this rank's stage
  for step in dynapipe.hook.PlannedLoader(loader, trainer):
      print(step["loss"], step["tokens"], step["seconds"])

Each global batch (a list of samples: dicts with "input_ids" and "target_ids", or
(input_len, target_len) pairs) is planned by rank 0 into micro-batches of its own sizes,
every rank runs its share through the executor, and the optimizer steps once per batch. The
loader is read one batch ahead: rank 0 plans the next batch in a background thread while the
current one trains (each step reports plan_wait_seconds, the time it still waited).
Every rank must iterate the same batches in the same order (as a DataLoader with a seeded
sampler does): rank 0's batch is the one planned and the others check theirs against it."""
import torch.distributed as dist

from . import DynapipeValueError
from . import models


class PlannedLoader:
    def __init__(self, loader, trainer):
        self.loader, self.trainer = loader, trainer

    def __iter__(self):
        it = iter(self.loader)
        nxt = next(it, None)
        ahead = self.trainer.plan_ahead(list(nxt)) if nxt is not None and list(nxt) else None
        while nxt is not None:
            samples, ahead_now = list(nxt), ahead
            if not samples:
                raise DynapipeValueError("EEMPTY", "the data loader gave an empty batch")
            # Every rank must hold the same batch: compare the lengths with rank 0's.
            mine = models.lengths(samples)
            theirs = [mine]
            dist.broadcast_object_list(theirs, src=0)
            if theirs[0] != mine:
                raise DynapipeValueError("EINVAL", f"rank {dist.get_rank()}: its batch "
                                         f"differs from rank 0's (the ranks' loaders must "
                                         f"give the same batches in the same order)")
            nxt = next(it, None)  # the next batch, planned while this one trains
            ahead = self.trainer.plan_ahead(list(nxt)) if nxt is not None and list(nxt) else None
            yield self.trainer.step(samples, ahead_now)

    def __len__(self):
        return len(self.loader)
