# Data: demo corpus / downloads → ingest (split tables) → statistics, vocabularies, encoding.

if DEMO:

    rule demo_corpus:
        output:
            corpus=directory(config["data"]["root"]),
        params:
            demo=config["data"]["demo"],
        log:
            log_path("demo_corpus"),
        threads: 2
        resources:
            mem_mb=2000,
            runtime=30,
        conda:
            CONDA_ENV
        shell:
            "mcls demo-corpus --out {output.corpus} --seed {params.demo[seed]}"
            " --pretrain {params.demo[pretrain]} --train {params.demo[train]}"
            " --val {params.demo[val]} --test {params.demo[test]}"
            " --min-frames {params.demo[min_frames]} --max-frames {params.demo[max_frames]}"
            " --fps {params.demo[fps]} --width {params.demo[width]} --height {params.demo[height]}"
            " --workers {threads} > {log} 2>&1"


for _i, _dl in enumerate(config["data"]["downloads"]):

    rule:
        name:
            f"download_{_i}"
        output:
            directory(_dl["dest"]) if _dl.get("unpack") else _dl["dest"],
        params:
            url=_dl["url"],
            checksum=(
                f"--sha256 {_dl['sha256']}"
                if _dl.get("sha256")
                else (f"--sha1 {_dl['sha1']}" if _dl.get("sha1") else "")
            ),
            unpack="--unpack" if _dl.get("unpack") else "",
        log:
            log_path("download", str(_i)),
        threads: 1
        resources:
            mem_mb=1000,
            runtime=600,
        conda:
            CONDA_ENV
        shell:
            "mcls download --url {params.url:q} --dest {output:q} {params.checksum} {params.unpack}"
            " --no-progress > {log} 2>&1"


rule ingest:
    input:
        data_root_inputs(),
    output:
        tables=expand(f"{R}/data/{{split}}.parquet", split=SPLITS),
        manifest=f"{R}/data/manifest.json",
    params:
        format=config["data"]["format"],
        root=lambda w: config["data"]["root"],
        out_dir=lambda w, output: os.path.dirname(output.manifest),
        src_lang=SRC,
        media=config["data"]["media"],
        how2_300h=" ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in config["data"]["how2_300h"].items()
            if v
        ),
    log:
        log_path("ingest"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "mcls ingest --format {params.format} --root {params.root:q} --src-lang {params.src_lang}"
        " --media {params.media} {params.how2_300h} --out {params.out_dir:q} > {log} 2>&1"


rule stats:
    input:
        expand(f"{R}/data/{{split}}.parquet", split=SPLITS),
    output:
        table1=report(
            f"{R}/stats/table1.md",
            caption="../report/table1.rst",
            category="Data",
        ),
        table2=report(
            f"{R}/stats/table2.md",
            caption="../report/table2.rst",
            category="Data",
        ),
        tsv1=f"{R}/stats/table1.tsv",
        tsv2=f"{R}/stats/table2.tsv",
    params:
        src_lang=SRC,
        data_dir=lambda w, input: os.path.dirname(input[0]),
        out_dir=lambda w, output: os.path.dirname(output.table1),
    log:
        log_path("stats"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mcls stats --data {params.data_dir:q} --src-lang {params.src_lang} --out {params.out_dir:q} > {log} 2>&1"


rule vocab_en:
    input:
        expand(f"{R}/data/{{split}}.parquet", split=config["vocab"]["en_splits"]),
    output:
        f"{R}/vocab/en.tsv",
    params:
        min_count=config["vocab"]["min_count"],
    log:
        log_path("vocab", "en"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mcls vocab --tables {input} --columns transcript_en summary --lang en"
        " --min-count {params.min_count} --out {output} > {log} 2>&1"


rule vocab_src:
    input:
        expand(f"{R}/data/{{split}}.parquet", split=config["vocab"]["src_splits"]),
    output:
        f"{R}/vocab/{SRC}.tsv",
    params:
        min_count=config["vocab"]["min_count"],
        lang=SRC,
    log:
        log_path("vocab", SRC),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mcls vocab --tables {input} --columns transcript_src --lang {params.lang}"
        " --min-count {params.min_count} --out {output} > {log} 2>&1"


rule encode:
    input:
        table=f"{R}/data/{{split}}.parquet",
        en_vocab=f"{R}/vocab/en.tsv",
        src_vocab=f"{R}/vocab/{SRC}.tsv",
    output:
        f"{R}/encoded/{{split}}.parquet",
    params:
        src_lang=SRC,
        max_text=config["data"]["max_text_tokens"],
        max_summary=config["data"]["max_summary_tokens"],
    log:
        log_path("encode", "{split}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mcls encode --table {input.table} --en-vocab {input.en_vocab} --src-vocab {input.src_vocab}"
        " --src-lang {params.src_lang} --max-text-tokens {params.max_text}"
        " --max-summary-tokens {params.max_summary} --out {output} > {log} 2>&1"
