#!/usr/bin/env python3
"""Stand-in for the SLURM commands (linked as sbatch, sacct, squeue, sinfo, sacctmgr, sshare,
scontrol): sbatch records its arguments in $FAKE_SLURM_LOG (JSON lines) and prints a job id;
sacct reports every submitted job as FAILED, so the run ends without executing anything."""

import json
import os
import sys

name = os.path.basename(sys.argv[0])
log = os.environ["FAKE_SLURM_LOG"]
if name == "sbatch":
    stdin = "" if sys.stdin.isatty() else sys.stdin.read()
    with open(log, "a") as f:
        f.write(json.dumps({"args": sys.argv[1:], "stdin": stdin}) + "\n")
    n = sum(1 for _ in open(log))
    print(f"{1000 + n}")
elif name == "sacct":
    n = sum(1 for _ in open(log)) if os.path.exists(log) else 0
    for i in range(n):
        print(f"{1001 + i}|FAILED")
elif name == "squeue":
    pass
elif name == "sinfo":
    print("PARTITION\ncpu*\ngpu")
elif name in ("sacctmgr", "sshare"):
    print("mylab")
sys.exit(0)
