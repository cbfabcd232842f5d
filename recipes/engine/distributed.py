"""Many processes on one run: ``torchrun`` / ``accelerate launch`` of ``python -m recipes run``.

The launcher sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; every rank plans the same recipe.
The main process (rank 0) decides what is cached, writes every stage folder, record, ``run.json``
and the push; training stages (``StageSpec.distributed``) run on every rank, data-parallel
through the HF Trainer, the others on rank 0 alone while the rest wait for it.

Coordination uses a gloo group of its own (a long timeout: rank 0 may benchmark for a long
time while the others wait). A rank whose work fails claims the run's failure marker before
it stops: the first to claim it shows the error; the others, stopped by the failure (a broken
collective), stop quietly (:class:`PeerFailedError`), so the error is shown once.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..errors import RecipeError

#: Seconds a rank waits for another at a coordination point (rank 0's benchmark, export...).
WAIT_S = float(os.environ.get("RECIPES_DIST_WAIT_S", 7 * 24 * 3600))

_group = None


class PeerFailedError(RecipeError):
    """This rank stopped because another rank failed and showed the error."""

    exit_code = 1
    quiet = True


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def enabled() -> bool:
    """Whether this process is one of several (launched by torchrun or accelerate launch)."""
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def accelerator_available() -> bool:
    """A GPU (CUDA) or Apple MPS device the Trainer would place a model on."""
    import torch

    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def runs_on_every_rank(spec) -> bool:
    """Whether every rank runs ``spec``'s stage (data-parallel training): its spec class itself
    says ``distributed = True``. A subclass that does not say it again (``search-distill``,
    whose trials each rank would choose apart) runs on rank 0 alone."""
    return bool(vars(type(spec)).get("distributed", False))


#: What the launcher sets; hidden from a stage that rank 0 runs alone.
LAUNCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE")


@contextlib.contextmanager
def single_process():
    """Run a stage on this rank alone: a Trainer in it trains here, without data parallelism
    (no collective that the waiting ranks would never join). The launch variables and
    accelerate's process state are hidden for the stage and restored after it."""
    if not enabled():
        yield
        return
    saved = {name: os.environ.pop(name) for name in LAUNCH_ENV if name in os.environ}
    _reset_accelerate()
    try:
        yield
    finally:
        os.environ.update(saved)
        _reset_accelerate()


def _reset_accelerate() -> None:
    try:
        from accelerate.state import AcceleratorState, GradientState
    except ImportError:
        return
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def group():
    """The coordination group (gloo), after the default process group; None with one process.

    The default group is the one the Trainer (accelerate) then trains with: gloo on CPU, and
    NCCL for CUDA tensors when there is a GPU."""
    global _group
    if not enabled():
        return None
    if _group is not None:
        return _group
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
            dist.init_process_group(backend="cpu:gloo,cuda:nccl", init_method="env://")
        else:
            dist.init_process_group(backend="gloo", init_method="env://")
    _group = dist.new_group(backend="gloo", timeout=timedelta(seconds=WAIT_S))
    return _group


def broadcast(obj: Any = None) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable object); ``obj`` itself with one process."""
    g = group()
    if g is None:
        return obj
    import torch.distributed as dist

    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0, group=g)
    return box[0]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order; ``[obj]`` with one process."""
    g = group()
    if g is None:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=g)
    return out


def barrier() -> None:
    g = group()
    if g is not None:
        import torch.distributed as dist

        dist.barrier(group=g)


def shard(n: int) -> range:
    """This rank's rows of ``n``: a contiguous block, so gathering in rank order keeps row order."""
    size, r = world_size(), rank()
    per, extra = divmod(n, size)
    start = r * per + min(r, extra)
    return range(start, start + per + (1 if r < extra else 0))


def marker(scope_dir: Path) -> Path:
    """The run's failure marker: the first rank that fails creates it."""
    return Path(scope_dir) / ".rank-failure"


def claim_failure(path: Path, message: str) -> bool:
    """Whether this rank is the first to fail (it then shows the error); writes the marker."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError:
        return is_main()
    with os.fdopen(fd, "w") as f:
        f.write(f"rank {rank()}: {message}\n")
    return True


def shutdown() -> None:
    """Leave the process groups (the end of a run); a no-op with one process."""
    global _group
    if _group is None:
        return
    import torch.distributed as dist

    _group = None
    if dist.is_initialized():
        dist.destroy_process_group()
