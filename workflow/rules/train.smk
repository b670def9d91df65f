# Stage 5 (paper: runtime): the same training step moved by different transports.
# desktop (one process), MPI (mpirun; rank 0 = master) and gRPC (TensorFlow servers).

rule cluster_files:
    output:
        hostfile=f"{RESULTS}/cluster/hostfile",
        hosts=f"{RESULTS}/cluster/hosts.json",
    params:
        hosts=" ".join((config.get("cluster") or {}).get("hosts", [])),
        slots=(config.get("cluster") or {}).get("slots_per_host", 1),
        out=parent("output.hostfile"),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/train/cluster_files.log",
    shell:
        "diagnosenet cluster-files --hosts {params.hosts} --slots-per-host {params.slots}"
        " --out {params.out} > {log} 2>&1"


rule train_desktop:
    input:
        dataset=f"{RESULTS}/{{task}}/dataset/manifest.json",
        shards=lambda wc: shards_for(wc, workers=1),
        code=TRAIN_CODE,
    output:
        metrics=f"{RESULTS}/{{task}}/runs/desktop-w1{{member}}/metrics.json",
        track=f"{RESULTS}/{{task}}/runs/desktop-w1{{member}}/track.csv",
    params:
        args=lambda wc: train_args(wc.task, "desktop", 1, wc.member),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/train/{{task}}_desktop-w1{{member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}_desktop-w1{{member}}.tsv"
    shell:
        "diagnosenet train-desktop {params.args} > {log} 2>&1"


rule train_mpi:
    input:
        dataset=f"{RESULTS}/{{task}}/dataset/manifest.json",
        shards=shards_for,
        cluster=cluster_inputs,
        code=TRAIN_CODE,
    output:
        metrics=f"{RESULTS}/{{task}}/runs/{{mpi_mode}}-w{{workers}}{{member}}/metrics.json",
        track=f"{RESULTS}/{{task}}/runs/{{mpi_mode}}-w{{workers}}{{member}}/track.csv",
    params:
        args=lambda wc: train_args(wc.task, wc.mpi_mode, wc.workers, wc.member),
    # one core per rank on this host (capped at --cores), so a workstation runs one MPI job
    # at a time; cluster profiles set threads to 1 and place ranks with the launcher
    threads: lambda wc: int(wc.workers) + 1
    resources:
        # a profile swaps the launcher per rule (hostfile, srun) via set-resources;
        # -disable-auto-cleanup: a dead rank must not kill the others (docs/training.md, MPI)
        mpi="mpirun -disable-auto-cleanup",
        tasks=lambda wc: int(wc.workers) + 1,
        # under Slurm: one node per rank, as one board per rank in the paper (local executors ignore it)
        nodes=lambda wc: int(wc.workers) + 1,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/train/{{task}}_{{mpi_mode}}-w{{workers}}{{member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}_{{mpi_mode}}-w{{workers}}{{member}}.tsv"
    shell:
        # launch-mpi runs `{resources.mpi} -n tasks diagnosenet train-mpi ...`, names a lost node and
        # re-forms mpi-async without it (docs/training.md, faults)
        "diagnosenet launch-mpi --launcher '{resources.mpi}' --tasks {resources.tasks} -- {params.args} > {log} 2>&1"


rule train_grpc:
    input:
        dataset=f"{RESULTS}/{{task}}/dataset/manifest.json",
        shards=shards_for,
        hosts=cluster_hosts_file,
        code=TRAIN_CODE,
    output:
        metrics=f"{RESULTS}/{{task}}/runs/{{grpc_mode}}-w{{workers}}{{member}}/metrics.json",
        track=f"{RESULTS}/{{task}}/runs/{{grpc_mode}}-w{{workers}}{{member}}/track.csv",
    params:
        args=lambda wc: train_args(wc.task, wc.grpc_mode, wc.workers, wc.member)
        + (f" --steps-per-execution {config['grpc']['steps_per_execution']}" if wc.grpc_mode == "grpc-async" else ""),
        host=config["grpc"]["host"],
        port=grpc_port,
        timeout=config["train"]["startup_timeout_s"],
        limits=lambda wc: f"--wall-limit {config['grpc']['wall_limit_s']} --max-restarts {config['grpc']['max_restarts']}"
        + (f" --parameter-servers {config['grpc']['parameter_servers']}" if wc.grpc_mode == "grpc-async" else ""),
        # on a configured cluster the tasks go to the hosts of results/cluster/hosts.json
        hosts=lambda wc, input: f"--hosts-file {input.hosts}" if input.hosts else "",
        remote=grpc_remote_prefix,
    threads: grpc_tasks
    resources:
        tasks=grpc_tasks,
        # under Slurm: the parameter servers and chief share the first node, one node per worker
        nodes=lambda wc: int(wc.workers) + 1,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/train/{{task}}_{{grpc_mode}}-w{{workers}}{{member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}_{{grpc_mode}}-w{{workers}}{{member}}.tsv"
    shell:
        "diagnosenet train-grpc --mode {wildcards.grpc_mode} --workers {wildcards.workers}"
        " --host {params.host} --base-port {params.port} --timeout {params.timeout} {params.limits} {params.hosts}"
        " {params.remote}"
        " -- {params.args} > {log} 2>&1"


rule baseline:
    input:
        dataset=f"{RESULTS}/{{task}}/dataset/manifest.json",
        # ECG: whole-record features of the same records (rule ecg_features)
        features=lambda wc: [f"{RESULTS}/ecg/features/manifest.json"] if wc.task == "ecg" else [],
        code=code("baselines", "metrics", "ecg/feature_table", "ecg/classifier"),
    output:
        metrics=f"{RESULTS}/{{task}}/baseline/metrics.json",
    params:
        dataset=parent("input.dataset"),
        out=parent("output.metrics"),
        features=lambda wc, input: f"--features {Path(input.features[0]).parent}" if input.features else "",
        model=lambda wc: f"--model {config['models'].get('ecg_features', 'gbm')}" if wc.task == "ecg" else "",
    conda:
        ENV
    log:
        f"{RESULTS}/logs/train/{{task}}_baseline.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}_baseline.tsv"
    shell:
        "diagnosenet baseline --task {wildcards.task} --dataset {params.dataset} --out {params.out} {params.features}"
        " {params.model} > {log} 2>&1"
