#!/bin/sh
# build/nbgrader-venv: real nbgrader (0.9.x) for the round-trip test, in its own virtual environment that also
# sees the course's .venv (a .pth line), so nbgrader adds its few packages without touching the course's.
# Usage: sh scripts/nbgrader-env.sh [COURSE_VENV] [DEST]      (idempotent)
set -eu
VENV=$(cd "${1:-.venv}" && pwd)
DEST=${2:-build/nbgrader-venv}
NBGRADER=${NBGRADER_SPEC:-nbgrader==0.9.6}
if [ -x "$DEST/bin/nbgrader" ] && "$DEST/bin/python" -c 'import nbgrader, torch, coursekit' 2>/dev/null; then
    exit 0
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$VENV/bin/python" -m venv "$DEST"
DEST_SITE=$("$DEST/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import site; site.addsitedir('$SITE')" > "$DEST_SITE/zz_course_venv.pth"
"$DEST/bin/python" -m pip install --quiet "$NBGRADER"
"$DEST/bin/python" -c 'import nbgrader, torch, coursekit; print("nbgrader", nbgrader.__version__, "in", "'"$DEST"'")'
