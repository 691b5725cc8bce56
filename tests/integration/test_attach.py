"""`probe attach PID` on real running jobs: what it records, and that the job runs on untouched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from probe.attach.inject import gdb_corrupts_calls
from probe.attach.permissions import ptrace_obstacle
from probe.session.format import STEP_SOURCE_OPTIMIZER as OPTIMIZER
from probe.session.reader import Session
from tests.conftest import PROGRAMS, PYTHON, end_process, probe_env, run_probe, steps_of
from tests.waiting import recorded, wait_until

TRAIN = PROGRAMS / "attach_train.py"


def gdb_usable() -> str | None:
    """Why gdb injection cannot be exercised here, or None when it can (probe's own pre-flight
    check refuses gdb on a machine where its calls would break the job)."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return "gdb is not installed"
    return ptrace_obstacle(0) or gdb_corrupts_calls(gdb)


needs_gdb = pytest.mark.skipif(gdb_usable() is not None, reason=str(gdb_usable()))


class Job:
    """A job started the way a user would start it (no probe), stopped by a file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.finish = tmp_path / "finish"
        self.proc = subprocess.Popen(
            [PYTHON, str(TRAIN), str(self.finish), *args],
            env=env or probe_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line + self.proc.stderr.read()  # type: ignore[union-attr]
        self.pid = self.proc.pid

    @property
    def workers(self) -> list[int]:
        """The job's DataLoader workers (started before it said it was ready)."""
        return [child.pid for child in psutil.Process(self.pid).children()]

    def end(self, timeout: float = 60) -> tuple[int, str, str]:
        self.finish.touch()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        end_process(self.proc, group=True)


@pytest.fixture
def job_factory(tmp_path: Path) -> Iterator[list[Job]]:
    jobs: list[Job] = []
    yield jobs
    for job in jobs:
        job.kill()


def attach_args(tmp_path: Path, pid: int, *args: str, name: str = "s") -> list[str]:
    return [
        "attach",
        str(pid),
        "--collect-only",
        "--dest",
        str(tmp_path / "d"),
        "--name",
        name,
        *args,
    ]


def attach(
    tmp_path: Path, pid: int, *args: str, name: str = "s"
) -> subprocess.CompletedProcess[str]:
    return run_probe(attach_args(tmp_path, pid, *args, name=name), timeout=180)


def attach_until(
    tmp_path: Path,
    pid: int,
    enough: Callable[[], bool],
    what: str,
    *args: str,
    stop: Callable[[subprocess.Popen[str]], None] | None = None,
    argv: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`probe attach PID ARGS` for as long as the machine needs, not for a fixed time: it runs in
    the background until probe has seen the agent start in ``pid`` and ``enough()`` holds (the
    agent has recorded what the test counts), then ends by ``stop(attach)`` (default: Ctrl-C). On a
    loaded machine the injection and the agent's start can take most of a window of seconds, so
    a fixed ``--duration`` would leave the test counting what the machine had time for. Fails
    at once, with what probe said, when probe ends or says that no agent can come."""
    err_path = tmp_path / "attach.stderr"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [PYTHON, "-m", "probe", *(argv or attach_args(tmp_path, pid, *args))],
            env=probe_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    running = f"agent running in process {pid} "
    refused = f"process {pid}: no agent"

    def done() -> bool:
        said = err_path.read_text()
        return proc.poll() is not None or refused in said or (running in said and enough())

    try:
        wait_until(done, lambda: f"{what} (probe attach said: {err_path.read_text()!r})")
        said = err_path.read_text()
        assert running in said, f"no agent started in process {pid}; probe attach said: {said}"
        if proc.poll() is None:
            (stop or (lambda attach: attach.send_signal(signal.SIGINT)))(proc)
        out, _ = proc.communicate(timeout=180)
    finally:
        end_process(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err_path.read_text())


def wait_for_state(status: Path, state: str) -> None:
    """Until the job's attach status file says ``state``."""

    def state_now() -> str | None:
        try:
            return str(json.loads(status.read_text())["state"])
        except (OSError, ValueError):  # not written yet
            return None

    wait_until(lambda: state_now() == state, lambda: f"{state!r} in {status}: {state_now()!r}")


def assert_left_clean(out: str) -> dict[str, object]:
    """The job's own report: nothing of probe remains in it after the attach."""
    lines = out.splitlines()
    assert lines[-1] == "done"
    report = json.loads(lines[-2])
    before, after = report["before"], report["after"]
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert after["next_is_original"] and after["fetch_is_original"]
    assert after["files"] == []
    assert report["steps"] > 10
    return report


def agent_files(session: Session) -> dict[int, str]:
    return {f.pid: f.header.get("origin", "") for f in session.files if f.writer == "agent"}


# -- gdb: a job that never asked for it -----------------------------------------------------------


@needs_gdb
def test_attach_with_gdb_records_inside_and_leaves_the_job_as_it_was(
    tmp_path: Path, job_factory: list[Job]
) -> None:
    job = Job(tmp_path)
    job_factory.append(job)
    session_dir = tmp_path / "d" / "s"
    result = attach_until(
        tmp_path,
        job.pid,
        lambda: (
            recorded(session_dir, "step", job.pid, source=OPTIMIZER) >= 20
            and recorded(session_dir, "wait", job.pid) >= 20
            and all(recorded(session_dir, "fetch", w) > 0 for w in job.workers)
        ),
        "20 steps and waits from the job, and fetches from each of its workers",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"agent running in process {job.pid} (gdb" in result.stderr
    assert result.stdout == ""
    code, out, err = job.end()
    assert code == 0, err
    assert_left_clean(out)
    session = Session(session_dir)
    meta = session.meta
    assert meta["kind"] == "attach" and meta["status"] == "detached"
    assert meta["root_pid"] == job.pid
    assert meta["attach"]["no_inside_data"] is None
    processes = {p["pid"]: p for p in meta["attach"]["processes"]}
    assert processes[job.pid]["method"] == "gdb"
    assert processes[job.pid]["state"] == "detached"
    # The workers existed before the attach: they are injected too, and build the batches.
    assert len(processes) == 3
    assert all(p["state"] == "detached" for p in processes.values()), processes
    origins = agent_files(session)
    assert origins[job.pid] == "attach" and len(origins) == 3
    waits = session.table("wait")
    steps = session.table("step")
    assert steps_of(session) >= 20 and {int(p) for p in steps["pid"]} == {job.pid}
    assert len(waits) >= 20
    fetch = session.table("fetch")
    assert {int(p) for p in fetch["pid"]} == set(origins) - {job.pid}
    # The outside sampler saw the whole tree.
    assert {int(p) for p in session.table("proc")["pid"]} >= set(origins)
    assert not [w for w in meta["warnings"] if "agent" in w]


@needs_gdb
def test_attach_verdict_is_input_bound(tmp_path: Path, job_factory: list[Job]) -> None:
    job = Job(tmp_path)
    job_factory.append(job)
    verdict = tmp_path / "verdict.json"
    session_dir = tmp_path / "d" / "s"
    # 150 steps: what 6 s of this loop give (25 steps/s: each worker sleeps 80 ms for a batch).
    result = attach_until(
        tmp_path,
        job.pid,
        lambda: recorded(session_dir, "step", job.pid, source=OPTIMIZER) >= 150,
        "150 steps from the job",
        argv=[
            "attach",
            str(job.pid),
            "--no-open",
            "--json",
            str(verdict),
            "--dest",
            str(tmp_path / "d"),
            "--name",
            "s",
        ],
    )
    assert result.returncode == 0, result.stderr
    code, out, _ = job.end()
    assert code == 0
    assert_left_clean(out)
    assert json.loads(verdict.read_text())["category"] == "input-bound"


@needs_gdb
def test_ctrl_c_ends_the_attach_not_the_job(tmp_path: Path, job_factory: list[Job]) -> None:
    job = Job(tmp_path, "--workers", "0")
    job_factory.append(job)
    session_dir = tmp_path / "d" / "s"
    # Ctrl-C once the agent has recorded something to keep.
    result = attach_until(
        tmp_path, job.pid, lambda: recorded(session_dir, "step", job.pid) > 0, "a step"
    )
    assert result.returncode == 0, result.stderr
    assert f"process {job.pid} keeps running" in result.stderr
    assert job.proc.poll() is None  # the job did not see the Ctrl-C
    code, out, _ = job.end()
    assert code == 0
    assert_left_clean(out)
    assert Session(session_dir).meta["status"] == "detached"


@needs_gdb
def test_a_probe_killed_mid_attach_leaves_no_agent_behind(
    tmp_path: Path, job_factory: list[Job]
) -> None:
    job = Job(tmp_path, "--workers", "0")
    job_factory.append(job)
    status = tmp_path / "d" / "s" / f"attach-{job.pid}.json"
    killed = attach_until(
        tmp_path, job.pid, lambda: True, "the agent", stop=lambda attach: attach.kill()
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    wait_for_state(status, "detached")  # the agent notices at its next check (every 0.5 s)
    assert json.loads(status.read_text())["reason"] == "the probe attach process is gone"
    code, out, _ = job.end()
    assert code == 0
    assert_left_clean(out)


# -- the opt-in listener: no debugger ------------------------------------------------------------


def test_attach_through_the_listener(tmp_path: Path, job_factory: list[Job]) -> None:
    job = Job(tmp_path, "--listen")
    job_factory.append(job)
    session_dir = tmp_path / "d" / "s"
    result = attach_until(
        tmp_path,
        job.pid,
        lambda: (
            recorded(session_dir, "step", job.pid, source=OPTIMIZER) >= 10
            and recorded(session_dir, "fetch") >= 10
        ),
        "10 steps from the job and 10 fetches from its workers",
    )
    assert result.returncode == 0, result.stderr
    assert f"agent running in process {job.pid} (listener" in result.stderr
    code, out, err = job.end()
    assert code == 0, err
    report = assert_left_clean(out)
    # Dormant, the job carries one thread of probe's (the listener's, unknown to threading) and
    # nothing else; the same after.
    before = report["before"]
    assert isinstance(before, dict)
    assert before["python_threads"] == before["threading"] + 1
    assert before["probe_objects"] == ["Listener"]
    session = Session(session_dir)
    processes = {p["pid"]: p for p in session.meta["attach"]["processes"]}
    assert processes[job.pid]["method"] == "listener"
    # Forked DataLoader workers listen on their own socket: they are switched on too.
    assert len(processes) == 3 and all(p["method"] == "listener" for p in processes.values())
    assert steps_of(session) >= 10
    assert len(session.table("fetch")) >= 10


def test_listener_from_the_environment(tmp_path: Path, job_factory: list[Job]) -> None:
    code = (
        "import os, sys, time, probe\n"
        "print('ready', os.getpid(), flush=True)\n"
        "n = 0\n"
        "while not os.path.exists(sys.argv[1]):\n"
        "    n += 1; probe.step(); time.sleep(0.01)\n"
        "print('frames', len(sys._current_frames()), 'agent', probe._agent)\n"
    )
    finish = tmp_path / "finish"
    proc = subprocess.Popen(
        [PYTHON, "-c", code, str(finish)],
        env=probe_env(PROBE_LISTEN="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    session_dir = tmp_path / "d" / "s"
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        result = attach_until(
            tmp_path,
            proc.pid,
            lambda: recorded(session_dir, "step", proc.pid) >= 20,
            "20 steps from the job",
        )
        assert result.returncode == 0, result.stderr
        assert "(listener" in result.stderr
        finish.touch()
        out, _ = proc.communicate(timeout=30)
    finally:
        end_process(proc)
    assert proc.returncode == 0
    assert out.strip() == "frames 2 agent None"
    steps = Session(session_dir).table("step")
    assert len(steps) >= 20  # probe.step() recorded while attached


# -- outside only ---------------------------------------------------------------------------------


def test_no_inject_records_from_outside_only(tmp_path: Path, job_factory: list[Job]) -> None:
    job = Job(tmp_path)
    job_factory.append(job)
    result = attach(tmp_path, job.pid, "--duration", "2", "--no-inject")
    assert result.returncode == 0, result.stderr
    assert "outside only" in result.stderr
    code, out, _ = job.end()
    assert code == 0
    assert_left_clean(out)
    session = Session(tmp_path / "d" / "s")
    assert not session.has_agent_data
    assert session.meta["settings"]["inject"] is False
    assert session.meta["attach"]["no_inside_data"] == "probe attach ran with --no-inject"
    pids = {int(p) for p in session.table("proc")["pid"]}
    assert job.pid in pids and len(pids) == 3  # the job and its two workers
    assert not list((tmp_path / "d" / "s").glob("attach-*.json"))


def test_no_way_to_inject_says_why_and_records_from_outside(
    tmp_path: Path, job_factory: list[Job]
) -> None:
    # The job asked not to be debugged: probe says so and goes on with outside data.
    job = Job(tmp_path, "--workers", "0", env=probe_env(PYTHON_DISABLE_REMOTE_DEBUG="1"))
    job_factory.append(job)
    result = attach(tmp_path, job.pid, "--duration", "2")
    assert result.returncode == 0, result.stderr
    assert "PYTHON_DISABLE_REMOTE_DEBUG" in result.stderr
    assert "PROBE_LISTEN=1" in result.stderr  # what would allow it
    assert "recording from outside only" in result.stderr
    code, out, _ = job.end()
    assert code == 0
    assert_left_clean(out)
    session = Session(tmp_path / "d" / "s")
    assert not session.has_agent_data
    assert "PYTHON_DISABLE_REMOTE_DEBUG" in session.meta["attach"]["no_inside_data"]
    assert len(session.table("proc")) >= 3


def test_a_gdb_that_would_break_the_job_is_never_pointed_at_it(
    tmp_path: Path, job_factory: list[Job]
) -> None:
    # A gdb that cannot restore registers after a call (as on some kernels and hypervisors):
    # probe's pre-flight call into a throwaway process shows it, and the job is left alone.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gdb-calls"
    fake = bin_dir / "gdb"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'echo "Couldn\'t write extended state status: Bad address." >&2\n'
    )
    fake.chmod(0o755)
    job = Job(tmp_path, "--workers", "0")
    job_factory.append(job)
    env = probe_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    result = run_probe(attach_args(tmp_path, job.pid, "--duration", "2"), env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "cannot call into a process safely" in result.stderr
    assert "recording from outside only" in result.stderr
    # gdb was run once, on probe's own throwaway process, never on the job.
    pids = [line.split(" -p ")[1].split()[0] for line in calls.read_text().splitlines()]
    assert len(pids) == 1 and int(pids[0]) != job.pid
    code, out, _ = job.end()
    assert code == 0
    assert_left_clean(out)
    session = Session(tmp_path / "d" / "s")
    assert "cannot call into a process safely" in session.meta["attach"]["no_inside_data"]


# -- bad input -------------------------------------------------------------------------------------


def test_missing_pid_is_a_clear_error(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    result = attach(tmp_path, gone.pid)
    assert result.returncode == 1
    assert result.stderr.startswith(f"probe: error: no process with id {gone.pid}\n")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "d" / "s").exists()


def test_not_a_number_is_a_usage_error(tmp_path: Path) -> None:
    result = run_probe(["attach", "abc"])
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_a_non_python_process_is_refused_unless_no_inject(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        refused = attach(tmp_path, sleeper.pid)
        assert refused.returncode == 1
        assert f"process {sleeper.pid} (sleep 60) is not a Python process" in refused.stderr
        assert "--no-inject" in refused.stderr and "Traceback" not in refused.stderr
        assert not (tmp_path / "d" / "s").exists()
        outside = attach(tmp_path, sleeper.pid, "--no-inject", "--duration", "1")
        assert outside.returncode == 0, outside.stderr
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    procs = Session(tmp_path / "d" / "s").table("proc")
    assert {int(p) for p in procs["pid"]} == {sleeper.pid}


@needs_gdb
def test_a_job_that_exits_mid_attach_still_gets_its_session(tmp_path: Path) -> None:
    # The job ends when told to (a line on its stdin), once the agent has recorded its stacks.
    code = (
        "import os, select, sys, time\n"
        "print('ready', os.getpid(), flush=True)\n"
        "while not select.select([sys.stdin], [], [], 0)[0]:\n"
        "    sum(range(10000)); time.sleep(0.005)\n"
        "print('bye')\n"
    )
    proc = subprocess.Popen(
        [PYTHON, "-c", code],
        env=probe_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    session_dir = tmp_path / "d" / "s"
    told_ns = []

    def end_the_job(attach: subprocess.Popen[str]) -> None:
        assert proc.stdin is not None
        told_ns.append(time.monotonic_ns())
        proc.stdin.write("stop\n")
        proc.stdin.flush()

    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        result = attach_until(
            tmp_path,
            proc.pid,
            lambda: recorded(session_dir, "stack", proc.pid) > 10,
            "10 stack samples from the job",
            "--duration",
            "600",  # longer than any wait here: the job's exit ends the attach
            stop=end_the_job,
        )
        out, _ = proc.communicate(timeout=30)
    finally:
        end_process(proc)
    assert result.returncode == 0, result.stderr
    assert "exited during the attach" in result.stderr
    assert proc.returncode == 0 and out == "bye\n"
    session = Session(session_dir)
    assert session.meta["status"] == "target-exited"
    assert session.meta["exit"]["code"] is None  # not probe's child: its exit code is unknown
    assert session.has_agent_data
    assert session.end_ns >= told_ns[0]  # the session covers the job up to its exit
    assert len(session.table("stack")) > 10


# -- serving: a running asyncio loop gets its lag monitor ------------------------------------------


def serve(
    tmp_path: Path, python: str, *args: str, agent: bool = True
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the serving program, attach to it until the agent has timed its loop ten times (or for
    3 s when no agent can start), stop it; (probe's result, its output)."""
    finish = tmp_path / "finish"
    session_dir = tmp_path / "d" / "s"
    proc = subprocess.Popen(
        [python, str(PROGRAMS / "attach_serve.py"), str(finish), *args],
        env=probe_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        if agent:
            result = attach_until(
                tmp_path,
                proc.pid,
                lambda: recorded(session_dir, "lag", proc.pid) >= 10,
                "10 lag records from the job",
            )
        else:
            result = attach(tmp_path, proc.pid, "--duration", "3")
        finish.touch()
        out, err = proc.communicate(timeout=30)
    finally:
        end_process(proc)
    assert result.returncode == 0, result.stderr
    assert proc.returncode == 0, err
    assert json.loads(out)["probe_timers"] == 0
    return result, out


def assert_loop_timed(session: Session) -> None:
    lag = session.table("lag")
    assert len(lag) >= 10
    assert float(np.median(lag["lag"])) / 1e6 > 10  # each 30 ms block makes the timer late
    assert len(list(session.events_of("loop"))) == 1


@pytest.mark.parametrize(
    "args",
    [pytest.param([], marks=needs_gdb, id="gdb"), pytest.param(["--listen", "--thread"])],
    ids=["gdb-loop-in-the-main-thread", "listener-loop-in-a-thread"],
)
def test_a_running_event_loop_is_timed_and_left_clean(tmp_path: Path, args: list[str]) -> None:
    serve(tmp_path, PYTHON, *args)
    assert_loop_timed(Session(tmp_path / "d" / "s"))


@needs_gdb
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python < 3.12: main thread only")
def test_a_main_thread_blocked_in_native_code_is_explained(tmp_path: Path) -> None:
    # The loop runs in a thread while the main thread waits in join(): before 3.12 only the main
    # thread runs the queued call, so no agent starts, and probe says why and what would help.
    result, _ = serve(tmp_path, PYTHON, "--thread", agent=False)
    assert "the agent was queued but never started" in result.stderr
    assert "PROBE_LISTEN=1" in result.stderr
    session = Session(tmp_path / "d" / "s")
    assert not session.has_agent_data
    assert "never started" in session.meta["attach"]["no_inside_data"]
    assert len(session.table("proc")) >= 3


def other_pythons() -> list[str]:
    """Interpreters 3.12+ on this machine other than the tests' own (PATH, then pyenv)."""
    found = []
    for minor in (12, 13):
        name = f"python3.{minor}"
        path = shutil.which(name)
        if path is None or "/shims/" in path:  # pyenv's shims are scripts, not the interpreter
            candidates = sorted(Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/{name}"))
            path = str(candidates[-1]) if candidates else None
        if path is not None and Path(path).resolve() != Path(PYTHON).resolve():
            found.append(path)
    return found


@needs_gdb
@pytest.mark.parametrize(
    "python",
    other_pythons()
    or [pytest.param("", marks=pytest.mark.skip(reason="no Python 3.12 or 3.13 here"))],
)
def test_gdb_on_3_12_and_later_starts_the_agent_from_any_thread(
    tmp_path: Path, python: str
) -> None:
    # The probe package loads into an interpreter that has none of probe's dependencies.
    serve(tmp_path, python, "--thread")
    session = Session(tmp_path / "d" / "s")
    assert_loop_timed(session)
    (process,) = session.meta["attach"]["processes"]
    assert process["method"] == "gdb" and process["state"] == "detached"


# -- root attaching to another user's job ----------------------------------------------------------

NOBODY_JOB = (
    "import gc, json, os, select, sys, time\n"
    "print('ready', os.getpid(), flush=True)\n"
    "while not select.select([sys.stdin], [], [], 0)[0]:\n"
    "    sum(range(20000)); time.sleep(0.005)\n"
    "print(json.dumps({'frames': len(sys._current_frames()), 'gc': len(gc.callbacks)}))\n"
)


def as_nobody() -> list[str] | None:
    """A command prefix that runs a system Python as user nobody, when this test can."""
    setpriv = shutil.which("setpriv")
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if os.geteuid() != 0 or setpriv is None or python is None:
        return None
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python]
    ok = subprocess.run([*prefix, "-c", "pass"], capture_output=True, check=False)
    return prefix if ok.returncode == 0 else None


@needs_gdb
@pytest.mark.skipif(as_nobody() is None, reason="needs root, setpriv and a system python3")
def test_root_attaches_to_another_users_job_through_a_staging_directory(tmp_path: Path) -> None:
    prefix = as_nobody()
    assert prefix is not None
    proc = subprocess.Popen(
        [*prefix, "-c", NOBODY_JOB],
        env=probe_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        staging = f"probe-attach-{proc.pid}-*"  # the agent writes where the job's user can
        result = attach_until(
            tmp_path,
            proc.pid,
            lambda: (
                sum(
                    recorded(d, "stack", proc.pid)
                    for d in Path(tempfile.gettempdir()).glob(staging)
                )
                > 10
            ),
            "10 stack samples from the job in its staging directory",
        )
        out, _ = proc.communicate("stop\n", timeout=30)
    finally:
        end_process(proc)
    assert result.returncode == 0, result.stderr
    assert proc.returncode == 0
    assert json.loads(out) == {"frames": 1, "gc": 0}
    session = Session(tmp_path / "d" / "s")
    assert session.has_agent_data and len(session.table("stack")) > 10
    (process,) = session.meta["attach"]["processes"]
    assert process["state"] == "detached"
    # The staging directory is gone; the session holds only root's copies.
    assert not [p for p in Path(tempfile.gettempdir()).glob(f"probe-attach-{proc.pid}-*")]
    assert all(p.stat().st_uid == 0 for p in (tmp_path / "d" / "s").iterdir())


def test_a_job_already_under_probe_doctor_is_recorded_from_outside(tmp_path: Path) -> None:
    code = (
        "import os, select, sys, time, probe\n"
        "probe.listen()\n"
        "print('ready', os.getpid(), flush=True)\n"
        "while not select.select([sys.stdin], [], [], 0)[0]:\n"
        "    probe.step(); time.sleep(0.01)\n"
    )
    doctor = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "probe",
            "doctor",
            "--collect-only",
            "--dest",
            str(tmp_path / "doc"),
            "--",
            PYTHON,
            "-c",
            code,
        ],
        env=probe_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert doctor.stdout is not None
        pid = int(doctor.stdout.readline().split()[1])
        result = attach(tmp_path, pid, "--duration", "1")
        doctor.communicate("stop\n", timeout=60)
    finally:
        end_process(doctor)
    assert result.returncode == 0, result.stderr
    assert "already recorded by probe doctor" in result.stderr
    assert doctor.returncode == 0
    session = Session(tmp_path / "d" / "s")
    assert not session.has_agent_data
    assert "already recorded by probe doctor" in session.meta["attach"]["no_inside_data"]


def test_the_shell_probe_runs_in_is_refused(tmp_path: Path) -> None:
    # Its tree is probe itself and whatever runs beside it, not a job.
    dest = tmp_path / "d"
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'"$0" -m probe attach $$ --dest {dest} --name s --duration 1; exit $?',
            PYTHON,
        ],
        env=probe_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "is an ancestor of probe itself, not a job" in result.stderr
    assert not (dest / "s").exists()
