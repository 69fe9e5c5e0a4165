"""The MNIST subset that ships inside gvlib: shapes, splits, labels, the 14x14 reduction, checksums, offline use."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gvlib import data

REPO = Path(__file__).resolve().parent.parent
PACKAGED = REPO / "gvlib" / "_data" / data.MNIST_SUBSET_FILE
#: Images per class in MNIST's test split (LeCun et al.'s published counts), the pool the subset is cut from.
MNIST_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _fresh_cache():
    data._subset_arrays.cache_clear()
    yield
    data._subset_arrays.cache_clear()


def _all(kind="binary", size=28):
    parts = [data.load_mnist_subset(split, kind, size) for split in data.MNIST_SUBSET_SPLITS]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


@pytest.mark.parametrize("kind", data.MNIST_SUBSET_KINDS)
@pytest.mark.parametrize("size", data.MNIST_SUBSET_SIZES)
@pytest.mark.parametrize("split", list(data.MNIST_SUBSET_SPLITS))
def test_shapes_dtypes_and_values(split, kind, size):
    x, y = data.load_mnist_subset(split, kind, size, dtype=torch.float64)
    n = data.MNIST_SUBSET_SPLITS[split]
    assert x.shape == (n, size * size) and x.dtype == torch.float64
    assert y.shape == (n,) and y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    if kind == "binary":
        assert set(x.unique().tolist()) == {0.0, 1.0}
    else:  # grey levels are k / 255 (28x28) or k / 1020 (mean of four, 14x14), in [0, 1], both ends reached
        denominator = 255 if size == 28 else 4 * 255
        k = x * denominator
        assert torch.allclose(k, k.round(), atol=1e-9) and x.min() == 0 and x.max() == 1


def test_the_subset_is_mnists_test_split_with_its_class_counts():
    _, y = _all()
    assert torch.bincount(y, minlength=10).tolist() == MNIST_TEST_CLASS_COUNTS


def test_splits_are_disjoint_and_balanced():
    with np.load(PACKAGED) as z:
        index = z["mnist_index"]
    assert sorted(index.tolist()) == list(range(10_000))  # every MNIST test image once: splits cannot overlap
    _, y_all = _all()
    pool = torch.bincount(y_all, minlength=10).double() / len(y_all)
    for split in data.MNIST_SUBSET_SPLITS:
        _, y = data.load_mnist_subset(split)
        share = torch.bincount(y, minlength=10).double() / len(y)
        # a random cut of n images: each class share has s.d. about sqrt(0.1 * 0.9 / n) (0.95 points at n = 1000)
        assert (share - pool).abs().max() < 4 * (0.09 / len(y)) ** 0.5, (split, share, pool)


def test_binary_and_grey_are_the_same_images():
    xb, yb = _all("binary")
    xg, yg = _all("grey")
    assert torch.equal(yb, yg)
    assert not (xb.bool() & (xg == 0)).any(), "a binarized pixel is on where the grey level is 0"
    # The fixed binarization draws each pixel from Bernoulli(v / 255): its mean matches the grey mean to a few s.e.
    p = xg.double()
    se = (p * (1 - p)).sum().sqrt() / p.numel()
    assert abs(xb.double().mean() - p.mean()) < 4 * se
    # ...and it belongs to its own image: per image, the pixel agreement with its own grey image beats a shuffled one
    own = (xb == (xg > 0.5)).double().mean(1)
    other = (xb == (xg.roll(1, 0) > 0.5)).double().mean(1)
    assert (own > other).double().mean() > 0.99


def test_fourteen_by_fourteen_against_average_pooling():
    for kind in data.MNIST_SUBSET_KINDS:
        x28, y28 = data.load_mnist_subset("valid", kind, 28, dtype=torch.float64)
        x14, y14 = data.load_mnist_subset("valid", kind, 14, dtype=torch.float64)
        pooled = F.avg_pool2d(x28.view(-1, 1, 28, 28), 2).view(-1, 196)
        expected = (pooled >= 0.5).double() if kind == "binary" else pooled
        assert torch.equal(y14, y28)
        assert torch.allclose(x14, expected, atol=1e-12, rtol=0), kind


def test_fourteen_by_fourteen_on_a_hand_made_image():
    # one 28x28 binary image whose 2x2 blocks hold 0, 1, 2, 3 and 4 ones
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 0, 2] = 1                               # block (0, 1): one pixel -> 0
    image[0, 0, 4:6] = 1                             # block (0, 2): two -> 1
    image[0, 0:2, 6] = 1; image[0, 0, 7] = 1         # block (0, 3): three -> 1
    image[0, 0:2, 8:10] = 1                          # block (0, 4): four -> 1
    out = data._downsample_2x2(image.reshape(1, 784), "binary").reshape(14, 14)
    assert out[0, :6].tolist() == [0, 0, 1, 1, 1, 0] and out.sum() == 3
    grey = data._downsample_2x2((image * 255).reshape(1, 784), "grey").reshape(14, 14)
    assert grey[0, :5].tolist() == [0, 255, 510, 765, 1020]


def test_fixed_reproducible_and_copies():
    x1, y1 = data.load_mnist_subset("test")
    x1[:] = 7
    y1[:] = 7
    x2, y2 = data.load_mnist_subset("test")
    assert set(x2.unique().tolist()) == {0.0, 1.0} and y2.max() <= 9  # the cache was not modified through a copy
    assert torch.equal(x2, data.load_mnist_subset("test")[0])


def test_bad_arguments_list_the_valid_ones():
    with pytest.raises(ValueError, match="train.*valid.*test"):
        data.load_mnist_subset("validation")
    with pytest.raises(ValueError, match="binary.*grey"):
        data.load_mnist_subset("train", kind="gray")
    with pytest.raises(ValueError, match="28, 14"):
        data.load_mnist_subset("train", size=7)
    with pytest.raises(ValueError, match="28, 14"):
        data.load_mnist_subset("train", size=True)
    with pytest.raises(TypeError, match="floating"):
        data.load_mnist_subset("train", dtype=torch.int64)


def _use_copy(monkeypatch, tmp_path, mutate=None):
    copy = tmp_path / data.MNIST_SUBSET_FILE
    shutil.copyfile(PACKAGED, copy)
    if mutate is not None:
        mutate(copy)
    monkeypatch.setattr(data, "_subset_resource", lambda: copy)
    return copy


def test_a_corrupted_file_is_named_and_left_in_place(monkeypatch, tmp_path):
    def flip_a_byte(path):
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(blob))

    copy = _use_copy(monkeypatch, tmp_path, flip_a_byte)
    before = copy.read_bytes()
    with pytest.raises(data.ChecksumError, match=rf"{copy.name}: sha256 .* not the expected .*git checkout"):
        data.load_mnist_subset()
    assert copy.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [copy.name]


def test_a_truncated_file_is_named(monkeypatch, tmp_path):
    copy = _use_copy(monkeypatch, tmp_path, lambda p: p.write_bytes(p.read_bytes()[:1000]))
    with pytest.raises(data.ChecksumError, match="1000 bytes"):
        data.load_mnist_subset()
    assert copy.exists()


def test_a_missing_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_subset_resource", lambda: tmp_path / data.MNIST_SUBSET_FILE)
    with pytest.raises(data.DataNotFoundError, match=rf"{data.MNIST_SUBSET_FILE}.*missing.*reinstall"):
        data.load_mnist_subset()


def test_loading_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    for kind in data.MNIST_SUBSET_KINDS:
        for size in data.MNIST_SUBSET_SIZES:
            data.load_mnist_subset("train", kind, size)


def test_the_checksum_constant_is_the_committed_files():
    assert hashlib.sha256(PACKAGED.read_bytes()).hexdigest() == data.MNIST_SUBSET_SHA256
    assert PACKAGED.stat().st_size < 3_000_000  # the wheel stays small


def _shared_data():
    candidates = [os.environ.get("GVLIB_SHARED_DATA"), REPO.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "mnist" / "t10k-images-idx3-ubyte.gz").exists() and \
                (Path(c) / "binarized_mnist" / "binarized_mnist_test.amat.gz").exists():
            return Path(c)
    return None


@pytest.mark.slow
def test_the_build_script_rebuilds_the_committed_file_byte_for_byte():
    shared = _shared_data()
    if shared is None:
        pytest.skip("MNIST's test split and binarized MNIST are not in ../shared/data (or $GVLIB_SHARED_DATA)")
    out = subprocess.run([sys.executable, "scripts/make_mnist_subset.py", "--data", str(shared), "--check", "--every", "10"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pairing verified" in out.stdout and "identical" in out.stdout


def test_grey_pixels_match_mnists_own_file():
    shared = _shared_data()
    if shared is None:
        pytest.skip("MNIST's test split is not in ../shared/data (or $GVLIB_SHARED_DATA)")
    x_mnist, y_mnist = data.load_mnist("test", root=shared, download=False)
    with np.load(PACKAGED) as z:
        index = torch.from_numpy(z["mnist_index"].astype(np.int64))
    x, y = _all("grey")
    assert torch.equal(x, x_mnist[index]) and torch.equal(y, y_mnist[index])
