"""A throwaway Ray cluster on 127.0.0.1, for the Ray executor's tests and ``benchmarks/search_scaling.py``.

Each node is ``ray start --block`` in a session of its own, with ports of its own, as on a machine of its own; it is
ended with every process of that session (GCS, raylet, workers), by id, so that none outlives the caller. Needs the
ray extra (``pip install 'prune-bench[ray]'``: the ``ray`` command, and psutil, which ``ray[default]`` installs).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a throwaway head on 127.0.0.1
AGENT_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
               "runtime-env-agent-port")  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(address: str) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` (a started head's GCS)."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def ray_executable() -> str:
    """The ``ray`` command of this Python's environment, on PATH or not (else plain ``ray``)."""
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else "ray"


def start_node(log: Path, *args: str) -> subprocess.Popen:
    """``ray start --block`` on 127.0.0.1 without GPUs, with agent ports of its own and ``args`` (``--head``,
    ``--port``, ``--address``, ``--num-cpus`` ...), in a new session; its output goes to ``log``.

    The node's processes do not inherit ``HF_*`` and ``MLFLOW_*``: cell tasks get them from ``bench run``.
    """
    ports = [f"--{name}={free_port()}" for name in AGENT_PORTS]
    command = [ray_executable(), "start", "--block", "--node-ip-address=127.0.0.1", "--num-gpus=0", *args, *ports]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLFLOW_"))}
    out = log.open("w")
    return subprocess.Popen(command, env={**env, **RAY_ENV}, stdout=out, stderr=out, start_new_session=True)


def session_processes(sid: int) -> list:
    """The live processes (``psutil.Process``) of session ``sid``."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def stop_node(started: subprocess.Popen) -> list[tuple[int, str]]:
    """End a node started by :func:`start_node` and every process of its session: SIGTERM to ``ray start``, then
    SIGKILL to whatever of the session is left. Returns ``(pid, name)`` of the processes (not zombies) still alive
    20 s later: empty when the node is gone."""
    import psutil

    sid = started.pid  # start_new_session: `ray start` leads its session
    started.send_signal(signal.SIGTERM)
    try:
        started.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    for proc in session_processes(sid):
        try:
            proc.kill()
        except psutil.Error:
            continue
    deadline = time.time() + 20
    while session_processes(sid) and time.time() < deadline:
        time.sleep(0.2)
    left = []
    for proc in session_processes(sid):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append((proc.pid, proc.name()))
        except psutil.Error:
            continue
    return left
