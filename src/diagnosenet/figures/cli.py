"""``diagnosenet aggregate``, ``diagnosenet scalability-figure`` and ``diagnosenet
hyperparameters-figure``: argument parsing only; the work is in ``figures.aggregate`` and
``figures.hyperparameters``. Each command has the name of the Snakemake rule that runs it."""
from __future__ import annotations

import argparse

from diagnosenet.figures.aggregate import AGGREGATE_FILES, aggregate, scalability_figure
from diagnosenet.figures.hyperparameters import hyperparameters_figure


def _aggregate(args: argparse.Namespace) -> None:
    aggregate(args.runs, args.out, args.baselines)


def _scalability_figure(args: argparse.Namespace) -> None:
    scalability_figure(args.runs, args.out)


def _hyperparameters_figure(args: argparse.Namespace) -> None:
    hyperparameters_figure(args.runs, args.out, args.input_size, args.output_size)


def register(subparsers) -> None:
    a = subparsers.add_parser("aggregate", help="runs table and figures (convergence, timelines, energy, confusion)")
    a.add_argument("--runs", nargs="+", required=True, help="run directories ({task}/runs/{mode}-w{N})")
    a.add_argument("--baselines", nargs="*", default=[], help="baseline directories ({task}/baseline)")
    a.add_argument("--out", required=True, help="directory for " + ", ".join(AGGREGATE_FILES))
    a.set_defaults(func=_aggregate)

    s = subparsers.add_parser("scalability-figure", help="figures 2-3 analogue: time to solution vs workers")
    s.add_argument("--runs", nargs="+", required=True, help="run directories of the scalability grid")
    s.add_argument("--out", required=True, help="PNG path (the table is written beside it as .csv)")
    s.set_defaults(func=_scalability_figure)

    h = subparsers.add_parser("hyperparameters-figure", help="figure 4 analogue from hyper-parameter runs")
    h.add_argument("--runs", nargs="+", required=True, help="run directories named u{units}-l{layers}-b{batch}")
    h.add_argument("--input-size", type=int, default=14637, help="inputs for the parameter count (grain)")
    h.add_argument("--output-size", type=int, default=14)
    h.add_argument("--out", required=True, help="PNG path")
    h.set_defaults(func=_hyperparameters_figure)
