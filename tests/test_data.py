"""MNIST loading on the real files, and a clear error on a broken data folder."""

from __future__ import annotations

import os

import pytest
import torch

from nf.experiments.data import DATA_ENV_VAR, BinarizedMNIST, DataError, data_root, load_mnist_pixels


@pytest.fixture(scope="module")
def test_pixels():
    """The real MNIST test split; skipped only outside CI when no copy can be had."""
    try:
        return load_mnist_pixels("test")
    except DataError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MNIST not available here: {error}")


def test_real_files_shape_and_range(test_pixels):
    assert test_pixels.shape == (10_000, 784)
    assert test_pixels.min() >= 0 and test_pixels.max() <= 1
    assert 0.1 < test_pixels.mean() < 0.15  # MNIST's mean intensity is about 0.13


def test_fixed_binarization_is_reproducible_by_seed(test_pixels):
    a = BinarizedMNIST("test", "fixed", seed=3).images()
    b = BinarizedMNIST("test", "fixed", seed=3).images()
    c = BinarizedMNIST("test", "fixed", seed=4).images()
    assert a.shape == (10_000, 784)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    batches = list(BinarizedMNIST("test", "fixed", seed=3).batches(1000, shuffle=False))
    assert torch.equal(torch.cat(batches), a)


def test_dynamic_binarization_resamples_each_batch(test_pixels):
    data = BinarizedMNIST("test", "dynamic")
    first = next(data.batches(500, shuffle=False))
    second = next(data.batches(500, shuffle=False))
    assert first.shape == (500, 784)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    # a Bernoulli draw of the same pixels: agreement with the mean is close
    assert (first.mean() - test_pixels[:500].mean()).abs() < 0.01


def test_batches_cover_the_split_once(test_pixels):
    data = BinarizedMNIST("test", "fixed")
    sizes = [len(x) for x in data.batches(3000, generator=torch.Generator().manual_seed(0))]
    assert sizes == [3000, 3000, 3000, 1000]


def test_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv(DATA_ENV_VAR)
    assert data_root().name == "data"


def test_missing_folder_offline_names_the_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=str(missing)) as info:
        load_mnist_pixels("train", root=missing, download=False)
    assert "NF_DATA_DIR" in str(info.value)


def test_corrupt_files_give_clear_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]:
        (raw / name).write_bytes(b"this is not MNIST" * 10)
    with pytest.raises(DataError, match="cannot load MNIST from") as info:
        load_mnist_pixels("test", root=tmp_path)
    assert str(tmp_path) in str(info.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown MNIST split 'valid'"):
        load_mnist_pixels("valid")
    with pytest.raises(ValueError, match="unknown binarization 'soft'"):
        BinarizedMNIST("test", "soft")
