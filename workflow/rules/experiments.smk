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
            category="4. Experiments",
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


rule train_hparam:
    input:
        dataset=f"{RESULTS}/pmsi/dataset/manifest.json",
        shards=lambda wc: f"{shards_dir('pmsi', 1, wc.batch)}/manifest.json",
        code=TRAIN_CODE,
    output:
        metrics=f"{RESULTS}/pmsi/hparams/u{{units}}-l{{layers}}-b{{batch}}/metrics.json",
        track=f"{RESULTS}/pmsi/hparams/u{{units}}-l{{layers}}-b{{batch}}/track.csv",
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
        f"{RESULTS}/logs/experiments/hparam_u{{units}}-l{{layers}}-b{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/experiments/hparam_u{{units}}-l{{layers}}-b{{batch}}.tsv"
    shell:
        "diagnosenet train {params.args} > {log} 2>&1"


rule hyperparameters_figure:
    input:
        tracks=[f"{d}/track.csv" for d in hparam_runs()],
        metrics=[f"{d}/metrics.json" for d in hparam_runs()],
        code=code("figures/hyperparameters"),
    output:
        report(
            f"{RESULTS}/experiments/hyperparameters.png",
            caption="../report/hyperparameters.rst",
            category="4. Experiments",
            subcategory="Hyper-parameters",
        ),
    params:
        runs=hparam_runs(),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/experiments/hyperparameters_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/experiments/hyperparameters_figure.tsv"
    shell:
        "diagnosenet figure-hyperparameters --runs {params.runs} --out {output} > {log} 2>&1"
