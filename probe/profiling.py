"""probe from Python: record a block of the current process, then diagnose it.

    import probe

    with probe.profile() as run:          # or probe.profile("baseline", dest="runs")
        train(model, loader, epochs=1)

    run.diagnosis["category"]             # the probe.diagnosis/1 document, as a dict
    run.report()                          # writes DEST/NAME.html and returns its path
    run.session                           # the session directory (probe report / probe export)

What is recorded: this process and the processes it starts during the block, exactly as
``probe doctor`` records a command. Inside, the agent starts in this process when the block begins
(as ``probe attach`` starts it in a running job: it hooks torch and asyncio if they are already
imported) and is removed when the block ends; processes forked during the block get their own
agent, and Python processes started during it get one through the environment (``PYTHONPATH``
and ``PROBE_AGENT`` are set for the length of the block and restored after), each ending when the
block does. Outside, the sampler reads /proc from a helper process (so that its work never runs
on this interpreter), started before the block and ended with it.

Only the block is recorded, so a long-lived and mostly idle process (a notebook's kernel) is judged
on what ran inside it; imports inside the block are start-up, as they are in any run. Nothing
here runs unless ``probe.profile()`` is called: ``import probe`` stays as light as before.

The helper: ``python -m probe.profiling CONFIG``. It samples the tree of ``root_pid`` into the
session (its own pid is left out) and writes one line, ``{"ready": ..., "gpus": ...}``, once the
first pass is on disk; it stops, with one last pass, when its standard input closes (the block
ended, or the process that started it died).
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from probe.errors import ProfileError

if TYPE_CHECKING:
    from probe.agent.runtime import Agent
    from probe.analysis.diagnosis import Diagnosis
    from probe.recorder import Recording

STOP_FILE = "profile.stop"
READY_TIMEOUT_S = 30.0  # the helper's interpreter start on a loaded machine
HELPER_STOP_TIMEOUT_S = 10.0
CHILD_DETACH_S = 0.6  # how long agents of live children take to see the stop file and flush
IFRAME_HEIGHT_PX = 900

_active: Profile | None = None


class Run:
    """A recorded block: its session, its diagnosis (made on first use), its report."""

    def __init__(self, session: Path) -> None:
        self.session = session
        self.name = session.name
        self.ended = False
        self._diagnosis: Diagnosis | None = None
        self._report: Path | None = None

    def __repr__(self) -> str:
        if not self.ended:
            return f"<probe run {self.name}: recording>"
        return f"<probe run {self.name}: {self.category}, session {self.session}>"

    def _analysis(self) -> Diagnosis:
        if not self.ended:
            raise ProfileError("the run is still recording: its diagnosis comes after the block")
        if self._diagnosis is None:
            from probe.analysis.diagnosis import diagnose
            from probe.report.renderer import Outputs, renderer
            from probe.session.reader import Session

            self._diagnosis = diagnose(Session(self.session))
            renderer("json").write(
                self._diagnosis, self.session / "diagnosis.json", Outputs(self.session)
            )
        return self._diagnosis

    @property
    def diagnosis(self) -> dict[str, Any]:
        """The verdict: the probe.diagnosis/1 document (docs/diagnosis-schema.md) as a dict."""
        from probe.analysis.diagnosis import to_json

        return to_json(self._analysis())

    @property
    def category(self) -> str:
        """The verdict's id: healthy, input-bound, gc-pauses, ..."""
        return self._analysis().category

    def report(self) -> Path:
        """Write the HTML report (DEST/NAME.html, next to the session) and return its path."""
        if self._report is None:
            from probe.recorder import report_path
            from probe.report.renderer import Outputs, renderer

            path = report_path(self.session)
            renderer("html").write(self._analysis(), path, Outputs(self.session, report=path))
            self._report = path
        return self._report

    def verdict_html(self) -> str:
        """The verdict in a few lines of HTML: the issue, its summary, what to do next."""
        d = self._analysis()
        top = d.top
        e = html.escape
        title = top.title if top is not None else d.headline
        severity = f" ({top.severity})" if top is not None and top.severity else ""
        lines = [
            f"<p><b>probe: {e(d.category)}{e(severity)}</b> &ndash; {e(title)}</p>",
        ]
        if top is not None and top.summary:
            lines.append(f"<p>{e(top.summary)}</p>")
        if d.next_step:
            lines.append(f"<p>Next: {e(d.next_step)}</p>")
        others = [f.id for f in d.issues[1:]]
        if others:
            lines.append(f"<p>Also: {e(', '.join(others))}</p>")
        lines.append(
            f"<p><small>session <code>{e(str(self.session))}</code> &middot; "
            f"<code>probe export {e(str(self.session))} --format chrome-trace</code>"
            "</small></p>"
        )
        return "<div class='probe-verdict'>" + "".join(lines) + "</div>"

    def report_iframe(self, height: int = IFRAME_HEIGHT_PX) -> str:
        """The report itself, inline: its self-contained page in an iframe."""
        text = self.report().read_text(encoding="utf-8")
        return (
            f'<iframe srcdoc="{html.escape(text, quote=True)}" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #ccc" '
            f'title="probe report {html.escape(self.name)}"></iframe>'
        )

    def _repr_html_(self) -> str:
        if not self.ended:
            return f"<p>probe run {html.escape(self.name)}: recording</p>"
        return self.verdict_html() + self.report_iframe()


class Profile:
    """The context manager ``probe.profile()`` returns; see the module docstring."""

    def __init__(
        self,
        name: str | None = None,
        dest: str | os.PathLike[str] = ".probe",
        *,
        force: bool = False,
        block: str = "",
    ) -> None:
        self.name = name
        self.dest = Path(dest)
        self.force = force
        self.block = block
        self.run: Run | None = None
        self._recording: Recording | None = None
        self._helper: subprocess.Popen[bytes] | None = None
        self._agent: Agent | None = None
        self._saved_env: dict[str, str | None] = {}

    # -- entering -------------------------------------------------------------------------------

    def __enter__(self) -> Run:
        global _active
        if _active is not None:
            raise ProfileError("probe.profile() blocks cannot be nested or run at once")
        from probe.agent import runtime

        current = runtime.current() or runtime.attached()
        if current is not None and current.active:
            raise ProfileError(
                f"this process is already recorded by probe (session {current.session})"
            )
        recording = self._create()
        self._recording = recording
        _active = self
        try:
            self._start_helper(recording)
            self._restart_clock(recording)
            config = self._agent_config(recording)
            self._set_env(recording, config)
            self._start_agent(config)
        except BaseException:
            self._teardown(status="failed-to-start", exit_code=None, signal=None)
            raise
        self.run = Run(recording.directory)
        return self.run

    def _create(self) -> Recording:
        from probe.recorder import Recording, Settings, default_name

        name = self.name
        if name is None:  # unique even for two blocks in the same second
            base = default_name()
            name, k = base, 1
            while (self.dest / name).exists():
                k += 1
                name = f"{base}-{k}"
        recording = Recording.create(
            dest=self.dest.resolve(),
            name=name,
            force=self.force,
            kind="profile",
            argv=list(getattr(sys, "orig_argv", None) or sys.argv),
            settings=Settings(),
        )
        recording.meta["root_pid"] = os.getpid()
        recording.meta["profile"] = {"pid": os.getpid(), "block": self.block or _caller()}
        return recording

    def _start_helper(self, recording: Recording) -> None:
        config = {
            "dir": str(recording.directory),
            "root_pid": os.getpid(),
            "interval_s": recording.settings.sample_interval_ms / 1000,
        }
        env = self._helper_env()
        try:
            helper = subprocess.Popen(
                [sys.executable, "-m", "probe.profiling", json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise ProfileError(f"cannot start probe's sampler: {exc.strerror or exc}") from exc
        self._helper = helper
        line = _read_line(helper, READY_TIMEOUT_S)
        try:
            ready = json.loads(line) if line else {}
        except ValueError:
            ready = {}
        if not ready.get("ready"):
            helper.kill()
            _, err = helper.communicate(timeout=HELPER_STOP_TIMEOUT_S)
            why = err.decode(errors="replace").strip().splitlines()[-1:] or ["no answer"]
            raise ProfileError(f"probe's sampler did not start: {why[0]}")
        if ready.get("gpus"):
            recording.meta["gpus"] = ready["gpus"]

    def _helper_env(self) -> dict[str, str]:
        """The helper's environment: this process's, without probe's agent in it."""
        from probe.recorder import BOOTSTRAP_DIR

        env = {k: v for k, v in os.environ.items() if k not in ("PROBE_AGENT", "PROBE_LISTEN")}
        path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        path = [p for p in path if Path(p).resolve() != BOOTSTRAP_DIR.resolve()]
        if path:
            env["PYTHONPATH"] = os.pathsep.join(path)
        else:
            env.pop("PYTHONPATH", None)
        return env

    def _restart_clock(self, recording: Recording) -> None:
        """The run starts now, with the block, not when probe began setting up."""
        import datetime as dt

        from probe.session.meta import write_meta

        wall_ns, mono_ns = time.time_ns(), time.monotonic_ns()
        when = dt.datetime.fromtimestamp(wall_ns / 1e9, tz=dt.timezone.utc).astimezone()
        recording.meta["start"] = {
            "time": when.isoformat(timespec="seconds"),
            "unix_ns": wall_ns,
            "monotonic_ns": mono_ns,
        }
        write_meta(recording.directory, recording.meta)

    def _agent_config(self, recording: Recording) -> dict[str, Any]:
        from probe.agent.attached import process_start_ticks

        settings = recording.settings
        return {
            "dir": str(recording.directory),
            "session": recording.directory.name,
            "stack_hz": settings.stack_hz,
            "stack_budget": settings.stack_budget,
            "flush_ms": settings.flush_ms,
            "lag_ms": settings.lag_ms,
            "stop_file": str(recording.directory / STOP_FILE),
            "watch_pid": os.getpid(),
            "watch_start": process_start_ticks(os.getpid()),
        }

    def _set_env(self, recording: Recording, config: dict[str, Any]) -> None:
        """Python processes started during the block load the agent (as under probe doctor)."""
        for key in ("PYTHONPATH", "PROBE_AGENT"):
            self._saved_env[key] = os.environ.get(key)
        env = recording.agent_env({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
        os.environ["PYTHONPATH"] = env["PYTHONPATH"]
        os.environ["PROBE_AGENT"] = json.dumps(config)

    def _start_agent(self, config: dict[str, Any]) -> None:
        from probe.agent import runtime
        from probe.agent.attached import Lease

        lease = Lease(config)
        try:
            self._agent = runtime.attach(config, lambda: lease.over() is not None)
        except RuntimeError as exc:
            raise ProfileError(f"probe cannot record this process: {exc}") from exc

    # -- leaving --------------------------------------------------------------------------------

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status, code, sig = "finished", 0, None
        elif issubclass(exc_type, KeyboardInterrupt):
            import signal

            status, code, sig = "interrupted", None, int(signal.SIGINT)
        else:
            status, code, sig = "finished", 1, None
        if exc is not None and self._recording is not None:
            from probe.session.redact import redact_text

            message = redact_text(f"{type(exc).__name__}: {exc}")[:300]
            self._recording.meta["profile"]["exception"] = message
        self._teardown(status=status, exit_code=code, signal=sig)
        if self.run is not None:
            self.run.ended = True

    def _teardown(self, *, status: str, exit_code: int | None, signal: int | None) -> None:
        """End everything that was started, whatever failed on the way; never raises."""
        global _active
        recording = self._recording
        try:
            if self._agent is not None:
                self._agent.stop(detach=True)
                self._agent = None
            if recording is not None:
                (recording.directory / STOP_FILE).touch()
                self._wait_for_children()
        finally:
            self._restore_env()
            self._stop_helper()
            if recording is not None:
                recording.finish(status=status, exit_code=exit_code, signal=signal)
            _active = None

    def _wait_for_children(self) -> None:
        """Agents in processes still alive end within half a second of the stop file."""
        from probe.attach.target import descendants

        helper = self._helper.pid if self._helper is not None else None
        if any(pid != helper for pid in descendants(os.getpid())):
            time.sleep(CHILD_DETACH_S)

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _stop_helper(self) -> None:
        helper = self._helper
        if helper is None:
            return
        self._helper = None
        try:
            _, err = helper.communicate(timeout=HELPER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            helper.kill()
            _, err = helper.communicate()
        if helper.returncode != 0 and self._recording is not None:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            self._recording.meta["warnings"].append(
                f"the outside sampler ended with status {helper.returncode}: {tail[0]}"
            )


def profile(
    name: str | None = None,
    dest: str | os.PathLike[str] = ".probe",
    *,
    force: bool = False,
    block: str = "",
) -> Profile:
    """Record what runs inside ``with probe.profile() as run:`` (see the module docstring)."""
    return Profile(name, dest, force=force, block=block)


def _caller() -> str:
    """Where the block is: the first frame outside probe."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if not os.path.abspath(frame.f_code.co_filename).startswith(here):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """One line from the helper's stdout, or "" if it ends or stays silent that long."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().decode(errors="replace").strip()


# -- the helper process ---------------------------------------------------------------------------


def _sampler_main(argv: list[str]) -> int:
    from probe.collectors.gpu import GpuSampler
    from probe.collectors.proctree import ProcessTreeSampler, SamplerThread
    from probe.collectors.system import Cgroup
    from probe.session.writer import RecordBuffer

    config = json.loads(argv[0])
    root = int(config["root_pid"])
    gpu = GpuSampler.open()
    buffer = RecordBuffer(
        str(config["dir"]), "sampler", {"writer": "sampler", "pid": os.getpid(), "root_pid": root}
    )
    sampler = ProcessTreeSampler(buffer, root, cgroup=Cgroup(), gpu=gpu)
    sampler.sample()
    buffer.flush()
    thread = SamplerThread(sampler, float(config["interval_s"]))
    thread.start()
    sys.stdout.write(
        json.dumps({"ready": True, "gpus": gpu.describe() if gpu is not None else []}) + "\n"
    )
    sys.stdout.flush()
    try:
        while sys.stdin.buffer.read(4096):  # until the block ends (or its process is gone)
            pass
    finally:
        if thread.stop():
            buffer.close()  # (else its last write blocks: a hung filesystem; leave it)
        if gpu is not None:
            gpu.close()
    if thread.error is not None:
        sys.stderr.write(f"the outside sampler failed: {thread.error!r}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_sampler_main(sys.argv[1:]))
