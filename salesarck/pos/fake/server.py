"""Run an ASGI app on 127.0.0.1: in a background thread (tests) or as a child process (benchmarks,
kill tests, the demo). Both return the base URL once the server accepts connections."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import uvicorn

READY_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted sockets inherit TCP_NODELAY on Linux; without it a response written as headers then
    # body waits ~40 ms for the client's delayed ACK (Nagle), which would cap the fake at ~25 req/s
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def _config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", loop="asyncio",
                          http="h11", timeout_keep_alive=30)


class ThreadServer:
    """An ASGI app served by uvicorn in a daemon thread; use as a context manager."""

    def __init__(self, app: Any, *, port: int = 0) -> None:
        self._sock = _bind(port)
        self.port = int(self._sock.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(_config(app))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"asgi-{self.port}", daemon=True)

    def start(self) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the ASGI server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ThreadServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(app: Any, *, port: int) -> None:
    """Serve in the foreground until interrupted (the `fakepos serve` command)."""
    sock = _bind(port)
    server = uvicorn.Server(_config(app))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def wait_for_port(port: int, *, timeout: float = READY_TIMEOUT_SECONDS, proc: subprocess.Popen[Any] | None = None
                  ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server process exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


class ProcessServer:
    """A `salesarck fakepos serve ...` child process; use as a context manager."""

    def __init__(self, args: Sequence[str], *, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._cmd = [sys.executable, "-c", "import sys; from salesarck.cli import main; main(sys.argv[1:])",
                     *args, "--port", str(self.port)]
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessServer:
        self.proc = subprocess.Popen(self._cmd, env=self._env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_for_port(self.port, proc=self.proc, timeout=120)
        except RuntimeError as exc:
            err = b""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = self.proc.stderr.read()[-2000:]
            self.stop()
            raise RuntimeError(f"{exc}: {err.decode(errors='replace')}") from None
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> ProcessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
