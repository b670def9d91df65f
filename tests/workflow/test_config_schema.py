"""The config is validated against the JSON schema when the workflow starts."""
import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from smk import REPO, snakemake, write_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
MODES = ["desktop", "mpi-sync", "mpi-async", "grpc-sync", "grpc-async"]


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def schema() -> dict:
    return yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


@pytest.mark.parametrize("preset", ["config.yaml", "jetson.yaml", "slurm.yaml"])
def test_shipped_configs_are_valid(preset):
    config = default_config()
    # merged as Snakemake merges --configfile over the configfile: key by key, at every depth
    update_config(config, yaml.safe_load((REPO / "config" / preset).read_text()))
    validate(config, SCHEMA)


@pytest.mark.parametrize(
    "mutate, named",
    [
        (lambda c: c["train"].update(max_epoch=3), "max_epoch"),            # misspelt key
        (lambda c: c["train"].update(max_epochs="ten"), "ten"),             # wrong type
        (lambda c: c["datasets"].update(valid_fraction=0.7), "0.7"),        # out of range
        (lambda c: c["train"]["runs"].append({"mode": "horovod", "workers": 2}), "horovod"),  # unknown mode
        (lambda c: c["experiments"]["scalability"].update(modes=["mpi-sync", "mpi"]), "'mpi'"),  # unknown mode
        (lambda c: c["train"]["runs"][1].update(tasks=["ekg"]), "ekg"),     # unknown task
        (lambda c: c.update(tasks=["pmsi", "cxr"]), "cxr"),                 # unknown task
        (lambda c: c.update(tsaks=["pmsi"]), "tsaks"),                       # misspelt section
        (lambda c: c["pmsi"].update(descriptor_groups=["demographics", "diet"]), "diet"),
    ],
)
def test_wrong_key_or_type_is_named(mutate, named):
    config = default_config()
    mutate(config)
    with pytest.raises(WorkflowError, match=named):
        validate(config, SCHEMA)


def test_mode_and_task_are_defined_once():
    """Every mode and task of the schema is a reference to its one definition in $defs."""
    tree = schema()
    defs = tree.pop("$defs")
    assert defs["mode"]["enum"] == MODES and defs["task"]["enum"] == ["pmsi", "ecg"]
    enums, refs = [], []

    def walk(node):
        if isinstance(node, dict):
            enums.extend([node["enum"]] if "enum" in node else [])
            refs.extend([node["$ref"]] if "$ref" in node else [])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(tree)
    assert not [e for e in enums if set(e) & set(MODES + ["pmsi", "ecg"])], enums
    # train.runs[].mode, experiments.scalability.modes; tasks, train.runs[].tasks, experiments.scalability.tasks
    assert sorted(refs) == ["#/$defs/mode"] * 2 + ["#/$defs/task"] * 3


def required_keys() -> list[tuple[str, ...]]:
    """Paths of every key the schema requires, top level and nested sections."""
    found = []

    def walk(node: dict, path: tuple[str, ...]) -> None:
        for key in node.get("required", []):
            found.append((*path, key))
        for key, child in (node.get("properties") or {}).items():
            if isinstance(child, dict) and child.get("type") in ("object", ["object", "null"]):
                walk(child, (*path, key))

    walk(schema(), ())
    return found


def test_required_keys_are_those_the_default_config_provides():
    config = default_config()
    for path in required_keys():
        node = config
        for key in path[:-1]:
            node = node[key]
        if node is not None:  # cluster: null on a workstation; its keys are required when it is set
            assert path[-1] in node, path
    sections = {path[0] for path in required_keys() if len(path) == 1}
    assert sections == set(config), "every top-level key of config.yaml is required"
    assert ("train", "timeout_s") in required_keys() and ("train", "startup_timeout_s") in required_keys()


@pytest.mark.parametrize("path", [("train", "startup_timeout_s"), ("ecg", "records_dir"), ("grpc", "base_port"),
                                  ("models", "ecg", "filters"), ("experiments", "hyperparameters", "units"),
                                  ("monitor",)])
def test_a_missing_required_key_is_named(path):
    config = copy.deepcopy(default_config())
    node = config
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    with pytest.raises(WorkflowError, match=f"'{path[-1]}' is a required property"):
        validate(config, SCHEMA)


@pytest.mark.parametrize("records_dir", [None, ""])
def test_directory_source_without_records_dir_is_refused_naming_the_field(records_dir):
    config = default_config()
    config["ecg"].update(source="directory", records_dir=records_dir)
    with pytest.raises(WorkflowError) as error:
        validate(config, SCHEMA)
    # the message names the field and says why
    assert "instance['ecg']['records_dir']" in str(error.value)
    assert "required when ecg.source is directory" in str(error.value)
    config["ecg"]["records_dir"] = "/data/training2017"
    validate(config, SCHEMA)


def test_files_source_without_rhs_files_or_labels_is_refused_naming_the_field():
    config = default_config()
    config["pmsi"]["source"] = "files"
    with pytest.raises(WorkflowError) as error:
        validate(config, SCHEMA)
    assert "instance['pmsi']['rhs_files']" in str(error.value) or "instance['pmsi']['labels_file']" in str(error.value)
    assert "required when pmsi.source is files" in str(error.value)
    config["pmsi"].update(rhs_files=["/data/rhs_*.txt"], labels_file="/data/labels.csv")
    validate(config, SCHEMA)


def test_snakemake_stops_on_a_misspelt_key(workdir):
    path = write_config(workdir, {"train": {"max_epoch": 3}})
    proc = snakemake(workdir, "-n", "--cores", "1", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    assert "max_epoch" in proc.stdout


def test_snakemake_stops_on_a_directory_source_without_records_dir(workdir):
    """The schema alone refuses it (there is no check in the rule files)."""
    path = write_config(workdir, {"ecg": {"source": "directory"}})
    proc = snakemake(workdir, "-n", "--cores", "1", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    assert "['records_dir']" in proc.stdout and "required when ecg.source is directory" in proc.stdout
