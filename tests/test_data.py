"""gvlib.data: loaders (tiny synthetic files, never the network), digits, toys, masks, and the real shared data."""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gvlib import data

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _shared_data() -> Path | None:
    """The course's shared data folder ($GVLIB_SHARED_DATA, else ../shared/data beside the repository), if present."""
    candidates = [os.environ.get("GVLIB_SHARED_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


SHARED = _shared_data()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs offline: the one function that touches the network raises."""
    def offline(url, out, timeout=None):
        raise OSError(f"network disabled in tests ({url})")
    monkeypatch.setattr(data, "_fetch_url", offline)
    monkeypatch.setenv("GVLIB_QUIET", "1")


# --------------------------------------------------------------------------------------------------
# tiny synthetic MNIST (IDX) files
# --------------------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1" if code == 0x08 else array.dtype).tobytes()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """root/mnist with 12 train and 5 test images of 28x28 (gzipped IDX); the checksum table patched to match."""
    rng = np.random.RandomState(0)
    arrays = {
        TRAIN_IMAGES: rng.randint(0, 256, size=(12, 28, 28)).astype(np.uint8),
        TRAIN_LABELS: rng.randint(0, 10, size=12).astype(np.uint8),
        TEST_IMAGES: rng.randint(0, 256, size=(5, 28, 28)).astype(np.uint8),
        TEST_LABELS: rng.randint(0, 10, size=5).astype(np.uint8),
    }
    arrays[TRAIN_IMAGES][0, :2] = 0  # some exact 0 and 255 pixels
    arrays[TRAIN_IMAGES][0, 2:4] = 255
    folder = tmp_path / "mnist"
    folder.mkdir()
    blobs = {}
    for name, a in arrays.items():
        blobs[name] = gzip.compress(idx_bytes(a), mtime=0)
        (folder / name).write_bytes(blobs[name])
        monkeypatch.setitem(data.MNIST_MD5, name, md5(blobs[name]))
    # 12 training images: "valid" is the last 4, "train50k" the first 8 (the real cut is 50,000 / 10,000)
    monkeypatch.setitem(data.MNIST_SPLITS, "valid", (TRAIN_IMAGES, TRAIN_LABELS, slice(-4, None)))
    monkeypatch.setitem(data.MNIST_SPLITS, "train50k", (TRAIN_IMAGES, TRAIN_LABELS, slice(None, -4)))
    return tmp_path, arrays, blobs


def test_downloads_follow_the_umask_and_md5_is_a_checksum(tiny_mnist, monkeypatch):
    root, _, blobs = tiny_mnist
    path = root / "mnist" / TEST_IMAGES
    path.unlink()
    monkeypatch.setattr(data, "_fetch_url", lambda url, out, timeout=None: out.write(blobs[TEST_IMAGES]))
    old = os.umask(0o022)
    try:
        data.load_mnist("test", root=root)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644, "a downloaded file is readable by others, as with open()"
    # FIPS builds of Python refuse md5 for security; asked for as a checksum it works everywhere
    assert data._new_hash("md5").name == "md5"


def test_load_mnist_reads_tiny_idx_files(tiny_mnist):
    root, arrays, _ = tiny_mnist
    x, y = data.load_mnist("train", root=root, download=False)
    assert x.shape == (12, 784) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_allclose(x.numpy(), arrays[TRAIN_IMAGES].reshape(12, -1) / 255, rtol=0, atol=1e-7)
    assert y.tolist() == arrays[TRAIN_LABELS].tolist()
    xt, yt = data.load_mnist("test", root=root, download=False, dtype=torch.float64)
    assert xt.shape == (5, 784) and xt.dtype == torch.float64
    assert torch.equal(xt, torch.from_numpy(arrays[TEST_IMAGES].reshape(5, -1).astype(np.float64)) / 255)
    xv, yv = data.load_mnist("valid", root=root, download=False)
    x50, _ = data.load_mnist("train50k", root=root, download=False)
    assert torch.equal(torch.cat([x50, xv]), x) and torch.equal(yv, y[-4:])


def test_load_mnist_returns_copies_and_binarizes(tiny_mnist):
    root, arrays, _ = tiny_mnist
    x, y = data.load_mnist("train", root=root, download=False)
    x.zero_()
    y.zero_()
    x2, y2 = data.load_mnist("train", root=root, download=False)
    assert x2.max() > 0 and y2.tolist() == arrays[TRAIN_LABELS].tolist(), "the cache must not be corrupted by callers"
    f1, _ = data.load_mnist("train", root=root, download=False, binarize="fixed")
    f2, _ = data.load_mnist("train", root=root, download=False, binarize="fixed")
    assert torch.equal(f1, f2), "fixed binarization must be the same on every call"
    assert set(f1.unique().tolist()) <= {0.0, 1.0}
    assert (f1[0, :56] == 0).all() and (f1[0, 56:112] == 1).all(), "pixels 0 and 255 binarize to 0 and 1"
    fv, _ = data.load_mnist("valid", root=root, download=False, binarize="fixed")
    assert torch.equal(fv, f1[-4:]), "valid's fixed draw is a slice of train's"
    d, _ = data.load_mnist("train", root=root, download=False, binarize="dynamic")
    assert torch.equal(d, x2), "dynamic returns the grey levels (loader(..., dynamic_binarize=True) draws)"


def test_parse_idx_checks_the_header_of_a_verified_file():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(data._parse_idx_uint8(idx_bytes(a), "f"), a)
    good = idx_bytes(a)
    with pytest.raises(data.DataError, match="not an IDX file of unsigned bytes"):
        data._parse_idx_uint8(b"\x01" + good[1:], "f")
    with pytest.raises(data.DataError, match="not an IDX file of unsigned bytes"):
        data._parse_idx_uint8(idx_bytes(np.zeros((2, 2), dtype=">i4"), code=0x0C), "f")
    with pytest.raises(data.DataError, match="bytes follow it"):
        data._parse_idx_uint8(good[:-1], "f")
    with pytest.raises(data.DataError, match="not an IDX file"):
        data._parse_idx_uint8(b"\x00\x00", "f")


def test_malformed_idx_with_matching_checksum_gives_clear_error(tiny_mnist, monkeypatch):
    root, arrays, _ = tiny_mnist
    blob = gzip.compress(idx_bytes(arrays[TEST_IMAGES])[:-10])  # announces 5 images, holds less
    (root / "mnist" / TEST_IMAGES).write_bytes(blob)
    monkeypatch.setitem(data.MNIST_MD5, TEST_IMAGES, md5(blob))
    with pytest.raises(data.DataError, match="bytes follow it"):
        data.load_mnist("test", root=root, download=False)
    labels = gzip.compress(idx_bytes(arrays[TEST_LABELS][:3]))
    (root / "mnist" / TEST_IMAGES).write_bytes(gzip.compress(idx_bytes(arrays[TEST_IMAGES])))
    (root / "mnist" / TEST_LABELS).write_bytes(labels)
    monkeypatch.setitem(data.MNIST_MD5, TEST_IMAGES, md5((root / "mnist" / TEST_IMAGES).read_bytes()))
    monkeypatch.setitem(data.MNIST_MD5, TEST_LABELS, md5(labels))
    with pytest.raises(data.DataError, match="expected 5 labels"):
        data.load_mnist("test", root=root, download=False)


def test_truncated_mnist_file_is_moved_aside_with_a_clear_error(tiny_mnist):
    root, _, blobs = tiny_mnist
    path = root / "mnist" / TEST_IMAGES
    path.write_bytes(blobs[TEST_IMAGES][:100])  # a short copy
    with pytest.raises(data.ChecksumError) as err:
        data.load_mnist("test", root=root, download=True)  # checked before any download
    msg = str(err.value)
    aside = path.with_name(path.name + ".corrupt")
    assert str(path) in msg and str(aside) in msg and "nothing was deleted" in msg and data.MNIST_MD5[TEST_IMAGES] in msg
    assert "download=True" in msg, "the error says what to do"
    assert not path.exists() and aside.read_bytes() == blobs[TEST_IMAGES][:100], "kept, byte for byte"
    with pytest.raises(data.DataNotFoundError):  # and now it is simply absent
        data.load_mnist("test", root=root, download=False)


def test_offline_without_files_names_files_checksums_and_folder(tmp_path):
    for download in (False, True):  # True: the (patched) network fails on every mirror
        with pytest.raises(data.DataNotFoundError) as err:
            data.load_mnist("test", root=tmp_path, download=download)
        msg = str(err.value)
        for name in (TEST_IMAGES, TEST_LABELS):
            assert name in msg and data.MNIST_MD5[name] in msg
        assert str(tmp_path / "mnist") in msg and data.MNIST_MIRRORS[0] in msg
        assert isinstance(err.value, FileNotFoundError)
    assert "network disabled" in msg and all(m in msg for m in data.MNIST_MIRRORS), "every mirror was tried"
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == [], "no half file is left behind"


def test_download_is_atomic_verified_and_falls_back_to_the_next_mirror(tiny_mnist, monkeypatch):
    root, _, blobs = tiny_mnist
    folder = root / "mnist"
    for name in (TEST_IMAGES, TEST_LABELS):
        (folder / name).unlink()
    calls = []

    def half_then_fail(url, out, timeout=None):  # first mirror: the connection drops midway
        calls.append(url)
        out.write(blobs[url.rsplit("/", 1)[1]][:50])
        raise ConnectionResetError("connection dropped")

    monkeypatch.setattr(data, "_fetch_url", half_then_fail)
    with pytest.raises(data.DataNotFoundError, match="connection dropped"):
        data.load_mnist("test", root=root)
    assert sorted(p.name for p in folder.iterdir()) == [TRAIN_IMAGES, TRAIN_LABELS], "no partial file is left"

    def wrong_bytes(url, out, timeout=None):
        out.write(b"<html>a captive portal</html>")

    monkeypatch.setattr(data, "_fetch_url", wrong_bytes)
    with pytest.raises(data.DataNotFoundError, match="ChecksumError"):
        data.load_mnist("test", root=root)
    assert sorted(p.name for p in folder.iterdir()) == [TRAIN_IMAGES, TRAIN_LABELS], "a wrong download is not kept"

    def second_mirror_works(url, out, timeout=None):
        calls.append(url)
        if url.startswith(data.MNIST_MIRRORS[0]):
            raise TimeoutError("mirror 1 is down")
        out.write(blobs[url.rsplit("/", 1)[1]])

    calls.clear()
    monkeypatch.setattr(data, "_fetch_url", second_mirror_works)
    x, y = data.load_mnist("test", root=root)
    assert x.shape == (5, 784) and (folder / TEST_IMAGES).read_bytes() == blobs[TEST_IMAGES]
    assert calls == [m + n for n in (TEST_IMAGES, TEST_LABELS) for m in data.MNIST_MIRRORS]
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_bad_arguments_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'train', 'train50k', 'valid', 'test'"):
        data.load_mnist("validation", root=tmp_path)
    with pytest.raises(ValueError, match="binarize"):
        data.load_mnist("test", root=tmp_path, binarize="static")
    with pytest.raises(ValueError, match="'train', 'valid', 'test'"):
        data.load_binarized_mnist("val", root=tmp_path)
    with pytest.raises(ValueError, match="digits split"):
        data.load_digits("training")
    with pytest.raises(ValueError, match="'fixed', 'dynamic'"):
        data.load_digits(binarize=True)
    with pytest.raises(TypeError, match="floating torch.dtype"):
        data.load_digits(dtype=torch.int64)
    with pytest.raises(TypeError, match="download"):
        data.load_mnist("test", root=tmp_path, download="no")


def test_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("GVLIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.data_root() == tmp_path / "cache" / "gvlib"
    monkeypatch.setenv("GVLIB_DATA", str(tmp_path / "d"))
    assert data.data_root() == tmp_path / "d"
    assert data.data_root(tmp_path / "e") == tmp_path / "e"
    assert not (tmp_path / "d").exists(), "data_root does not create folders"
    with pytest.raises(TypeError):
        data.data_root(3)


# --------------------------------------------------------------------------------------------------
# tiny synthetic binarized MNIST (.amat text)
# --------------------------------------------------------------------------------------------------

def amat_text(x: np.ndarray, newline: str = "\n") -> bytes:
    return "".join(" ".join(str(int(v)) for v in row) + newline for row in x).encode()


@pytest.fixture
def tiny_amat(tmp_path, monkeypatch):
    x = (np.random.RandomState(1).rand(6, 784) < 0.3).astype(np.uint8)
    text = amat_text(x)
    monkeypatch.setitem(data.BINARIZED_MNIST_SHA256, "binarized_mnist_valid.amat", hashlib.sha256(text).hexdigest())
    (tmp_path / "binarized_mnist").mkdir()
    return tmp_path, x, text


@pytest.mark.parametrize("compressed", [False, True])
def test_load_binarized_mnist_plain_or_gz(tiny_amat, compressed):
    root, x, text = tiny_amat
    folder = root / "binarized_mnist"
    src = folder / ("binarized_mnist_valid.amat" + (".gz" if compressed else ""))
    src.write_bytes(gzip.compress(text) if compressed else text)
    got = data.load_binarized_mnist("valid", root=root, download=False)
    assert got.shape == (6, 784) and got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(x).float())
    got.fill_(7)  # a copy: the next call is unaffected
    assert torch.equal(data.load_binarized_mnist("valid", root=root, download=False), torch.from_numpy(x).float())
    assert sorted(p.name for p in folder.iterdir()) == [src.name], "nothing is written beside the data"


def test_parse_amat_reads_the_official_layout_only(tiny_amat):
    _, x, text = tiny_amat
    assert np.array_equal(data._parse_amat(text, "f"), x)
    with pytest.raises(data.DataError, match="whole number of 1568-byte"):
        data._parse_amat(amat_text(x, newline=" \r\n"), "f")
    with pytest.raises(data.DataError, match="digits 0 and 1"):
        data._parse_amat(amat_text(2 * x), "f")


def test_corrupted_binarized_mnist_is_moved_aside_and_offline_error_is_clear(tiny_amat, monkeypatch):
    root, x, text = tiny_amat
    folder = root / "binarized_mnist"
    sha = data.BINARIZED_MNIST_SHA256["binarized_mnist_valid.amat"]
    for bad in (text[:-1569], gzip.compress(text)[:-20]):  # a short text, a truncated gzip
        path = folder / ("binarized_mnist_valid.amat" + (".gz" if bad[:2] == b"\x1f\x8b" else ""))
        path.write_bytes(bad)
        with pytest.raises(data.ChecksumError, match="moved aside") as err:
            data.load_binarized_mnist("valid", root=root)
        assert str(path) in str(err.value) and sha in str(err.value) and not path.exists()
        assert path.with_name(path.name + ".corrupt").read_bytes() == bad
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_binarized_mnist("valid", root=root, download=False)
    msg = str(err.value)
    assert "binarized_mnist_valid.amat" in msg and sha in msg and str(folder) in msg
    served = []

    def serve(url, out, timeout=None):
        served.append(url)
        out.write(text)

    monkeypatch.setattr(data, "_fetch_url", serve)
    assert torch.equal(data.load_binarized_mnist("valid", root=root), torch.from_numpy(x).float())
    assert served == [data.BINARIZED_MNIST_MIRRORS[0] + "binarized_mnist_valid.amat"]
    assert (folder / "binarized_mnist_valid.amat").read_bytes() == text


# --------------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------------

def test_load_digits_shapes_ranges_and_fixed_disjoint_splits():
    sizes = {}
    for split in ("train", "valid", "test"):
        x, y = data.load_digits(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (len(y), 64)
        assert x.min() >= 0 and x.max() <= 1 and torch.equal(x * 16, (x * 16).round()), "levels k/16"
        assert y.min() >= 0 and y.max() <= 9
        sizes[split] = len(y)
        x2, y2 = data.load_digits(split)
        assert torch.equal(x, x2) and torch.equal(y, y2), "the split is the same on every call"
    assert sizes == {"train": 1197, "valid": 300, "test": 300} == data.DIGITS_SPLITS
    rows = data._digits_arrays()[3]
    together = np.concatenate([rows[s] for s in ("train", "valid", "test")])
    assert sorted(together.tolist()) == list(range(1797)), "disjoint and covering all 1,797 images"
    # pinned forever: the class counts of the seeded split (NumPy's legacy RandomState stream is frozen)
    assert data.load_digits("valid")[1].bincount().tolist() == [28, 40, 26, 32, 34, 21, 33, 36, 25, 25]
    assert data.load_digits("test")[1].bincount().tolist() == [27, 25, 36, 28, 38, 25, 30, 31, 25, 35]
    x, _ = data.load_digits("test", dtype=torch.float64)
    assert x.dtype == torch.float64


def test_load_digits_returns_copies():
    x, y = data.load_digits("valid")
    x.fill_(5)
    y.fill_(5)
    x2, y2 = data.load_digits("valid")
    assert x2.max() <= 1 and (y2 != 5).any()


def test_load_digits_fixed_binarization():
    grey, _ = data.load_digits("train")
    f1, _ = data.load_digits("train", binarize="fixed")
    f2, _ = data.load_digits("train", binarize="fixed")
    assert torch.equal(f1, f2) and set(f1.unique().tolist()) == {0.0, 1.0}
    assert (f1[grey == 0] == 0).all() and (f1[grey == 1] == 1).all()
    # E[b] = grey; over 76,608 pixels the standard error of the mean is < 0.5 / sqrt(76,608) = 0.0018
    assert abs(f1.mean().item() - grey.mean().item()) < 4 * 0.5 / math.sqrt(grey.numel())


def test_dynamic_binarization_through_loader_is_fresh_every_epoch():
    x, y = data.load_digits("train", binarize="dynamic")
    grey, _ = data.load_digits("train")
    assert torch.equal(x, grey), "'dynamic' returns the grey levels"
    batches = data.loader(x, y, batch_size=len(x), shuffle=False, dynamic_binarize=True, seed=0)
    epochs = [next(iter(batches))[0] for _ in range(40)]
    assert not torch.equal(epochs[0], epochs[1]), "a fresh draw every epoch"
    assert all(set(e.unique().tolist()) <= {0.0, 1.0} for e in epochs)
    assert (epochs[0][x == 0] == 0).all() and (epochs[0][x == 1] == 1).all()
    mean = torch.stack(epochs).mean(0)
    # per-pixel Monte Carlo mean over 40 epochs: pooled, the error of the mean is < 0.5 / sqrt(40 * 76,608)
    assert abs(mean.mean().item() - x.mean().item()) < 4 * 0.5 / math.sqrt(40 * x.numel())
    # and pixel by pixel: a mean of 40 Bernoulli(p) is within 5 standard errors (sd <= 0.5/sqrt(40) = 0.079)
    assert (mean - x).abs().max() < 5 * 0.5 / math.sqrt(40)
    assert torch.equal(next(iter(batches))[1], y)


# --------------------------------------------------------------------------------------------------
# 2-D toys
# --------------------------------------------------------------------------------------------------

def test_toy_2d_shapes_names_and_seeds():
    for name in data.TOY_2D_NAMES:
        x = data.toy_2d(name, 500, seed=3)
        assert x.shape == (500, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert torch.equal(x, data.toy_2d(name, 500, seed=3)) and not torch.equal(x, data.toy_2d(name, 500, seed=4))
        assert x.abs().max() < 6
    with pytest.raises(ValueError, match="'ring8', 'grid25', 'moons', 'spiral', 'checkerboard'"):
        data.toy_2d("swissroll", 10)
    for bad_n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be"):
            data.toy_2d("ring8", bad_n)


def _reference_mixture(means, std):
    mu = torch.tensor(means, dtype=torch.float64)
    return torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.full((len(mu),), 1.0 / len(mu), dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(mu, torch.full_like(mu, std)), 1))


@pytest.mark.parametrize("name, means, std", [("ring8", data.RING8_MEANS, data.RING8_STD),
                                              ("grid25", data.GRID25_MEANS, data.GRID25_STD)])
def test_mixture_log_prob_matches_torch_distributions(name, means, std):
    x = torch.cat([data.toy_2d(name, 300, seed=0).double(), 3 * torch.randn(300, 2, dtype=torch.float64)])
    ref = _reference_mixture(means, std).log_prob(x)
    got = data.toy_2d_log_prob(name, x)
    assert got.shape == (600,) and got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    # shapes (..., 2) -> (...); samples have finite log density
    assert torch.isfinite(data.toy_2d_log_prob(name, data.toy_2d(name, 1000))).all()
    assert data.toy_2d_log_prob(name, x.reshape(20, 30, 2)).shape == (20, 30)


def test_mixture_constants_are_the_benchmarks():
    # ring8: 8 modes on the circle of radius 2, sd 0.02; grid25: {-4, -2, 0, 2, 4}^2, sd 0.02 (Srivastava et al. 2017)
    ring = torch.tensor(data.RING8_MEANS, dtype=torch.float64)
    assert ring.shape == (8, 2) and data.RING8_STD == 0.02
    torch.testing.assert_close(ring.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    angles = torch.remainder(torch.atan2(ring[:, 1], ring[:, 0]), 2 * math.pi)
    torch.testing.assert_close(angles.sort().values, torch.arange(8, dtype=torch.float64) * math.pi / 4)
    grid = {tuple(m) for m in data.GRID25_MEANS}
    assert data.GRID25_STD == 0.02 and grid == {(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)}
    for name, std in (("ring8", 0.02), ("grid25", 0.02)):  # samples: about 98.9 % within 3 sd of their mode
        x = data.toy_2d(name, 4000, seed=1).double()
        means = torch.tensor(data.RING8_MEANS if name == "ring8" else data.GRID25_MEANS, dtype=torch.float64)
        d = torch.cdist(x, means).min(1).values
        inside = (d <= 3 * std).double().mean().item()
        assert abs(inside - (1 - math.exp(-4.5))) < 5 * math.sqrt(0.011 * 0.989 / 4000), inside


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_log_prob_integrates_to_one(name):
    # midpoint rule on a box of +-10 sd around each mode (the mass outside all boxes is below exp(-50)); the boxes
    # do not overlap (modes are >= 1.5 apart), and step sd/8 resolves each Gaussian (error << 1e-6)
    means, std = (data.RING8_MEANS, data.RING8_STD) if name == "ring8" else (data.GRID25_MEANS, data.GRID25_STD)
    step = std / 8
    t = torch.arange(-10 * std + step / 2, 10 * std, step, dtype=torch.float64)
    box = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    total = sum(data.toy_2d_log_prob(name, box + torch.tensor(m, dtype=torch.float64)).exp().sum().item()
                for m in means) * step ** 2
    assert abs(total - 1) < 1e-6, f"{name}: integral {total}"


def test_checkerboard_log_prob_integrates_to_one():
    # midpoint rule on [-5, 5]^2 with step 0.02: the checkerboard's edges fall on cell edges (exact)
    step = 0.02
    t = torch.arange(-5 + step / 2, 5, step, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1)
    total = data.toy_2d_log_prob("checkerboard", grid).exp().sum().item() * step ** 2
    assert abs(total - 1) < 1e-6, f"checkerboard: integral {total}"


def test_checkerboard_samples_lie_on_its_support():
    x = data.toy_2d("checkerboard", 2000)
    lp = data.toy_2d_log_prob("checkerboard", x)
    assert torch.allclose(lp, torch.full_like(lp, -math.log(32)))
    assert data.toy_2d_log_prob("checkerboard", torch.tensor([[1.0, -1.0], [4.5, 0.0]])).isinf().all()
    counts = torch.stack([torch.floor(x[:, 0] / 2), torch.floor(x[:, 1] / 2)], 1).unique(dim=0, return_counts=True)
    assert len(counts[1]) == 8 and counts[1].min() > 180, "the 8 squares are equally likely"


def test_toy_log_prob_unknown_density_and_bad_input():
    for name in ("moons", "spiral"):
        with pytest.raises(NotImplementedError, match="no closed form"):
            data.toy_2d_log_prob(name, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="toy_2d name"):
        data.toy_2d_log_prob("ring9", torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        data.toy_2d_log_prob("ring8", torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        data.toy_2d_log_prob("ring8", np.zeros((3, 2)))


# --------------------------------------------------------------------------------------------------
# inpainting mask
# --------------------------------------------------------------------------------------------------

def test_centre_mask():
    m = data.centre_mask((28, 28), 0.5)
    assert m.shape == (28, 28) and m.dtype == torch.bool and m.sum() == 14 * 14 and m[7:21, 7:21].all()
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.flip(1)), "centred"
    c = data.centre_mask((3, 8, 8), 0.5)
    assert c.shape == (3, 8, 8) and (c.sum((1, 2)) == 16).all() and c[:, 2:6, 2:6].all()
    for shape, frac in [((28, 28), 0.3), ((8, 8), 0.75), ((28, 20), 0.6), ((5, 5), 0.01)]:
        m = data.centre_mask(shape, frac)
        h, w = max(1, math.floor(frac * shape[0] + 0.5)), max(1, math.floor(frac * shape[1] + 0.5))
        assert m.sum() == h * w, "a h x w square"
        assert abs(m.float().mean().item() - frac ** 2) <= (shape[0] + shape[1]) / (shape[0] * shape[1]) + 1 / 25
    for frac in (0, 1, 1.5, -0.2, True):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            data.centre_mask((28, 28), frac)
    for shape in ((784,), (1, 1, 28, 28), (28, 0), "28x28"):
        with pytest.raises(ValueError, match="image_shape"):
            data.centre_mask(shape, 0.5)


# --------------------------------------------------------------------------------------------------
# the real data in ../shared/data (skipped where absent)
# --------------------------------------------------------------------------------------------------

def _need(*parts):
    if SHARED is None or not SHARED.joinpath(*parts).exists():
        pytest.skip(f"shared data {'/'.join(parts)} not present (set $GVLIB_SHARED_DATA or ../shared/data)")
    return SHARED


def test_real_mnist_test_split():
    root = _need("mnist", TEST_IMAGES)
    _need("mnist", TEST_LABELS)
    x, y = data.load_mnist("test", root=root, download=False)
    assert x.shape == (10000, 784) and x.dtype == torch.float32 and y.shape == (10000,)
    assert x.min() == 0 and x.max() == 1 and 0.12 < x.mean() < 0.14
    assert y.bincount().tolist() == MNIST_TEST_COUNTS


def test_real_mnist_train_images_absent_offline_gives_clear_error(tmp_path):
    root = _need("mnist", TRAIN_LABELS)
    if (root / "mnist" / TRAIN_IMAGES).exists():
        pytest.skip("the shared folder holds the training images: nothing absent to ask for")
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_mnist("train", root=root, download=False)
    msg = str(err.value)
    assert TRAIN_IMAGES in msg and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in msg and str(root / "mnist") in msg
    assert TRAIN_LABELS not in msg, "only the absent file is named"


@pytest.mark.parametrize("split", ["valid", "test"])
def test_real_binarized_mnist(split, tmp_path):
    name = f"binarized_mnist_{split}.amat.gz"
    shared = _need("binarized_mnist", name)
    x = data.load_binarized_mnist(split, root=shared, download=False)  # the read-only shared copy, as it is
    assert x.shape == (10000, 784) and x.dtype == torch.float32
    assert set(x.unique().tolist()) == {0.0, 1.0} and 0.12 < x.mean() < 0.14
    if split == "test":  # sorted by class: the first images are 0s, the last 9s; a 0 has an empty centre
        centre = data.centre_mask((28, 28), 0.2).flatten()
        assert x[:500, centre].mean() < x[-500:, centre].mean()


# --------------------------------------------------------------------------------------------------
# loader
# --------------------------------------------------------------------------------------------------

def test_loader_batches_epochs_and_errors():
    x, y = torch.rand(10, 3), torch.arange(10)
    batches = data.loader(x, y, batch_size=4, seed=0)
    assert len(batches) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    e1, e2 = torch.cat([b[1] for b in batches]), torch.cat([b[1] for b in batches])
    assert sorted(e1.tolist()) == list(range(10)) and not torch.equal(e1, e2), "every item once, reshuffled"
    assert all(torch.equal(bx, x[by]) for bx, by in batches), "rows stay paired"
    assert len(data.loader(x, batch_size=4, drop_last=True)) == 2
    assert [b[0].shape[0] for b in data.loader(x, batch_size=4, drop_last=True)] == [4, 4]
    assert torch.equal(torch.cat([b[1] for b in data.loader(x, y, batch_size=3, shuffle=False)]), y)
    assert torch.equal(torch.cat([b[1] for b in data.loader(x, y, batch_size=4, seed=5)]),
                       torch.cat([b[1] for b in data.loader(x, y, batch_size=4, seed=5)])), "seeded"
    with pytest.raises(ValueError, match="same length"):
        data.loader(x, y[:5])
    with pytest.raises(ValueError, match="batch_size"):
        data.loader(x, batch_size=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.loader(x + 1, dynamic_binarize=True)
    with pytest.raises(ValueError, match="at least one tensor"):
        data.loader()


def test_paste_puts_border_and_centre_back_where_they_came_from():
    x = torch.rand(3, 64)
    mask = data.centre_mask((8, 8), 0.5).flatten()
    assert torch.equal(data.paste(x[:, ~mask], x[:, mask], mask), x)
    with pytest.raises(ValueError, match="border must be"):
        data.paste(x[:, mask], x[:, ~mask], mask)
    with pytest.raises(ValueError, match="flat bool"):
        data.paste(x[:, ~mask], x[:, mask], mask.float())
