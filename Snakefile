# mcls: multimodal cross-lingual summarization of How2 videos (VDF + triple-stage training).
#   snakemake --cores N                      # the embedded demo (config.yaml)
#   snakemake --cores N --configfile resources/presets/how2-pt2en.yaml
# Rules are thin: each calls one `mcls <command>`; all logic lives in src/mcls (tested there).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/models.smk"


rule all:
    input:
        final_targets(),
    default_target: True
