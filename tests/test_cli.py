"""``python -m nf``: bad input gets one clear line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # subprocesses, chapter runs or a browser


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


def test_unknown_parameter_is_refused():
    result = run_cli("book", "run", "toy", "--profile", "ci", "-p", "updatez", "5")
    assert result.returncode == 2
    assert "unknown parameter 'updatez' for chapter toy; allowed:" in result.stderr


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("families", "[spline]", "ValueError: unknown flow family 'spline'; choose one of planar, radial"),
        ("flow_lengths", "[-1]", "ValueError: length must be a positive integer, got -1"),
        ("flow_lengths", "[2.5]", "ValueError: length must be a positive integer, got 2.5"),
        ("updates", "0", "ValueError: updates must be a positive integer, got 0"),
        ("energies", "[U5]", "ValueError: unknown energy 'U5'; choose one of U1, U2, U3, U4"),
        ("device", "cuda:0" if not __import__("torch").cuda.is_available() else "tpu", "ValueError: "),
    ],
)
def test_bad_chapter_parameters_fail_in_one_line_and_keep_the_notebook(name, value, message, tmp_path):
    from nf.book.chapters import get_chapter

    notebook = get_chapter("toy").notebook
    before = notebook.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "nf", "book", "run", "toy", "--profile", "ci", "-p", name, value],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "NF_RESULTS_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: chapter toy failed in cell") and message in last
    assert "Traceback" not in result.stderr
    assert notebook.read_bytes() == before  # a failed run never replaces the executed chapter


def test_unwritable_results_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "nf", "book", "run", "toy", "--profile", "ci"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "NF_RESULTS_DIR": str(blocker)},
    )
    assert result.returncode == 2
    assert "cannot write to the results folder" in result.stderr.strip().splitlines()[-1]


def test_bad_yaml_value():
    result = run_cli("book", "run", "toy", "-p", "flow_lengths", "[2, 8")
    assert result.returncode == 2 and "cannot read the value '[2, 8'" in result.stderr


def test_corrupt_data_folder_is_named(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]:
        (raw / name).write_bytes(b"not MNIST")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nf",
            "book",
            "run",
            "mnist",
            "--profile",
            "ci",
            "-p",
            "data_root",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "NF_RESULTS_DIR": str(tmp_path / "results")},
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "DataError: cannot load MNIST from" in last and str(tmp_path / "data") in last


def test_dotted_parameter_sets_one_key_of_a_dictionary_parameter():
    from nf.book.execute import apply_overrides

    base = {"seed": 0, "mnist": {"updates": 10, "workers": 2}}
    merged = apply_overrides(base, {"mnist.updates": 20, "seed": 1})
    assert merged == {"seed": 1, "mnist": {"updates": 20, "workers": 2}}
    assert base["mnist"]["updates"] == 10  # the profile itself is not modified


@pytest.mark.parametrize(
    "name,message",
    [
        ("mnist.updatez", "unknown parameter 'mnist.updatez'; mnist has keys models, updates"),
        ("seed.x", "unknown parameter 'seed.x': 'seed' is not a dictionary parameter"),
    ],
)
def test_bad_dotted_parameter_is_refused(name, message):
    result = run_cli("book", "run", "nice", "--profile", "ci", "-p", name, "5")
    assert result.returncode == 2
    assert message in result.stderr


def test_summary_pages_run_after_the_chapters_whose_runs_they_read():
    from nf.book.chapters import chapter_names, execution_order

    order = execution_order()
    assert sorted(order) == sorted(chapter_names())
    assert order[-3:] == ["intro", "scorecard", "compute"]
    assert order[:6] == ["theory", "toy", "mnist", "gaps", "nice", "conv"]  # gaps reads the MNIST runs
    assert execution_order(["scorecard", "toy"]) == ["toy", "scorecard"]


def test_runs_status_lists_a_chapters_runs(tmp_path):
    import os

    env = {**os.environ, "NF_RESULTS_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "nf", "runs", "status", "toy", "--profile", "ci", "-p", "updates", "300"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "4 runs: 4 missing" and all(line.startswith("missing") for line in lines[:-1])
    bad = run_cli("runs", "status", "toys")
    assert bad.returncode == 2 and "unknown chapter 'toys'" in bad.stderr
