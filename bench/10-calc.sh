#!/usr/bin/env bash
# calc: ns per evaluation of compiled formulas against hand-written C doing the same work on the
# same rows (duet_value in/out, NULL and division-by-zero rules), measured in one run.
# Prints one ratio per expression (goal <= 1.5x). CALC_BENCH_ITERS sets the passes over 1024 rows.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/bench/calc_bench
build/bench/calc_bench "${CALC_BENCH_ITERS:-2000}"
