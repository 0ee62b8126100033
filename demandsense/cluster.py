"""Starting a cluster on one machine without timely's one-second connect retry.

Timely connects each process to every process with a lower id and, when that one is not
listening yet, retries only after a whole second. Processes started together lose that race
often: in the throughput benchmark 2 of 3 two-process starts took ~1.4 s instead of ~0.45 s.
:func:`await_lower_peers` waits until the lower processes listen, for the peers on this machine,
by reading the kernel's socket table (a test connection would be taken by timely for a peer's).
A peer on another machine is left to timely's retry.
"""

from __future__ import annotations

import ipaddress
import time

import psutil


def await_lower_peers(addresses: list[str], process_id: int, timeout_s: float = 10.0, poll_s: float = 0.01) -> float:
    """Wait (at most ``timeout_s``) until the local processes below ``process_id`` listen; seconds waited."""
    t0 = time.monotonic()
    wanted = {p for p in (_local(a) for a in addresses[:process_id]) if p is not None}
    while wanted and time.monotonic() - t0 < timeout_s:
        try:
            listening = {
                (c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN
            }
        except (psutil.Error, OSError):  # the table cannot be read here (macOS without root): leave it to timely
            break
        wanted = {(ip, port) for ip, port in wanted if not listening & {(ip, port), ("0.0.0.0", port), ("::", port)}}
        if wanted:
            time.sleep(poll_s)
    return time.monotonic() - t0


def _local(address: str) -> tuple[str, int] | None:
    """``(ip, port)`` of a ``host:port`` on this machine, else None; a host name other than localhost is not
    resolved (a DNS lookup could take longer than timely's retry)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
        here = ip.is_loopback or any(a.address == str(ip) for addrs in psutil.net_if_addrs().values() for a in addrs)
        return (str(ip), int(port)) if here else None
    except ValueError:
        return None
