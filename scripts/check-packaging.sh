#!/usr/bin/env bash
# gvlib as a learner may install it: a fresh venv, its five dependencies, then `pip install --no-deps .`
# (not editable). Every gvlib module must import, nothing from Jupyter may be imported, and coursekit must say
# clearly that it needs the course extra. Usage: bash scripts/check-packaging.sh [PYTHON] [pip flags]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}; shift || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
pip="$tmp/venv/bin/python -m pip"
$pip install -q "$@" torch numpy matplotlib scikit-learn tqdm
$pip install -q --no-deps .
cd "$tmp"   # away from the checkout, so the installed copy is what is imported
"$tmp/venv/bin/python" - <<'PY'
import json, sys
import gvlib, gvlib.models, gvlib.bounds, gvlib.train, gvlib.data, gvlib.plot, gvlib.claims, gvlib.distributions
import gvlib.classifier, gvlib.metrics, gvlib.zoo, gvlib.autoregressive, gvlib.experiments.iwae_table
assert "site-packages" in gvlib.__file__, f"imported {gvlib.__file__}, not the installed copy"
jupyter = sorted(m for m in sys.modules if m.split(".")[0] in {"IPython", "ipykernel", "ipywidgets", "jupyter_client",
                 "jupyter_core", "nbformat", "nbclient", "jupyterlab", "notebook", "nbval", "coursekit"})
assert not jupyter, f"gvlib imported {jupyter}"
x, y = gvlib.data.load_digits("train")
model = gvlib.models.VAE(64, 4, hidden=(16,))
print(f"packaging: gvlib {gvlib.__version__} from {gvlib.__file__}; imports no Jupyter package; "
      f"log_weights {tuple(model.log_weights(x[:3], 2).shape)}")
PY
out=$("$tmp/venv/bin/coursekit" check 2>&1) && { echo "coursekit check should fail without the course extra"; exit 1; }
echo "$out" | grep -q "needs the course's extra packages" || { echo "unclear coursekit error: $out"; exit 1; }
echo "packaging: coursekit without the course extra says: ${out%%;*}"
