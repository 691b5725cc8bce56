"""Whether this process may debug (ptrace) the target, and what would allow it when it may not.

gdb and ``sys.remote_exec`` both need the kernel's permission to ptrace the target: the same user,
a Yama ``ptrace_scope`` that allows it (or CAP_SYS_PTRACE), no seccomp filter forbidding it (old
Docker defaults), and a process that is not already traced and is dumpable. The checks here run
before any debugger so that the message can name the exact reason; ``explain_failure`` turns a
debugger's own error into the same kind of message.
"""

from __future__ import annotations

import os
from pathlib import Path

CAP_SYS_PTRACE = 19
YAMA = Path("/proc/sys/kernel/yama/ptrace_scope")
LISTEN_ADVICE = (
    "Or start the job with PROBE_LISTEN=1 (or call probe.listen() in it): probe attach then "
    "needs no debugger (docs/attach.md)."
)


def yama_scope(path: Path = YAMA) -> int | None:
    """The Yama ptrace scope (0-3), or None where Yama is not enabled."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def has_cap_sys_ptrace(status: Path = Path("/proc/self/status")) -> bool:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_PTRACE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def in_container() -> bool:
    """Best effort: Docker, Podman, Kubernetes and systemd-nspawn leave one of these marks."""
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    if os.environ.get("container") or os.environ.get("KUBERNETES_SERVICE_HOST"):  # noqa: SIM112
        return True
    try:
        cgroup = Path("/proc/1/cgroup").read_text()
    except OSError:
        return False
    return any(word in cgroup for word in ("docker", "kubepods", "containerd", "libpod", "lxc"))


def ptrace_obstacle(
    tracer_pid: int,
    *,
    scope: int | None = None,
    cap: bool | None = None,
) -> str | None:
    """Why ptrace will certainly be refused, with what would allow it; None if it may work."""
    scope = yama_scope() if scope is None else scope
    cap = has_cap_sys_ptrace() if cap is None else cap
    if tracer_pid:
        return (
            f"the process is already traced by process {tracer_pid} (a debugger or profiler); "
            "a process can have one tracer only. Detach that tool first."
        )
    if scope == 3:
        return (
            "kernel.yama.ptrace_scope is 3: no process may be debugged until the next reboot. "
            + LISTEN_ADVICE
        )
    if scope == 2 and not cap:
        return (
            "kernel.yama.ptrace_scope is 2: only root (CAP_SYS_PTRACE) may debug a process. "
            "Run probe attach with sudo. " + LISTEN_ADVICE
        )
    if scope == 1 and not cap:
        return (
            "kernel.yama.ptrace_scope is 1: a process may only be debugged by its parent. Run "
            "probe attach with sudo, or allow it with `sudo sysctl kernel.yama.ptrace_scope=0`. "
            + LISTEN_ADVICE
        )
    return None


def explain_failure(message: str) -> str:
    """What a debugger's 'Operation not permitted' means here, and what would allow it."""
    scope = yama_scope()
    if scope is not None and scope >= 1:
        known = ptrace_obstacle(0, scope=scope)
        if known is not None:
            return known
    if in_container() and not has_cap_sys_ptrace():
        return (
            f"ptrace was refused ({message}): this container lacks CAP_SYS_PTRACE. Allow it "
            "with `docker run --cap-add=SYS_PTRACE` (and `--security-opt seccomp=unconfined` on "
            "Docker older than 19.03), or in Kubernetes with securityContext.capabilities.add: "
            '["SYS_PTRACE"]. ' + LISTEN_ADVICE
        )
    return (
        f"ptrace was refused ({message}): the process may be non-dumpable (setuid, or "
        "prctl(PR_SET_DUMPABLE, 0)) or a security module (SELinux, AppArmor, seccomp) forbids "
        "it. Try probe attach with sudo. " + LISTEN_ADVICE
    )


__all__ = [
    "LISTEN_ADVICE",
    "explain_failure",
    "has_cap_sys_ptrace",
    "in_container",
    "ptrace_obstacle",
    "yama_scope",
]
