"""The scenario suite as data: one entry per program, with the verdict probe should give.

Importable without torch (the tests read it before deciding what to run). Each entry:

    id           the expected verdict id
    file         the program, relative to this directory
    argv         extra arguments after the file
    launcher     "python" (python FILE ARGV...),
                 "torchrun" (torchrun --standalone --nproc_per_node 2 FILE ARGV...) or
                 "server" (python FILE ARGV..., a server probed under load:
                 probe doctor --on-port LOAD -- python FILE ARGV..., see load_command)
    load         servers only: what `probe load` sends (path, concurrency, duration, body, and
                 rate: requests a second on a schedule, else a closed loop)
    seconds      typical wall time on an idle 2-core machine, imports included
    description  what the program does and why it earns its verdict
    needs        (optional) what the machine must have for the program to run: "cuda" (torch
                 sees a CUDA GPU) or "c++" (a C++ compiler, g++ or $CXX, that torch.compile
                 builds its CPU kernels with); the tests skip a scenario whose needs are not met
    also         (optional) other verdict ids that must be among the run's issues
    exit         (optional) the program's exit status, 0 unless given
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The text every embedding request of the serving scenarios carries (about 130 word pieces).
EMBED_TEXT = (
    "index42 latency7 vector19 shard3 query88 model5 ranking61 cache12 document90 search44 "
    "token31 batch76 throughput2 server58 embedding17 request9 index3 latency65 vector28 "
    "shard71 query14 model93 ranking36 cache80 document21 search57 token6 batch49 "
    "throughput84 server11 embedding40 request73 index96 latency18 vector55 shard27 query62 "
    "model30 ranking8 cache47 document69 search15 token92 batch24 throughput53 server86 "
    "embedding1 request38 index77 latency29 vector64 shard10 query45 model82 ranking23"
)

SCENARIOS: list[dict] = [
    {
        "id": "healthy",
        "file": "healthy_mlp.py",
        "argv": [],
        "launcher": "python",
        "seconds": 18,
        "description": (
            "MLP on an in-memory TensorDataset (num_workers=0), batch 500, 2048-wide layers: "
            "compute-bound, loader waits ~1 % of the loop, flat memory, no stalls."
        ),
    },
    {
        "id": "healthy",
        "file": "healthy_convnet.py",
        "argv": [],
        "launcher": "python",
        "seconds": 13,
        "description": (
            "Conv net on in-memory synthetic images served pre-batched by an IterableDataset: "
            "both intra-op threads busy in convolutions."
        ),
    },
    {
        "id": "input-bound",
        "file": "input_bound_transforms.py",
        "argv": [],
        "launcher": "python",
        "seconds": 15,
        "description": (
            "Transform-bound: 2 DataLoader workers compute multi-resolution STFT spectrograms + "
            "bicubic resize + SpecAugment per sample; tiny conv net."
        ),
    },
    {
        "id": "input-bound",
        "file": "input_bound_storage.py",
        "argv": [],
        "launcher": "python",
        "seconds": 15,
        "description": (
            "Latency-bound: 2 workers assemble each sample from 5 small .npy files with a "
            "simulated 4 ms storage round trip per read; workers mostly idle."
        ),
    },
    {
        "id": "input-bound",
        "file": "input_bound_main_process.py",
        "argv": [],
        "launcher": "python",
        "seconds": 14,
        "description": (
            "num_workers=0: zlib image decode, rotation by grid_sample, resized crop, colour "
            "jitter and blur run in __getitem__ on the training process."
        ),
    },
    {
        "id": "gc-pauses",
        "file": "gc_pauses_recsys.py",
        "argv": [],
        "launcher": "python",
        "seconds": 15,
        "description": (
            "Recommender with a ~1.5M-object in-memory feature store; nested-dict records per "
            "sample kept in a sliding window trigger frequent 150-400 ms full collections "
            "(about 25-30 % of the loop)."
        ),
    },
    {
        "id": "memory-growth",
        "file": "memory_growth_loss_history.py",
        "argv": [],
        "launcher": "python",
        "seconds": 12,
        "description": (
            "Conv forecaster appending the loss tensor (graph kept alive by retain_graph=True) "
            "every step: RSS grows ~70 MB/s to about 1 GB."
        ),
    },
    {
        "id": "memory-growth",
        "file": "memory_growth_cache_no_torch.py",
        "argv": [],
        "launcher": "python",
        "seconds": 11,
        "description": (
            "Pure Python (no torch) text-preprocessing worker fed in bursts by a listener "
            "thread (busy ~35-55 %); its unbounded memo cache and audit log grow ~15 MB/s for "
            "11 s."
        ),
    },
    {
        "id": "cpu-oversubscription",
        "file": "cpu_oversubscription.py",
        "argv": [],
        "launcher": "python",
        "seconds": 12,
        "description": (
            "Actor-learner: learner with torch.set_num_threads(8) plus 2 actor processes with 4 "
            "threads each, all busy, on 2 cores."
        ),
    },
    {
        "id": "python-bound",
        "file": "python_bound_rnn.py",
        "argv": [],
        "launcher": "python",
        "seconds": 12,
        "description": (
            "Hand-written 2-layer GRU cell unrolled in Python (hidden 24, batch 4, 40 steps): "
            "thousands of tiny ops per step, interpreter-bound."
        ),
    },
    {
        "id": "python-bound",
        "file": "python_bound_ode.py",
        "argv": [],
        "launcher": "python",
        "seconds": 14,
        "description": (
            "Learned oscillator ODE integrated with RK2 in a Python loop over 120 time steps on "
            "an 8x16 state: elementwise ops only, so the intra-op pool stays idle while the "
            "main thread runs at 100 %."
        ),
    },
    {
        "id": "io-bound",
        "file": "io_bound_metrics_http.py",
        "argv": [],
        "launcher": "python",
        "seconds": 15,
        "description": (
            "Every step POSTs its metrics synchronously (urllib) to a local tracking server "
            "that answers in 25-35 ms: ~45 % of each step blocked on the socket."
        ),
    },
    {
        "id": "io-bound",
        "file": "io_bound_step_artifacts.py",
        "argv": [],
        "launcher": "python",
        "seconds": 15,
        "description": (
            "Conv autoencoder reading its shard with open().read() every step and writing "
            "per-step torch.save artifacts followed by os.fsync (~35 % of the loop in file I/O)."
        ),
    },
    {
        "id": "periodic-stall",
        "file": "periodic_stall_checkpoint.py",
        "argv": [],
        "launcher": "python",
        "seconds": 15,
        "description": (
            "Every 30 steps a ~125 MB checkpoint (frozen 30M-parameter encoder, head, optimizer "
            "state) is saved and fsynced: 12 stalls of 0.15-0.5 s against ~20 ms steps."
        ),
    },
    {
        "id": "periodic-stall",
        "file": "periodic_stall_eval.py",
        "argv": [],
        "launcher": "python",
        "seconds": 14,
        "description": (
            "Small ResNet; an inline validation pass over 1500 images every 50 steps: 9 stalls "
            "of ~0.5 s against ~15 ms steps."
        ),
    },
    {
        "id": "periodic-stall",
        "file": "periodic_stall_reindex.py",
        "argv": [],
        "launcher": "python",
        "seconds": 19,
        "description": (
            "Dual encoder in a Trainer with callbacks; every 40 steps a callback re-embeds a "
            "40,000-item corpus and rebuilds a kNN index: stalls of 1-2 s against ~10 ms steps "
            "fill most of the run."
        ),
    },
    {
        "id": "event-loop-blocked",
        "file": "event_loop_blocked.py",
        "argv": [],
        "launcher": "python",
        "seconds": 11,
        "description": (
            "asyncio embedding service running a transformer forward synchronously in an async "
            "handler (probe.step() per request): loop lag median tens of ms, max hundreds."
        ),
    },
    {
        "id": "event-loop-blocked",
        "file": "serve_async_inline.py",
        "argv": [],
        "launcher": "server",
        "load": {"path": "/embed", "concurrency": 8, "duration": 8, "body": {"text": EMBED_TEXT}},
        "seconds": 14,
        "description": (
            "FastAPI/uvicorn embedding server (2-layer transformer built in code) whose async "
            "handler runs the forward inline on the event loop; 8 connections for 8 s."
        ),
    },
    {
        "id": "healthy",
        "file": "serve_executor.py",
        "argv": [],
        "launcher": "server",
        # 30 requests a second on a schedule, under a third of what its one executor thread
        # serves when requests always wait (about 100/s on 2 cores with the load generator
        # beside it): the server keeps up and nothing holds it back. Driven to saturation by a
        # closed loop it is not healthy: one forward at a time keeps only 1.2 of 2 cores busy
        # (request-queueing), and a second thread makes the loop, the load generator and the
        # forwards contend for the two cores.
        "load": {
            "path": "/embed",
            "concurrency": 8,
            "duration": 8,
            "rate": 30,
            "body": {"text": EMBED_TEXT},
        },
        "seconds": 14,
        "description": (
            "The same server with the forward in run_in_executor on one worker thread, at 30 "
            "requests a second (below its capacity): the loop stays free, requests do not wait "
            "in line, latency is the forward's own time."
        ),
    },
    {
        "id": "thread-pool-saturated",
        "file": "serve_sync_threadpool.py",
        "argv": [],
        "launcher": "server",
        "load": {
            "path": "/search",
            "concurrency": 12,
            "duration": 8,
            "body": {"query": "cache latency model9 vector17 search"},
        },
        "seconds": 15,
        "description": (
            "Hybrid search with sync FastAPI `def` handlers: the query embedded, 1,000 document "
            "vectors scored, 20 candidates re-ranked in Python; 12 requests share the GIL in "
            "the thread pool."
        ),
    },
    {
        "id": "request-queueing",
        "file": "serve_single_worker.py",
        "argv": [],
        "launcher": "server",
        "load": {"path": "/embed", "concurrency": 8, "duration": 8, "body": {"text": EMBED_TEXT}},
        "seconds": 14,
        "description": (
            "Embedding server with one model worker thread draining a queue and torch pinned to "
            "one thread: requests wait in line while the second core idles."
        ),
    },
    {
        "id": "straggler-rank",
        "file": "straggler_rank_ddp.py",
        "argv": [],
        "launcher": "torchrun",
        "seconds": 14,
        "description": (
            "2-rank gloo DDP MLP; rank 1 decompresses and feature-engineers raw records every "
            "step, rank 0 waits in the gradient all-reduce."
        ),
    },
    {
        "id": "straggler-rank",
        "file": "straggler_rank_spawn.py",
        "argv": [],
        "launcher": "python",
        "seconds": 16,
        "description": (
            "2 ranks from torch.multiprocessing.spawn (gloo), gradients all-reduced by hand; "
            "rank 1 sleeps 30 ms on slow storage and runs an SVD check every step."
        ),
    },
    {
        "id": "healthy",
        "file": "healthy_compiled.py",
        "argv": [],
        "launcher": "python",
        "seconds": 18,
        "needs": "c++",
        "description": (
            "Residual MLP wrapped in torch.compile, batches of one shape: the first step "
            "compiles (start-up), every later one runs the compiled code; compute-bound."
        ),
    },
    {
        "id": "healthy",
        "file": "healthy_compiled.py",
        "argv": ["--eager"],
        "launcher": "python",
        "seconds": 12,
        "description": (
            "The same model and loop without torch.compile, for comparison with the compiled "
            "run: healthy too."
        ),
    },
    {
        "id": "recompilation",
        "file": "recompilation_curriculum.py",
        "argv": [],
        "launcher": "python",
        "seconds": 25,
        "needs": "c++",
        "description": (
            "Language model compiled with dynamic=False, trained with a sequence-length "
            "curriculum (+32 tokens every 20 steps, 4096-token batches): every new shape fails "
            "the shape guard and recompiles forward and backward inside the loop."
        ),
    },
    {
        "id": "insufficient-data",
        "file": "startup_crash_missing_data.py",
        "argv": [],
        "launcher": "python",
        "seconds": 6,
        "exit": 1,
        "description": (
            "Imports torch, builds a GPT-style model and its optimizer, then dies on a missing "
            "token file (FileNotFoundError) before its first step: start-up only, nothing to "
            "judge as a loop."
        ),
    },
]


# Sized for one large data-centre GPU (an H100 or H200); `seconds` is the loop's time on one.
GPU_SCENARIOS: list[dict] = [
    {
        "id": "healthy",
        "file": "gpu_healthy.py",
        "argv": [],
        "launcher": "python",
        "seconds": 35,
        "needs": "cuda",
        "description": (
            "bf16 residual MLP (8 blocks, width 2048, 16384 rows a batch) on batches resident on "
            "the GPU, fused AdamW, the loss read every 100 steps: the GPU busy nearly all the time."
        ),
    },
    {
        "id": "host-sync-stalls",
        "file": "gpu_host_sync.py",
        "argv": [],
        "launcher": "python",
        "seconds": 35,
        "needs": "cuda",
        "description": (
            "The same kind of loop calling loss.item() and copying its predictions to the host "
            "(.cpu()) every step for metrics computed on the CPU (about half a GPU step of work, "
            "sized at start-up): the host waits on the GPU, then the GPU waits on the host."
        ),
    },
    {
        "id": "input-bound",
        "file": "gpu_input_bound.py",
        "argv": [],
        "launcher": "python",
        "seconds": 35,
        "needs": "cuda",
        "also": ["gpu-underutilized"],
        "description": (
            "Small model on the GPU fed by 2 DataLoader workers that build and filter each image "
            "in the frequency domain on the CPU: the loop waits in next(), the GPU idles."
        ),
    },
    {
        "id": "memory-growth",
        "file": "gpu_memory_growth.py",
        "argv": [],
        "launcher": "python",
        "seconds": 35,
        "needs": "cuda",
        "description": (
            "The healthy loop keeping rows of every batch's features on the GPU for a later "
            "evaluation (sized at start-up to ~600 MB/s): CUDA memory allocated grows steadily, "
            "RSS stays flat."
        ),
    },
]
SCENARIOS += GPU_SCENARIOS


def by_id(verdict: str) -> list[dict]:
    """The scenarios expected to get the given verdict."""
    return [s for s in SCENARIOS if s["id"] == verdict]


def has_cxx() -> bool:
    """Whether torch.compile can build its CPU kernels here: a C++ compiler, g++ or $CXX."""
    import os
    import shutil

    return bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++"))


def command(scenario: dict, python: str = "python", torchrun: str = "torchrun") -> list[str]:
    """The command line that runs one scenario (paths absolute); for a server, the server."""
    path = str(HERE / scenario["file"])
    if scenario["launcher"] == "torchrun":
        return [torchrun, "--standalone", "--nproc_per_node", "2", path, *scenario["argv"]]
    return [python, path, *scenario["argv"]]


def load_command(scenario: dict, python: str = "python") -> str:
    """A server's load: the shell command for probe doctor --on-port ($PORT is the port)."""
    load = scenario["load"]
    return " ".join(
        [
            shlex.quote(python),
            "-m probe load",
            f"http://127.0.0.1:$PORT{load['path']}",
            f"--concurrency {load['concurrency']}",
            f"--duration {load['duration']}",
            *([f"--rate {load['rate']}"] if "rate" in load else []),
            f"--body {shlex.quote(json.dumps(load['body']))}",
        ]
    )
