"""Process-group set-up for ``torchrun`` (single node or multi-node), and cross-rank reductions.

``torchrun --nproc_per_node=N snn-lats train ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
in each process; :func:`init_distributed` reads them and joins the process group (NCCL on GPU,
gloo on CPU). Without them the run is a single process and nothing is initialised, so every
helper here also works un-launched.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from snn_lats.engine.recipe import DEVICES

__all__ = [
    "DistributedContext",
    "PeerFailure",
    "peer_failure",
    "all_gather",
    "all_reduce_max",
    "configure_threads",
    "any_rank",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "init_distributed",
    "resolve_device",
]


class PeerFailure(RuntimeError):
    """Another process of the job died, or did not answer a collective within the timeout.

    The process should exit after it, with ``os._exit``: PyTorch's teardown of a gloo group
    after a timed-out collective can deadlock (pytorch/pytorch#56297); ``snn-lats train`` does.
    """


# What gloo and NCCL say when a peer is gone or stalled: they raise plain RuntimeErrors. (gloo's
# "Application timeout caused pair closure" comes from DDP's buffer broadcast in the forward.)
_PEER_FAILURE_MARKERS = (
    "Timed out",
    "timed out",
    "Application timeout caused pair closure",
    "Connection closed by peer",
    "Connection reset by peer",
    "NCCL",
)


def peer_failure(error: BaseException) -> bool:
    """Whether ``error`` (raised inside a collective, DDP's included) means a peer failed."""
    return isinstance(error, dist.DistError) or any(marker in str(error) for marker in _PEER_FAILURE_MARKERS)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job. ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"`` as a torch.device."""
    if device not in DEVICES:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch.cuda.is_available() is False")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def init_distributed(device: str = "auto", timeout_s: float = 300.0) -> DistributedContext:
    """Join the process group described by torchrun's environment variables, if any.

    ``device``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``. Each process
    uses GPU ``LOCAL_RANK``; the backend is NCCL on CUDA and gloo on CPU. ``timeout_s`` bounds
    every collective: a peer that stalls or dies turns into an error (and a torchrun restart)
    after that long, instead of PyTorch's 30-minute default.

    A worker that torchrun restarted (``--max-restarts``) joins through the agent's store under a
    prefix of its restart count. On torch 2.13 with gloo, the default set-up reads the previous
    round's keys from that shared store and fails (``connectFullMesh ... Connection refused``) or
    hangs (pytorch/pytorch#135712); fresh keys per round avoid it with a plain ``torchrun``.
    """
    device = resolve_device(device).type
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        options: dict = {"device_id": torch_device} if device == "cuda" else {}
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            agent_store = dist.TCPStore(
                os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False, timeout=timeout
            )
            restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            options["store"] = dist.PrefixStore(f"snn-lats/restart-{restart}", agent_store)
        else:  # MASTER_ADDR/MASTER_PORT come from the environment
            options["init_method"] = "env://"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timeout, **options)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def configure_threads(requested: int | None, workers: int = 0) -> str:
    """Set torch's CPU threads (``torch.set_num_threads``) and say how they were chosen, in one line.

    ``requested`` wins; else ``$OMP_NUM_THREADS`` when set (a scheduler's choice, e.g. Slurm's
    ``--cpus-per-task``); else the cores this process may use (``os.sched_getaffinity``), less
    those the 1-minute load average says are busy with other work, shared among the processes of
    this node (``LOCAL_WORLD_SIZE``) and each one's loader workers. torch's own default (every
    core) oversubscribes a shared machine: OpenMP threads spin while one of them waits for a core,
    and the demo ran 40-80x slower beside one busy process (docs/benchmarks.md)."""
    if requested is not None:
        threads, why = requested, "--threads"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads, why = int(os.environ["OMP_NUM_THREADS"]), "$OMP_NUM_THREADS"
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        busy = min(cores - 1, round(os.getloadavg()[0])) if hasattr(os, "getloadavg") else 0
        sharing = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) * (1 + workers)
        threads = max(1, (cores - busy) // sharing)
        why = f"{cores} core(s) this process may use, {busy} busy, shared by {sharing} process(es) and workers"
    torch.set_num_threads(threads)
    return f"CPU threads: {threads} per process ({why}; --threads N to choose)"


def cleanup_distributed(synchronize: bool = False) -> None:
    """Destroy the process group; ``synchronize`` (every process got here) waits at a barrier first.

    Why the barrier: gloo's worker threads drop a finished collective's tensors after its caller
    has moved on, and need the GIL to do so, while the process group's destructor joins those
    threads holding the GIL (pytorch/pytorch#56297): a process could hang at exit. The barrier is
    waited with the GIL released, so the workers finish first; a group of one process needs it as
    much (a loop of init, one DDP step and destroy hung within 200 rounds without it, and ran 600
    with it). After an error the other processes may never come, so there is no barrier then."""
    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: Sequence[float], device: torch.device | None = None) -> list[float]:
    """Sum a few scalars over all ranks (identity in a single process), in float64."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_reduce_max(value: float, device: torch.device | None = None) -> float:
    """Maximum of one scalar over all ranks, e.g. "did any rank see a non-finite loss?"."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def any_rank(flag: bool, device: torch.device | None = None) -> bool:
    """True on every rank if ``flag`` is True on any (one small all-reduce under torchrun)."""
    return all_reduce_max(float(flag), device) > 0


def all_gather(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` in a single process): small objects
    such as RNG states, pickled in memory by ``all_gather_object``."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
