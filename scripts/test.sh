#!/usr/bin/env bash
# Set up a fresh Debian machine and run the whole test suite (lint included).
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_setup.sh
setup_system lldpd chromium graphviz iproute2 util-linux
setup_venv '.[test]'
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
