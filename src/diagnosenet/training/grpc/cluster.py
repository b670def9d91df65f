"""The gRPC cluster layout: which task runs where, on which port, with which ``TF_CONFIG``.

Pure Python (no TensorFlow) so the launcher starts in a second and the layout is unit-tested.
Both TensorFlow strategies read the cluster from ``TF_CONFIG``: parameter-server training
(``grpc-async``) needs ``ps`` tasks, ``worker`` tasks and a ``chief`` (the coordinator that runs
the Python training loop); ``MultiWorkerMirroredStrategy`` (``grpc-sync``) needs only ``worker``
tasks, each running the same training program.
"""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Task:
    """One process of the cluster: its role, index and address."""

    type: str   # "ps", "worker" or "chief"
    index: int
    host: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.type}:{self.index}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def plan_cluster(mode: str, workers: int, *, host: str = "127.0.0.1", base_port: int,
                 hosts: dict | None = None, num_ps: int = 1) -> list[Task]:
    """Tasks of a run, ports allocated upward from ``base_port``.

    ``hosts`` (the ``hosts.json`` of ``diagnosenet cluster-files``: ``{"ps": [...],
    "workers": [...]}``) places the parameter servers and the chief on the ps hosts and
    worker ``i`` on ``workers[i % len(workers)]``; without it every task is on ``host``.
    """
    if mode not in ("grpc-async", "grpc-sync"):
        raise ValueError(f"mode {mode!r} is not grpc-async or grpc-sync")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    ps_hosts = list((hosts or {}).get("ps") or [host])
    worker_hosts = list((hosts or {}).get("workers") or [host])
    roles = [("worker", workers, worker_hosts)]
    if mode == "grpc-async":
        roles = [("ps", num_ps, ps_hosts), *roles, ("chief", 1, ps_hosts)]
    tasks, port = [], base_port
    for role, count, role_hosts in roles:
        for index in range(count):
            tasks.append(Task(role, index, role_hosts[index % len(role_hosts)], port))
            port += 1
    return tasks


def without_worker(tasks: list[Task], index: int) -> list[Task]:
    """``tasks`` without ``worker:index``; the workers after it move down one index and keep
    their host and port (a re-formed asynchronous cluster)."""
    kept = [t for t in tasks if (t.type, t.index) != ("worker", index)]
    if len(kept) == len(tasks):
        raise ValueError(f"no worker:{index} in the cluster")
    return [Task(t.type, t.index - 1, t.host, t.port) if t.type == "worker" and t.index > index else t for t in kept]


def cluster_spec(tasks: list[Task]) -> dict[str, list[str]]:
    """``{"ps": ["host:port", ...], "worker": [...], "chief": [...]}`` in task-index order."""
    spec: dict[str, list[str]] = {}
    for task in sorted(tasks, key=lambda t: (t.type, t.index)):
        spec.setdefault(task.type, []).append(task.address)
    return spec


def tf_config(tasks: list[Task], task: Task) -> str:
    """The ``TF_CONFIG`` JSON that tells one process the cluster and its own role."""
    return json.dumps({"cluster": cluster_spec(tasks), "task": {"type": task.type, "index": task.index}})


def worker_workdir(out_dir: str | Path, index: int) -> Path:
    """Where an asynchronous worker stages its shard (its working directory)."""
    return Path(out_dir) / "grpc" / f"worker{index}"


def read_hosts_file(path: str | Path) -> dict:
    """Read ``hosts.json`` (``{"ps": [host], "workers": [host, ...]}``) with a clear error."""
    path = Path(path)
    try:
        hosts = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the host list: {exc}") from exc
    for key in ("ps", "workers"):
        if not (isinstance(hosts.get(key), list) and hosts[key] and all(isinstance(h, str) for h in hosts[key])):
            raise ValueError(f"{path}: field {key!r} must be a non-empty list of host names")
    return hosts


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host == socket.gethostname()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (a server is ready)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def host_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether ``host``'s kernel answers a TCP connect to ``port``: accepted or refused (nothing
    listens there any more) both prove the host is up; a timeout or no route means it is cut
    off or down. This tells a task that failed from a host that vanished."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound here (TensorFlow's server binds 0.0.0.0, so check that).

    ``SO_REUSEADDR`` like gRPC's own listener: connections in TIME_WAIT from an earlier run
    do not block the port, a process still listening on it does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
