# NEDS (Neural Encoding and Decoding at Scale) as one reproducible workflow.
# Table of contents; the rules live in workflow/rules/, their scripts in workflow/scripts/,
# all logic in the `neds` package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/bwb.smk"


rule all:
    default_target: True
    input:
        get_final_outputs,
