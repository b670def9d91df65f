# Apply a trained model to new data (docs/predict.md):
#   snakemake predict --configfile config/config.yaml my-predict.yaml
# with `predict:` naming the model (a run directory or an export) and the new records or RHS
# files; and the self-contained export of any finished run:
#   snakemake results/ecg/export/desktop-w1/model_card.json


rule predict:
    input:
        model=predict_model_input,
        code=code("predict", "ecg", "pmsi", "metrics", "privacy"),
    output:
        predictions=report(
            f"{RESULTS}/predict/{config['predict']['name']}/predictions.csv",
            caption="../report/predictions.rst",
            category=REPORT_SECTIONS["predictions"],
        ),
        counts=f"{RESULTS}/predict/{config['predict']['name']}/counts.json",
    params:
        models=" ".join(predict_models()),
        inputs=predict_inputs,
        weights=predict_weights,
        class_weights=predict_class_weights,
        out=parent("output.predictions"),
    threads: workflow.cores   # ECG records are read in parallel (capped by --cores)
    conda:
        ENV
    log:
        f"{RESULTS}/logs/predict/{config['predict']['name']}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict/{config['predict']['name']}.tsv"
    shell:
        "diagnosenet predict --model {params.models} {params.inputs} {params.weights} {params.class_weights} --jobs {threads} --out {params.out} > {log} 2>&1"


rule export:
    input:
        metrics=f"{RESULTS}/{{task}}/runs/{{run}}/metrics.json",
        code=code("predict"),
    output:
        card=f"{RESULTS}/{{task}}/export/{{run}}/model_card.json",
    params:
        run=parent("input.metrics"),
        out=parent("output.card"),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/export/{{task}}_{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export/{{task}}_{{run}}.tsv"
    shell:
        "diagnosenet export --run {params.run} --out {params.out} > {log} 2>&1"
