# Config validation, paths and input functions shared by every rule file.
import glob
import json
import os
import shlex
import sys
import zlib
from pathlib import Path

from snakemake.utils import validate

# the rules call `diagnosenet`, installed beside the Python that runs Snakemake: `.venv/bin/snakemake`
# works without activating the environment (the same path on every node of a cluster profile)
shell.prefix(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; ")


validate(config, "../schemas/config.schema.yaml")

RESULTS = config["results"]
TASKS = config["tasks"]
SRC = Path(workflow.basedir).resolve().parent / "src" / "diagnosenet"  # resolve: workflow/ may be a link
# Stage directory each task's data path writes (the input of materialisation).
STAGE_DIR = {"pmsi": f"{RESULTS}/pmsi/composed", "ecg": f"{RESULTS}/ecg/windows"}
# Conda environment for `--software-deployment-method conda` (cluster users); `make` uses .venv.
ENV = "../envs/diagnosenet.yaml"
MPI_MODES = ("mpi-sync", "mpi-async")
GRPC_MODES = ("grpc-sync", "grpc-async")


def code(*modules):
    """Source files of the given src/diagnosenet modules or packages, as rule inputs, so that
    editing a stage's code re-runs that stage and its downstream only."""
    files = []
    for name in modules:
        path = SRC / name
        files += sorted(str(p) for p in path.rglob("*.py")) if path.is_dir() else [str(path.with_suffix(".py"))]
    return files


def fixed_test_groups(task):
    """The file of groups forming the task's fixed test split (datasets.test_groups), or None."""
    return (config["datasets"].get("test_groups") or {}).get(task)


def training_runs():
    """(task, mode, workers, member) of every configured run, in config order: one per seed of
    the run's ``seeds`` (a seed ensemble), or the one ``train.seed``."""
    return [
        (task, run["mode"], int(run["workers"]), member_suffix(seed))
        for task in TASKS
        for run in config["train"]["runs"]
        if task in run.get("tasks", TASKS)
        for seed in run.get("seeds", [config["train"]["seed"]])
    ]


def member_suffix(seed):
    """A run name's seed suffix (the ``member`` wildcard): none for ``train.seed``, so a run
    without ``seeds`` keeps its name; ``-seed{s}`` for the other members of a seed ensemble."""
    return "" if int(seed) == config["train"]["seed"] else f"-seed{seed}"


def member_seed(member):
    """The training seed of a run name's suffix (``""``: ``train.seed``)."""
    return int(member[len("-seed"):]) if member else config["train"]["seed"]


def run_dir(task, mode, workers, member=""):
    return f"{RESULTS}/{task}/runs/{mode}-w{workers}{member}"


def run_metrics_files():
    return [f"{run_dir(*run)}/metrics.json" for run in training_runs()]


def baseline_metrics_files():
    return [f"{RESULTS}/{task}/baseline/metrics.json" for task in TASKS]


def calibration_run():
    """``(mode, workers)`` of ``shards.speeds_from`` (e.g. ``mpi-sync-w4``), or None."""
    name = config["shards"].get("speeds_from")
    if config["shards"].get("balance", "equal") != "measured" or not name:
        return None
    mode, workers = name.rsplit("-w", 1)
    return mode, int(workers)


def balanced(mode, workers):
    """Whether a run trains on shards balanced by measured speeds (``shards.balance: measured``):
    every run with the calibration run's worker count, except that run itself (equal shards)."""
    calibration = calibration_run()
    return calibration is not None and int(workers) == calibration[1] and mode != calibration[0]


def shards_dir(task, workers, batch_size=None, mode=None):
    suffix = "-measured" if mode is not None and balanced(mode, workers) else ""
    return f"{RESULTS}/{task}/shards/w{workers}-b{batch_size or config['shards']['batch_size']}{suffix}"


def per_task(value, task):
    """A setting given once for every task, or per task (``{pmsi: ..., ecg: ...}``)."""
    return value[task] if isinstance(value, dict) else value


def train_args(task, mode, workers, member="", *, out=None, model=None, batch_size=None, max_epochs=None):
    """Arguments of the ``diagnosenet train-*`` commands for one run (the same for every mode);
    the hyper-parameter experiment overrides the model, batch size and epochs."""
    t = config["train"]
    batch_size = batch_size or config["shards"]["batch_size"]
    model = model if model is not None else config["models"][task]
    args = [
        f"--task {task} --mode {mode} --workers {workers}",
        f"--dataset {RESULTS}/{task}/dataset --shards {shards_dir(task, workers, batch_size, mode)}",
        f"--out {out or run_dir(task, mode, workers, member)}",
        f"--model-json '{json.dumps(model, sort_keys=True)}'",
        f"--seed {member_seed(member)} --max-epochs {max_epochs or t['max_epochs']} --patience {t['patience']}",
        f"--lr {per_task(t['learning_rate'], task)} --batch-size {batch_size} --class-weight {t['class_weight']}",
        f"--optimizer {t['optimizer']}",
        f"--timeout {t['timeout_s']} --startup-timeout {t['startup_timeout_s']}",
        f"--weighting {config['mpi']['weighting']} --exchange {config['mpi']['exchange']}",
        f"--exchange-precision {config['mpi']['exchange_precision']}",
        f"--monitor-rate {config['monitor']['rate_hz']}",
    ]
    return " ".join(args)

# --- training ---------------------------------------------------------------

# the one list of training-code files: the checkpoint fingerprint hashes the same files
sys.path.insert(0, str(SRC.parent))
from diagnosenet.training.checkpoint import training_code_files

TRAIN_CODE = [str(path) for path in training_code_files(SRC)]


def parent(name):
    """Params function: the directory of a rule's named input or output (``"input.metrics"``,
    ``"output.manifest"``); for a named list of files, the list of their directories. The one way
    every rule file derives a directory from its files, so rules never hard-code a path prefix
    (lint) and stay correct without a shared file system."""
    kind, key = name.split(".")
    if kind not in ("input", "output"):
        raise ValueError(f"parent({name!r}): expected 'input.<name>' or 'output.<name>'")

    def directory_of(wildcards, input, output):
        files = (input if kind == "input" else output)[key]
        return os.path.dirname(files) if isinstance(files, str) else [os.path.dirname(f) for f in files]

    return directory_of


def shards_for(wc, workers=None):
    mode = wc.get("mpi_mode") or wc.get("grpc_mode") or "desktop"
    return f"{shards_dir(wc.task, workers or wc.workers, mode=mode)}/manifest.json"


def grpc_port(wc):
    """A distinct port block per run (configured runs, then the scalability grid), so concurrent
    gRPC jobs never collide; a run asked for by its path alone gets a block after those,
    chosen by a stable hash of its name."""
    grid = [(t, m, int(w), "") for t in SCALABILITY["tasks"] for m in SCALABILITY["modes"] for w in SCALABILITY["workers"]]
    runs = list(dict.fromkeys(r for r in training_runs() + grid if r[1] in GRPC_MODES))
    run = (wc.task, wc.grpc_mode, int(wc.workers), wc.member)
    index = runs.index(run) if run in runs else len(runs) + zlib.crc32(repr(run).encode()) % 500
    if grpc_tasks(wc) > 20:
        raise ValueError(f"{wc.grpc_mode} with {wc.workers} workers needs {grpc_tasks(wc)} ports; a run's block has 20")
    return config["grpc"]["base_port"] + 20 * index


def grpc_tasks(wc):
    """Slots of a gRPC run: the workers, the chief (grpc-async) or the launcher (grpc-sync), and the
    parameter servers (grpc-async; one slot in grpc-sync, so a run asks for as many as before)."""
    servers = config["grpc"]["parameter_servers"] if wc.grpc_mode == "grpc-async" else 1
    return int(wc.workers) + 1 + servers


def cluster_inputs(wc=None):
    """The generated hostfile, for runs on a configured cluster (none on a workstation)."""
    return [f"{RESULTS}/cluster/hostfile"] if config.get("cluster") else []


def grpc_remote_prefix(wc=None):
    """``--remote-prefix`` for the gRPC launcher on a configured cluster (e.g. 'ssh {host}')."""
    prefix = (config.get("cluster") or {}).get("remote_prefix")
    return f"--remote-prefix {shlex.quote(prefix)}" if prefix else ""


def cluster_hosts_file(wc=None):
    """The generated hosts.json (gRPC task placement), on a configured cluster only."""
    return [f"{RESULTS}/cluster/hosts.json"] if config.get("cluster") else []


# --- experiments -------------------------------------------------------------

SCALABILITY = config["experiments"]["scalability"]
HPARAMS = config["experiments"]["hyperparameters"]


def scalability_runs():
    """Run directories of the grid; desktop has one worker by definition."""
    return [
        run_dir(task, mode, workers)
        for task in SCALABILITY["tasks"]
        for mode in SCALABILITY["modes"]
        for workers in SCALABILITY["workers"]
        if mode != "desktop" or workers == 1
    ]


def hparam_dir(units, layers, batch):
    return f"{RESULTS}/pmsi/hparams/u{units}-l{layers}-b{batch}"


def hparam_runs():
    return [
        hparam_dir(u, n, b)
        for u in HPARAMS["units"]
        for n in HPARAMS["layers"]
        for b in HPARAMS["batch_sizes"]
    ]


def final_outputs():
    """Everything a bare `snakemake` builds (the default target) — data sets, every configured run, baselines,
    and the aggregated figures of the report."""
    outputs = [f"{RESULTS}/{task}/dataset/manifest.json" for task in TASKS]
    outputs += run_metrics_files() + baseline_metrics_files()
    outputs += list(rules.aggregate.output)
    return outputs


# --- report ------------------------------------------------------------------

AGGREGATE = f"{RESULTS}/summary"

#: the report's sections (``report(category=...)``), numbered once here in reading order so that
#: no rule numbers its own; a report lists the sections of the targets it was given
#: (``workflow/report/workflow.rst``), so leave optional sections last
REPORT_SECTIONS = {"data": "1. Data", "runs": "2. Training runs", "experiments": "3. Experiments",
                   "predictions": "4. Predictions"}


def report_item(name, caption, subcategory):
    return report(f"{AGGREGATE}/{name}", caption=f"../report/{caption}", category=REPORT_SECTIONS["runs"],
                  subcategory=subcategory)

# --- prediction ----------------------------------------------------------------


def predict_models():
    """``predict.model`` as a list (one model, or the models of a weighted mean)."""
    model = config["predict"]["model"]
    return [model] if isinstance(model, str) else list(model)


def predict_model_input(wildcards):
    """The model(s) to predict with, as inputs when they are runs this workflow makes (so they
    are trained first); an export or an outside run directory is read as it is."""
    return [str(Path(m) / "metrics.json") for m in predict_models()
            if str(m).startswith(RESULTS) and not (Path(m) / "saved_model.pb").exists()]


def predict_weights(wildcards):
    """``--weights W...`` when ``predict.weights`` is set (one per model; default equal)."""
    weights = config["predict"].get("weights")
    if weights is not None and len(weights) != len(predict_models()):
        raise ValueError(f"predict.weights {weights}: one weight per predict.model ({len(predict_models())})")
    return "--weights " + " ".join(str(w) for w in weights) if weights else ""


def predict_class_weights(wildcards):
    """``--class-weights W...`` when ``predict.class_weights`` is set (one per class)."""
    weights = config["predict"].get("class_weights")
    return "--class-weights " + " ".join(str(w) for w in weights) if weights else ""


def predict_inputs(wildcards):
    """``--records DIR`` (ECG) or ``--rhs FILES [--labels CSV]`` (PMSI) from ``predict:``."""
    p = config["predict"]
    if p.get("records"):
        return f"--records {p['records']}"
    files = sorted({f for pattern in p.get("rhs_files") or [] for f in glob.glob(pattern)})
    if not files:
        raise ValueError("predict: give records (ECG directory) or rhs_files matching at least one file")
    labels = f" --labels {p['labels_file']}" if p.get("labels_file") else ""
    return "--rhs " + " ".join(files) + labels
