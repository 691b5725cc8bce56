"""The analysis runs with native thread pools (OpenMP, BLAS) at one thread
(probe.analysis.native), and leaves them as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.synthetic_runs import Run

# In a fresh interpreter (hmmlearn, whose import loads scikit-learn's OpenMP runtime, not yet
# imported when the analysis starts): the pools' threads while k-means runs, and after.
WATCH = """
import json, sys
from threadpoolctl import threadpool_info
from probe.analysis.diagnosis import diagnose
from probe.session.reader import Session

def threads():
    return {p["user_api"] + ":" + p["prefix"]: p["num_threads"] for p in threadpool_info()}

seen = []
def profile(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "_kmeans_single_lloyd":
        seen.append(threads())
session = Session(sys.argv[1])
assert "hmmlearn" not in sys.modules
sys.setprofile(profile)
diagnose(session)
sys.setprofile(None)
print(json.dumps({"during": seen, "after": threads()}))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every pool has one thread")
def test_k_means_runs_on_one_thread_and_the_pools_are_given_back(tmp_path: Path) -> None:
    Run(duration=12.0).build(tmp_path / "s")
    out = subprocess.run(
        [sys.executable, "-c", WATCH, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    during, after = result["during"], result["after"]
    assert during and any(p.startswith("openmp") for p in during[0]), during
    assert all(n == 1 for pools in during for n in pools.values()), during
    assert any(p.startswith("openmp") and n > 1 for p, n in after.items()), after
