"""Whether an MPI run whose ``mpirun`` failed still finished (``diagnosenet run-survived``).

MPICH's ``mpirun`` exits non-zero as soon as any rank dies, even when the asynchronous
master carried on and wrote the whole run; the workflow calls this after such a failure so
that Snakemake keeps a complete run (and still fails every run that did not finish).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def survived(out) -> bool:
    from diagnosenet.artifacts import ArtifactError, read_json, verify_manifest

    try:
        verify_manifest(out, stage="train")
    except ArtifactError as exc:
        log.error("the run did not finish: %s", exc)
        return False
    lost = read_json(f"{out}/metrics.json").get("mpi", {}).get("lost_workers") or {}
    if not lost:
        log.error("%s: the launcher failed although no worker was recorded as lost", out)
        return False
    log.warning("%s finished without worker rank(s) %s: %s", out, ", ".join(lost), lost)
    return True
