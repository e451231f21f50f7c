#!/usr/bin/env bash
# Render a plbench report in headless Chromium (Debian package `chromium`) and check it: no console message,
# every image embedded as a PNG data URI, no URL. Screenshots land in the --out folder (default
# /tmp/plbench-render): look at them. Without arguments it renders a report of fixture runs.
#   benchmarks/render_report.sh [--html reports/demo/report.html] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/render_report.py "$@"
