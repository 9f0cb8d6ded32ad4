#!/usr/bin/env bash
# Kafka when idle: the latency of one message from produce to visible, and what the ingestion pool
# costs with many idle consumers. Baselines, measured in the same run on the same dev broker:
#   latency   kcat's own consumer (librdkafka, no database) from produce to delivery
#   idle CPU  one idle kcat consumer (a librdkafka client doing nothing), times the consumers
# The latency is measured with librdkafka's default fetch.wait.max.ms (500 ms) and with 50 ms: the
# dev broker (librdkafka's mock cluster) answers a fetch without data only after fetch.wait.max.ms
# even when a message arrives meanwhile (a Kafka broker answers at once), which is the floor there.
# Idle CPU is measured twice: the N consumers on one topic (one partition; caught up, they follow
# one fetch of it in their pool worker's shared client: kafka_lane.c), and on a topic each (the
# pool worker's consumers with the same brokers and properties share one client).
# Goals (issue 12): latency <= 100 ms without a short poll; 100 idle consumers <= 1% of a core.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
N_IDLE=${DUET_BENCH_IDLE_CONSUMERS:-100}
IDLE_S=${DUET_BENCH_IDLE_SECONDS:-30}
ROUNDS=${DUET_BENCH_LATENCY_ROUNDS:-10}
PSQL="$DUET_BINDIR/psql -X -q -v ON_ERROR_STOP=1"
TCK=$(getconf CLK_TCK)
work=$(mktemp -d /tmp/duet-kafka-idle.XXXXXX)
chmod 755 "$work"
idle_topics=$(for i in $(seq "$N_IDLE"); do printf -- ' -t idle_t%d:1' "$i"; done)
# shellcheck disable=SC2086
"$DUET_BUILD/devbroker" -f "$work/bootstrap" -t lat:1 -t idle:1 $idle_topics </dev/null >/dev/null 2>"$work/broker.log" &
broker=$!
kc=""
trap 'kill $broker $kc 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 900); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done    # ~0.2 s a topic
boot=$(cat "$work/bootstrap")

now() { date +%s.%N; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo $t; }
produce1() { echo "{\"n\": $1}" | kcat -P -b "$boot" -t "$2" -X linger.ms=0; }

$PSQL -c "CREATE EXTENSION IF NOT EXISTS pg_duet" -c "DROP TABLE IF EXISTS lat_500, lat_50" \
      -c "CREATE TABLE lat_500 (n int, _timestamp timestamptz, at timestamptz DEFAULT clock_timestamp())" \
      -c "CREATE TABLE lat_50 (n int, _timestamp timestamptz, at timestamptz DEFAULT clock_timestamp())"

# Latency = when the row was written (clock_timestamp() in the batch; visible at its commit, a few
# ms later) minus the message's Kafka timestamp (producer create time), over ROUNDS messages sent
# one by one at random phases. The baseline is kcat's consumer on the same topic at the same time:
# when it printed the message minus the same timestamp.
latency() {
  local fw=$1 props="NULL" r
  [ "$fw" != 500 ] && props="'{\"fetch.wait.max.ms\": \"$fw\"}'"
  $PSQL -c "SELECT duet_kafka_consume('lat_$fw', 'lat', 'lat_$fw', '$boot', 'json', start_offset => 'latest', properties => $props)" >/dev/null
  for _ in $(seq 300); do
    [ "$($PSQL -At -c "SELECT state FROM duet.kafka_status WHERE name = 'lat_$fw'")" = idle ] && break
    sleep 0.1
  done
  kcat -C -b "$boot" -t lat -o end -u -q -f '%T\n' -X fetch.wait.max.ms="$fw" 2>/dev/null \
    > >(while read -r ts; do echo $(( $(date +%s%3N) - ts )); done > "$work/kcat_$fw") &
  kc=$!    # kcat itself
  sleep 2
  for r in $(seq "$ROUNDS"); do
    sleep 0.$((RANDOM % 10))    # a random phase against the fetch cycle
    produce1 "$r" lat
  done
  for _ in $(seq 300); do
    [ "$($PSQL -At -c "SELECT count(*) FROM lat_$fw")" -ge "$ROUNDS" ] && break
    sleep 0.1
  done
  sleep 1
  kill $kc 2>/dev/null || true; kc=""
  $PSQL -c "SELECT duet_kafka_drop('lat_$fw')" >/dev/null
  local pg base
  pg=$($PSQL -At -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)) || ' ' || round(max(ms))
                      FROM (SELECT extract(epoch FROM at - _timestamp) * 1000 AS ms FROM lat_$fw) x")
  base=$(sort -n "$work/kcat_$fw" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[NR] }')
  printf "  fetch.wait.max.ms=%-4s pg_duet %5s / %5s   kcat consumer %5s / %5s   ratio %s\n" "$fw" ${pg} ${base} \
    "$(awk -v a="${pg%% *}" -v b="${base%% *}" 'BEGIN { printf "%.2fx", a / (b > 0 ? b : 1) }')"
}

if [ "$ROUNDS" -gt 0 ]; then
  echo "latency of one message, produce to visible ($ROUNDS messages each; ms, median / max)"
  latency 500
  latency 50
fi

# Idle: N consumers caught up, nothing arriving; the pool's CPU over IDLE_S seconds. $1 names the
# run, $2 the topic of consumer i ("%d" is replaced by i).
idle() {
  local label=$1 topic=$2
  { echo "SET client_min_messages = warning;"; for i in $(seq "$N_IDLE"); do echo "DROP TABLE IF EXISTS idle_$i; CREATE TABLE idle_$i (n int);"; done; } | $PSQL >/dev/null
  $PSQL -c "SELECT duet_kafka_consume('idle_' || i, replace('$topic', '%d', i::text), ('idle_' || i)::regclass, '$boot', 'json') FROM generate_series(1, $N_IDLE) i" >/dev/null
  for i in $(seq "$N_IDLE"); do echo "{\"n\": 1}" | kcat -P -b "$boot" -t "${topic//%d/$i}" -X linger.ms=0; [ "${topic//%d/}" = "$topic" ] && break; done
  for _ in $(seq 600); do
    [ "$($PSQL -At -c "SELECT count(*) FROM duet.kafka_status WHERE name LIKE 'idle_%' AND rows = 1")" = "$N_IDLE" ] && break
    sleep 0.2
  done
  sleep 5
  pids=$($PSQL -At -c "SELECT pid FROM duet.kafka_pool WHERE pid IS NOT NULL")
  kcat -C -b "$boot" -t "${topic//%d/1}" -o end -q >/dev/null &
  kc=$!
  sleep 5
  a=$(ticks $pids); ak=$(ticks $kc); ab=$(ticks $broker)
  sleep "$IDLE_S"
  b=$(ticks $pids); bk=$(ticks $kc); bb=$(ticks $broker)
  pool=$(awk -v d=$((b - a)) -v t="$TCK" -v s="$IDLE_S" 'BEGIN { printf "%.2f", d / t / s * 100 }')
  one=$(awk -v d=$((bk - ak)) -v t="$TCK" -v s="$IDLE_S" 'BEGIN { printf "%.3f", d / t / s * 100 }')
  brk=$(awk -v d=$((bb - ab)) -v t="$TCK" -v s="$IDLE_S" 'BEGIN { printf "%.2f", d / t / s * 100 }')
  echo "idle, $label: $N_IDLE consumers, $(echo $pids | wc -w) pool workers, ${IDLE_S} s"
  echo "  pool workers (all threads)     ${pool}% of a core"
  echo "  one idle kcat consumer         ${one}% of a core (x $N_IDLE = $(awk -v o="$one" -v n="$N_IDLE" 'BEGIN { printf "%.2f", o * n }')%)"
  echo "  dev broker serving them        ${brk}% of a core"
  echo "  ratio pool / ($N_IDLE idle kcat consumers): $(awk -v p="$pool" -v o="$one" -v n="$N_IDLE" 'BEGIN { printf "%.2fx", p / (o * n > 0 ? o * n : 0.01) }')   (goal: pool <= 1% of a core)"
  kill $kc 2>/dev/null || true; kc=""
  $PSQL -c "SELECT duet_kafka_drop(name) FROM duet.kafka_consumers WHERE name LIKE 'idle_%'" >/dev/null
  for i in $(seq "$N_IDLE"); do echo "DROP TABLE idle_$i;"; done | $PSQL >/dev/null
}
idle "one topic" idle
idle "a topic each" "idle_t%d"
$PSQL -c "DROP TABLE lat_500, lat_50" >/dev/null
