# test/lib.sh — shared by test/check.sh, demo/run.sh and bench/run.sh (source it; bash).
#
# Builds a private PostgreSQL installation in $DUET_BUILD/tmp_install (a copy of the system's PG 15
# plus this tree's pg_duet installed with DESTDIR, as PostgreSQL's own `make check` does), so tests
# never touch the system installation and several checkouts can test side by side. PostgreSQL's
# binaries find share/ and lib/ relative to themselves, so the copied tree is self-contained.

DUET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DUET_BUILD=${DUET_BUILD:-$DUET_ROOT/build}
PG_SYS_BINDIR=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
PG_SYS_PREFIX=${PG_SYS_BINDIR%/bin}                      # /usr/lib/postgresql/15
PG_SYS_SHAREDIR=$(pg_config --sharedir 2>/dev/null || echo /usr/share/postgresql/15)
DUET_TMP_INSTALL=$DUET_BUILD/tmp_install
DUET_BINDIR=$DUET_TMP_INSTALL$PG_SYS_BINDIR
DUET_PGXS_DIR=$PG_SYS_PREFIX/lib/pgxs
DUET_PG_REGRESS=$DUET_PGXS_DIR/src/test/regress/pg_regress
DUET_PERL5LIB=$DUET_PGXS_DIR/src/test/perl

# A port per checkout, so parallel checkouts don't collide; DUET_PGPORT overrides.
duet_default_port() {
  local base=$1
  echo $(( base + $(printf '%s' "$DUET_ROOT" | cksum | cut -d' ' -f1) % 900 ))
}

# Runs a command as the postgres OS user (PostgreSQL refuses root), keeping the environment.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -p -u postgres -- "$@"
  else
    "$@"
  fi
}

# A directory the postgres user can write to.
pg_writable_dir() {
  mkdir -p "$1"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$1"
  return 0
}

duet_tmp_install() {
  if [ ! -x "$DUET_BINDIR/postgres" ]; then
    mkdir -p "$DUET_TMP_INSTALL${PG_SYS_PREFIX%/*}" "$DUET_TMP_INSTALL${PG_SYS_SHAREDIR%/*}"
    cp -a "$PG_SYS_PREFIX" "$DUET_TMP_INSTALL${PG_SYS_PREFIX%/*}/"
    cp -a "$PG_SYS_SHAREDIR" "$DUET_TMP_INSTALL${PG_SYS_SHAREDIR%/*}/"
  fi
  # Extensions installed on the system after the copy was made (pg_cron, for test/t/003_cron.pl).
  cp -an "$PG_SYS_PREFIX/lib/." "$DUET_TMP_INSTALL$PG_SYS_PREFIX/lib/"
  cp -an "$PG_SYS_SHAREDIR/extension/." "$DUET_TMP_INSTALL$PG_SYS_SHAREDIR/extension/"
  make -C "$DUET_ROOT" -s install DESTDIR="$DUET_TMP_INSTALL" >/dev/null
  chmod -R a+rX "$DUET_BUILD" 2>/dev/null || true
}

# duet_pg_start DATADIR PORT [extra postgresql.conf lines...]: a throwaway cluster on 127.0.0.1,
# socket in the data directory, shared_preload_libraries = pg_duet, plus test/conf/*.conf.
duet_pg_start() {
  local datadir=$1 port=$2; shift 2
  pg_writable_dir "$(dirname "$datadir")"
  as_pg rm -rf "$datadir"
  as_pg "$DUET_BINDIR/initdb" -D "$datadir" -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >"$datadir.initdb.log" 2>&1 \
    || { cat "$datadir.initdb.log"; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$datadir'"
    echo "shared_preload_libraries = 'pg_duet'"
    echo "fsync = off"
    echo "max_worker_processes = 32"
    echo "log_line_prefix = '%m [%p] %q%a '"
    for conf in "$DUET_ROOT"/test/conf/*.conf; do [ -e "$conf" ] && cat "$conf"; done
    for line in "$@"; do echo "$line"; done
  } | as_pg tee -a "$datadir/postgresql.conf" >/dev/null
  as_pg "$DUET_BINDIR/pg_ctl" -D "$datadir" -l "$datadir.log" -w -t 60 start >/dev/null \
    || { cat "$datadir.log"; return 1; }
}

duet_pg_stop() {
  local datadir=$1
  [ -f "$datadir/postmaster.pid" ] && as_pg "$DUET_BINDIR/pg_ctl" -D "$datadir" -m fast -w -t 60 stop >/dev/null
  return 0
}

# Environment for TAP tests (PostgreSQL::Test::Cluster) and helpers they call.
duet_tap_env() {
  export PATH="$DUET_BINDIR:$PATH"
  export PERL5LIB="$DUET_PERL5LIB${PERL5LIB:+:$PERL5LIB}"
  export PG_REGRESS="$DUET_PG_REGRESS"
  export DUET_ROOT DUET_BUILD
}
