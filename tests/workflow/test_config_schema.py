"""The config is validated against the JSON schema when the workflow starts."""
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from smk import REPO, snakemake, write_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("preset", ["config.yaml", "jetson.yaml", "slurm.yaml"])
def test_shipped_configs_are_valid(preset):
    config = default_config()
    config.update(yaml.safe_load((REPO / "config" / preset).read_text()))
    validate(config, SCHEMA)


@pytest.mark.parametrize(
    "mutate, named",
    [
        (lambda c: c["train"].update(max_epoch=3), "max_epoch"),            # misspelt key
        (lambda c: c["train"].update(max_epochs="ten"), "ten"),             # wrong type
        (lambda c: c["datasets"].update(valid_fraction=0.7), "0.7"),        # out of range
        (lambda c: c["train"]["runs"].append({"mode": "horovod", "workers": 2}), "horovod"),
        (lambda c: c.update(tsaks=["pmsi"]), "tsaks"),                       # misspelt section
        (lambda c: c["pmsi"].update(descriptor_groups=["demographics", "diet"]), "diet"),
    ],
)
def test_wrong_key_or_type_is_named(mutate, named):
    config = default_config()
    mutate(config)
    with pytest.raises(WorkflowError, match=named):
        validate(config, SCHEMA)


def test_snakemake_stops_on_a_misspelt_key(workdir):
    path = write_config(workdir, {"train": {"max_epoch": 3}})
    proc = snakemake(workdir, "-n", "--cores", "1", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    assert "max_epoch" in proc.stdout
