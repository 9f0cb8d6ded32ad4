#!/usr/bin/env bash
# The Debian packages (debian/, `make deb`) installed into the system PostgreSQL 15 and tested
# there: builds them, checks their dependencies and file lists, installs them with dpkg, initdb's a
# fresh cluster with the system's binaries (nothing but a port, 127.0.0.1 and
# shared_preload_libraries = pg_duet), runs `make installcheck` against it — so the regression
# suite runs on the package's files, not on build/tmp_install — updates a 0.1.0 installation with
# the packaged scripts, runs the packaged duet_udf, and removes the packages again (dpkg -r), checking
# nothing is left. Installing into the system needs root: any other user gets a "skipped" line.
# A system with a pg_duet of its own (make install) is tested in a private mount namespace.
# CI machines are throwaway; on a shared machine the packages are installed only while this runs.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"

if [ "$(id -u)" -ne 0 ]; then
  echo "60-deb: skipped: needs root (dpkg -i into the system PostgreSQL)"
  echo "0 passed, 0 failed"
  exit 0
fi

EXTVERSION=$(sed -n "s/^default_version = '\(.*\)'/\1/p" pg_duet.control)
PKG=postgresql-15-pg-duet UDF_PKG=pg-duet-clickhouse-udf
DEBS=$DUET_BUILD/deb
OUT=$DUET_BUILD/check/deb
SYS_BIN=/usr/lib/postgresql/15/bin
DATA=$OUT/data
passed=0 failed=0
ok()   { echo "ok - $*"; passed=$((passed + 1)); }
fail() { echo "FAILED - $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
cleanup() {
  [ -f "$DATA/postmaster.pid" ] && as_pg "$SYS_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1
  for p in "$PKG" "$UDF_PKG"; do installed "$p" && dpkg -r "$p" >/dev/null 2>&1; done
  return 0
}
trap cleanup EXIT

# A pg_duet that someone installed into the system with `make install` belongs to no package:
# dpkg would overwrite it and dpkg -r delete it. The suite leaves it alone: it runs again in a
# private mount namespace (unshare) where the system's PostgreSQL directories and dpkg database
# are copies without those files, so dpkg -i/-r act on the copies only; where no namespace can be
# made, it is skipped. A fresh CI machine has no such files. A package left by an interrupted run
# of this suite is ours and is removed first.
if [ -n "${DUET_DEB_PRIVATE:-}" ]; then
  priv=$DUET_BUILD/check/deb-private
  rm -rf "$priv" && mkdir -p "$priv/doc" || exit 1
  cp -a /usr/lib/postgresql/15/lib "$priv/lib" && cp -a /usr/share/postgresql/15/extension "$priv/ext" &&
    cp -a /var/lib/dpkg "$priv/dpkg" || exit 1
  rm -rf "$priv"/lib/pg_duet.so "$priv"/lib/bitcode/pg_duet "$priv"/lib/bitcode/pg_duet.index.bc "$priv"/ext/pg_duet*
  for m in "lib /usr/lib/postgresql/15/lib" "ext /usr/share/postgresql/15/extension" "dpkg /var/lib/dpkg" "doc /usr/share/doc"; do
    mount --bind "$priv/${m%% *}" "${m#* }" || exit 1
  done
  chmod a+rx "$priv" "$priv"/*
  echo "60-deb: in a private mount namespace: the system's pg_duet files (not from a package) are hidden, not touched"
fi
cleanup
stray=$(ls /usr/lib/postgresql/15/lib/pg_duet.so /usr/share/postgresql/15/extension/pg_duet* 2>/dev/null)
if [ -n "$stray" ]; then
  echo "60-deb: the system PostgreSQL has pg_duet files no package owns (a make install?): $(echo $stray)"
  if [ -z "${DUET_DEB_PRIVATE:-}" ] && unshare -m --propagation private true 2>/dev/null; then
    DUET_DEB_PRIVATE=1 exec unshare -m --propagation private bash "$0"
  fi
  echo "60-deb: skipped: remove them, or allow unshare -m, to test the Debian package"
  finish
fi

# 1. Build.
rm -rf "$OUT"; mkdir -p "$OUT"
tree_before=$(git status --porcelain 2>/dev/null)
if make -s deb >"$OUT/make-deb.log" 2>&1; then ok "make deb builds the packages"; else cat "$OUT/make-deb.log"; fail "make deb"; finish; fi
deb=$DEBS/${PKG}_${EXTVERSION}-1_$(dpkg --print-architecture).deb
udf_deb=$DEBS/${UDF_PKG}_${EXTVERSION}-1_$(dpkg --print-architecture).deb
check "make deb names the package $(basename "$deb")" test -f "$deb"
check "make deb leaves the source tree as it was" test "$(git status --porcelain 2>/dev/null)" = "$tree_before"

# 2. Dependencies: the shared libraries pg_duet.so links, and the server it is built for.
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for d in postgresql-15 librdkafka1 libjansson4 libcurl4; do
  check "$PKG depends on $d" grep -qE "(^|, )$d( |,|$)" <<<"$depends"
done
check "$UDF_PKG depends on libjansson4" grep -q libjansson4 <<<"$(dpkg-deb -f "$udf_deb" Depends)"

# 3. Install.
if dpkg -i "$deb" "$udf_deb" >"$OUT/dpkg-i.log" 2>&1; then ok "dpkg -i installs both packages"; else cat "$OUT/dpkg-i.log"; fail "dpkg -i"; finish; fi
files=$(dpkg -L "$PKG")
expect=(/usr/share/postgresql/15/extension/pg_duet.control /usr/lib/postgresql/15/lib/pg_duet.so
        "/usr/share/postgresql/15/extension/pg_duet--$EXTVERSION.sql")
for f in pg_duet/pg_duet--*.sql; do expect+=("/usr/share/postgresql/15/extension/$(basename "$f")"); done
for f in "${expect[@]}"; do
  check "dpkg -L $PKG lists $f" grep -qxF "$f" <<<"$files"
done
check "the packaged install script is this tree's" \
  cmp -s "/usr/share/postgresql/15/extension/pg_duet--$EXTVERSION.sql" <(cat pg_duet/sql/*.sql)
check "dpkg -L $UDF_PKG lists /usr/lib/pg-duet/duet_udf" grep -qxF /usr/lib/pg-duet/duet_udf <<<"$(dpkg -L "$UDF_PKG")"
check "the packaged duet_udf evaluates a formula" test "$(printf 'x*2\t21\n' | /usr/lib/pg-duet/duet_udf --formula \
  --format TabSeparated --arguments 'formula:String,x:Nullable(Float64)' --returns 'Nullable(Float64)')" = 42

# 4. A fresh cluster of the system's PostgreSQL 15 with the packaged library preloaded.
port=$(duet_default_port 57000)
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break    # nothing listens there
  port=$((port + 1))
done
pg_writable_dir "$OUT"
if as_pg "$SYS_BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$OUT/initdb.log" 2>&1 &&
   printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nshared_preload_libraries = 'pg_duet'\n" \
     "$port" "$DATA" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null &&
   as_pg "$SYS_BIN/pg_ctl" -D "$DATA" -l "$OUT/server.log" -w -t 60 start >/dev/null; then
  ok "a fresh cluster starts with shared_preload_libraries = pg_duet (port $port)"
else
  cat "$OUT/initdb.log" "$OUT/server.log" 2>/dev/null; fail "initdb and start a cluster"; finish
fi
psql_sys() { as_pg "$SYS_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }
check "the server offers pg_duet $EXTVERSION from the package" \
  test "$(psql_sys -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_duet'")" = "$EXTVERSION"

# 5. The regression suite (PGXS installcheck) against it, with the system's pg_config and psql.
as_pg make -s installcheck PG_CONFIG="$SYS_BIN/pg_config" \
  EXTRA_REGRESS_OPTS="--outputdir=$OUT/regress --host=127.0.0.1 --port=$port --user=postgres" \
  >"$OUT/installcheck.log" 2>&1
rc=$?
cat "$OUT/installcheck.log"
[ -s "$OUT/regress/regression.diffs" ] && cat "$OUT/regress/regression.diffs"
tests_ok=$(grep -cE '^test .* \.\.\. ok' "$OUT/installcheck.log")
tests_bad=$(grep -cE '^test .* \.\.\. FAILED' "$OUT/installcheck.log")
[ "$rc" -ne 0 ] && [ "$tests_bad" -eq 0 ] && tests_bad=1
[ "$rc" -eq 0 ] && [ "$tests_ok" -eq 0 ] && tests_bad=1
passed=$((passed + tests_ok)); failed=$((failed + tests_bad))
echo "installcheck against the packaged extension: $tests_ok passed, $tests_bad failed"

# 6. The packaged update script takes a 0.1.0 installation to the packaged version.
psql_sys -d postgres -c "CREATE DATABASE deb_upgrade" >/dev/null
check "ALTER EXTENSION pg_duet UPDATE from 0.1.0 with the packaged scripts" \
  test "$(psql_sys -d deb_upgrade -c "CREATE EXTENSION pg_duet VERSION '0.1.0'" \
          -c "ALTER EXTENSION pg_duet UPDATE" \
          -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_duet'")" = "$EXTVERSION"

# 7. Stop, remove, and check dpkg -r took every file it installed.
as_pg "$SYS_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
dpkg_r() { dpkg -r "$PKG" "$UDF_PKG" >"$OUT/dpkg-r.log" 2>&1 && ! installed "$PKG" && ! installed "$UDF_PKG"; }
check "dpkg -r removes both packages" dpkg_r
left=()
for f in "${expect[@]}" /usr/lib/pg-duet/duet_udf; do [ -e "$f" ] && left+=("$f"); done
check "no packaged file is left after dpkg -r${left:+ (left: ${left[*]})}" test ${#left[@]} -eq 0
finish
