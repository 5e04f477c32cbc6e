#!/usr/bin/env python3
"""Stand-in for the SLURM commands (linked as sbatch, sacct, squeue, sinfo, sacctmgr, sshare,
scontrol): sbatch records its arguments in $FAKE_SLURM_LOG (JSON lines) and prints a job id;
sacct reports every submitted job as FAILED, so the run ends without executing anything (and
the account, "mylab", when asked for it).

With $FAKE_SLURM_EXPECT set to N, sacct reports the jobs as PENDING until N jobs have been
submitted (or $FAKE_SLURM_PATIENCE seconds, default 120, have passed since the first), so every
job that is ready is submitted before the first failure ends the run, however the run is scheduled."""

import fcntl
import json
import os
import sys
import time

name = os.path.basename(sys.argv[0])
log = os.environ["FAKE_SLURM_LOG"]
if name == "sbatch":
    stdin = "" if sys.stdin.isatty() else sys.stdin.read()
    # the executor submits from several threads at once: appending and numbering under one lock
    # gives every job its own id
    with open(log, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps({"args": sys.argv[1:], "stdin": stdin, "time": time.time()}) + "\n")
        f.flush()
        f.seek(0)
        n = sum(1 for _ in f)
    print(f"{1000 + n}")
elif name == "sacct" and any(arg.lower().startswith("account") for arg in sys.argv[1:]):
    # the executor guesses the account from the user's recent jobs (-o Account): answered apart
    # from the job states, so that a guess made after the first submissions still finds it
    print("mylab")
elif name == "sacct":
    calls = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
    expect = int(os.environ.get("FAKE_SLURM_EXPECT", "0"))
    patience = float(os.environ.get("FAKE_SLURM_PATIENCE", "120"))
    waiting = calls and len(calls) < expect and time.time() - calls[0]["time"] < patience
    for i in range(len(calls)):
        print(f"{1001 + i}|{'PENDING' if waiting else 'FAILED'}")
elif name == "squeue":
    pass
elif name == "sinfo":
    print("PARTITION\ncpu*\ngpu")
elif name in ("sacctmgr", "sshare"):
    print("mylab")
sys.exit(0)
