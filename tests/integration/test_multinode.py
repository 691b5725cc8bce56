"""A two-node job on one machine: two `probe doctor --collect-only` runs of `torchrun --nnodes 2
--node_rank 0/1` meeting at 127.0.0.1, node 1's wall clock moved 5 s ahead (the test-only
PROBE_TEST_CLOCK_OFFSET_S) and its rank slower; then `probe report DIR` on both sessions."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROGRAMS, PYTHON, probe_env, run_probe

OFFSET_S = 5.0
RUN_S = 8.0
LIMIT_S = 150.0  # the two nodes, torch imports and rendezvous included, on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node(dest: Path, node: int, port: int, run_id: str) -> subprocess.Popen[str]:
    torchrun = shutil.which("torchrun", path=str(Path(PYTHON).parent))
    assert torchrun is not None
    env = probe_env(OMP_NUM_THREADS="1")
    if node == 1:
        env["PROBE_TEST_CLOCK_OFFSET_S"] = str(OFFSET_S)
    command = [
        torchrun,
        "--nnodes",
        "2",
        "--node_rank",
        str(node),
        "--nproc_per_node",
        "1",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        run_id,
        str(PROGRAMS / "multinode_train.py"),
        "--seconds",
        str(RUN_S),
    ]
    return subprocess.Popen(
        [PYTHON, "-m", "probe", "doctor", "--collect-only", "--dest", str(dest), "--", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_a_two_node_job_is_one_diagnosis_with_aligned_clocks(tmp_path: Path) -> None:
    dest = tmp_path / "shared"
    port = _free_port()
    nodes = [_node(dest, k, port, "e2e-two-nodes") for k in (0, 1)]
    outputs = []
    try:
        for proc in nodes:
            outputs.append(proc.communicate(timeout=LIMIT_S))
    finally:
        for proc in nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    for proc, (_, err) in zip(nodes, outputs):
        assert proc.returncode == 0, err
    assert "rank 0 on node 0" in outputs[0][0] and "rank 1 on node 1" in outputs[1][0]
    for k, (_, err) in enumerate(outputs):  # each node says how to see the whole job
        assert f"probe: note: this session is node {k} of a 2-node job" in err, err
        assert f"probe report {dest.resolve()}" in err

    host = socket.gethostname().split(".")[0]
    names = sorted(p.name for p in dest.iterdir() if p.is_dir())
    assert len(names) == 2
    assert f"-{host}-node0-" in names[0] and f"-{host}-node1-" in names[1]

    result = run_probe(["report", str(dest), "--json", "-"], timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    job = doc["job"]
    assert job["id"] == "torchrun:e2e-two-nodes"
    assert (job["nnodes"], job["world_size"], job["missing"]) == (2, 2, {"nodes": [], "ranks": []})
    assert [(n["node"], n["ranks"]) for n in job["nodes"]] == [("node 0", [0]), ("node 1", [1])]

    # the clocks: node 1's wall clock says it started ~5 s later than it did; the step ends
    # shared by both ranks put it back, to within a few milliseconds
    assert job["clock"]["method"] == "steps", result.stderr
    node1 = job["nodes"][1]["sessions"][0]["clock"]
    assert node1["method"] == "steps"
    assert node1["offset_s"] == pytest.approx(-OFFSET_S, abs=0.05)
    assert abs(node1["wall_clock_start_s"] + node1["offset_s"]) < 2.0  # both started together
    assert node1["matched_steps"] >= 20
    assert job["clock"]["residual_skew_s"] < 0.05
    assert "node 1's, 5.0" in result.stderr and "ahead" in result.stderr

    # the verdict: node 1's rank is the straggler, named with its host
    assert doc["category"] == "straggler-rank", result.stderr
    issue = doc["issues"][0]
    assert issue["evidence"]["straggler_rank"] == 1
    assert issue["evidence"]["straggler_node"] == "node 1"
    assert issue["evidence"]["straggler_host"] == socket.gethostname()
    assert issue["evidence"]["scope"] == "rank-or-node"  # one rank per node
    assert issue["where"]["nodes"] == ["node 1"]
    assert f"Rank 1 on host {socket.gethostname()} (node 1)" in issue["title"]

    assert (dest / "job-torchrun-e2e-two-nodes.json").is_file()
    page = (dest / "job-torchrun-e2e-two-nodes.html").read_text()
    assert "Collective wait per step (ms): rank x step" in page and "Ranks by node" in page
