# Stage 1 (paper: PMSI data path): RHS M05 weekly summaries -> first-week sparse patient features.
import glob

PMSI = config["pmsi"]
PMSI_COMPOSED_FILES = [
    "X.npz", "y.npy", "groups.npy", "vocabulary.json", "classes.json", "counts.json", "quarantine.csv",
    "manifest.json",
]

# Real RHS globs are expanded when the workflow starts, so that adding a file re-runs compose and
# a pattern matching nothing stops the run; synthetic files live in the synth_pmsi directory.
PMSI_RAW = f"{RESULTS}/pmsi/raw"  # the synth_pmsi directory (synthetic source only)
if PMSI["source"] == "synthetic":
    PMSI_RHS, PMSI_LABELS = [PMSI_RAW], f"{PMSI_RAW}/labels.csv"
    PMSI_RHS_ARGS = f"'{PMSI_RAW}/rhs_*.txt'"
else:
    # the schema requires rhs_files and labels_file with source files; only globs are checked here
    PMSI_RHS = [path for pattern in PMSI["rhs_files"] for path in sorted(glob.glob(pattern))]
    for pattern in PMSI["rhs_files"]:
        if not glob.glob(pattern):
            raise ValueError(f"config pmsi.rhs_files: {pattern!r} matches no file")
    PMSI_LABELS = PMSI["labels_file"]
    PMSI_RHS_ARGS = " ".join(f"'{path}'" for path in PMSI_RHS)


if PMSI["source"] == "synthetic":

    rule synth_pmsi:
        input:
            code=code("pmsi/synth", "pmsi/rhs", "pmsi/__init__"),
        output:
            raw=directory(PMSI_RAW),
        params:
            patients=PMSI["synthetic"]["patients"],
            seed=PMSI["synthetic"]["seed"],
        conda:
            ENV
        log:
            f"{RESULTS}/logs/pmsi/synth_pmsi.log",
        benchmark:
            f"{RESULTS}/benchmarks/pmsi/synth_pmsi.tsv"
        shell:
            "diagnosenet synth-pmsi --patients {params.patients} --seed {params.seed} --out {output.raw}"
            " > {log} 2>&1"


rule compose_pmsi:
    input:
        rhs=PMSI_RHS,
        labels=[] if PMSI["source"] == "synthetic" else PMSI_LABELS,  # synthetic: inside raw/
        code=code("pmsi/compose", "pmsi/rhs", "pmsi/__init__"),
    output:
        [f"{RESULTS}/pmsi/composed/{name}" for name in PMSI_COMPOSED_FILES if name != "manifest.json"],
        manifest=f"{RESULTS}/pmsi/composed/manifest.json",
    params:
        rhs=PMSI_RHS_ARGS,
        labels=PMSI_LABELS,
        out=parent("output.manifest"),
        groups=" ".join(PMSI["descriptor_groups"]),
        strict="--strict" if PMSI["strict"] else "",
        salt_file=config["privacy"]["salt_file"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/pmsi/compose_pmsi.log",
    benchmark:
        f"{RESULTS}/benchmarks/pmsi/compose_pmsi.tsv"
    shell:
        "diagnosenet compose-pmsi --rhs {params.rhs} --labels '{params.labels}' --out {params.out}"
        " --groups {params.groups} {params.strict} --salt-file '{params.salt_file}' > {log} 2>&1"
