"""How a process was launched into a distributed job: the launcher's environment and arguments.

Standard library only: the agent reads the environment of every process it runs in (the ranks
get theirs from torchrun or SLURM), and ``probe doctor`` reads its own environment and the
command's arguments (``torchrun --nnodes 2 --node_rank 1 ...``) before anything runs, to name the
session after the host and the node.

What is kept is only the variables below: the job's layout (ranks, nodes, world size), where the
ranks meet (the rendezvous endpoint, never a credential) and the job's id. Values are short
strings, stored as the launcher set them.
"""

from __future__ import annotations

import os
import re

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

# The environment torchrun (torch.distributed.run / launch) and SLURM give the ranks and tasks.
TORCH_VARS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    # torchrun reads its own arguments from PET_<NAME> too (PET_NNODES=2 is --nnodes 2)
    "PET_NNODES",
    "PET_NODE_RANK",
    "PET_NPROC_PER_NODE",
    "PET_RDZV_ID",
    "PET_RDZV_ENDPOINT",
    "PET_MASTER_ADDR",
    "PET_MASTER_PORT",
)
SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_NNODES",
    "SLURM_JOB_NUM_NODES",
    "SLURM_NTASKS",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
)
LAUNCH_VARS = TORCH_VARS + SLURM_VARS
MAX_VALUE = 200  # characters kept of a value

# torchrun's options that say where this node is in the job (both spellings are accepted).
_TORCHRUN_OPTIONS = {
    "--nnodes": "nnodes",
    "--node-rank": "node_rank",
    "--node_rank": "node_rank",
    "--nproc-per-node": "nproc_per_node",
    "--nproc_per_node": "nproc_per_node",
    "--rdzv-id": "rdzv_id",
    "--rdzv_id": "rdzv_id",
    "--rdzv-endpoint": "rdzv_endpoint",
    "--rdzv_endpoint": "rdzv_endpoint",
    "--rdzv-backend": "rdzv_backend",
    "--rdzv_backend": "rdzv_backend",
    "--master-addr": "master_addr",
    "--master_addr": "master_addr",
    "--master-port": "master_port",
    "--master_port": "master_port",
}
_TORCHRUN_FLAGS = {"--standalone": "standalone"}
# torchrun's other options that take no value; every other option takes one
_TORCHRUN_BARE = frozenset(
    {
        "--no-python",
        "--no_python",
        "--run-path",
        "--run_path",
        "-m",
        "--module",
        "--virtual-local-rank",
        "--virtual_local_rank",
    }
)
_LAUNCHER_MODULES = ("torch.distributed.run", "torch.distributed.launch")

# The test-only clock offset (below): never set it outside probe's own tests.
TEST_CLOCK_OFFSET_ENV = "PROBE_TEST_CLOCK_OFFSET_S"


def launch_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The launch variables set in ``environ`` (default: this process's), values shortened."""
    env = os.environ if environ is None else environ
    return {name: str(env[name])[:MAX_VALUE] for name in LAUNCH_VARS if name in env}


def torchrun_args(argv: Sequence[str]) -> dict[str, Any] | None:
    """torchrun's options in a command line (``torchrun``, ``python -m torch.distributed.run``,
    or either after a wrapper such as ``env``), or None when it does not launch torchrun."""
    start = _launcher_index(argv)
    if start is None:
        return None
    out: dict[str, Any] = {}
    args = list(argv[start:])
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            break  # the training script: what follows are its own arguments
        name, eq, value = arg.partition("=")
        if name in _TORCHRUN_FLAGS:
            out[_TORCHRUN_FLAGS[name]] = True
        elif name in _TORCHRUN_OPTIONS:
            if not eq:
                if i + 1 >= len(args):
                    break
                i += 1
                value = args[i]
            out[_TORCHRUN_OPTIONS[name]] = value[:MAX_VALUE]
        elif not eq and name not in _TORCHRUN_BARE:
            i += 1  # another option's value (--max-restarts 3)
        i += 1
    return out


def _launcher_index(argv: Sequence[str]) -> int | None:
    """Where torchrun's own options begin in ``argv``, if it launches torchrun."""
    for i, arg in enumerate(argv[:8]):
        base = os.path.basename(arg)
        if base in ("torchrun", "torchrun.exe"):
            return i + 1
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] in _LAUNCHER_MODULES:
            return i + 2
        if arg.startswith("-m") and arg[2:] in _LAUNCHER_MODULES:
            return i + 1
    return None


def int_or_none(value: Any) -> int | None:
    """An integer written as text, or None."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def max_nodes(value: Any) -> int | None:
    """``--nnodes 2`` or an elastic range ``1:4``: the most nodes the job may have."""
    if value is None:
        return None
    text = str(value)
    return int_or_none(text.rpartition(":")[2]) if ":" in text else int_or_none(text)


def launch_facts(env: Mapping[str, str], args: Mapping[str, Any] | None) -> dict[str, Any]:
    """What probe knows at the start about this node's place in a job: ``node_rank``,
    ``nnodes`` (None when unknown) and whether the job spans several nodes."""
    args = args or {}
    node_rank = int_or_none(args.get("node_rank"))
    for name in ("GROUP_RANK", "SLURM_NODEID", "PET_NODE_RANK", "NODE_RANK"):
        if node_rank is None:
            node_rank = int_or_none(env.get(name))
    nnodes = max_nodes(args.get("nnodes"))
    for name in ("GROUP_WORLD_SIZE", "SLURM_NNODES", "SLURM_JOB_NUM_NODES", "PET_NNODES"):
        if nnodes is None:
            nnodes = max_nodes(env.get(name))
    if args.get("standalone"):
        nnodes = 1
    return {
        "node_rank": node_rank,
        "nnodes": nnodes,
        "multinode": bool(nnodes is not None and nnodes > 1),
    }


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def short_host() -> str:
    """This host's name as it goes into a session name: the first label, safe characters only."""
    import socket  # only probe's own process names sessions

    name = socket.gethostname().split(".")[0]
    return _UNSAFE.sub("-", name).strip("-.")[:40] or "host"


def clock_offset_for_tests_ns(environ: Mapping[str, str] | None = None) -> int:
    """TEST ONLY: seconds (``PROBE_TEST_CLOCK_OFFSET_S``) added to this session's wall clock.

    probe's tests run the nodes of a multi-node job on one machine, where every "node" reads the
    same clock; this setting moves one node's wall clock (meta.json's ``start``/``end`` and the
    agents' ``clock`` headers) as if that host's clock were off, to prove that the analysis
    aligns the nodes without trusting their wall clocks. Never set it for a real run: it makes
    the session's wall times wrong by that much."""
    env = os.environ if environ is None else environ
    raw = env.get(TEST_CLOCK_OFFSET_ENV)
    if not raw:
        return 0
    try:
        return int(float(raw) * 1e9)
    except ValueError:
        return 0


__all__ = [
    "LAUNCH_VARS",
    "TEST_CLOCK_OFFSET_ENV",
    "clock_offset_for_tests_ns",
    "int_or_none",
    "launch_env",
    "launch_facts",
    "max_nodes",
    "short_host",
    "torchrun_args",
]
