#!/usr/bin/env bash
# Kafka when idle: the latency of one message from produce to visible, and what the ingestion pool
# costs with many idle consumers. Baselines, measured in the same run on the same dev broker:
#   latency   kcat's own consumer (librdkafka, no database) from produce to delivery
#   idle CPU  one idle kcat consumer (a librdkafka client doing nothing), times the consumers
# The latency is measured with librdkafka's default fetch.wait.max.ms (500 ms) and with 50 ms: the
# dev broker (librdkafka's mock cluster) answers a fetch without data only after fetch.wait.max.ms
# even when a message arrives meanwhile (a Kafka broker answers at once), which is the floor there.
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
"$DUET_BUILD/devbroker" -f "$work/bootstrap" -t lat:1 -t idle:1 </dev/null >/dev/null 2>"$work/broker.log" &
broker=$!
kc=""
trap 'kill $broker $kc 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
boot=$(cat "$work/bootstrap")

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f\n", (b - a) * 1000 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
maxof() { sort -n | tail -1; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo $t; }
produce1() { echo "{\"n\": $1}" | kcat -P -b "$boot" -t "$2" -X linger.ms=0; }

$PSQL -c "CREATE EXTENSION IF NOT EXISTS pg_duet" -c "DROP TABLE IF EXISTS lat_500, lat_50" \
      -c "CREATE TABLE lat_500 (n int)" -c "CREATE TABLE lat_50 (n int)"

# produce → visible through pg_duet: one consumer, the message committed and visible to a query.
pg_latency() {
  local fw=$1 t0 t1 r props="NULL"
  [ "$fw" != 500 ] && props="'{\"fetch.wait.max.ms\": \"$fw\"}'"
  $PSQL -c "SELECT duet_kafka_consume('lat_$fw', 'lat', 'lat_$fw', '$boot', 'json', start_offset => 'latest', properties => $props)" >/dev/null
  for _ in $(seq 300); do
    [ "$($PSQL -At -c "SELECT state FROM duet.kafka_status WHERE name = 'lat_$fw'")" = idle ] && break
    sleep 0.1
  done
  sleep 1
  for r in $(seq "$ROUNDS"); do
    sleep 0.$((RANDOM % 10))    # a random phase against the fetch cycle
    t0=$(now); produce1 "$r" lat
    until [ "$($PSQL -At -c "SELECT count(*) FROM lat_$fw")" -ge "$r" ]; do sleep 0.002; done
    t1=$(now); ms "$t0" "$t1"
  done
  $PSQL -c "SELECT duet_kafka_drop('lat_$fw')" >/dev/null
}
# produce → delivered to kcat's consumer.
kcat_latency() {
  local fw=$1 t0 t1 r
  for r in $(seq "$ROUNDS"); do
    kcat -C -b "$boot" -t lat -o end -c 1 -e -q -X fetch.wait.max.ms="$fw" >/dev/null &
    local k=$!
    sleep 1.$((RANDOM % 10))
    t0=$(now); produce1 "$r" lat
    wait $k || true
    t1=$(now); ms "$t0" "$t1"
  done
}

echo "latency of one message, produce to visible ($ROUNDS rounds each; ms, median / max)"
for fw in 500 50; do
  pg=$(pg_latency $fw); base=$(kcat_latency $fw)
  pm=$(echo "$pg" | median); px=$(echo "$pg" | maxof); bm=$(echo "$base" | median); bx=$(echo "$base" | maxof)
  printf "  fetch.wait.max.ms=%-4s pg_duet %5s / %5s   kcat consumer %5s / %5s   ratio %s\n" "$fw" "$pm" "$px" "$bm" "$bx" \
    "$(awk -v a="$pm" -v b="$bm" 'BEGIN { printf "%.2fx", a / (b > 0 ? b : 1) }')"
done

# Idle: N consumers caught up on one topic, nothing arriving; the pool's CPU over IDLE_S seconds.
{ echo "SET client_min_messages = warning;"; for i in $(seq "$N_IDLE"); do echo "DROP TABLE IF EXISTS idle_$i; CREATE TABLE idle_$i (n int);"; done; } | $PSQL >/dev/null
$PSQL -c "SELECT duet_kafka_consume('idle_' || i, 'idle', ('idle_' || i)::regclass, '$boot', 'json') FROM generate_series(1, $N_IDLE) i" >/dev/null
produce1 1 idle
for _ in $(seq 600); do
  [ "$($PSQL -At -c "SELECT count(*) FROM duet.kafka_status WHERE name LIKE 'idle_%' AND rows = 1")" = "$N_IDLE" ] && break
  sleep 0.2
done
sleep 5
pids=$($PSQL -At -c "SELECT pid FROM duet.kafka_pool WHERE pid IS NOT NULL")
kcat -C -b "$boot" -t idle -o end -q >/dev/null &
kc=$!
sleep 5
a=$(ticks $pids); ak=$(ticks $kc); ab=$(ticks $broker)
sleep "$IDLE_S"
b=$(ticks $pids); bk=$(ticks $kc); bb=$(ticks $broker)
pool=$(awk -v d=$((b - a)) -v t="$TCK" -v s="$IDLE_S" 'BEGIN { printf "%.2f", d / t / s * 100 }')
one=$(awk -v d=$((bk - ak)) -v t="$TCK" -v s="$IDLE_S" 'BEGIN { printf "%.3f", d / t / s * 100 }')
brk=$(awk -v d=$((bb - ab)) -v t="$TCK" -v s="$IDLE_S" 'BEGIN { printf "%.2f", d / t / s * 100 }')
echo "idle: $N_IDLE consumers, $(echo $pids | wc -w) pool workers, ${IDLE_S} s"
echo "  pool workers (all threads)     ${pool}% of a core"
echo "  one idle kcat consumer         ${one}% of a core (x $N_IDLE = $(awk -v o="$one" -v n="$N_IDLE" 'BEGIN { printf "%.2f", o * n }')%)"
echo "  dev broker serving them        ${brk}% of a core"
echo "ratio pool / ($N_IDLE idle kcat consumers): $(awk -v p="$pool" -v o="$one" -v n="$N_IDLE" 'BEGIN { printf "%.2fx", p / (o * n > 0 ? o * n : 0.01) }')   (goal: pool <= 1% of a core)"
kill $kc 2>/dev/null || true; kc=""
$PSQL -c "SELECT duet_kafka_drop(name) FROM duet.kafka_consumers WHERE name LIKE 'idle_%'" >/dev/null
for i in $(seq "$N_IDLE"); do echo "DROP TABLE idle_$i;"; done | $PSQL >/dev/null
$PSQL -c "DROP TABLE lat_500, lat_50" >/dev/null
