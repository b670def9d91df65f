"""``diagnosenet monitor [--rate HZ] --out CSV -- CMD ...``: run one command under the monitor.

The command's exit status is returned unchanged; on Ctrl-C or SIGTERM only the process this
command started is stopped (the original killed matching processes system-wide).
"""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess

from diagnosenet.monitor.sampler import DEFAULT_SOURCES, Monitor
from diagnosenet.monitor.sources import POWERCAP_ROOT

log = logging.getLogger(__name__)


def _monitor(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("diagnosenet monitor: give the command to run after --")
    child = subprocess.Popen(command)

    def forward(signum, _frame):
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        with Monitor(args.out, pids=[child.pid], rate_hz=args.rate, sources=args.sources, idle_s=0.0,
                     powercap_root=args.powercap_root) as monitor:
            try:
                code = child.wait()
            except KeyboardInterrupt:
                child.terminate()
                code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("%s: %d samples; missing sources: %s", args.out, monitor.samples, monitor.missing or "none")
    return code


def register(subparsers) -> None:
    p = subparsers.add_parser("monitor", help="run a command and sample its power/utilisation into a CSV")
    p.add_argument("--out", required=True, help="CSV to write (metadata beside it as .json)")
    p.add_argument("--rate", type=float, default=2.0, help="samples per second")
    p.add_argument("--sources", nargs="+", default=list(DEFAULT_SOURCES), choices=DEFAULT_SOURCES)
    p.add_argument("--powercap-root", default=str(POWERCAP_ROOT), help="powercap tree holding the RAPL zones")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=_monitor)
