#!/usr/bin/env bash
# gvlib as a learner may install it: a fresh venv, its five dependencies, then the wheel of this checkout
# (`pip wheel --no-deps .`, not editable; its size is printed). The shipped MNIST subset must load from another
# folder with the network refused. Every gvlib module must import, nothing from Jupyter may be imported, and coursekit must say
# clearly that it needs the course extra. Usage: bash scripts/check-packaging.sh [PYTHON] [pip flags]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}; shift || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
pip="$tmp/venv/bin/python -m pip"
$pip install -q "$@" torch numpy matplotlib scikit-learn tqdm
$pip wheel -q --no-deps -w "$tmp/wheel" .
wheel=$(ls "$tmp"/wheel/gvlib-*.whl)
echo "packaging: $(basename "$wheel") is $(du -k "$wheel" | cut -f1) KiB; it holds $("$PY" -c 'import sys, zipfile; print(sorted(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if "/_data/" in n))' "$wheel")"
$pip install -q --no-deps "$wheel"
cd "$tmp"   # away from the checkout, so the installed copy is what is imported
"$tmp/venv/bin/python" - <<'PY'
import json, sys
import gvlib, gvlib.models, gvlib.bounds, gvlib.train, gvlib.data, gvlib.plot, gvlib.claims, gvlib.distributions
import gvlib.classifier, gvlib.metrics, gvlib.zoo, gvlib.autoregressive, gvlib.experiments.iwae_table
assert "site-packages" in gvlib.__file__, f"imported {gvlib.__file__}, not the installed copy"
jupyter = sorted(m for m in sys.modules if m.split(".")[0] in {"IPython", "ipykernel", "ipywidgets", "jupyter_client",
                 "jupyter_core", "nbformat", "nbclient", "jupyterlab", "notebook", "nbval", "coursekit"})
assert not jupyter, f"gvlib imported {jupyter}"
import socket, time
socket.socket = socket.create_connection = None  # any use of the network now fails
t0 = time.perf_counter()
xs, ys = gvlib.data.load_mnist_subset("train", "binary", 28)
seconds = time.perf_counter() - t0
assert xs.shape == (7000, 784) and ys.shape == (7000,), (xs.shape, ys.shape)
assert "site-packages" in str(gvlib.data._subset_resource()), gvlib.data._subset_resource()
print(f"packaging: the MNIST subset loads offline from the installed wheel in {seconds:.2f} s")
x, y = gvlib.data.load_digits("train")
model = gvlib.models.VAE(64, 4, hidden=(16,))
print(f"packaging: gvlib {gvlib.__version__} from {gvlib.__file__}; imports no Jupyter package; "
      f"log_weights {tuple(model.log_weights(x[:3], 2).shape)}")
PY
out=$("$tmp/venv/bin/coursekit" check 2>&1) && { echo "coursekit check should fail without the course extra"; exit 1; }
echo "$out" | grep -q "needs the course's extra packages" || { echo "unclear coursekit error: $out"; exit 1; }
echo "packaging: coursekit without the course extra says: ${out%%;*}"
