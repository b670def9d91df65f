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
        code=code("datasets/shards"),
    output:
        manifest=f"{RESULTS}/{{task}}/shards/w{{workers}}-b{{batch}}/manifest.json",
    params:
        dataset=parent("input.dataset"),
        out=parent("output.manifest"),
        seed=config["shards"]["seed"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/datasets/shard_{{task}}_w{{workers}}-b{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/datasets/shard_{{task}}_w{{workers}}-b{{batch}}.tsv"
    shell:
        "diagnosenet shard --dataset {params.dataset} --out {params.out} --workers {wildcards.workers}"
        " --batch-size {wildcards.batch} --seed {params.seed} > {log} 2>&1"
