"""One rule = one command: a rule whose shell calls ``diagnosenet <command>`` calls the command
named like the rule (``_`` → ``-``), and every such command exists. Reads the rule files'
``shell:`` strings; nothing runs."""
from __future__ import annotations

import argparse
import functools
import re

import pytest

from diagnosenet.cli import build_parser
from smk import REPO

RULE_FILES = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
#: rule → the commands it may call instead of (or besides) its own name, each with its reason
EXCEPTIONS = {
    # the hyper-parameter grid is a set of ordinary desktop runs, each in its own directory
    "train_desktop_hparams": {"train-desktop"},
    # launch-mpi supervises mpirun, whose ranks run train-mpi (a lost node is named, mpi-async re-formed)
    "train_mpi": {"launch-mpi"},
}
#: commands no rule calls, each with its reason
NOT_RULES = {
    "train-mpi",  # one rank of an MPI run, started by launch-mpi (rule train_mpi) or by hand under mpirun
    "grpc-task",  # one task of a gRPC run, started by train-grpc (rule train_grpc)
    "monitor",    # the enerGyPU monitor around any command (docs/monitoring.md); training modes start it themselves
    "emulate-cluster",  # starts and stops an emulated cluster around a workflow run (docs/cluster-emulation.md)
}
_RULE = re.compile(r"^(?P<indent>[ \t]*)rule (?P<name>\w+):[ \t]*$", re.M)
_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"' + r"|'((?:[^'\\\n]|\\.)*)'")
_COMMAND = re.compile(r"\bdiagnosenet\s+([a-z][a-z0-9-]*)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rule_shells() -> dict[str, str]:
    """Rule name → the concatenated string literals of its ``shell:`` directive ("" without one)."""
    shells = {}
    for path in RULE_FILES:
        text = path.read_text()
        lines = text.splitlines()
        for match in _RULE.finditer(text):
            start = text[: match.start()].count("\n") + 1
            indent = len(match["indent"].expandtabs())
            body = []
            for line in lines[start:]:
                if line.strip() and _indent(line.expandtabs()) <= indent:
                    break
                body.append(line.expandtabs())
            shell = ""
            for i, line in enumerate(body):
                if line.strip() == "shell:":
                    own = _indent(line)
                    for part in body[i + 1:]:
                        if part.strip() and _indent(part) <= own:
                            break
                        if not part.strip().startswith("#"):
                            shell += "".join(a or b for a, b in _STRING.findall(part))
            assert match["name"] not in shells, f"rule {match['name']} defined twice"
            shells[match["name"]] = shell
    return shells


@functools.cache
def parser_commands() -> frozenset[str]:
    (subparsers,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return frozenset(subparsers.choices)


SHELLS = rule_shells()
CALLS = {rule: set(_COMMAND.findall(shell)) for rule, shell in SHELLS.items() if _COMMAND.search(shell)}


def test_the_rule_files_are_read():
    # rules that run no command: targets only
    assert {rule for rule, shell in SHELLS.items() if not shell} == {"all", "scalability", "hyperparameters"}
    assert {"compose_pmsi", "train_desktop", "train_mpi", "train_grpc", "aggregate"} <= set(CALLS)
    assert set(EXCEPTIONS) <= set(CALLS), "an exception names a rule that no longer calls diagnosenet"


@pytest.mark.parametrize("rule", sorted(CALLS))
def test_a_rule_calls_the_command_of_its_name(rule):
    expected = EXCEPTIONS.get(rule, {rule.replace("_", "-")})
    assert CALLS[rule] <= expected and CALLS[rule], (rule, CALLS[rule], SHELLS[rule])
    assert CALLS[rule] <= parser_commands(), f"rule {rule} calls a command diagnosenet does not have"


def test_every_command_belongs_to_a_rule():
    called = set().union(*CALLS.values())
    assert parser_commands() - called == NOT_RULES
