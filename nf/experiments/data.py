"""Binarised MNIST, as used by the paper's DLGM experiments (section 6.2).

Where the files live: the ``root`` argument, else the environment variable
``NF_DATA_DIR``, else ``data/`` at the top of the repository (git-ignored).
``torchvision.datasets.MNIST`` reads ``<root>/MNIST/raw`` and downloads the
files there when they are missing and ``download=True``.

Binarisation (pixel intensities in [0, 1] read as Bernoulli probabilities):

* ``dynamic``: a fresh Bernoulli draw every time a batch is drawn, the usual
  choice for training;
* ``fixed``: one draw made once from ``seed``, so that every model is scored
  on the same binary images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from nf.validation import check_choice, check_int

DATA_ENV_VAR = "NF_DATA_DIR"
BINARIZATIONS = ("dynamic", "fixed")
SPLITS = {"train": 60_000, "test": 10_000}
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "data"


class DataError(RuntimeError):
    """The data folder is missing, unreadable or corrupt; the message says how to fix it."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data folder: ``root``, else ``$NF_DATA_DIR``, else ``data/`` in the repository."""
    if root is not None:
        return Path(root)
    env = os.environ.get(DATA_ENV_VAR)
    return Path(env) if env else DEFAULT_DATA_ROOT


def load_mnist_pixels(split: str = "train", root: str | os.PathLike | None = None, download: bool = True) -> Tensor:
    """Return the MNIST ``split`` as a float32 tensor of shape ``(N, 784)`` with values in ``[0, 1]``.

    Raises:
        DataError: if the files are missing and cannot be downloaded, or are corrupt.
    """
    check_choice("MNIST split", split, SPLITS)
    import torchvision  # imported here: the flows do not need it

    folder = data_root(root)
    fix = (
        f"put the four MNIST files (train-images-idx3-ubyte, ...) in {folder / 'MNIST' / 'raw'}, "
        f"or point {DATA_ENV_VAR} (or the root argument) at a folder that holds MNIST/raw, "
        "or connect to the internet so torchvision can download them"
    )
    try:
        dataset = torchvision.datasets.MNIST(root=str(folder), train=split == "train", download=download)
        images = dataset.data
    except Exception as error:  # torchvision raises RuntimeError, URLError, AssertionError, ...
        raise DataError(f"cannot load MNIST from {folder}: {type(error).__name__}: {error}. To fix: {fix}") from None
    expected = (SPLITS[split], 28, 28)
    if tuple(images.shape) != expected or images.dtype != torch.uint8:
        raise DataError(
            f"MNIST {split} images in {folder} have shape {tuple(images.shape)} and dtype {images.dtype}, "
            f"expected {expected} uint8: the files are corrupt. To fix: {fix}"
        )
    return images.reshape(len(images), 784).to(torch.float32) / 255.0


class BinarizedMNIST:
    """A split of MNIST binarised ``dynamic``-ally or ``fixed`` by ``seed``.

    Example::

        data = BinarizedMNIST("train", binarization="dynamic")
        for x in data.batches(100, generator=torch.Generator().manual_seed(0)):
            ...  # x: (100, 784) float tensor of zeros and ones
    """

    def __init__(
        self,
        split: str = "train",
        binarization: str = "dynamic",
        seed: int = 0,
        root: str | os.PathLike | None = None,
        download: bool = True,
    ):
        check_choice("binarization", binarization, BINARIZATIONS)
        self.split = split
        self.binarization = binarization
        self.pixels = load_mnist_pixels(split, root, download)
        self.fixed_images: Tensor | None = None
        if binarization == "fixed":
            self.fixed_images = torch.bernoulli(self.pixels, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.pixels)

    def images(self, generator: torch.Generator | None = None) -> Tensor:
        """All images, binarised (a fresh draw when dynamic)."""
        return self._binarize(self.pixels if self.fixed_images is None else self.fixed_images, generator)

    def _binarize(self, pixels: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.binarization == "fixed":
            return pixels
        return torch.bernoulli(pixels, generator=generator)

    def batches(
        self, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[Tensor]:
        """One pass over the split in mini-batches of binary images of shape ``(batch, 784)``."""
        check_int("batch_size", batch_size)
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        source = self.pixels if self.fixed_images is None else self.fixed_images
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self._binarize(source[order[start : start + batch_size]], generator)
