# Video features: per-shard extraction from raw videos (or import of How2 .npy features) →
# one merged store index. Shards keep the DAG small for 80k videos: a video belongs to shard
# sha1(video_id) mod features.shards, so adding videos only reruns the shards they land in.
# Shard files are cached between workflows (`cache: True`, `snakemake --cache`); each holds
# its own failure records in its footer, and its human-readable manifest is written to
# features/failures/<shard>.tsv (kept even when the job fails, because Snakemake deletes only
# declared outputs). See docs/features.md.

FEATURES = config["features"]
FEATURES_DIR = f"{R}/features"
FEATURES_N = FEATURES["shards"]
FEATURES_SHARD = f"{FEATURES_DIR}/shards/shard-{{shard}}-of-{FEATURES_N:05d}.parquet"
FEATURES_FAILURES = f"{FEATURES_DIR}/failures/shard-{{shard}}-of-{FEATURES_N:05d}.tsv"


if FEATURES["source"] == "extract":

    rule features_extract:
        input:
            tables=expand(f"{R}/data/{{split}}.parquet", split=SPLITS),
            checkpoint=[FEATURES["checkpoint"]] if FEATURES["checkpoint"] else [],
        output:
            FEATURES_SHARD,
        params:
            shard=lambda w: int(w.shard),
            num_shards=FEATURES_N,
            failures=lambda w: FEATURES_FAILURES.format(shard=w.shard),
            backbone=FEATURES["backbone"],
            checkpoint=lambda w, input: f"--checkpoint {input.checkpoint}" if input.checkpoint else "",
            torchvision_weights="--torchvision-weights" if FEATURES["torchvision_weights"] else "",
            random_init_ok="--random-init-ok" if FEATURES["random_init_ok"] else "",
            seed=config["seed"],
            batch_size=FEATURES["batch_size"],
            device=FEATURES["device"],
            bf16="" if FEATURES["bf16"] else "--no-bf16",
            clip_rule=FEATURES["clip_rule"],
            fps=f"--fps {FEATURES['fps']}" if FEATURES["fps"] else "",
            min_side=FEATURES["min_side"],
            max_aspect=FEATURES["max_aspect"],
            max_failure_fraction=FEATURES["max_failure_fraction"],
            decode_workers=FEATURES["decode_workers"],
        log:
            log_path("features_extract", "shard-{shard}"),
        wildcard_constraints:
            shard=r"\d{5}",
        threads: FEATURES["threads"]
        resources:
            mem_mb=FEATURES["mem_mb"],
            runtime=FEATURES["runtime"],
            gpu=FEATURES["gpus"],
        cache: True
        conda:
            CONDA_ENV
        shell:
            "mcls extract --table {input.tables} --shard {params.shard} --num-shards {params.num_shards}"
            " --out {output} --failures {params.failures} --backbone {params.backbone} {params.checkpoint}"
            " {params.torchvision_weights} {params.random_init_ok} --seed {params.seed}"
            " --batch-size {params.batch_size} --device {params.device} {params.bf16} --threads {threads}"
            " --clip-rule {params.clip_rule} {params.fps} --min-side {params.min_side}"
            " --max-aspect {params.max_aspect} --max-failure-fraction {params.max_failure_fraction}"
            " --decode-workers {params.decode_workers} > {log} 2>&1"


if FEATURES["source"] == "import":

    rule features_import:
        input:
            tables=expand(f"{R}/data/{{split}}.parquet", split=SPLITS),
        output:
            FEATURES_SHARD,
        params:
            shard=lambda w: int(w.shard),
            num_shards=FEATURES_N,
            failures=lambda w: FEATURES_FAILURES.format(shard=w.shard),
            max_failure_fraction=FEATURES["max_failure_fraction"],
        log:
            log_path("features_import", "shard-{shard}"),
        wildcard_constraints:
            shard=r"\d{5}",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=240,
        cache: True
        conda:
            CONDA_ENV
        shell:
            "mcls import-features --table {input.tables} --shard {params.shard} --num-shards {params.num_shards}"
            " --out {output} --failures {params.failures}"
            " --max-failure-fraction {params.max_failure_fraction} > {log} 2>&1"


if FEATURES["source"] in ("extract", "import"):

    rule features_merge:
        input:
            shards=expand(FEATURES_SHARD, shard=[f"{i:05d}" for i in range(FEATURES_N)]),
        output:
            store=f"{FEATURES_DIR}/store.json",
            failures=f"{FEATURES_DIR}/failures.tsv",
        log:
            log_path("features_merge"),
        resources:
            mem_mb=2000,
            runtime=30,
        conda:
            CONDA_ENV
        shell:
            "mcls merge-features --shards {input.shards} --out {output.store}"
            " --failures-out {output.failures} > {log} 2>&1"

    EXTRA_TARGETS.append(lambda: [f"{FEATURES_DIR}/store.json"])
