"""``diagnosenet train-grpc`` (start, watch and stop a whole gRPC run) and ``grpc-task`` (one task).

No TensorFlow at import time: the launcher itself never imports it, tasks import it lazily.
"""
from __future__ import annotations

import argparse
import logging
import sys


def _train_grpc(args: argparse.Namespace) -> int:
    from diagnosenet.training.grpc.cluster import read_hosts_file
    from diagnosenet.training.grpc.launcher import launch_training

    train_argv = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    for option, value in (("--mode", args.mode), ("--workers", str(args.workers))):
        if option not in train_argv:  # every task must run the launcher's mode and worker count
            train_argv += [option, value]
        elif train_argv[train_argv.index(option) + 1] != value:
            raise SystemExit(f"train-grpc: {option} {value} differs from the training arguments' {option}")
    hosts, remote_prefix = read_hosts_file(args.hosts_file) if args.hosts_file else None, args.remote_prefix
    if hosts is None:
        hosts, remote_prefix = slurm_placement(remote_prefix)
    return launch_training(args.mode, train_argv, workers=args.workers, base_port=args.base_port,
                           timeout_s=args.timeout, host=args.host, wall_limit_s=args.wall_limit,
                           hosts=hosts, remote_prefix=remote_prefix, max_restarts=args.max_restarts,
                           parameter_servers=args.parameter_servers)


def slurm_placement(remote_prefix: str | None) -> tuple[dict | None, str | None]:
    """Inside a Slurm allocation of several nodes, without a hosts file: the parameter server
    and chief on the first node (this one), the workers on the others, each started as a job
    step (``slurm.STEP_PREFIX``) unless a prefix was given."""
    from diagnosenet import slurm

    allocation = slurm.allocation()
    if allocation is None or len(allocation.nodes) < 2:
        return None, remote_prefix
    logging.getLogger("diagnosenet").info(
        "Slurm job %s: parameter server and chief on %s, workers on %s", allocation.job_id, allocation.nodes[0],
        ", ".join(allocation.nodes[1:]))
    return {"ps": [allocation.nodes[0]], "workers": list(allocation.nodes[1:])}, remote_prefix or slurm.STEP_PREFIX


def _grpc_task(args: argparse.Namespace) -> int:
    from diagnosenet.training.arguments import settings_from_args
    from diagnosenet.training.grpc.server import run_task

    try:
        run_task(settings_from_args(args), threads=args.threads)
    except Exception as exc:  # noqa: BLE001 - a peer's loss is one line; anything else keeps its traceback
        if not is_peer_loss(exc):
            raise
        import json
        import os
        import socket

        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        logging.getLogger("diagnosenet").error(
            "%s %s:%s on %s: a peer left (%s: %s); stopping (the launcher names the task that failed first)",
            args.mode, task.get("type"), task.get("index"), socket.gethostname(), type(exc).__name__, first)
        return 1
    return 0


def is_peer_loss(exc: BaseException) -> bool:
    """TensorFlow's error in a task whose peer exited or vanished mid-collective or mid-RPC (or
    whose coordination heartbeat stopped being answered):
    the fault is the peer's (named by the launcher), this task's traceback is noise."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(exc, (tf.errors.UnavailableError, tf.errors.AbortedError,
                                               tf.errors.CancelledError, tf.errors.DeadlineExceededError))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-grpc", help="run grpc-async / grpc-sync training: start, watch and stop every process",
        description="Start the parameter servers, workers and chief of a TensorFlow gRPC run "
                    "(loopback by default), stream their logs, and stop them all at the end. "
                    "Arguments after -- are the training arguments (as for train-desktop); --mode and --workers are added when missing.")
    p.add_argument("--mode", required=True, choices=("grpc-async", "grpc-sync"))
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1", help="address of every task without --hosts-file")
    p.add_argument("--base-port", type=int, required=True, help="first port; tasks take consecutive ports")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="start-up bound: seconds for the servers to listen (a slow `import tensorflow` included)")
    p.add_argument("--wall-limit", type=float, default=0.0, help="stop the run after this many seconds (0: none)")
    p.add_argument("--hosts-file", help="hosts.json of `diagnosenet cluster-files` (ps and chief on the first)")
    p.add_argument("--remote-prefix", help="command prefix for remote hosts, e.g. 'ssh {host}' or "
                                           "'srun --nodes=1 --ntasks=1 -w {host}'")
    p.add_argument("--max-restarts", type=int, default=3, help="restarts of a dead worker (grpc-async)")
    p.add_argument("--parameter-servers", type=int, default=1,
                   help="grpc-async: ps tasks, round-robin over the hosts file's ps hosts; the variables are "
                        "spread over them by bytes moved per step (docs/training.md)")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the training arguments (as for `train-desktop`)")
    p.set_defaults(func=_train_grpc)

    from diagnosenet.training.arguments import add_train_arguments

    t = subparsers.add_parser("grpc-task", help="one task of a gRPC run, its role from TF_CONFIG "
                                                "(started by train-grpc)")
    t.add_argument("--threads", type=int, required=True, help="inter-op threads of a server (workers + 1)")
    add_train_arguments(t, ("grpc-sync", "grpc-async"))
    t.set_defaults(func=_grpc_task)
