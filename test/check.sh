#!/usr/bin/env bash
# test/check.sh — `make check`: every test of the project, on a fresh Debian 12 machine.
#
# Installs missing packages, builds with -Werror, installs into a private PostgreSQL tree, starts a
# throwaway cluster (postgres OS user, 127.0.0.1, shared_preload_libraries = pg_duet), then runs
# each test/suites/*.sh in name order. A suite ends its output with "N passed, N failed"; a suite that
# exits non-zero without that line counts as one failure. The last line is the total.
set -uo pipefail
cd "$(dirname "$0")/.."

# The postgres OS user runs the clusters and reads this tree (sql/, test helpers, the private
# install). A clone in a private directory such as /root (mode 700) runs from a copy in /tmp.
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -r "$PWD/Makefile" 2>/dev/null; then
  copy=/tmp/pg_duet-check-$(printf '%s' "$PWD" | cksum | cut -d' ' -f1)
  echo "check: the postgres user cannot read $PWD; running from a copy in $copy"
  rm -rf "$copy" && mkdir -p "$copy" && chmod 755 "$copy"
  tar -C "$PWD" --exclude=./build -cf - . | tar -C "$copy" -xf -
  chmod -R a+rX "$copy"
  exec "$copy/test/check.sh"
fi
source test/lib.sh

"$DUET_ROOT/test/install-deps.sh" || exit 1
make -s -j"$(nproc)" all || { echo "0 passed, 1 failed"; exit 1; }
duet_tmp_install || { echo "0 passed, 1 failed"; exit 1; }

export DUET_PGPORT=${DUET_PGPORT:-$(duet_default_port 55000)}
export DUET_PGDATA=$DUET_BUILD/check/data
export PGHOST=127.0.0.1 PGPORT=$DUET_PGPORT PGUSER=postgres
duet_pg_start "$DUET_PGDATA" "$DUET_PGPORT" || { echo "0 passed, 1 failed"; exit 1; }
trap 'duet_pg_stop "$DUET_PGDATA"' EXIT

passed=0 failed=0
for suite in test/suites/*.sh; do
  [ -n "${DUET_SUITES:-}" ] && [[ ! " $DUET_SUITES " == *" $(basename "$suite" .sh) "* ]] && continue
  echo "=== $suite"
  log=$DUET_BUILD/check/$(basename "$suite" .sh).log
  bash "$suite" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  if [ -n "$counts" ]; then
    p=${counts%% passed*}; f=${counts#*, }; f=${f%% failed}
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  else
    p=0; f=1
  fi
  passed=$((passed + p)); failed=$((failed + f))
  echo "=== $suite: $p passed, $f failed"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
