"""How the suite is spread over pytest-xdist's workers (``make test`` runs ``-n 2``).

Two workers share the two cores (the machine is busy 86-90 % of a run, measured 2026-12-07:
a third worker would only add contention), with two rules:

- a test module goes to one worker whole, so its module fixtures (e.g. every mode trained once
  in ``training/test_modes.py``) are built once;
- every module that brings up the emulated cluster (network namespaces, one Slurm: one per
  machine) or checks that none is up goes to one worker, one after another, and first, so the
  other worker runs the rest of the suite meanwhile.

The scheduler is xdist's own load-by-scope one with the scope chosen here
(``pytest_xdist_make_scheduler``), not ``--dist loadgroup``: with pytest 9.2 loadgroup no
longer groups anything (pytest-xdist issue #1386). Without xdist (``pytest`` alone) only the
order applies: the emulated-cluster modules first.
"""
from __future__ import annotations

import pytest

#: modules that use or inspect the machine's one emulated cluster
EMULATED_CLUSTER = frozenset({
    "tests/workflow/test_emulated_cluster.py",
    "tests/workflow/test_emulated_slurm.py",
    "tests/workflow/test_emulated_heterogeneous.py",
    "tests/test_emulation_options.py",
})


def scope_of(nodeid: str) -> str:
    """The work unit of a test: its module, or the emulated-cluster group."""
    module = nodeid.split("::", 1)[0]
    return "emulated-cluster" if module in EMULATED_CLUSTER else module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: scope_of(item.nodeid) != "emulated-cluster")   # stable: that group first


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        """xdist's scope scheduling (whole work units, handed out in collection order with
        ``--no-loadscope-reorder``) over :func:`scope_of`'s units."""

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ModuleScheduling(config, log)
