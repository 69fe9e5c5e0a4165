"""Build gvlib/_data/mnist_subset.npz, the 10,000 MNIST digits that ship with the course, from the original files.

    python scripts/make_mnist_subset.py [--data ../shared/data] [--out gvlib/_data/mnist_subset.npz] [--check]

Inputs (each verified against the checksum gvlib.data records for it):
- MNIST's test split, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (grey levels and labels);
- binarized_mnist_test.amat(.gz), Larochelle & Murray's (2011) fixed binarization of the same 10,000 images.

The binarized test split holds MNIST's test images *stably sorted by label* (all 0s first, each class in MNIST's
order). This script does not take that on trust: it scores every binarized image against every grey image
(the Bernoulli log-likelihood of its pixels under p = v/255, clipped to [1e-3, 1 - 1e-3]) and requires that
(a) the stable sort by label is a one-to-one pairing in which no binarized pixel is on where the grey level is 0,
(b) for at least 99.5 % of the binarized images the best-scoring grey image is the one the sort pairs it with
    (the rest are near-ties between similar 1s; measured: 9,991 of 10,000 agree, the 9 others within 6.3 nats).

Output: the 10,000 images in the order of one permutation by np.random.RandomState(SUBSET_SEED) (NumPy's legacy
generator, whose stream is frozen), cut in that order into train / valid / test (gvlib.data.MNIST_SUBSET_SPLITS):
  grey          uint8 (10000, 784)  MNIST grey levels 0..255
  binary_packed uint8 (10000, 98)   the fixed binarization, np.packbits along the pixels
  labels        uint8 (10000,)      0..9
  mnist_index   uint16 (10000,)     the row of each image in MNIST's test split (provenance)
written as an uncompressed-header .npz (a zip of .npy files, deflated) with fixed timestamps, so the same inputs
give the same bytes: `--check` rebuilds in memory and compares with the committed file.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from gvlib.data import BINARIZED_MNIST_SHA256, MNIST_MD5, MNIST_SUBSET_SEED, MNIST_SUBSET_SPLITS

N = 10_000
D = 784


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def _idx(folder: Path, name: str, header: int) -> np.ndarray:
    path = folder / name
    digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    if digest != MNIST_MD5[name]:
        sys.exit(f"{path}: md5 {digest}, expected {MNIST_MD5[name]}")
    return np.frombuffer(_read(path), dtype=np.uint8, offset=header)


def _amat(folder: Path) -> np.ndarray:
    name = "binarized_mnist_test.amat"
    path = next((p for p in (folder / name, folder / f"{name}.gz") if p.exists()), None)
    if path is None:
        sys.exit(f"{folder}: neither {name} nor {name}.gz is there")
    raw = _read(path)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BINARIZED_MNIST_SHA256[name]:
        sys.exit(f"{path}: sha256 of the text {digest}, expected {BINARIZED_MNIST_SHA256[name]}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(N, 2 * D)[:, 0::2] - ord("0")


def build(data: Path, every: int = 1) -> dict[str, np.ndarray]:
    """The arrays of the .npz; the pairing is verified on every `every`-th binarized image (all of them by default)."""
    grey = _idx(data / "mnist", "t10k-images-idx3-ubyte.gz", 16).reshape(N, D)
    labels = _idx(data / "mnist", "t10k-labels-idx1-ubyte.gz", 8)
    binary_sorted = _amat(data / "binarized_mnist")  # row i = a binarization of grey[pairing[i]]
    pairing = np.argsort(labels, kind="stable")

    b = binary_sorted[::every].astype(np.float32)
    p = np.clip(grey / 255.0, 1e-3, 1 - 1e-3).astype(np.float32)
    score = b @ np.log(p).T + (1 - b) @ np.log1p(-p).T  # (binarized image, grey image)
    agree = float((score.argmax(1) == pairing[::every]).mean())
    impossible = int((binary_sorted.astype(bool) & (grey[pairing] == 0)).sum())
    if impossible or agree < 0.995:
        sys.exit(f"the binarized test split does not pair with MNIST's test images sorted by label: "
                 f"{agree:.2%} best matches agree, {impossible} pixels on where the grey level is 0")
    print(f"pairing verified on {len(b):,} images: {agree:.2%} of best matches agree with the stable sort by label; "
          f"no binarized pixel is on where the grey level is 0")

    binary = np.empty_like(binary_sorted)
    binary[pairing] = binary_sorted  # now row j of binary is the binarization of grey[j]
    order = np.random.RandomState(MNIST_SUBSET_SEED).permutation(N)
    assert sum(MNIST_SUBSET_SPLITS.values()) == N
    return {
        "grey": np.ascontiguousarray(grey[order]),
        "binary_packed": np.packbits(binary[order], axis=1),
        "labels": np.ascontiguousarray(labels[order]),
        "mnist_index": order.astype(np.uint16),
    }


def to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) whose bytes depend only on the arrays: fixed member order and timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"),
                    help="folder with mnist/ and binarized_mnist/ (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=Path("gvlib/_data/mnist_subset.npz"))
    ap.add_argument("--check", action="store_true", help="rebuild in memory and compare with --out; write nothing")
    ap.add_argument("--every", type=int, default=1,
                    help="verify the pairing on every N-th binarized image only (faster; default 1: all)")
    args = ap.parse_args(argv)
    blob = to_bytes(build(args.data, args.every))
    digest = hashlib.sha256(blob).hexdigest()
    if args.check:
        same = args.out.exists() and args.out.read_bytes() == blob
        print(f"{args.out}: {'identical to' if same else 'DIFFERS from'} the rebuild (sha256 {digest})")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(blob)
    print(f"wrote {args.out}: {len(blob):,} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
