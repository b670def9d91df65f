from pathlib import Path

import pytest
from smk import REPO


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch working directory that looks like the repository root."""
    for name in ("workflow", "profiles", "jetson", "slurm"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "config").mkdir()
    for path in (REPO / "config").glob("*.yaml"):
        (tmp_path / "config" / path.name).symlink_to(path)
    return tmp_path
