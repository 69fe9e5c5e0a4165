#!/bin/sh
# What `make test-grader` needs besides the course's .venv: bubblewrap (the grader's sandbox) and real nbgrader
# in build/nbgrader-venv. Installs what is missing; idempotent. Usage: sh scripts/grader-prereqs.sh [COURSE_VENV]
set -eu
VENV=${1:-.venv}
if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "grader-prereqs: installing bubblewrap"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
    else
        echo "grader-prereqs: bubblewrap is missing; install it (Debian/Ubuntu: sudo apt-get install bubblewrap)," \
             "or the sandbox checks are skipped (they fail under CI=true)" >&2
    fi
fi
command -v bwrap >/dev/null 2>&1 && bwrap --version
sh "$(dirname "$0")/nbgrader-env.sh" "$VENV" build/nbgrader-venv
