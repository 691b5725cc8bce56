"""The live status line of `probe doctor` on a real pseudo-terminal: drawn on the bottom row,
never inside the command's output, gone at the end; absent when stderr is not a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import termios
import time
from pathlib import Path

from tests.conftest import PYTHON, probe_env, run_probe

PROGRAM = """
import time, probe
for i in range(40):
    print(f"line {i} of the command's own output", flush=True)
    probe.step()
    time.sleep(0.08)
"""


def _run_on_pty(argv: list[str], env: dict[str, str], timeout: float = 60) -> bytes:
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes probe on the pty
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the pty
                break
            if not data:
                break
            out += data
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    return out


def test_status_line_on_a_terminal(tmp_path: Path) -> None:
    script = tmp_path / "loop.py"
    script.write_text(PROGRAM)
    env = probe_env(TERM="xterm")
    env.pop("PROBE_NO_STATUS", None)
    out = _run_on_pty(
        [
            PYTHON,
            "-m",
            "probe",
            "doctor",
            "--dest",
            str(tmp_path),
            "--name",
            "s",
            "--",
            PYTHON,
            str(script),
        ],
        env,
    ).decode("utf-8", "replace")
    assert "\x1b[1;23r" in out, "the bottom row is taken out of the scroll region"
    statuses = re.findall(r"\x1b7\x1b\[24;1H\x1b\[2K\x1b\[2m(.*?)\x1b\[0m\x1b8", out)
    assert statuses, out
    assert all(s.startswith("probe: recording ") for s in statuses)
    assert any(re.search(r"\d+ steps", s) for s in statuses), statuses
    # The command's lines arrive whole: no status drawing inside any of them.
    for i in range(40):
        assert f"line {i} of the command's own output\r\n" in out
    # At the end the full scroll region is back and the status row is cleared before the verdict.
    end = out.rindex("\x1b7\x1b[r\x1b[24;1H\x1b[2K\x1b8")
    assert "verdict:" in out[end:]
    assert (tmp_path / "s.html").is_file()


def test_no_status_line_without_a_terminal(tmp_path: Path) -> None:
    result = run_probe(
        ["doctor", "--dest", str(tmp_path), "--name", "s", "--", PYTHON, "-c", "print('hi')"]
    )
    assert result.returncode == 0
    assert result.stdout == "hi\n"
    assert "\x1b" not in result.stderr
    assert "probe: report:" in result.stderr
