"""Launching the schedule of runs: the schedule itself, local processes, SLURM job arrays."""
