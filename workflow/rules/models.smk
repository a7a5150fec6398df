# Models: stage 1 (VDF on How2-MS) and the MCLS-only models of Tables III/IV (trained on
# How2-MCLS train), then decoding, scoring and the results tables.
#   models/<model>/<stage>/final.pt               stage: stage1 | mcls
#   eval/<model>/<stage>/<split>/hypotheses.jsonl, metrics.json
#   tables/table3.{md,tsv} (Pt2En) or table4 (Zh2En); tables/stage1.{md,tsv}
# Every setting that changes a model is inside the JSON spec (a params: entry), so changing
# it reruns exactly that training and what depends on it.
rule train:
    input:
        unpack(train_inputs),
    output:
        f"{R}/models/{{model}}/{{stage}}/final.pt",
    params:
        spec=lambda w: json.dumps(train_spec(w.model, w.stage), sort_keys=True),
        out_dir=lambda w, output: os.path.dirname(output[0]),
        # several GPUs: one DDP process per GPU through torchrun (same results as one process
        # with the same global batch)
        launcher=(
            f"torchrun --standalone --nproc_per_node {TRAIN['gpus']} -m mcls.cli"
            if TRAIN["gpus"] > 1
            else "mcls"
        ),
    log:
        log_path("train", "{model}-{stage}"),
    wildcard_constraints:
        model="|".join(MODEL_PRESETS),
        stage="stage1|mcls",
    threads: TRAIN["threads"]
    resources:
        mem_mb=TRAIN["mem_mb"],
        runtime=TRAIN["runtime"],
        gpu=TRAIN["gpus"],
    conda:
        CONDA_ENV
    shell:
        "{params.launcher} train --spec {params.spec:q} --out {params.out_dir:q} > {log} 2>&1"


rule decode:
    input:
        unpack(decode_inputs),
    output:
        f"{R}/eval/{{model}}/{{stage}}/{{split}}/hypotheses.jsonl",
    params:
        src_field=lambda w: STAGES[w.stage]["src_field"],
        features=lambda w, input: f"--features {input.features}" if "features" in input.keys() else "",
        mode=DECODE["mode"],
        beam=DECODE["beam"],
        lenpen=DECODE["lenpen"],
        max_len=DECODE["max_len"],
        max_video_rows=config["features"]["max_rows"],
        batch_size=DECODE["batch_size"],
        device=TRAIN["device"],
    log:
        log_path("decode", "{model}-{stage}-{split}"),
    wildcard_constraints:
        model="|".join(MODEL_PRESETS),
        stage="stage1|mcls",
    threads: TRAIN["threads"]
    resources:
        mem_mb=TRAIN["mem_mb"],
        runtime=TRAIN["runtime"],
        gpu=TRAIN["gpus"],
    conda:
        CONDA_ENV
    shell:
        "mcls decode --checkpoint {input.checkpoint} --split {input.split} --vocab {input.vocab}"
        " --references {input.references} {params.features} --src-field {params.src_field}"
        " --mode {params.mode} --beam {params.beam} --lenpen {params.lenpen} --max-len {params.max_len}"
        " --batch-size {params.batch_size} --max-video-rows {params.max_video_rows}"
        " --device {params.device} --threads {threads} --out {output} > {log} 2>&1"


rule evaluate:
    input:
        f"{R}/eval/{{model}}/{{stage}}/{{split}}/hypotheses.jsonl",
    output:
        f"{R}/eval/{{model}}/{{stage}}/{{split}}/metrics.json",
    params:
        meteor="" if config["eval"]["meteor"] else "--no-meteor",
    log:
        log_path("evaluate", "{model}-{stage}-{split}"),
    resources:
        mem_mb=3000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "mcls evaluate --jsonl {input} --out {output} {params.meteor} > {log} 2>&1"


rule table_backbones:
    input:
        [f"{R}/eval/{m}/mcls/test/metrics.json" for m in table_models()],
    output:
        md=report(
            f"{R}/tables/table{TABLE_NO}.md",
            caption="../report/table_backbones.rst",
            category="Results",
        ),
        tsv=f"{R}/tables/table{TABLE_NO}.tsv",
    params:
        rows=lambda w, input: " ".join(f"--row '{DISPLAY[m]}={p}'" for m, p in zip(table_models(), input)),
        title=f"Table {'III' if TABLE_NO == '3' else 'IV'}: backbones trained on How2-MCLS only (Video+{LANG_TITLE}2En, test)",
        out=lambda w, output: os.path.splitext(output.md)[0],
    log:
        log_path("tables", f"table{TABLE_NO}"),
    conda:
        CONDA_ENV
    shell:
        "mcls table {params.rows} --title {params.title:q} --out {params.out:q} > {log} 2>&1"


rule table_stage1:
    input:
        [f"{R}/eval/{m}/stage1/test/metrics.json" for m in STAGE1_MODELS],
    output:
        md=report(f"{R}/tables/stage1.md", caption="../report/table_stage1.rst", category="Results"),
        tsv=f"{R}/tables/stage1.tsv",
    params:
        rows=lambda w, input: " ".join(f"--row '{DISPLAY[m]} (stage 1, En transcript)={p}'" for m, p in zip(STAGE1_MODELS, input)),
        title="Stage 1: English multimodal summarization (How2-MS model on How2-MCLS test, English transcripts)",
        out=lambda w, output: os.path.splitext(output.md)[0],
    log:
        log_path("tables", "stage1"),
    conda:
        CONDA_ENV
    shell:
        "mcls table {params.rows} --title {params.title:q} --out {params.out:q} > {log} 2>&1"


EXTRA_TARGETS.append(lambda: [f"{R}/tables/table{TABLE_NO}.md", f"{R}/tables/stage1.md"])
