# Stage 2 (paper: ECG data path): challenge-layout records -> R-peak-centred windows.
ECG = config["ecg"]
ECG_RAW = f"{RESULTS}/ecg/raw"  # the synth_ecg directory (synthetic source only)
# the records directory; ecg.records_dir is set when the source is a directory (schema)
ECG_RECORDS = ECG_RAW if ECG["source"] == "synthetic" else ECG["records_dir"]
ECG_WINDOW_FILES = [
    "X.npy", "y.npy", "groups.npy", "X_small.npy", "y_small.npy", "groups_small.npy",
    "classes.json", "quarantine.csv", "counts.json", "table2.csv", "manifest.json",
]

if ECG["source"] == "synthetic":

    rule synth_ecg:
        input:
            code=code("ecg/synth", "ecg/records"),
        output:
            records=directory(ECG_RAW),
        params:
            records=ECG["synthetic"]["records"],
            seed=ECG["synthetic"]["seed"],
        conda:
            ENV
        log:
            f"{RESULTS}/logs/ecg/synth_ecg.log",
        benchmark:
            f"{RESULTS}/benchmarks/ecg/synth_ecg.tsv"
        shell:
            "diagnosenet synth-ecg --records {params.records} --seed {params.seed} --out {output.records}"
            " > {log} 2>&1"


rule window_ecg:
    input:
        records=ECG_RECORDS if ECG["source"] == "synthetic" else f"{ECG_RECORDS}/REFERENCE.csv",
        code=code("ecg/records", "ecg/peaks", "ecg/windows", "ecg/build", "ecg/features", "ecg/hrv",
                  "ecg/signal_quality"),
    output:
        [
            report(f"{RESULTS}/ecg/windows/{name}", caption="../report/table2.rst",
                   category=REPORT_SECTIONS["data"], subcategory="ecg")
            if name == "table2.csv" else f"{RESULTS}/ecg/windows/{name}"
            for name in ECG_WINDOW_FILES
            if name != "manifest.json"
        ],
        manifest=f"{RESULTS}/ecg/windows/manifest.json",
    params:
        # synthetic: the input is the records directory itself; directory: its REFERENCE.csv
        records=(lambda wildcards, input: input.records) if ECG["source"] == "synthetic" else parent("input.records"),
        out=parent("output.manifest"),
        detector=ECG["detector"],
        window=ECG["window"],
        per_sample=ECG["windows_per_sample"],
        stride=ECG["stride"],
        normalisation=ECG["normalisation"],
        sample_rule=ECG.get("sample_rule", "all-peaks"),
        record_features="--record-features" if ECG.get("record_features") else "",
        jobs=lambda wildcards, threads: ECG["jobs"] or threads,
    threads: workflow.cores
    conda:
        ENV
    log:
        f"{RESULTS}/logs/ecg/window_ecg.log",
    benchmark:
        f"{RESULTS}/benchmarks/ecg/window_ecg.tsv"
    shell:
        "diagnosenet window-ecg --records {params.records} --out {params.out} --detector {params.detector}"
        " --window {params.window} --windows-per-sample {params.per_sample} --stride {params.stride}"
        " --normalisation {params.normalisation} --sample-rule {params.sample_rule} {params.record_features}"
        " --jobs {params.jobs} > {log} 2>&1"


rule ecg_features:
    """Whole-record rhythm, morphology and spectral features: the ECG baseline's input."""
    input:
        records=ECG_RECORDS if ECG["source"] == "synthetic" else f"{ECG_RECORDS}/REFERENCE.csv",
        code=code("ecg/records", "ecg/peaks", "ecg/features", "ecg/hrv", "ecg/signal_quality", "ecg/feature_table",
                  "ecg/pool"),
    output:
        manifest=f"{RESULTS}/ecg/features/manifest.json",
    params:
        records=(lambda wildcards, input: input.records) if ECG["source"] == "synthetic" else parent("input.records"),
        out=parent("output.manifest"),
        detector=ECG["detector"],
        jobs=lambda wildcards, threads: ECG["jobs"] or threads,
    threads: workflow.cores
    conda:
        ENV
    log:
        f"{RESULTS}/logs/ecg/ecg_features.log",
    benchmark:
        f"{RESULTS}/benchmarks/ecg/ecg_features.tsv"
    shell:
        "diagnosenet ecg-features --records {params.records} --out {params.out} --detector {params.detector}"
        " --jobs {params.jobs} > {log} 2>&1"
