"""The paper's experiments as data: the appendix C model-dimension space (Table 4).

Parameter counts are computed from layer shapes (no TensorFlow, no allocation), so the
76.8 M-parameter cell costs nothing to tabulate; `SequentialGraph.count_params()` returns
the same numbers (tested). Models are grouped by grain as in the paper's figure 4.
"""
from __future__ import annotations

import csv
from pathlib import Path

#: Table 4 of the paper: (units per layer, hidden layers) -> millions of parameters, 14,637 inputs
PAPER_TABLE4 = {
    (16, 16): 0.24, (32, 8): 0.47, (32, 16): 0.48, (64, 4): 0.95, (64, 8): 0.97, (64, 16): 1.0,
    (128, 2): 1.89, (128, 4): 1.93, (128, 8): 1.99, (128, 16): 2.12,
    (256, 2): 3.82, (256, 4): 3.95, (256, 8): 4.21, (256, 16): 4.74,
    (512, 2): 7.76, (512, 4): 8.29, (512, 8): 9.34, (512, 16): 11.44,
    (1024, 2): 16.05, (1024, 4): 18.15, (1024, 8): 22.35,
    (2048, 2): 34.2, (2048, 4): 42.6, (4096, 2): 76.8,
}
#: the paper's middle grain: "from 1.99 to 8.29 millions of parameters"
MIDDLE_GRAIN = (1.99e6, 8.29e6)


def mlp_param_count(input_size: int, hidden_units: list[int], output_size: int) -> int:
    """Trainable parameters of Relu(in, h1) ... Relu(h_k-1, h_k), Linear(h_k, out): weights + biases."""
    sizes = [input_size, *hidden_units, output_size]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def grain(n_params: int) -> str:
    low, high = MIDDLE_GRAIN
    return "fine" if n_params < low else ("middle" if n_params <= high else "coarse")


def table4(units: list[int], layers: list[int], input_size: int = 14637, output_size: int = 14) -> list[dict]:
    """One row per (units, layers) cell with the exact count, the paper's value and the grain."""
    rows = []
    for u in units:
        for n_layers in layers:
            count = mlp_param_count(input_size, [u] * n_layers, output_size)
            paper = PAPER_TABLE4.get((u, n_layers)) if input_size == 14637 and output_size == 14 else None
            rows.append({"units": u, "layers": n_layers, "parameters": count,
                         "millions": round(count / 1e6, 2), "paper_millions": paper, "grain": grain(count)})
    return rows


def write_table4(path: str | Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _table4_command(args) -> int:
    rows = table4(args.units, args.layers, input_size=args.input_size, output_size=args.output_size)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_table4(args.out, rows)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("table4", help="parameter counts of the appendix C model space (paper's Table 4)")
    p.add_argument("--units", type=int, nargs="+", required=True)
    p.add_argument("--layers", type=int, nargs="+", required=True)
    p.add_argument("--input-size", type=int, default=14637)
    p.add_argument("--output-size", type=int, default=14)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_table4_command)
