#!/usr/bin/env bash
# The extension-SQL lint (test/lint/sql_lint.py; rules in SECURITY.md): one test per file and rule.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
python3 test/lint/sql_lint.py
