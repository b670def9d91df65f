# The paper's experiments as targets:
#   snakemake scalability      worker scalability per training mode (paper figures 2-3)
#   snakemake hyperparameters  appendix C model-dimension space (Table 4, figure 4)

rule scalability:
    input:
        f"{RESULTS}/experiments/scalability.png",


rule hyperparameters:
    input:
        f"{RESULTS}/experiments/table4.csv",
        f"{RESULTS}/experiments/hyperparameters.png",


rule table4:
    input:
        code=code("experiments"),
    output:
        report(
            f"{RESULTS}/experiments/table4.csv",
            caption="../report/table4.rst",
            category=REPORT_SECTIONS["experiments"],
            subcategory="Hyper-parameters",
        ),
    params:
        units=" ".join(map(str, HPARAMS["units"])),
        layers=" ".join(map(str, HPARAMS["layers"])),
        input_size=HPARAMS["input_size"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/experiments/table4.log",
    benchmark:
        f"{RESULTS}/benchmarks/experiments/table4.tsv"
    shell:
        "diagnosenet table4 --units {params.units} --layers {params.layers}"
        " --input-size {params.input_size} --out {output} > {log} 2>&1"


# desktop runs of the appendix C grid (units x layers x batch size), one per directory
HPARAM_RUN = hparam_dir("{units}", "{layers}", "{batch}")


rule train_desktop_hparams:
    input:
        dataset=f"{RESULTS}/pmsi/dataset/manifest.json",
        shards=lambda wc: f"{shards_dir('pmsi', 1, wc.batch)}/manifest.json",
        code=TRAIN_CODE,
    output:
        metrics=f"{HPARAM_RUN}/metrics.json",
        track=f"{HPARAM_RUN}/track.csv",
    wildcard_constraints:
        units=r"\d+",
        layers=r"\d+",
    params:
        args=lambda wc: train_args(
            "pmsi", "desktop", 1,
            out=hparam_dir(wc.units, wc.layers, wc.batch),
            model={**config["models"]["pmsi"], "hidden_units": [int(wc.units)] * int(wc.layers)},
            batch_size=int(wc.batch),
            max_epochs=HPARAMS["max_epochs"],
        ),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/experiments/train_desktop_hparams_u{{units}}-l{{layers}}-b{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/experiments/train_desktop_hparams_u{{units}}-l{{layers}}-b{{batch}}.tsv"
    shell:
        "diagnosenet train-desktop {params.args} > {log} 2>&1"


rule hyperparameters_figure:
    input:
        tracks=[f"{d}/track.csv" for d in hparam_runs()],
        metrics=[f"{d}/metrics.json" for d in hparam_runs()],
        code=code("figures/hyperparameters", "figures/cli", "experiments"),
    output:
        report(
            f"{RESULTS}/experiments/hyperparameters.png",
            caption="../report/hyperparameters.rst",
            category=REPORT_SECTIONS["experiments"],
            subcategory="Hyper-parameters",
        ),
    params:
        runs=parent("input.metrics"),
        input_size=HPARAMS["input_size"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/experiments/hyperparameters_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/experiments/hyperparameters_figure.tsv"
    shell:
        "diagnosenet hyperparameters-figure --runs {params.runs} --input-size {params.input_size}"
        " --out {output} > {log} 2>&1"
