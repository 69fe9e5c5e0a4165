"""Data sets of the course (the shipped MNIST subset, digits, MNIST, binarized MNIST, 2-D toys), a mini-batch loader
and inpainting masks.

The MNIST subset (`load_mnist_subset`) is a file inside the package and needs no network; everything below about
folders and downloads concerns the full MNIST files.

Where the files live: `data_root()` is `root`, else ``$GVLIB_DATA``, else ``$XDG_CACHE_HOME/gvlib``
(``~/.cache/gvlib``); MNIST goes to ``<root>/mnist/`` and binarized MNIST to ``<root>/binarized_mnist/``,
the layout of the course's ``shared/data`` folder, so ``GVLIB_DATA=/path/to/shared/data`` uses it as is.
Every file is checked against the checksum in this module before it is used; downloads are written to a
temporary file in the same folder, verified, then renamed, so a failed download leaves nothing behind. A file
whose checksum is wrong is moved aside to NAME.corrupt (never deleted: it may be someone's shared copy) and
the error says so and what to do.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import shutil
import struct
import sys
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from ._files import atomic_write, move_aside
from ._validate import choice, positive_int, probability

__all__ = [
    "load_digits", "load_mnist_subset", "load_mnist", "load_binarized_mnist", "toy_2d", "toy_2d_log_prob", "centre_mask", "paste",
    "loader", "data_root", "DATASETS", "DataError", "DataNotFoundError", "ChecksumError",
    "DIGITS_SPLITS", "MNIST_SUBSET_SPLITS", "MNIST_SUBSET_KINDS", "MNIST_SUBSET_SIZES", "MNIST_MD5", "MNIST_MIRRORS", "MNIST_SPLITS", "BINARIZED_MNIST_SHA256",
    "BINARIZED_MNIST_MIRRORS", "TOY_2D_NAMES", "RING8_MEANS", "RING8_STD", "RING8_RADIUS", "GRID25_MEANS", "GRID25_STD",
    "GRID25_SPACING",
]

# --------------------------------------------------------------------------------------------------
# Tables (module constants: the single source of every size, seed, checksum and mirror below)
# --------------------------------------------------------------------------------------------------

#: scikit-learn digits: one permutation of the 1,797 images by np.random.RandomState(DIGITS_SEED)
#: (NumPy's legacy generator, whose stream is frozen), cut in this order into train / valid / test.
DIGITS_SPLITS = {"train": 1197, "valid": 300, "test": 300}
DIGITS_SEED = 0
#: seed of the "fixed" binarization (one Bernoulli draw of every pixel, the same on every call).
DIGITS_FIXED_BINARIZATION_SEED = 1

#: The four IDX files of MNIST (LeCun, Cortes & Burges) and their canonical MD5s (the values torchvision checks).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: Tried in this order; every file is verified whichever mirror it came from.
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
#: split -> (images file, labels file, rows taken from it). "valid" is the last 10,000 training images,
#: "train50k" the first 50,000 (the same cut as binarized MNIST's train / valid); "train" is all 60,000
#: (the IWAE paper's 60,000 / 10,000), so it *contains* "valid": early-stop on "valid" with "train50k".
MNIST_VALID_SIZE = 10_000
MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", slice(None)),
    "train50k": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", slice(None, -MNIST_VALID_SIZE)),
    "valid": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", slice(-MNIST_VALID_SIZE, None)),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", slice(None)),
}
#: seed of load_mnist(binarize="fixed"), one draw per IDX file (so "valid" is a slice of "train"'s draw).
MNIST_FIXED_BINARIZATION_SEED = 0

#: Fixed binarization of Larochelle & Murray (2011): SHA-256 of each *uncompressed* .amat file
#: (= the values tensorflow/datasets records for the official URLs).
BINARIZED_MNIST_SHA256 = {
    "binarized_mnist_train.amat": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "binarized_mnist_valid.amat": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "binarized_mnist_test.amat": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
BINARIZED_MNIST_MIRRORS = ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",)
BINARIZED_MNIST_SPLITS = ("train", "valid", "test")

#: The MNIST subset that ships inside gvlib (gvlib/_data/mnist_subset.npz, built by scripts/make_mnist_subset.py):
#: MNIST's 10,000 test images, in grey levels and in Larochelle & Murray's fixed binarization, with labels, in the
#: order of one permutation by np.random.RandomState(MNIST_SUBSET_SEED), cut in that order into these splits.
MNIST_SUBSET_FILE = "mnist_subset.npz"
MNIST_SUBSET_SHA256 = "a71793a3e7087ce500eadc5623d16bd36cbb66e85032a53c13e66913082c3248"
MNIST_SUBSET_SEED = 2011
MNIST_SUBSET_SPLITS = {"train": 7000, "valid": 1000, "test": 2000}
MNIST_SUBSET_KINDS = ("binary", "grey")
MNIST_SUBSET_SIZES = (28, 14)

#: Human-readable summary of what each loader returns (sizes per split, image shape, labels, origin).
DATASETS = {
    "digits": {"loader": "load_digits", "splits": DIGITS_SPLITS, "image_shape": (8, 8), "labels": True,
               "source": "scikit-learn's bundled copy of the UCI optical digits (offline)"},
    "mnist_subset": {"loader": "load_mnist_subset", "image_shape": (28, 28), "labels": True,
                     "splits": MNIST_SUBSET_SPLITS, "kinds": MNIST_SUBSET_KINDS, "sizes": MNIST_SUBSET_SIZES,
                     "checksum": "sha256 of the packaged .npz", "files": {MNIST_SUBSET_FILE: MNIST_SUBSET_SHA256},
                     "source": "MNIST's test split (LeCun, Cortes & Burges; CC BY-SA 3.0) with Larochelle & Murray's "
                               "(2011) fixed binarization of it; shipped inside gvlib (offline)"},
    "mnist": {"loader": "load_mnist", "folder": "mnist", "image_shape": (28, 28), "labels": True,
              "splits": {"train": 60_000, "train50k": 50_000, "valid": 10_000, "test": 10_000},
              "checksum": "md5 of the .gz file", "files": MNIST_MD5, "mirrors": MNIST_MIRRORS,
              "source": "LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/"},
    "binarized_mnist": {"loader": "load_binarized_mnist", "folder": "binarized_mnist", "image_shape": (28, 28),
                        "labels": False, "splits": {"train": 50_000, "valid": 10_000, "test": 10_000},
                        "checksum": "sha256 of the uncompressed .amat", "files": BINARIZED_MNIST_SHA256,
                        "mirrors": BINARIZED_MNIST_MIRRORS,
                        "source": "Larochelle & Murray (2011), fixed binarization used by Burda et al. (2016)"},
}

_BINARIZE = (None, "fixed", "dynamic")
_DOWNLOAD_TIMEOUT_S = 60


class DataError(RuntimeError):
    """A data file is missing, corrupted or malformed (the message says which file and what to do)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The files a split needs are absent and could not be downloaded."""


class ChecksumError(DataError):
    """A file's checksum is not the expected one (the file has been moved aside to NAME.corrupt where possible)."""


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------

def _check_dtype(dtype):
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")


def _check_download(download):
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")


# --------------------------------------------------------------------------------------------------
# Files: where they live, checksums, atomic downloads
# --------------------------------------------------------------------------------------------------

def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root`, else $GVLIB_DATA, else $XDG_CACHE_HOME/gvlib (default ~/.cache/gvlib); not created."""
    if root is None:
        root = os.environ.get("GVLIB_DATA") or None
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        root = os.path.join(cache, "gvlib")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}")
    return Path(root).expanduser()


def _new_hash(algorithm: str):
    """A hashlib object; md5 is asked for as a checksum (usedforsecurity=False), so FIPS builds of Python allow it."""
    return hashlib.new(algorithm, usedforsecurity=False)


def _hash_file(path: Path, algorithm: str, *, gunzip: bool = False) -> str:
    """Hex digest of the file's bytes (of its decompressed bytes with `gunzip`), read in 1 MiB blocks."""
    h = _new_hash(algorithm)
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bad_file(path: Path, problem: str, fix: str) -> ChecksumError:
    """Move `path` (a corrupted file) aside to NAME.corrupt and return the error that says so and what to do."""
    return ChecksumError(f"{path}: {problem}; {move_aside(path)}. {fix}")


def _missing_error(title: str, folder: Path, files: dict, algorithm: str, mirrors, reasons=()) -> DataNotFoundError:
    """The error for absent files: names every file, its checksum, the folder to put it in and where to get it."""
    width = max(len(n) for n in files)
    lines = [f"{title}: these files are needed in {folder}:"]
    lines += [f"  {name:<{width}}  {algorithm} {digest}" for name, digest in files.items()]
    lines.append("Get them from " + " or ".join(mirrors) + f", check their {algorithm}, and put them in that folder"
                 " (or pass root=..., or set $GVLIB_DATA to a folder that holds it).")
    if reasons:
        lines.append("Downloading failed:")
        lines += [f"  {r}" for r in reasons]
    else:
        lines.append("They are absent and download=False; call again with download=True to fetch them.")
    return DataNotFoundError("\n".join(lines))


def _fetch_url(url: str, out, timeout: float = _DOWNLOAD_TIMEOUT_S) -> None:
    """Stream the bytes at `url` into the binary file object `out` (the only function that touches the network)."""
    from . import __version__
    request = urllib.request.Request(url, headers={"User-Agent": f"gvlib/{__version__} (course data loader)"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http mirrors are checksummed)
        shutil.copyfileobj(response, out, 1 << 20)


class _HashingWriter:
    """A write-only file wrapper that hashes everything written through it."""

    def __init__(self, f, algorithm):
        self.f, self.h, self.n = f, _new_hash(algorithm), 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)


def _download(name: str, mirrors, dest: Path, digest: str, algorithm: str, title: str, files: dict) -> Path:
    """Fetch `name` from the first mirror that serves it with the right checksum, atomically, into `dest`."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _missing_error(title, dest.parent, files, algorithm, mirrors,
                             [f"cannot create the folder {dest.parent}: {e}"]) from e
    reasons = []
    for mirror in mirrors:
        url = mirror + name
        if os.environ.get("GVLIB_QUIET", "") not in ("1", "true", "yes"):
            print(f"gvlib: downloading {url} -> {dest}", file=sys.stderr, flush=True)

        def write(f, url=url):
            w = _HashingWriter(f, algorithm)
            _fetch_url(url, w)
            if w.h.hexdigest() != digest:
                raise ChecksumError(f"{url} sent {w.n} bytes with {algorithm} {w.h.hexdigest()}, expected {digest}")

        try:
            atomic_write(dest, write)
            return dest
        except Exception as e:  # URLError, timeouts, http.client errors, a wrong checksum: try the next mirror
            reasons.append(f"{url}: {type(e).__name__}: {e}")
    raise _missing_error(title, dest.parent, files, algorithm, mirrors, reasons)


def _stat_key(path: Path):
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


# --------------------------------------------------------------------------------------------------
# MNIST (IDX files)
# --------------------------------------------------------------------------------------------------

def _parse_idx_uint8(raw: bytes, source: str) -> np.ndarray:
    """The array of an IDX file of unsigned bytes (magic 0x00 0x00 0x08 ndim, big-endian uint32 dims, data).

    Only ever called on a file whose MD5 matched one of the four MNIST files, which are all of this kind; the
    header is still checked so that a wrong table entry cannot turn into a silent misread.
    """
    ndim = raw[3] if len(raw) >= 4 else 0
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or ndim not in (1, 3):
        raise DataError(f"{source}: not an IDX file of unsigned bytes with 1 or 3 dims (header {raw[:4]!r})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise DataError(f"{source}: IDX header announces shape {dims} but {len(raw) - header} bytes follow it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _verified_idx(path: str, size: int, mtime_ns: int, md5: str) -> np.ndarray:
    """Check the MD5 of the (gzipped) IDX file at `path`, then parse it; read-only array, cached per file version."""
    p = Path(path)
    actual = _hash_file(p, "md5")
    if actual != md5:
        raise _bad_file(p, f"md5 {actual} is not the expected {md5} ({size} bytes: a truncated or corrupted copy)",
                        "Call again with download=True to fetch a fresh copy, or copy a good one "
                        f"(md5 {md5}) to {p.parent}.")
    try:
        raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{p}: cannot be decompressed ({type(e).__name__}: {e})") from e
    array = _parse_idx_uint8(raw, str(p))
    array.setflags(write=False)
    return array


def _mnist_file(folder: Path, name: str, download: bool, title: str, needed: dict) -> np.ndarray:
    path = folder / name
    if not path.exists():
        if not download:
            raise _missing_error(title, folder, needed, "md5", MNIST_MIRRORS)
        _download(name, MNIST_MIRRORS, path, MNIST_MD5[name], "md5", title, needed)
    return _verified_idx(*_stat_key(path), MNIST_MD5[name])


@functools.lru_cache(maxsize=2)
def _mnist_fixed_draw(key) -> np.ndarray:
    """uint8 {0,1}: one Bernoulli(v/255) draw per pixel v of the images file `key`, fixed by its seed."""
    images = _verified_idx(*key)
    images = images.reshape(images.shape[0], -1)
    seed = MNIST_FIXED_BINARIZATION_SEED + (0 if "train" in Path(key[0]).name else 1)
    # r uniform on {0, ..., 254}: P(r < v) = v / 255 exactly; NumPy's legacy RandomState stream is frozen.
    r = np.random.RandomState(seed).randint(0, 255, size=images.shape, dtype=np.uint8)
    out = (r < images).astype(np.uint8)
    out.setflags(write=False)
    return out


def load_mnist(split: str = "train", root=None, download: bool = True, binarize: str | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST: x (n, 784) = v / 255 in [0, 1], y (n,) int64; n = 60,000 train | 50,000 train50k | 10,000 valid, test.

    The four gzipped IDX files are read from ``data_root(root)/mnist`` (downloaded there from `MNIST_MIRRORS`
    when absent and `download`), each checked against `MNIST_MD5`; a file with a wrong MD5 is removed and
    the error says so; absent files with ``download=False`` (or no network) give an error that names them,
    their MD5s and the folder. "train" is all 60,000 training images (the IWAE paper's 60,000 / 10,000) and so
    *contains* "valid" (its last 10,000): train on "train50k" when you early-stop on "valid".
    `binarize`: None = grey levels; "fixed" = one Bernoulli(v/255) draw per pixel, seeded, the same on every call
    (not Larochelle's binarization: that is `load_binarized_mnist`); "dynamic" = grey levels, to be paired with
    ``loader(x, y, dynamic_binarize=True)``, which draws fresh pixels every epoch (Burda et al.'s setting).
    Returns copies (callers may modify them); the parsed files are cached in memory.
    """
    choice("MNIST split", split, tuple(MNIST_SPLITS))
    choice("binarize", binarize, _BINARIZE)
    _check_download(download)
    _check_dtype(dtype)
    images_name, labels_name, rows = MNIST_SPLITS[split]
    folder = data_root(root) / "mnist"
    title = f"MNIST split {split!r}"
    needed = {n: MNIST_MD5[n] for n in (images_name, labels_name)}
    if not download:  # report every absent file at once
        absent = {n: d for n, d in needed.items() if not (folder / n).exists()}
        if absent:
            raise _missing_error(title, folder, absent, "md5", MNIST_MIRRORS)
    images = _mnist_file(folder, images_name, download, title, needed)
    labels = _mnist_file(folder, labels_name, download, title, needed)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{folder / images_name}: expected uint8 images of shape (n, rows, cols), "
                        f"got {images.dtype} of shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{folder / labels_name}: expected {images.shape[0]} labels (one per image), "
                        f"got shape {labels.shape}")
    if binarize == "fixed":
        pixels = _mnist_fixed_draw(_stat_key(folder / images_name) + (MNIST_MD5[images_name],))
        x = torch.from_numpy(np.array(pixels[rows])).to(dtype)
    else:  # uint8 -> dtype is exact; the division happens in dtype
        x = torch.from_numpy(np.array(images.reshape(images.shape[0], -1)[rows])).to(dtype).div_(255)
    y = torch.from_numpy(labels[rows].astype(np.int64))
    return x, y


# --------------------------------------------------------------------------------------------------
# Binarized MNIST (Larochelle & Murray's .amat text files)
# --------------------------------------------------------------------------------------------------

_AMAT_D = 784


def _parse_amat(raw: bytes, source: str) -> np.ndarray:
    """uint8 (n, 784) of the official .amat text: per line 784 digits 0/1 separated by single spaces, then a newline.

    Only ever called on text whose SHA-256 matched the official file, which has exactly this layout.
    """
    width = 2 * _AMAT_D  # "0 1 ... 0\n": 784 digits, 783 spaces, 1 newline
    if not raw or len(raw) % width:
        raise DataError(f"{source}: {len(raw)} bytes is not a whole number of {width}-byte .amat lines")
    values = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)[:, 0::2] - ord("0")
    if (values > 1).any():
        raise DataError(f"{source}: holds characters other than the digits 0 and 1 where pixels should be")
    return values


@functools.lru_cache(maxsize=3)
def _verified_amat(path: str, size: int, mtime_ns: int, sha256: str) -> np.ndarray:
    """Bit-packed uint8 (n, 98) of the .amat(.gz) at `path` after checking the SHA-256 of its uncompressed text."""
    p = Path(path)
    fix = ("Call again with download=True to fetch a fresh copy, or copy a good one (sha256 of the uncompressed "
           f"file {sha256}) to {p.parent}.")
    try:
        raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _bad_file(p, f"is not a complete gzip file ({type(e).__name__}: {e})", fix) from e
    actual = hashlib.sha256(raw).hexdigest()
    if actual != sha256:
        raise _bad_file(p, f"sha256 of the uncompressed content {actual} is not the expected {sha256} "
                           f"({len(raw)} bytes: a truncated or corrupted copy)", fix)
    packed = np.packbits(_parse_amat(raw, str(p)), axis=1)  # 8x smaller in memory; unpacked per call
    packed.setflags(write=False)
    return packed


def _binarized_packed(folder: Path, name: str, download: bool, title: str) -> np.ndarray:
    sha256 = BINARIZED_MNIST_SHA256[name]
    present = [s for s in (folder / name, folder / f"{name}.gz") if s.exists()]
    if not present:
        needed = {name: sha256}
        if not download:
            raise _missing_error(title, folder, needed, "sha256 (uncompressed; .gz accepted)", BINARIZED_MNIST_MIRRORS)
        _download(name, BINARIZED_MNIST_MIRRORS, folder / name, sha256, "sha256", title, needed)
        present = [folder / name]
    return _verified_amat(*_stat_key(present[0]), sha256)


def load_binarized_mnist(split: str = "train", root=None, download: bool = True,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Larochelle & Murray's fixed binarized MNIST: x (n, 784) of 0/1, no labels; n = 50,000 train | 10,000 valid, test.

    The data of the IWAE paper's fixed-binarization results.
    Reads ``binarized_mnist_{split}.amat`` (or ``.amat.gz``) from ``data_root(root)/binarized_mnist``,
    downloading the plain file from `BINARIZED_MNIST_MIRRORS` when absent and `download`; its uncompressed
    text must have the SHA-256 in `BINARIZED_MNIST_SHA256` (a wrong one: the file is moved aside to NAME.corrupt
    and the error says so; absent with ``download=False`` or no network: an error naming the file, its SHA-256
    and the folder). The parsed arrays are cached in memory (bit-packed) for the session.
    Warning: the **test split is sorted by class** (all 0s first): shuffle before any order-sensitive use.
    Returns a copy (callers may modify it).
    """
    choice("binarized MNIST split", split, BINARIZED_MNIST_SPLITS)
    _check_download(download)
    _check_dtype(dtype)
    folder = data_root(root) / "binarized_mnist"
    packed = _binarized_packed(folder, f"binarized_mnist_{split}.amat", download,
                               f"binarized MNIST split {split!r}")
    return torch.from_numpy(np.unpackbits(packed, axis=1, count=_AMAT_D)).to(dtype)


# --------------------------------------------------------------------------------------------------
# The MNIST subset shipped with gvlib (28x28 digits offline): the cpu profile's legible digits
# --------------------------------------------------------------------------------------------------

def _subset_resource():
    """The packaged file (an importlib.resources Traversable): gvlib/_data/mnist_subset.npz."""
    from importlib import resources

    return resources.files("gvlib") / "_data" / MNIST_SUBSET_FILE


_SUBSET_FIX = ("It is part of gvlib and must not be edited: in a clone, restore it with "
               "`git checkout -- gvlib/_data/mnist_subset.npz`; in an installed copy, reinstall "
               "(`pip install --force-reinstall --no-deps gvlib`, or `pip install -e .` in the course's folder).")


@functools.lru_cache(maxsize=1)
def _subset_arrays(path: str, size: int, mtime_ns: int) -> dict:
    """{"grey", "binary", "labels"} of the packaged file after checking its SHA-256; read-only, cached per version."""
    p = Path(path)
    blob = p.read_bytes()
    actual = hashlib.sha256(blob).hexdigest()
    if actual != MNIST_SUBSET_SHA256:  # never moved aside or deleted: it is the package's own file
        raise ChecksumError(f"{p}: sha256 {actual} is not the expected {MNIST_SUBSET_SHA256} ({size} bytes: a "
                            f"truncated, corrupted or edited copy). {_SUBSET_FIX}")
    import io

    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        arrays = {"grey": z["grey"], "binary": np.unpackbits(z["binary_packed"], axis=1, count=784),
                  "labels": z["labels"].astype(np.int64)}
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def _downsample_2x2(pixels: np.ndarray, kind: str) -> np.ndarray:
    """(n, 784) -> (n, 196): sums of the 2x2 blocks of each 28x28 image (uint16), or 0/1 by the binary rule."""
    n = pixels.shape[0]
    blocks = pixels.reshape(n, 14, 2, 14, 2).astype(np.uint16).sum(axis=(2, 4)).reshape(n, 196)
    return (blocks >= 2).astype(np.uint8) if kind == "binary" else blocks


def load_mnist_subset(split: str = "train", kind: str = "binary", size: int = 28,
                      dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST digits shipped with gvlib: x (n, size*size) in [0, 1], y (n,) int64; n = 7,000 | 1,000 | 2,000.

    Offline, from the package's own file (checked against `MNIST_SUBSET_SHA256` on first use; a missing or
    corrupted file raises an error naming it and saying how to restore it; it is never moved or deleted).
    The 10,000 images are MNIST's test split (LeCun, Cortes & Burges; CC BY-SA 3.0), shuffled once
    (`MNIST_SUBSET_SEED`) and cut into `split` "train" 7,000 | "valid" 1,000 | "test" 2,000: disjoint, fixed.
    `kind`: "binary" = Larochelle & Murray's (2011) fixed binarization of each image (0/1), the images of the
    binarized-MNIST likelihood literature; "grey" = grey levels v / 255 of the same images.
    `size`: 28, or 14 for 14x14 images made from 2x2 blocks: the block's mean grey level, or for "binary" 1
    where at least 2 of the block's 4 pixels are 1. Rows are row-major images (``x.view(-1, size, size)``).
    For full-scale work (60,000 training images) use `load_mnist` or `load_binarized_mnist`.
    """
    choice("MNIST subset split", split, tuple(MNIST_SUBSET_SPLITS))
    choice("MNIST subset kind", kind, MNIST_SUBSET_KINDS)
    if isinstance(size, bool) or size not in MNIST_SUBSET_SIZES:
        raise ValueError(f"MNIST subset size must be one of {', '.join(map(str, MNIST_SUBSET_SIZES))} "
                         f"(pixels per side), got {size!r}")
    _check_dtype(dtype)
    from importlib import resources

    resource = _subset_resource()
    try:
        with resources.as_file(resource) as path:  # a real path even when gvlib is imported from a zip
            arrays = _subset_arrays(*_stat_key(path))
    except FileNotFoundError as e:
        raise DataNotFoundError(f"{resource}: the MNIST subset that ships with gvlib is missing. {_SUBSET_FIX}") from e
    start = 0
    for name, n in MNIST_SUBSET_SPLITS.items():
        if name == split:
            break
        start += n
    rows = slice(start, start + MNIST_SUBSET_SPLITS[split])
    pixels = arrays[kind][rows]
    if size == 14:
        pixels = _downsample_2x2(pixels, kind)
        scale = 1 if kind == "binary" else 4 * 255
    else:
        scale = 1 if kind == "binary" else 255
    x = torch.from_numpy(np.array(pixels)).to(dtype)
    if scale != 1:
        x.div_(scale)
    return x, torch.from_numpy(np.array(arrays["labels"][rows]))


# --------------------------------------------------------------------------------------------------
# scikit-learn digits (8x8, offline): the course's default data
# --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _digits_arrays():
    """(pixels uint8 0..16 (1797, 64), labels int64, fixed draw uint8 0/1, {split: row indices}), read-only."""
    from sklearn.datasets import load_digits as _sklearn_digits

    bunch = _sklearn_digits()
    pixels, labels = bunch.data.astype(np.uint8), bunch.target.astype(np.int64)
    n = sum(DIGITS_SPLITS.values())
    if pixels.shape != (n, 64) or not np.array_equal(pixels, bunch.data):
        raise DataError(f"scikit-learn's digits changed: expected {n} integer images of 64 pixels, "
                        f"got shape {bunch.data.shape}")
    order = np.random.RandomState(DIGITS_SEED).permutation(n)  # legacy generator: a stream frozen forever
    splits, start = {}, 0
    for name, size in DIGITS_SPLITS.items():
        splits[name] = order[start:start + size]
        start += size
    # r uniform on {0, ..., 15}: P(r < v) = v / 16 exactly, one draw per pixel of the whole set.
    r = np.random.RandomState(DIGITS_FIXED_BINARIZATION_SEED).randint(0, 16, size=pixels.shape, dtype=np.uint8)
    fixed = (r < pixels).astype(np.uint8)
    for a in (pixels, labels, fixed, *splits.values()):
        a.setflags(write=False)
    return pixels, labels, fixed, splits


def load_digits(split: str = "train", binarize: str | None = None,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 8x8 digits: x (n, 64) = v / 16 in [0, 1], y (n,) int64; n = 1,197 train | 300 valid | 300 test.

    The splits are one seeded permutation of the 1,797 images (`DIGITS_SEED`, NumPy's frozen legacy generator),
    cut in that order: disjoint, and the same forever.
    `binarize`: None = grey levels (17 values k/16); "fixed" = one Bernoulli(v/16) draw per pixel, seeded, the
    same on every call and in every split; "dynamic" = the grey levels, to be paired with
    ``loader(x, y, dynamic_binarize=True)``, which draws fresh pixels every epoch (evaluate on "fixed" pixels
    or on the grey levels' expected likelihood). Works offline; arrays are cached in memory and copies returned.
    """
    choice("digits split", split, tuple(DIGITS_SPLITS))
    choice("binarize", binarize, _BINARIZE)
    _check_dtype(dtype)
    pixels, labels, fixed, splits = _digits_arrays()
    rows = splits[split]
    if binarize == "fixed":
        x = torch.from_numpy(fixed[rows]).to(dtype)  # fancy indexing copies
    else:
        x = torch.from_numpy(pixels[rows]).to(dtype).div_(16)
    return x, torch.from_numpy(labels[rows])


# --------------------------------------------------------------------------------------------------
# 2-D toy densities
# --------------------------------------------------------------------------------------------------

TOY_2D_NAMES = ("ring8", "grid25", "moons", "spiral", "checkerboard")
#: ring8: equal mixture of 8 isotropic Gaussians N(mu_k, RING8_STD^2 I), mu_k on a circle of radius RING8_RADIUS
#: (the mode-collapse benchmark of Metz et al. 2017 and Srivastava et al. 2017: radius 2, sd 0.02).
RING8_RADIUS = 2.0
RING8_STD = 0.02
RING8_MEANS = tuple((RING8_RADIUS * math.cos(2 * math.pi * k / 8), RING8_RADIUS * math.sin(2 * math.pi * k / 8))
                    for k in range(8))
#: grid25: equal mixture of 25 isotropic Gaussians N(mu_k, GRID25_STD^2 I), mu_k on the 5x5 grid of spacing
#: GRID25_SPACING centred at 0, {-4, -2, 0, 2, 4}^2 (the same papers' grid benchmark).
GRID25_SPACING = 2.0
GRID25_STD = 0.02
GRID25_MEANS = tuple((GRID25_SPACING * i, GRID25_SPACING * j) for i in range(-2, 3) for j in range(-2, 3))
#: checkerboard: uniform on the 8 "black" squares (side 2) of a 4x4 board on [-4, 4)^2: density 1/32 there.
CHECKERBOARD_HALF_WIDTH = 4.0
#: moons: two interleaved half circles (scaled by 2, centred); spiral: two arms t (-cos t, sin t) / 3, t in [0, 3 pi].
MOONS_NOISE = 0.1
SPIRAL_NOISE = 0.1
_TOY_MIXTURES = {"ring8": (RING8_MEANS, RING8_STD), "grid25": (GRID25_MEANS, GRID25_STD)}


def toy_2d(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """n points (n, 2) float32 from the toy density `name` in TOY_2D_NAMES, reproducible from seed (+ $GVLIB_SEED_OFFSET)."""
    from . import _shifted

    choice("toy_2d name", name, TOY_2D_NAMES)
    n = positive_int("n", n)
    rs = np.random.RandomState(_shifted(seed) % 2**32)
    if name in _TOY_MIXTURES:
        means, std = _TOY_MIXTURES[name]
        means = np.asarray(means)
        x = means[rs.randint(0, len(means), size=n)] + std * rs.standard_normal((n, 2))
    elif name == "moons":
        upper = rs.rand(n) < 0.5
        t = math.pi * rs.rand(n)
        arc = np.where(upper[:, None], np.stack([np.cos(t), np.sin(t)], 1),
                       np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
        x = 2 * (arc - np.array([0.5, 0.25])) + MOONS_NOISE * rs.standard_normal((n, 2))
    elif name == "spiral":
        t = 3 * math.pi * np.sqrt(rs.rand(n))  # sqrt: about uniform along the arms
        arm = np.where(rs.rand(n) < 0.5, 1.0, -1.0)[:, None]
        x = arm * np.stack([-t * np.cos(t), t * np.sin(t)], 1) / 3 + SPIRAL_NOISE * rs.standard_normal((n, 2))
    else:  # checkerboard: column c = floor(x1) in {-2..1}, row parity follows the column's
        x1 = 4 * rs.rand(n) - 2
        x2 = rs.rand(n) - 2 * rs.randint(0, 2, size=n) + np.floor(x1) % 2
        x = (CHECKERBOARD_HALF_WIDTH / 2) * np.stack([x1, x2], 1)
    return torch.from_numpy(x).to(torch.float32)


def toy_2d_log_prob(name: str, x: torch.Tensor) -> torch.Tensor:
    """Exact log p(x) of toy_2d's `name`, (..., 2) -> (...): log (1/K) sum_k N(x; mu_k, s^2 I) for the mixtures.

    ring8 and grid25 use `RING8_MEANS`/`RING8_STD` and `GRID25_MEANS`/`GRID25_STD`; checkerboard is -log 32 on its
    8 squares and -inf elsewhere; moons and spiral raise NotImplementedError (no closed form). Computed in x's
    dtype and on x's device.
    """
    choice("toy_2d name", name, TOY_2D_NAMES)
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x) or x.ndim < 1 or x.shape[-1] != 2:
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating tensor of shape (..., 2), got {got}")
    if name in _TOY_MIXTURES:
        means, std = _TOY_MIXTURES[name]
        mu = torch.tensor(means, dtype=x.dtype, device=x.device)
        sq = ((x.unsqueeze(-2) - mu) ** 2).sum(-1)  # (..., K)
        log_comp = -sq / (2 * std ** 2) - math.log(2 * math.pi * std ** 2)
        return torch.logsumexp(log_comp, dim=-1) - math.log(len(means))
    if name == "checkerboard":
        h = CHECKERBOARD_HALF_WIDTH
        side = h / 2
        inside = ((x >= -h) & (x < h)).all(-1)
        black = torch.remainder(torch.floor(x[..., 0] / side) + torch.floor(x[..., 1] / side), 2) == 0
        log_density = -math.log(8 * side ** 2)
        return torch.where(inside & black, torch.full_like(x[..., 0], log_density),
                           torch.full_like(x[..., 0], -math.inf))
    raise NotImplementedError(
        f"toy_2d_log_prob({name!r}): this density is a curve blurred by Gaussian noise; it has no closed form "
        "(it is an integral of the noise along the curve). Estimate it (a KDE of many toy_2d samples) or use "
        f"one whose density is exact: {', '.join(repr(k) for k in (*_TOY_MIXTURES, 'checkerboard'))}")


# --------------------------------------------------------------------------------------------------
# Inpainting mask
# --------------------------------------------------------------------------------------------------

def centre_mask(image_shape, frac: float, device=None) -> torch.Tensor:
    """Bool mask of shape `image_shape` ((H, W) or (C, H, W)), True on the centred round(frac H) x round(frac W) box.

    `frac` in (0, 1) is the fraction of each *side* that is hidden (area about frac^2 H W); True marks the pixels
    to hide (inpaint), the same in every channel, centred to within half a pixel; rounding is half up and the box
    has at least one pixel. For flattened images use ``centre_mask((28, 28), 0.5).flatten()``.
    """
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) not in (2, 3) or \
            any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
        raise ValueError(f"image_shape must be (H, W) or (C, H, W) of positive ints, got {image_shape!r}")
    probability("frac (the fraction of each side that is hidden)", frac)
    height, width = shape[-2:]
    h = max(1, math.floor(frac * height + 0.5))  # round half up
    w = max(1, math.floor(frac * width + 0.5))
    top, left = (height - h) // 2, (width - w) // 2
    mask = torch.zeros(shape, dtype=torch.bool, device=device)
    mask[..., top:top + h, left:left + w] = True
    return mask


def paste(border: torch.Tensor, centre: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Whole flat images from their two parts: out[:, ~mask] = border (n, D - m), out[:, mask] = centre (n, m) -> (n, D).

    `mask` is a flat bool mask of D pixels (e.g. ``centre_mask((8, 8), 0.5).flatten()``) with m True entries.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 1:
        raise ValueError("mask must be a flat bool tensor of D pixels, e.g. centre_mask((8, 8), 0.5).flatten()")
    m = int(mask.sum())
    if border.dim() != 2 or centre.dim() != 2 or border.shape[0] != centre.shape[0] \
            or border.shape[1] != mask.numel() - m or centre.shape[1] != m:
        raise ValueError(f"border must be (n, {mask.numel() - m}) and centre (n, {m}) for this mask, got "
                         f"{tuple(border.shape)} and {tuple(centre.shape)}")
    out = border.new_empty(border.shape[0], mask.numel())
    out[:, ~mask.to(border.device)] = border
    out[:, mask.to(border.device)] = centre.to(border.dtype)
    return out



# --------------------------------------------------------------------------------------------------
# Mini-batches
# --------------------------------------------------------------------------------------------------

class _Loader:
    """Re-iterable mini-batches over equally long tensors; see `loader`."""

    def __init__(self, tensors, batch_size, shuffle, dynamic_binarize, seed, drop_last):
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.dynamic_binarize = dynamic_binarize
        self.drop_last = drop_last
        from . import _shifted

        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(_shifted(seed) % 2**63)
        else:  # from torch's global generator, which seed_everything seeds
            self.generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))

    def __len__(self):
        n = self.tensors[0].shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = self.tensors[0].shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size].to(self.tensors[0].device)
            batch = [t[idx] for t in self.tensors]
            if self.dynamic_binarize:
                x = batch[0]
                u = torch.rand(x.shape, generator=self.generator).to(device=x.device, dtype=x.dtype)
                batch[0] = (u < x).to(x.dtype)
            yield tuple(batch)


def loader(*tensors: torch.Tensor, batch_size: int = 100, shuffle: bool = True,
           dynamic_binarize: bool = False, seed: int | None = None, drop_last: bool = False) -> _Loader:
    """Re-iterable mini-batches (x[idx], y[idx], ...) of size `batch_size`, reshuffled each pass (epoch).

    With `dynamic_binarize`, x (values in [0, 1]) is replaced by a fresh Bernoulli(x) draw every time a batch
    is made (dynamic binarization: new pixels every epoch); `seed` (+ $GVLIB_SEED_OFFSET) fixes the order and
    the draws; without it they follow torch's global generator.
    """
    if not tensors:
        raise ValueError("loader needs at least one tensor, e.g. loader(x) or loader(x, y)")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"loader's argument {i} must be a torch.Tensor, got {type(t).__name__}")
    if any(t.ndim == 0 for t in tensors):
        raise ValueError(f"loader needs tensors with a batch dimension, got shapes {[tuple(t.shape) for t in tensors]}")
    n = tensors[0].shape[0]
    bad = [tuple(t.shape) for t in tensors if t.shape[0] != n]
    if bad:
        raise ValueError(f"all tensors must have the same length (first dim) {n}, got shapes "
                         f"{[tuple(t.shape) for t in tensors]}")
    batch_size = positive_int("batch_size", batch_size)
    if dynamic_binarize:
        x = tensors[0]
        if not torch.is_floating_point(x) or (x.numel() and (x.min() < 0 or x.max() > 1)):
            got = f"range [{x.min().item()}, {x.max().item()}]" if torch.is_floating_point(x) else "integers"
            raise ValueError(f"dynamic_binarize needs x as floats in [0, 1] (pixel intensities), got dtype {x.dtype} "
                             f"with {got}")
    return _Loader(tensors, batch_size, shuffle, dynamic_binarize, seed, drop_last)
