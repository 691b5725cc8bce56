"""probe's entry point ends the process without Python's slow shutdown, yet keeps what a normal
exit gives: the status, every byte written to the terminal's streams, the exit handlers, and a
wait for a thread still running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROGRAM = """
import atexit, sys, threading, time
from pathlib import Path
from probe.cli import exit_now

out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
if sys.argv[2] == "thread":
    def late() -> None:
        time.sleep(0.3)
        (out / "thread").write_text("done")
    threading.Thread(target=late).start()
sys.stdout.write("x" * 200_000)  # more than a pipe holds, the last of it still buffered
sys.stderr.write("the end")
exit_now(3)
"""


# The streams buffered, as they are for a program writing into a pipe
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=BUFFERED,
    )


def test_the_status_the_output_and_the_exit_handlers_survive_the_quick_exit(
    tmp_path: Path,
) -> None:
    result = _run(tmp_path, "alone")
    assert result.returncode == 3
    assert result.stdout == "x" * 200_000 and result.stderr == "the end"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_thread_still_running_is_waited_for(tmp_path: Path) -> None:
    result = _run(tmp_path, "thread")
    assert result.returncode == 3 and len(result.stdout) == 200_000
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran"


GONE = """
import select, sys
from probe.cli import exit_now

sys.stdout.write("0123456789")
sys.stdout.flush()  # what the reader takes before it goes away
gone = select.poll()
gone.register(sys.stdout.fileno(), select.POLLERR)
gone.poll(60_000)  # a pipe's writing end reports an error once no reader is left
sys.stdout.write("more")  # still buffered when exit_now is called
exit_now(0)
"""


def test_a_reader_that_went_away_is_the_broken_pipe_status() -> None:
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdin is not None
    with reader:
        writer = subprocess.Popen(
            [sys.executable, "-c", GONE],
            stdout=reader.stdin,
            stderr=subprocess.PIPE,
            env=BUFFERED,
        )
        reader.stdin.close()
        reader.wait(timeout=60)
        _, stderr = writer.communicate(timeout=60)
    assert writer.returncode == 141, stderr
