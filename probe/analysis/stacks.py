"""What a thread was doing, from its sampled Python stacks.

Each distinct stack is classified once into a state (``STATES``) by the modules its frames are in:
waiting for the DataLoader, importing, compiling, in a collective, in file or network I/O, waiting
on a lock, queue or event, an event loop waiting for events, waiting for the GPU in a host sync,
in torch, or in other Python code.
A Python stack shows the Python function that called into C, not the C function itself, so a
plain ``f.read()`` shows as the caller's code; the detectors combine these states with the
thread's CPU time from outside (on-CPU or off-CPU) and the process's I/O counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.session.reader import Frame, Session

STATES = (
    "python",  # other Python code
    "torch",  # inside torch (ops, autograd, modules, optimizers)
    "data",  # blocked in DataLoader next() (or loading in it when num_workers=0)
    "io",  # file or network I/O libraries
    "wait",  # lock, queue, event, join, multiprocessing wait
    "idle-loop",  # an asyncio event loop waiting for events
    "import",  # importing modules
    "compile",  # compiling: torch.compile (dynamo, AOT autograd, inductor), TorchScript, fx tracing
    "distributed",  # collectives and DDP
    "gpu-sync",  # waiting for the GPU in a host sync (.item(), .cpu(), synchronize) probe hooks
)
STATE = {name: i for i, name in enumerate(STATES)}

_DATA_FUNCS = {"__next__", "_next_data", "_get_data", "_try_get_data", "_next_index"}
_IO_PATHS = (
    "/socket.py",
    "/ssl.py",
    "/http/client.py",
    "/urllib/request.py",
    "/urllib3/",
    "/requests/",
    "/httpx/",
    "/aiohttp/",
    "/botocore/",
    "/boto3/",
    "/s3transfer/",
    "/grpc/",
    "/torch/serialization.py",
    "/numpy/lib/format.py",
    "/numpy/lib/npyio.py",
    "/numpy/lib/_npyio_impl.py",
    "/numpy/lib/_format_impl.py",
    "/shutil.py",
    "/gzip.py",
    "/bz2.py",
    "/lzma.py",
    "/zipfile.py",
    "/zipfile/",
    "/tarfile.py",
    "/h5py/",
    "/pandas/io/",
    "/pyarrow/",
    "/fsspec/",
    "/safetensors/",
    "/PIL/Image.py",
    "/PIL/ImageFile.py",
    "/_pyio.py",
    "/sqlite3/",
    "/smtplib.py",
    "/ftplib.py",
)
_WAIT_PATHS = (
    "/threading.py",
    "/queue.py",
    "/multiprocessing/connection.py",
    "/multiprocessing/queues.py",
    "/multiprocessing/synchronize.py",
    "/multiprocessing/popen_fork.py",
    "/concurrent/futures/",
    "/subprocess.py",
)
_LOOP_IDLE_PATHS = ("/selectors.py",)
# Compiling (torch.compile's dynamo tracing, AOT autograd's graph capture, inductor's lowering,
# code generation, C++/Triton builds and autotuning; fx tracing; TorchScript; export): a stack
# with a frame in one of these files is compiling. Running what was compiled also passes through
# torch/_dynamo and torch/_inductor (eval_frame.py's wrapper, output_code.py's CompiledFxGraph,
# AOT autograd's runtime wrappers, the generated module's ``call``): those frames are the model's
# work, not compilation, and are not listed.
_COMPILE_PATHS = (
    "/torch/_dynamo/convert_frame.py",
    "/torch/_dynamo/symbolic_convert.py",
    "/torch/_dynamo/output_graph.py",
    "/torch/_dynamo/bytecode_transformation.py",
    "/torch/_dynamo/bytecode_analysis.py",
    "/torch/_dynamo/variables/",
    "/torch/_dynamo/guards.py",
    "/torch/_dynamo/side_effects.py",
    "/torch/_dynamo/codegen.py",
    "/torch/_dynamo/backends/",
    "/torch/_dynamo/repro/",
    "/torch/_dynamo/aot_compile.py",
    "/torch/_dynamo/functional_export.py",
    "/torch/_dynamo/graph_deduplication.py",
    "/torch/_dynamo/graph_region_tracker.py",
    "/torch/_functorch/partitioners.py",
    "/torch/_functorch/_aot_autograd/autograd_cache.py",
    "/torch/_functorch/_aot_autograd/collect_metadata_analysis.py",
    "/torch/_functorch/_aot_autograd/graph_capture.py",
    "/torch/_functorch/_aot_autograd/graph_compile.py",
    "/torch/_functorch/_aot_autograd/jit_compile_runtime_wrappers.py",
    "/torch/_functorch/_aot_autograd/dispatch_and_compile_graph.py",
    "/torch/_inductor/runtime/compile_tasks.py",
    "/torch/fx/_symbolic_trace.py",
    "/torch/fx/_lazy_graph_module.py",
    "/torch/fx/graph.py",
    "/torch/fx/passes/",
    "/torch/fx/experimental/proxy_tensor.py",
    "/torch/fx/experimental/symbolic_shapes.py",
    "/torch/jit/_recursive.py",
    "/torch/jit/frontend.py",
    "/torch/jit/_trace.py",
    "/torch/jit/annotations.py",
    "/torch/export/_trace.py",
    "/triton/compiler/",
    "/triton/backends/nvidia/compiler.py",
    "/triton/backends/amd/compiler.py",
)
# torch/_inductor is the compiler but for these, which run compiled code (or serve both).
_INDUCTOR = "/torch/_inductor/"
_INDUCTOR_RUNTIME = (
    "/torch/_inductor/output_code.py",
    "/torch/_inductor/runtime/",
    "/torch/_inductor/utils.py",
    "/torch/_inductor/cudagraph_trees.py",
    "/torch/_inductor/cudagraph_utils.py",
    "/torch/_inductor/config.py",
)
# Functions that compile inside files that otherwise run compiled code: TorchScript's entry
# point, and inductor's autotuning of Triton kernels on their first launch.
_COMPILE_FUNCS = {
    "/torch/jit/_script.py": ("script", "_script_impl"),
    "/torch/_inductor/runtime/triton_heuristics.py": (
        "autotune_to_one_config",
        "benchmark_all_configs",
        "precompile",
        "coordinate_descent_tuning",
    ),
}
_DIST_PATHS = ("/torch/distributed/", "/torch/nn/parallel/distributed.py")
_TORCH_PATH = "/torch/"
# Serialisation in memory (json.dumps, pickle.dumps) is computation, not I/O: those modules are
# not listed; their file-writing forms show up through the write itself (off-CPU, bytes moved).
LEAF_DEPTH = 4  # how many innermost frames decide I/O and waits
# The sampler asks to wake every 10 ms; when it is this late, another thread held the GIL (the
# interpreter hands the GIL over after sys.getswitchinterval(), 5 ms by default).
GIL_WAIT_S = 0.001


# probe's agent runs inside the program: its wrappers around torch's calls (the host syncs, the
# DataLoader's fetch) and its bootstrap show up in the program's stacks. They are not the
# program's work: they are left out of what a stack is classified by and of what is shown, and a
# stack inside ``host_waits_for_gpu`` (probe/collectors/torch/cuda.py: a sync on a CUDA tensor or
# stream, never a CPU tensor's .item()) is waiting for the GPU.
_PROBE_PATHS = ("/probe/agent/", "/probe/collectors/")
_GPU_WAIT = "host_waits_for_gpu"


def is_probe_frame(file: str) -> bool:
    """Whether a frame is probe's own (its agent's hooks and bootstrap), not the program's."""
    f = _norm(file)
    return any(p in f for p in _PROBE_PATHS)


def program_frames(frames: list[Frame]) -> list[Frame]:
    """The frames of a stack without probe's own (see ``is_probe_frame``)."""
    return [f for f in frames if not is_probe_frame(f.file)]


_LIB_MARKERS = ("/site-packages/", "/dist-packages/", "/lib/python3", "<frozen")


def is_library_file(path: str) -> bool:
    """Whether a source file belongs to an installed library or the standard library rather
    than to the program being run."""
    return any(m in _norm(path) for m in _LIB_MARKERS)


def _norm(path: str) -> str:
    return path.replace("\\", "/")


def _first_program_frame(files: list[str]) -> int:
    """The index of the outermost frame in the program's own code (not a library, not a
    ``<string>`` or ``<frozen ...>`` pseudo-file), or 0 when there is none."""
    for i, f in enumerate(files):
        if not f.startswith("<") and not is_library_file(f):
            return i
    return 0


def _compiling(file: str, func: str) -> bool:
    """Whether a frame is the compiler's own (see ``_COMPILE_PATHS``), not compiled code running."""
    if any(p in file for p in _COMPILE_PATHS):
        return True
    if _INDUCTOR in file and not any(p in file for p in _INDUCTOR_RUNTIME):
        return True
    for path, names in _COMPILE_FUNCS.items():
        if file.endswith(path) and func.rsplit(".", 1)[-1] in names:
            return True
    return False


def classify_frames(frames: list[Frame]) -> int:
    """The state of one stack (outermost frame first)."""
    if any(f.func == _GPU_WAIT and is_probe_frame(f.file) for f in frames):
        return STATE["gpu-sync"]
    frames = program_frames(frames)
    files = [_norm(f.file) for f in frames]
    if any(f.startswith("<frozen importlib") for f in files):
        return STATE["import"]
    for f, frame in zip(files, frames):
        if f.endswith("/torch/utils/data/dataloader.py") and frame.func.split(".")[-1] in (
            _DATA_FUNCS
        ):
            return STATE["data"]
    if any(_compiling(f, frame.func) for f, frame in zip(files, frames)):
        return STATE["compile"]
    # Library frames that called the program's outermost frame launched it (runpy,
    # multiprocessing's bootstrap, torch.multiprocessing.spawn's _wrap): they say nothing about
    # what the thread is doing, so the leaf window never reaches above the program's own frames.
    # Without a program frame (a library's own thread, a worker waiting for work) all count.
    own = files[_first_program_frame(files) :]
    leaf = own[-LEAF_DEPTH:]
    if any(any(p in f for p in _DIST_PATHS) for f in own):
        return STATE["distributed"]
    if (
        leaf
        and any(p in leaf[-1] for p in _LOOP_IDLE_PATHS)
        and any("/asyncio/" in f for f in files)
    ):
        return STATE["idle-loop"]
    if any(any(p in f for p in _IO_PATHS) for f in leaf):
        return STATE["io"]
    if leaf and any(p in leaf[-1] for p in _WAIT_PATHS + _LOOP_IDLE_PATHS):
        return STATE["wait"]
    if any(_TORCH_PATH in f for f in leaf):
        return STATE["torch"]
    return STATE["python"]


@dataclass
class StackStates:
    """Every stack sample, with its state; stack ids resolve through ``session``."""

    session: Session
    pid: npt.NDArray[np.int64]
    tid: npt.NDArray[np.int64]
    t: npt.NDArray[np.float64]
    stack: npt.NDArray[np.int64]
    state: npt.NDArray[np.int8]
    thread_state: npt.NDArray[np.uint8]  # main thread only: /proc state letter (ord), else 0
    late: npt.NDArray[np.float64]  # seconds the sampler waited to run (GIL), nan if unknown
    # What each sample stands for: the sampling interval in force when it was taken (seconds; the
    # agent lowers its rate while sampling is expensive), so shares of time stay unbiased. All
    # equal for sessions written before the rate adapted.
    weight: npt.NDArray[np.float64]

    @property
    def gil_held(self) -> npt.NDArray[np.bool_]:
        """Samples for which the sampler had to wait for the GIL: Python code was running."""
        held: npt.NDArray[np.bool_] = np.nan_to_num(self.late, nan=0.0) >= GIL_WAIT_S
        return held

    @property
    def blocked(self) -> npt.NDArray[np.bool_]:
        """Main-thread samples taken while it slept or waited on disk, the GIL being free."""
        asleep = (self.thread_state == ord("S")) | (self.thread_state == ord("D"))
        blocked: npt.NDArray[np.bool_] = asleep & ~self.gil_held
        return blocked

    def __len__(self) -> int:
        return len(self.t)

    def thread_mask(self, pid: int, tid: int) -> npt.NDArray[np.bool_]:
        mask: npt.NDArray[np.bool_] = (self.pid == pid) & (self.tid == tid)
        return mask

    def share(self, hits: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_]) -> float:
        """The share of the time of the ``mask`` samples that the ``hits`` samples stand for."""
        total = float(self.weight[mask].sum())
        return float(self.weight[mask & hits].sum()) / total if total > 0 else 0.0

    def shares(self, mask: npt.NDArray[np.bool_]) -> dict[str, float]:
        """Share of the selected samples' time in each state (states with no sample left out)."""
        if not mask.any():
            return {}
        w = self.weight[mask]
        total = float(w.sum())
        if total <= 0:
            return {}
        time = np.bincount(self.state[mask].astype(np.int64), weights=w, minlength=len(STATES))
        return {STATES[i]: float(v) / total for i, v in enumerate(time) if v > 0}

    def top(self, mask: npt.NDArray[np.bool_], n: int = 5) -> list[dict[str, Any]]:
        """The stacks that stood for the most time among the selected samples, innermost last."""
        if not mask.any():
            return []
        stacks = self.stack[mask]
        w = self.weight[mask]
        total = float(w.sum()) or 1.0
        unique, inverse = np.unique(stacks, return_inverse=True)
        time = np.bincount(inverse, weights=w, minlength=len(unique))
        counts = np.bincount(inverse, minlength=len(unique))
        out = []
        for k in np.argsort(-time, kind="stable")[:n]:
            sid = int(unique[k])
            frames = program_frames(self.session.stack_frames(sid))
            out.append(
                {
                    "share": float(time[k]) / total,
                    "samples": int(counts[k]),
                    "state": STATES[int(self.state[mask][stacks == sid][0])],
                    "frames": [{"func": f.func, "file": f.file, "line": f.line} for f in frames],
                }
            )
        return out


def classify_stacks(session: Session, sec: Any) -> StackStates:
    table = session.table("stack")
    stacks = table["stack"].astype(np.int64)
    unique, inverse = np.unique(stacks, return_inverse=True)
    states = np.array(
        [classify_frames(session.stack_frames(int(s))) if s else STATE["python"] for s in unique],
        dtype=np.int8,
    )
    pid = table["pid"].astype(np.int64)
    late = np.full(len(table), np.nan)
    ticks = session.table("tick")
    if len(ticks):
        # A tick and the samples it took share their timestamp: join on (pid, t).
        tick_keys = _keys(ticks["pid"].astype(np.int64), ticks["t"])
        order = np.argsort(tick_keys)
        sorted_keys = tick_keys[order]
        keys = _keys(pid, table["t"])
        pos = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
        found = sorted_keys[pos] == keys
        late[found] = ticks["late"][order][pos[found]] / 1e9
    return StackStates(
        session=session,
        pid=pid,
        tid=table["tid"].astype(np.int64),
        t=sec(table["t"]),
        stack=stacks,
        state=states[inverse] if len(states) else np.zeros(0, dtype=np.int8),
        thread_state=table["state"].astype(np.uint8),
        late=late,
        weight=_weights(session, pid, table["t"]),
    )


def _weights(
    session: Session, pid: npt.NDArray[np.int64], t: npt.NDArray[Any]
) -> npt.NDArray[np.float64]:
    """The sampling interval in force when each sample was taken, in seconds.

    The agent writes a pace record when its interval changes; the one in force for a sample is
    the last record strictly before it (the interval chosen after the previous sample: a record
    at a sample's own time is the choice that sample led to). Samples of processes without pace
    records (sessions written before the rate adapted) weigh one nominal interval each.
    """
    weight = np.full(len(t), 0.01)
    pace = session.table("pace")
    if not len(pace) or not len(t):
        return weight
    ppid = pace["pid"].astype(np.int64)
    for p in np.unique(ppid):
        rows = np.flatnonzero(ppid == p)
        rows = rows[np.argsort(pace["t"][rows], kind="stable")]
        times = pace["t"][rows].astype(np.int64)
        intervals = pace["interval"][rows].astype(np.float64) / 1e9
        mine = np.flatnonzero(pid == p)
        pos = np.searchsorted(times, t[mine].astype(np.int64), side="left") - 1
        weight[mine] = np.where(pos >= 0, intervals[np.clip(pos, 0, None)], intervals[0])
    return weight


def _keys(pid: npt.NDArray[np.int64], t: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    # pids fit in 22 bits; the low 41 bits of monotonic ns wrap every 2**41 ns (~37 minutes),
    # which is harmless for a join key as long as both sides wrap alike: two samples of one pid
    # collide only when their times differ by an exact multiple of it.
    return (pid.astype(np.int64) << 41) ^ (t.astype(np.int64) & ((1 << 41) - 1))
