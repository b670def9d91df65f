# Stage 3-4 (paper: data manager): leakage-free splits and per-worker shards.


rule materialise:
    input:
        stage=lambda wc: f"{STAGE_DIR[wc.task]}/manifest.json",
        test_groups=lambda wc: fixed_test_groups(wc.task) or [],
        code=code("datasets/splits", "datasets/materialise"),
    output:
        manifest=f"{RESULTS}/{{task}}/dataset/manifest.json",
        table=report(
            f"{RESULTS}/{{task}}/dataset/class_table.csv",
            caption="../report/class_table.rst",
            category=REPORT_SECTIONS["data"],
            subcategory="{task}",
        ),
    params:
        source=parent("input.stage"),
        out=parent("output.manifest"),
        valid=config["datasets"]["valid_fraction"],
        test=config["datasets"]["test_fraction"],
        seed=config["datasets"]["seed"],
        test_groups=lambda wc: f"--test-groups {fixed_test_groups(wc.task)}" if fixed_test_groups(wc.task) else "",
    conda:
        ENV
    log:
        f"{RESULTS}/logs/datasets/materialise_{{task}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/datasets/materialise_{{task}}.tsv"
    shell:
        "diagnosenet materialise --input {params.source} --out {params.out}"
        " --valid-fraction {params.valid} --test-fraction {params.test} --seed {params.seed} {params.test_groups}"
        " > {log} 2>&1"


rule shard:
    input:
        dataset=f"{RESULTS}/{{task}}/dataset/manifest.json",
        # -measured: the calibration run (shards.speeds_from) whose timeline gives each worker's speed
        calibration=lambda wc: [f"{RESULTS}/{wc.task}/runs/{config['shards']['speeds_from']}/metrics.json"]
        if wc.balance else [],
        code=code("datasets/shards", "training/timeline"),
    output:
        manifest=f"{RESULTS}/{{task}}/shards/w{{workers}}-b{{batch}}{{balance}}/manifest.json",
    wildcard_constraints:
        balance="(-measured)?",
    params:
        dataset=parent("input.dataset"),
        out=parent("output.manifest"),
        seed=config["shards"]["seed"],
        speeds=lambda wc, input: f"--speeds-from {os.path.dirname(input.calibration[0])}" if wc.balance else "",
    conda:
        ENV
    log:
        f"{RESULTS}/logs/datasets/shard_{{task}}_w{{workers}}-b{{batch}}{{balance}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/datasets/shard_{{task}}_w{{workers}}-b{{batch}}{{balance}}.tsv"
    shell:
        "diagnosenet shard --dataset {params.dataset} --out {params.out} --workers {wildcards.workers}"
        " --batch-size {wildcards.batch} --seed {params.seed} {params.speeds} > {log} 2>&1"
