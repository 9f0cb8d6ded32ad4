#!/usr/bin/env bash
# Documentation checks (test/docs_check.py) against the cluster test/check.sh started: settings.md
# against pg_settings, sql-reference.md regenerated from the COMMENTs, META.json against the PGXN
# spec, the update script carrying the comments, links, and duet_uninstall() dropping the roles.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
PSQL="$DUET_BINDIR/psql" PGDATABASE=postgres python3 test/docs_check.py
