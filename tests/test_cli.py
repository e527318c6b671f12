"""``python -m nf``: bad input gets one clear line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nf", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args,message",
    [
        (["book", "run", "toys"], "unknown chapter 'toys'; choose from intro, theory, toy"),
        (["book", "run", "toy", "--profile", "fast"], "unknown profile 'fast'; choose one of ci, report, paper"),
        (["book", "run", "toy", "--device", "tpu"], "unknown device 'tpu'; choose one of cpu, cuda"),
    ],
)
def test_bad_arguments_give_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cuda_without_gpu_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run_cli("book", "run", "toy", "--device", "cuda")
    assert result.returncode == 2
    assert "no CUDA GPU is available" in result.stderr and "Traceback" not in result.stderr
