"""Data parallelism through ``torch.distributed``: process group, DDP wrapping, batch sampling.

The same command runs single- or multi-process: under ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment) :func:`setup` initialises the default process group (NCCL on CUDA, gloo on CPU) and
each process trains on its own slice of every global batch; rank 0 alone logs and checkpoints.

Batch semantics: ``batch_size`` is the GLOBAL batch B. :class:`EpochBatchSampler` draws, per epoch
``e``, the permutation ``perm_e = randperm(N, generator=manual_seed(seed + e))``, cuts its first
``(N // B) * B`` entries into global batches ``perm_e[k*B:(k+1)*B]`` and gives rank ``r`` of ``W``
the contiguous slice ``[r*B/W, (r+1)*B/W)`` of each. The union over ranks of step ``k``'s batches
is therefore the single-process batch ``k``: the data order does not depend on the world size, and
with a loss that is a mean over the batch, DDP's gradient average equals the single-process
gradient (up to float summation order). This is ``DistributedSampler``'s interface (``set_epoch``,
``num_replicas``, ``rank``) with two additions it lacks: world-size-independent batches and a start
position inside an epoch (``set_position``) for exact resume.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    """Where this process sits: ``rank`` of ``world_size`` (1 without a process group)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # this module created the process group and destroys it in teardown()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; else as given."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def setup(device: str = "auto") -> DistEnv:
    """Join (or start, under torchrun) the default process group and pick this process's device.

    An already initialised group (e.g. one a test created) is used as is. Without one and with
    ``WORLD_SIZE`` <= 1 the process runs alone. The backend is NCCL when the device is CUDA, gloo
    otherwise.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    if dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns)
    return DistEnv(0, 1, local_rank, dev, False)


def teardown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, env: DistEnv, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` in a process group of more than one; else ``module``."""
    if not env.distributed:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused_parameters
    )


def _mean_over_ranks_(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.div_(world_size)


def all_reduce_mean_(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """In place: ``tensor <- mean over ranks of tensor`` (identity when alone)."""
    return _mean_over_ranks_(tensor, env.world_size) if env.distributed else tensor


def all_reduce_grads_(parameters) -> None:
    """Average ``.grad`` over the ranks of the default process group (no-op without one), for
    optimizers a model steps itself in ``auxiliary_step``: ``g <- (1/W) sum_r g_r``, one collective
    over the flattened gradients."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = _mean_over_ranks_(torch.cat([g.reshape(-1) for g in grads]), dist.get_world_size())
    for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(mean.view_as(g))


def gather_objects(obj, env: DistEnv) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` when alone)."""
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


class EpochBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's index lists, one per step, from a seeded per-epoch permutation.

    ``dataset_size`` N, global ``batch_size`` B (divisible by ``num_replicas`` W). Each epoch has
    ``batches_per_epoch = N // B`` steps (the remainder of the permutation is dropped, so every
    batch has the same shape). ``set_position(epoch, batch)`` makes the next ``iter()`` start at
    global batch ``batch`` of ``epoch``; ``set_epoch(e)`` is ``set_position(e, 0)``.
    """

    def __init__(self, dataset_size: int, batch_size: int, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True):
        if batch_size < 1 or batch_size % num_replicas:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of the number of "
                f"processes ({num_replicas}); it is the global batch split across them"
            )
        if dataset_size < batch_size:
            raise ValueError(f"dataset has {dataset_size} items, fewer than batch_size={batch_size}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.per_rank = batch_size // num_replicas
        self.batches_per_epoch = dataset_size // batch_size
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, batch: int) -> None:
        if not 0 <= batch < self.batches_per_epoch:
            raise ValueError(f"batch {batch} outside epoch of {self.batches_per_epoch} batches")
        self.epoch, self.start = epoch, batch

    def set_epoch(self, epoch: int) -> None:
        self.set_position(epoch, 0)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """``(batches_per_epoch, batch_size)`` int64: the global batches of ``epoch``."""
        n_used = self.batches_per_epoch * self.batch_size
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.dataset_size, generator=g)[:n_used]
        else:
            order = torch.arange(n_used)
        return order.view(self.batches_per_epoch, self.batch_size)

    def __iter__(self):
        lo = self.rank * self.per_rank
        mine = self.epoch_order(self.epoch)[self.start:, lo:lo + self.per_rank]
        return iter(mine.tolist())

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start
