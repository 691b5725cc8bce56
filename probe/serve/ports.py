"""Which TCP ports a process tree listens on, read from ``/proc``.

A socket in the LISTEN state appears in ``/proc/<pid>/net/tcp`` (and ``tcp6``) with its local
address and its inode; a process holds it when one of its ``/proc/<pid>/fd`` entries links to
``socket:[<inode>]``. The tree's processes are found afresh on every look, so a server that
listens in a child (uvicorn ``--workers``, gunicorn, a ``--reload`` supervisor) is found too.
Processes whose descriptors cannot be read (another user's) are skipped.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

import psutil

TCP_LISTEN = 0x0A  # the st column of /proc/net/tcp


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket: its port, local address and the tree's pids holding it."""

    port: int
    address: str
    pids: tuple[int, ...] = ()


def parse_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> (``127.0.0.1``, 8080): /proc/net/tcp's hex address, host byte order.

    IPv4 is one 32-bit word; IPv6 four, each in the host's byte order (little-endian here).
    """
    hex_ip, hex_port = text.split(":")
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        ip = str(ipaddress.IPv4Address(raw[::-1]))
    elif len(raw) == 16:
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        v6 = ipaddress.IPv6Address(words)
        ip = str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)
    else:
        raise ValueError(f"not a /proc/net/tcp address: {text!r}")
    return ip, int(hex_port, 16)


def parse_listening(text: str) -> dict[int, tuple[str, int]]:
    """The LISTEN sockets of one /proc/net/tcp or tcp6 file: inode -> (address, port)."""
    out: dict[int, tuple[str, int]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        try:
            if int(cols[3], 16) != TCP_LISTEN:
                continue
            inode = int(cols[9])
            address, port = parse_address(cols[1])
        except ValueError:
            continue
        if inode:  # 0: a socket being torn down, held by no process
            out[inode] = (address, port)
    return out


def socket_inodes(pid: int, proc: str = "/proc") -> set[int]:
    """Inodes of the sockets a process holds open (empty when its fds cannot be read)."""
    base = f"{proc}/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return set()
    inodes: set[int] = set()
    for name in names:
        try:
            link = os.readlink(f"{base}/{name}")
        except OSError:
            continue
        if link.startswith("socket:[") and link.endswith("]"):
            inodes.add(int(link[8:-1]))
    return inodes


def tree_pids(root: int) -> list[int]:
    """The root and every process below it, alive now."""
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return []
    return [root, *(c.pid for c in children)]


def listeners(root: int, proc: str = "/proc") -> list[Listener]:
    """The TCP ports the tree under ``root`` listens on, lowest port first."""
    pids = tree_pids(root)
    if not pids:
        return []
    sockets: dict[int, tuple[str, int]] = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc}/{root}/net/{name}") as f:
                sockets.update(parse_listening(f.read()))
        except OSError:
            continue
    addresses: dict[int, set[str]] = {}
    holders: dict[int, set[int]] = {}
    for pid in pids:
        for inode in socket_inodes(pid, proc) & sockets.keys():
            address, port = sockets[inode]
            addresses.setdefault(port, set()).add(address)
            holders.setdefault(port, set()).add(pid)
    return [
        Listener(port, min(addresses[port], key=_reachability), tuple(sorted(holders[port])))
        for port in sorted(holders)
    ]


def _reachability(address: str) -> tuple[int, str]:
    """Order a port's addresses: the unspecified one (all interfaces), loopback, the rest."""
    ip = ipaddress.ip_address(address)
    return (0 if ip.is_unspecified else 1 if ip.is_loopback else 2, address)


__all__ = ["Listener", "listeners", "parse_address", "parse_listening", "socket_inodes"]
