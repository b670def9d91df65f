"""Monitor overhead: CPU time the sampler thread costs per second of monitoring, per rate.

    .venv/bin/python bench/bench_monitor.py --seconds 10 --rates 2 10
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from diagnosenet.monitor import Monitor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rates", type=float, nargs="+", default=[2, 10])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for rate in args.rates:
            cpu0 = time.process_time()
            with Monitor(Path(tmp) / f"r{rate}.csv", rate_hz=rate, idle_s=0) as monitor:
                time.sleep(args.seconds)  # the process itself is idle: all CPU time is the monitor's
            cpu = time.process_time() - cpu0
            print(f"rate {rate:g} Hz: {monitor.samples} samples, {100 * cpu / args.seconds:.2f} % of one core, "
                  f"{1000 * cpu / monitor.samples:.2f} ms CPU per sample")


if __name__ == "__main__":
    main()
