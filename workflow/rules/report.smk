# Stage 6 (paper: enerGyPU dashboard): every run's convergence, cost and errors in one place.
#   snakemake --report results/report.html   collects everything marked with report() below.


rule aggregate:
    input:
        metrics=run_metrics_files(),
        baselines=baseline_metrics_files(),
        code=code("figures/aggregate", "figures/runs", "figures/plots", "figures/cli", "monitor/energy"),
    output:
        runs=report_item("runs.csv", "runs.rst", "Summary"),
        convergence=report_item("convergence.png", "convergence.rst", "Convergence"),
        timelines=report_item("timelines.png", "timelines.rst", "Monitor"),
        energy=report_item("energy_accuracy.png", "energy_accuracy.rst", "Monitor"),
        confusion=report_item("confusion.png", "confusion.rst", "Errors"),
    params:
        runs=parent("input.metrics"),
        baselines=parent("input.baselines"),
        out=parent("output.runs"),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/report/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/aggregate.tsv"
    shell:
        "diagnosenet aggregate --runs {params.runs} --baselines {params.baselines} --out {params.out} > {log} 2>&1"


rule scalability_figure:
    input:
        metrics=[f"{d}/metrics.json" for d in scalability_runs()],
        code=code("figures/aggregate", "figures/runs", "figures/plots", "figures/cli", "figures/scaling",
                  "training/timeline"),
    output:
        figure=report(
            f"{RESULTS}/experiments/scalability.png",
            caption="../report/scalability.rst",
            category=REPORT_SECTIONS["experiments"],
            subcategory="Worker scalability",
        ),
        table=f"{RESULTS}/experiments/scalability.csv",
        recommendation=report(
            f"{RESULTS}/experiments/scalability-recommendation.md",
            caption="../report/scalability_recommendation.rst",
            category=REPORT_SECTIONS["experiments"],
            subcategory="Worker scalability",
        ),
        timeline=report(
            f"{RESULTS}/experiments/scalability-timeline.png",
            caption="../report/scalability_timeline.rst",
            category=REPORT_SECTIONS["experiments"],
            subcategory="Worker scalability",
        ),
    params:
        runs=parent("input.metrics"),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/experiments/scalability_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/experiments/scalability_figure.tsv"
    shell:
        "diagnosenet scalability-figure --runs {params.runs} --out {output.figure} > {log} 2>&1"
