#!/usr/bin/env bash
# Installs the Debian 12 packages pg_duet builds and tests with (DESIGN.md §3).
# Idempotent: does nothing when everything is present; needs root only when something is missing.
set -euo pipefail
packages=(
  build-essential postgresql-15 postgresql-server-dev-15
  librdkafka-dev libjansson-dev libcurl4-openssl-dev libcmocka-dev kcat libipc-run-perl
  clickhouse-server clickhouse-client clang libclang-rt-14-dev valgrind python3
  postgresql-15-cron
  # Prometheus metrics (issue 17): the real exporter, scraped by test/t/080_exporter.pl
  prometheus-postgres-exporter
  # make deb and test/suites/60-deb.sh (the Debian packages, debian/)
  debhelper postgresql-server-dev-all dpkg-dev fakeroot
  # Alertmanager integration (issue 17): test/t/062_alertmanager.pl and make demo run the real one
  prometheus-alertmanager
)
# metrics (issue 13): duet-ch-sync links libpq
packages+=(libpq-dev)
# formula pattern functions (issue 15 item 3): calc's regexp_* run on PCRE2 (calc/pattern.c)
packages+=(libpcre2-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# clickhouse-server's and postgresql's postinst must not leave services running on shared ports.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
