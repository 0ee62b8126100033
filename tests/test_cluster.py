"""A local cluster's processes wait until the lower ones listen, instead of timely's one-second retry."""

from __future__ import annotations

import socket
import threading
import time

from demandsense.cluster import await_lower_peers
from demandsense.embedded import free_port


def test_waits_until_the_lower_process_listens() -> None:
    port = free_port()
    server = socket.socket()

    def listen_later() -> None:
        time.sleep(0.3)
        server.bind(("127.0.0.1", port))
        server.listen()

    later = threading.Thread(target=listen_later)
    later.start()
    try:
        waited = await_lower_peers([f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"], process_id=1, timeout_s=5)
    finally:
        later.join()
        server.close()
    assert 0.3 <= waited < 5, waited


def test_gives_up_after_the_timeout_and_ignores_higher_and_remote_processes() -> None:
    silent = f"127.0.0.1:{free_port()}"
    assert 0.2 <= await_lower_peers([silent, "127.0.0.1:1"], process_id=1, timeout_s=0.2) < 2
    assert await_lower_peers([silent], process_id=0, timeout_s=5) < 0.1, "process 0 connects to no one"
    assert await_lower_peers(["192.0.2.1:9999", silent], process_id=1, timeout_s=5) < 0.1, "not on this machine"


def test_a_host_name_is_not_resolved() -> None:
    assert await_lower_peers(["no-such-host.invalid:9999", "x:1"], process_id=1, timeout_s=5) < 0.1
