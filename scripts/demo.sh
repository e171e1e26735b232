#!/usr/bin/env bash
# Set up a fresh Debian machine and run the demo system until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_setup.sh
setup_system graphviz
setup_venv '.[demo]'
exec .venv/bin/pykernel up examples/demo.yaml "$@"
