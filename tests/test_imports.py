"""Stages that do not train must not pay for TensorFlow (12–60 s to import here) or MPI."""
import subprocess
import sys

NON_TRAINING = [
    "diagnosenet", "diagnosenet.cli", "diagnosenet.pmsi.compose", "diagnosenet.pmsi.synth",
    "diagnosenet.ecg.windows", "diagnosenet.ecg.synth", "diagnosenet.datasets.materialise",
    "diagnosenet.datasets.shards", "diagnosenet.metrics", "diagnosenet.monitor",
    "diagnosenet.experiments", "diagnosenet.figures.hyperparameters", "diagnosenet.figures.aggregate",
    "diagnosenet.figures.cli",
    "diagnosenet.monitor.energy", "diagnosenet.monitor.cli", "diagnosenet.training.settings",
    "diagnosenet.training.cli", "diagnosenet.training.grpc.cli", "diagnosenet.emulation",
]


def heavy_imported(modules: list[str], heavy: tuple[str, ...]) -> list[str]:
    """What a fresh interpreter prints of the ``heavy`` modules it holds after importing ``modules`` and building the
    command-line parser (what every ``diagnosenet`` process does first)."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import diagnosenet.cli as cli; cli.build_parser()\n"
        f"print('HEAVY', [m for m in {heavy!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cli_and_data_stages_import_neither_tensorflow_nor_mpi():
    out = heavy_imported(NON_TRAINING, ("tensorflow", "keras", "mpi4py", "sklearn"))
    assert "HEAVY []" in out, out


def test_every_command_starts_without_the_readers_and_plotting_libraries():
    """Every process of the pipeline (each MPI rank and gRPC task, each rule's shell) builds the
    whole parser: wfdb with pandas, scipy and matplotlib cost it 0.7 s more CPU each time
    (a test run starts hundreds). The stages import them where they read, fit or draw."""
    out = heavy_imported([], ("wfdb", "pandas", "scipy", "matplotlib", "tensorflow"))
    assert "HEAVY []" in out, out
