"""What probe attach makes the target run: the agent script, gdb's commands, sys.remote_exec's
command line, and how gdb's output is read. Pure functions; nothing is attached here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from probe.attach import script
from probe.attach.inject import (
    GdbInjector,
    InjectionFailed,
    Plan,
    RemoteExecInjector,
    gdb_corrupts_calls,
    raise_for_gdb_output,
)
from probe.attach.target import Target

CONFIG = {"dir": "/tmp/s", "session": "s", "stop_file": "/tmp/s/attach.stop", "stack_hz": 100.0}


def target(python: tuple[int, int] | None = (3, 14), **kw: object) -> Target:
    fields: dict[str, object] = {
        "pid": 4242,
        "ppid": 1,
        "uid": 1000,
        "comm": "python3",
        "argv": ["python3", "train.py"],
        "start_ticks": 1,
        "state": "S",
        "python": python,
        "environ": {},
    }
    fields.update(kw)
    return Target(**fields)  # type: ignore[arg-type]


def test_the_agent_script_is_python_with_every_value_as_a_literal() -> None:
    text = script.agent_script(CONFIG, "/opt/site-packages", "gdb", "0.1.0")
    compile(text, "attach-gdb.py", "exec")
    assert text.rstrip().splitlines()[-1] == (
        f"_probe_attach({CONFIG!r}, '/opt/site-packages', 'gdb', '0.1.0')"
    )


def test_the_agent_script_does_nothing_once_the_attach_is_over(tmp_path: Path) -> None:
    (tmp_path / "attach.stop").touch()
    config = {"dir": str(tmp_path), "stop_file": str(tmp_path / "attach.stop")}
    text = script.agent_script(config, "/nonexistent", "gdb", "0.1.0")
    namespace: dict[str, object] = {}
    exec(compile(text, "attach-gdb.py", "exec"), namespace)
    assert not list(tmp_path.glob("attach-*.json"))


def test_the_agent_script_refuses_another_probe_and_never_raises(tmp_path: Path) -> None:
    config = {"dir": str(tmp_path), "stop_file": str(tmp_path / "attach.stop")}
    text = script.agent_script(config, "/nonexistent", "remote_exec", "9.9.9")
    code = f"import json, probe\nexec(compile({text!r}, 'x', 'exec'), {{}})\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == ""
    (status,) = tmp_path.glob("attach-*.json")
    doc = status.read_text()
    assert '"state": "refused"' in doc and "another probe" in doc and "9.9.9" in doc


def test_the_gdb_stub_binds_nothing_and_swallows_every_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-script.py"
    stub = script.gdb_stub(str(missing))
    assert stub.endswith(b"\0") and b"\0" not in stub[:-1]
    main: dict[str, object] = {"__builtins__": __builtins__}
    exec(stub[:-1].decode(), main)  # what PyRun_SimpleString does in __main__
    assert set(main) == {"__builtins__"}

    good = tmp_path / "attach-gdb.py"
    good.write_text("import sys\nsys.modules[__name__ + '_ran'] = True\nx = 1\n")
    main = {"__builtins__": __builtins__}
    exec(script.gdb_stub(str(good))[:-1].decode(), main)
    assert set(main) == {"__builtins__"}
    assert sys.modules.pop("__probe_attach___ran") is True


def test_gdb_commands_copy_the_stub_exactly_into_the_mapped_page() -> None:
    stub = script.gdb_stub("/tmp/s/attach-gdb.py")
    commands = script.gdb_commands(stub)
    writes = [
        re.fullmatch(
            r"\s*set \*\(unsigned long long \*\)\(\$probe_buf \+ (\d+)\) = (0x[0-9a-f]+)", c
        )
        for c in commands
    ]
    memory = bytearray(4096)
    for found in filter(None, writes):
        offset, value = int(found.group(1)), int(found.group(2), 16)
        memory[offset : offset + 8] = value.to_bytes(8, "little")
    assert bytes(memory[: len(stub)]) == stub
    mmap = next(c for c in commands if "mmap(" in c)
    assert "4096" in mmap and ", 3, 34, -1," in mmap  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    queue = next(c for c in commands if "$probe_rc =" in c)
    assert "Py_AddPendingCall((void *) PyRun_SimpleString, $probe_buf)" in queue
    assert commands[-2:] == ["detach", "quit"]
    # Only the C library's and libpython's symbols are loaded (libtorch's would take seconds).
    assert [c for c in commands if c.startswith("sharedlibrary")] == [
        "sharedlibrary libc[.-]",
        "sharedlibrary ld-musl",
        "sharedlibrary libpython",
    ]


def test_gdb_commands_on_3_12_let_any_thread_run_the_call() -> None:
    commands = script.gdb_commands(script.gdb_stub("/x.py"), any_thread=True)
    queue = next(c for c in commands if "$probe_rc =" in c)
    assert "_PyEval_AddPendingCall((void *) PyInterpreterState_Main()" in queue
    assert queue.rstrip().endswith("$probe_buf, 0)")


def test_a_long_path_gets_a_bigger_page() -> None:
    stub = script.gdb_stub("/" + "x" * 5000)
    mmap = next(c for c in script.gdb_commands(stub) if "mmap(" in c)
    assert "(unsigned long) 8192" in mmap


def test_gdb_runs_without_init_files_and_without_loading_every_library(tmp_path: Path) -> None:
    argv = script.gdb_argv("/usr/bin/gdb", 4242, tmp_path / "c.gdb")
    assert argv[:5] == ["/usr/bin/gdb", "-nx", "-nw", "-batch", "--readnever"]
    assert "set auto-solib-add off" in argv and "set auto-load off" in argv
    assert "set debuginfod enabled off" in argv
    old_gdb = script.gdb_argv("/usr/bin/gdb", 4242, tmp_path / "c.gdb", readnever=False)
    assert "--readnever" not in old_gdb
    assert argv[-4:] == ["-p", "4242", "-x", str(tmp_path / "c.gdb")]


# -- Python 3.14: sys.remote_exec ------------------------------------------------------------------


def test_remote_exec_runs_the_targets_own_interpreter_isolated(tmp_path: Path) -> None:
    command = script.remote_exec_command(4242, "/tmp/s/attach-remote_exec.py", "/proc/4242/exe")
    assert command[:4] == ["/proc/4242/exe", "-I", "-S", "-c"]
    assert command[4] == "import sys; sys.remote_exec(int(sys.argv[1]), sys.argv[2])"
    assert command[5:] == ["4242", "/tmp/s/attach-remote_exec.py"]


def test_remote_exec_injector_builds_its_command_from_proc_and_writes_the_script(
    tmp_path: Path,
) -> None:
    plan = Plan(tmp_path, dict(CONFIG, dir=str(tmp_path)), "/opt/sp", "0.1.0")
    injector = RemoteExecInjector(proc=Path("/proc"))
    command = injector.command(target(), plan)
    assert command[0] == "/proc/4242/exe"
    assert command[-1] == str(tmp_path / "attach-remote_exec.py")
    compile((tmp_path / "attach-remote_exec.py").read_text(), "s", "exec")
    assert "'remote_exec'" in (tmp_path / "attach-remote_exec.py").read_text()


def _fake_interpreter(proc: Path, pid: int, body: str) -> None:
    (proc / str(pid)).mkdir(parents=True)
    exe = proc / str(pid) / "exe"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)


def test_remote_exec_success_and_refusals_are_reported(tmp_path: Path) -> None:
    plan = Plan(tmp_path, dict(CONFIG, dir=str(tmp_path)), "/opt/sp", "0.1.0")
    proc = tmp_path / "proc"
    _fake_interpreter(proc, 1, 'test "$5" = 1 || exit 9')  # argv: -I -S -c CODE PID SCRIPT
    RemoteExecInjector(proc=proc).inject(target(pid=1), plan)
    _fake_interpreter(
        proc, 2, "echo 'PermissionError: [Errno 1] Operation not permitted' >&2; exit 1"
    )
    with pytest.raises(InjectionFailed, match="PROBE_LISTEN=1"):
        RemoteExecInjector(proc=proc).inject(target(pid=2), plan)
    _fake_interpreter(
        proc, 3, "echo 'RuntimeError: Remote debugging is not enabled in the target' >&2; exit 1"
    )
    with pytest.raises(InjectionFailed, match=r"sys\.remote_exec failed: RuntimeError: Remote"):
        RemoteExecInjector(proc=proc).inject(target(pid=3), plan)


def test_remote_exec_needs_3_14_and_respects_the_jobs_opt_out() -> None:
    injector = RemoteExecInjector()
    assert "needs Python 3.14" in str(injector.unavailable(target(python=(3, 13))))
    assert "PYTHON_DISABLE_REMOTE_DEBUG" in str(
        injector.unavailable(target(environ={"PYTHON_DISABLE_REMOTE_DEBUG": "1"}))
    )
    argv = ["python3", "-X", "disable_remote_debug", "train.py"]
    assert "-X disable_remote_debug" in str(injector.unavailable(target(argv=argv)))
    assert "not a Python process" in str(injector.unavailable(target(python=None)))


def test_gdb_injector_says_what_is_missing() -> None:
    assert "gdb is not installed" in str(GdbInjector(gdb=None).unavailable(target((3, 11))))
    assert "apt-get install gdb" in str(GdbInjector(gdb=None).unavailable(target((3, 11))))
    gdb = GdbInjector(gdb=None)
    gdb.gdb = "/usr/bin/gdb"  # as if installed
    old = gdb.unavailable(target((3, 8)))
    assert old == "it runs Python 3.8; probe's agent needs Python 3.10 or newer"
    traced = gdb.unavailable(target((3, 11), tracer_pid=77, pid=os.getpid()))
    assert traced is not None and "already traced by process 77" in traced


# -- gdb's pre-flight check: a call into a throwaway process first ---------------------------------


def fake_gdb(tmp_path: Path, body: str) -> str:
    """A stand-in for gdb: a shell script that gets gdb's arguments (the pid after -p)."""
    path = tmp_path / "gdb"
    path.write_text(
        '#!/bin/sh\nwhile [ "$#" -gt 0 ]; do [ "$1" = "-p" ] && pid=$2; shift; done\n' + body + "\n"
    )
    path.chmod(0o755)
    return str(path)


def test_gdb_that_cannot_restore_registers_is_refused_before_it_touches_the_job(
    tmp_path: Path,
) -> None:
    gdb = fake_gdb(tmp_path, 'echo "Couldn\'t write extended state status: Bad address." >&2')
    reason = gdb_corrupts_calls(gdb)
    assert reason is not None
    assert "cannot call into a process safely" in reason
    assert "couldn't write extended state" in reason
    assert "PROBE_LISTEN=1" in reason
    injector = GdbInjector(gdb=gdb)
    assert injector.unavailable(target((3, 11), pid=os.getpid())) == reason


def test_gdb_whose_call_kills_the_test_process_is_refused(tmp_path: Path) -> None:
    reason = gdb_corrupts_calls(fake_gdb(tmp_path, 'kill -9 "$pid"; echo "$1 = 42"'))
    assert reason is not None and "the process died after it" in reason


def test_gdb_that_calls_cleanly_is_used(tmp_path: Path) -> None:
    assert gdb_corrupts_calls(fake_gdb(tmp_path, 'echo "$1 = 4242"')) is None


def test_gdb_without_permission_to_trace_says_nothing_in_the_check(tmp_path: Path) -> None:
    # The real attempt then explains the permission problem itself.
    body = 'echo "ptrace: Operation not permitted." >&2; exit 1'
    assert gdb_corrupts_calls(fake_gdb(tmp_path, body)) is None


# -- reading gdb's output --------------------------------------------------------------------------


def test_gdb_success_is_the_marker_with_zero() -> None:
    raise_for_gdb_output("warning: something\nPROBE_RC 0\n[Inferior 1 (process 1) detached]\n")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("PROBE_RC -1\n", "queue of pending calls is full"),
        ("PROBE_MMAP_FAILED\n", "could not map memory"),
        ("ptrace: Operation not permitted.\n", "PROBE_LISTEN=1"),
        ('No symbol "Py_AddPendingCall" in current context.\n', "found no CPython"),
        (
            'No symbol table is loaded.  Use the "file" command.\nNo symbol "mmap" in current '
            "context.\n",
            "no C library",
        ),
        ("", "gdb failed: no output"),
        (
            "Couldn't write extended state status: Bad address.\nPROBE_RC 0\n",
            "may have been left broken",
        ),
    ],
)
def test_gdb_failures_become_reasons(output: str, expected: str) -> None:
    with pytest.raises(InjectionFailed, match=re.escape(expected)):
        raise_for_gdb_output(output)
