"""Run infrastructure: the run cache, checkpoints, parallel worker processes, config defaults and devices."""
