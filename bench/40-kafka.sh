#!/usr/bin/env bash
# Kafka ingestion throughput against COPY and INSERT-per-row, same rows, same tables, same run.
#
# N keyed DSP events (JSON, key = event id) sit in the dev broker, spread over 64 partitions of one
# topic. Measured, each into an empty table (every consumer reads the same topic from the start):
#   kafka→narrow  duet_kafka_consume(format json) into the typed table without an index
#   kafka→typed   duet_kafka_consume(format json) into the typed table with its index
#   kafka→jsonb   duet_kafka_consume(format jsonb) into a bronze jsonb table
#   COPY          psql \copy of the same rows into the same tables (CSV for the typed tables, the
#                 JSON lines for jsonb), each right after its Kafka run
#   INSERT        one INSERT statement per row (autocommit), on a sample, scaled to rows/s
# Prints rows/s (the last round) and the ratios of each of DUET_BENCH_KAFKA_ROUNDS rounds (3) and
# their median; the goals are typed >= 0.8x COPY end to end, >= 0.9x steady, and jsonb >= 0.9x.
# DUET_BENCH_KAFKA_ROWS sets N (1,000,000 by default; smaller for a quick run).
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
N=${DUET_BENCH_KAFKA_ROWS:-1000000}
ROUNDS=${DUET_BENCH_KAFKA_ROUNDS:-3}
PARTS=${DUET_BENCH_KAFKA_PARTITIONS:-64}
INSERT_SAMPLE=${DUET_BENCH_KAFKA_INSERTS:-5000}
PSQL="$DUET_BINDIR/psql -X -q -v ON_ERROR_STOP=1"
work=$(mktemp -d /tmp/duet-kafka-bench.XXXXXX)
chmod 755 "$work"
"$DUET_BUILD/devbroker" -f "$work/bootstrap" -t bench_events:$PARTS </dev/null >/dev/null 2>"$work/broker.log" &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
boot=$(cat "$work/bootstrap")

now() { date +%s.%N; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# The events, as JSON lines and as CSV (no characters that need escaping in either).
awk -v n="$N" 'BEGIN {
  srand(42);
  for (i = 1; i <= n; i++) {
    ts = sprintf("2026-11-%02d %02d:%02d:%02d+00", 1 + i % 28, i % 24, i % 60, (i * 7) % 60);
    cid = 1 + i % 500; imp = 1000 + int(rand() * 9000); clk = int(imp * rand() * 0.05);
    spend = sprintf("%.4f", imp * 0.0021); country = (i % 3 == 0) ? "DE" : (i % 3 == 1) ? "FR" : "US";
    printf "%d\t", i > "'"$work"'/events.keyed";
    printf "{\"ts\": \"%s\", \"campaign_id\": %d, \"impressions\": %d, \"clicks\": %d, \"spend\": %s, \"country\": \"%s\"}\n", ts, cid, imp, clk, spend, country > "'"$work"'/events.json";
    printf "{\"ts\": \"%s\", \"campaign_id\": %d, \"impressions\": %d, \"clicks\": %d, \"spend\": %s, \"country\": \"%s\"}\n", ts, cid, imp, clk, spend, country > "'"$work"'/events.keyed";
    printf "%s,%d,%d,%d,%s,%s\n", ts, cid, imp, clk, spend, country > "'"$work"'/events.csv";
  } }'
# Spread evenly over the partitions, keyed (the dev broker keeps ~5 MiB per partition).
for p in $(seq 0 $((PARTS - 1))); do
  awk -v p="$p" -v k="$PARTS" 'NR % k == p' "$work/events.keyed" > "$work/part.keyed"
  kcat -P -b "$boot" -t bench_events -p "$p" -K $'\t' -l -X linger.ms=50 "$work/part.keyed"
done

$PSQL <<SQL
ALTER SYSTEM SET duet.kafka_poll_interval = 100;
SELECT pg_reload_conf();
CREATE EXTENSION IF NOT EXISTS pg_duet;
DROP TABLE IF EXISTS bench_narrow, bench_typed, bench_raw;
CREATE TABLE bench_narrow (ts timestamptz NOT NULL, campaign_id int NOT NULL, impressions int NOT NULL,
                           clicks int NOT NULL, spend numeric(12,4) NOT NULL, country text NOT NULL);
CREATE TABLE bench_typed (ts timestamptz NOT NULL, campaign_id int NOT NULL, impressions int NOT NULL,
                          clicks int NOT NULL, spend numeric(12,4) NOT NULL, country text NOT NULL);
CREATE INDEX ON bench_typed (campaign_id, ts);
CREATE TABLE bench_raw (payload jsonb NOT NULL);
SQL
sleep 1

# Waits, in one session, until the consumer has committed n offsets (committed offsets, not
# count(*), every 20 ms: the wait must not compete with the ingest for CPU, as a psql per poll
# would); returns when the first batch was committed, its offsets, and when the last was.
WAIT_SQL="CREATE PROCEDURE pg_temp.bench_wait(name text, n bigint, INOUT first_at float8, INOUT first_n bigint, INOUT end_at float8)
LANGUAGE plpgsql AS \$\$
DECLARE done bigint;
BEGIN
  FOR i IN 1..6000 LOOP
    SELECT coalesce(sum(o.next_offset), 0) INTO done FROM duet.kafka_offsets o
      JOIN duet.kafka_consumers c ON c.id = o.consumer_id WHERE c.name = bench_wait.name;
    IF first_at IS NULL AND done > 0 THEN first_at := extract(epoch FROM clock_timestamp()); first_n := done; END IF;
    EXIT WHEN done >= n;
    PERFORM pg_sleep(0.02);
  END LOOP;
  end_at := extract(epoch FROM clock_timestamp());
END \$\$;"

# CPU time (utime + stime, in clock ticks) of server processes, read by the server itself: the
# consumer's workers, or this session's backend (the one that ran the COPY).
CPU_TICKS="split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint"
TICK=$(getconf CLK_TCK)

# Kafka: from the consume call until the last row is committed (worker start included); also the
# steady rate, from the first committed batch to the last, and the workers' CPU time.
# Prints "total_s steady_rows_per_s cpu_ticks".
kafka_run() {
  local name=$1 table=$2 format=$3 start end first first_n n
  start=$(now)
  $PSQL -c "SELECT duet_kafka_consume('$name', 'bench_events', '$table', '$boot', '$format', batch_size => 10000, flush_interval_ms => 200, parallelism => 2, properties => ${DUET_BENCH_KAFKA_PROPERTIES:-NULL})" >/dev/null
  read -r first first_n end < <($PSQL -At -c "$WAIT_SQL" -c "CALL pg_temp.bench_wait('$name', $N, NULL, NULL, NULL)" | tr '|' ' ')
  cpu=$($PSQL -At -c "SELECT sum($CPU_TICKS) FROM (SELECT DISTINCT w.pid FROM duet_kafka_worker_stats() w
                        JOIN duet.kafka_consumers c ON c.id = w.consumer_id WHERE c.name = '$name') w,
                        LATERAL pg_read_file('/proc/' || w.pid || '/stat') s")
  # the workers' peak resident memory, MB (librdkafka's queue of a partition group is bounded by
  # queued.max.messages.kbytes)
  hwm=$($PSQL -At -c "SELECT max(substring(pg_read_file('/proc/' || w.pid || '/status') FROM 'VmHWM:\s*([0-9]+) kB')::int) / 1024
                       FROM (SELECT DISTINCT w.pid FROM duet_kafka_worker_stats() w
                       JOIN duet.kafka_consumers c ON c.id = w.consumer_id WHERE c.name = '$name') w")
  echo "$hwm" > "$work/hwm_$name"
  n=$($PSQL -At -c "SELECT count(*) FROM $table")
  [ "$n" -eq "$N" ] || { echo "$name: not all rows arrived ($n of $N)" >&2; exit 1; }
  $PSQL -c "SELECT duet_kafka_drop('$name')" >/dev/null
  awk -v a="$start" -v b="$end" -v f="$first" -v fn="$first_n" -v n="$N" -v cpu="${cpu:-0}" \
    'BEGIN { printf "%.3f %.0f %d\n", b - a, (b > f && n > fn) ? (n - fn) / (b - f) : 0, cpu }'
}
# COPY: prints "seconds cpu_ticks" (the backend's CPU time for the COPY)
copy_run() {
  local table=$1 file=$2 opts=$3 start end cpu
  $PSQL -c "TRUNCATE $table" -c "CHECKPOINT"
  start=$(now)
  cpu=$($PSQL -At -c "SELECT $CPU_TICKS FROM pg_read_file('/proc/self/stat') s" -c "\\copy $table FROM '$file' $opts" \
        -c "SELECT $CPU_TICKS FROM pg_read_file('/proc/self/stat') s" | awk 'NR == 1 { a = $1 } END { print $1 - a }')
  end=$(now)
  awk -v a="$start" -v b="$end" -v cpu="$cpu" 'BEGIN { printf "%.3f %d\n", b - a, cpu }'
}

# Warm-up, not measured: the first load into a fresh cluster creates the WAL segments (16 MB of
# zeros each, ~40 for the typed table) that every later load recycles after its checkpoint.
# Without it the first round's first run, always Kafka's, paid for them alone.
copy_run bench_typed "$work/events.csv" "WITH (FORMAT csv)" >/dev/null
$PSQL -c "TRUNCATE bench_typed" -c "CHECKPOINT" >/dev/null

# ROUNDS rounds, each Kafka then COPY for every target; the figures printed are each round's
# ratios and their median (this 2-core machine is shared: one round's ratio moves by ±30%).
: > "$work/rounds"
for round in $(seq "$ROUNDS"); do
  $PSQL -c "TRUNCATE bench_narrow, bench_typed, bench_raw" -c "CHECKPOINT" >/dev/null
  read -r t_kafka_narrow s_kafka_narrow c_kafka_narrow < <(kafka_run bench_narrow bench_narrow json)
  read -r t_copy_narrow c_copy_narrow < <(copy_run bench_narrow "$work/events.csv" "WITH (FORMAT csv)")
  $PSQL -c "TRUNCATE bench_narrow" -c "CHECKPOINT" >/dev/null
  read -r t_kafka_typed s_kafka_typed c_kafka_typed < <(kafka_run bench_typed bench_typed json)
  read -r t_copy_typed c_copy_typed < <(copy_run bench_typed "$work/events.csv" "WITH (FORMAT csv)")
  $PSQL -c "TRUNCATE bench_typed" -c "CHECKPOINT" >/dev/null
  read -r t_kafka_raw s_kafka_raw c_kafka_raw < <(kafka_run bench_raw bench_raw jsonb)
  read -r t_copy_raw c_copy_raw < <(copy_run bench_raw "$work/events.json" "")
  # per target: end-to-end ratio, steady ratio, Kafka CPU ticks, COPY CPU ticks
  for k in narrow typed raw; do
    tk=t_kafka_$k; sk=s_kafka_$k; ck=c_kafka_$k; tc=t_copy_$k; cc=c_copy_$k
    awk -v k="$k" -v r="$round" -v n="$N" -v tk="${!tk}" -v sk="${!sk}" -v ck="${!ck}" -v tc="${!tc}" -v cc="${!cc}" \
      'BEGIN { printf "%s %d %.4f %.4f %d %d\n", k, r, tc / tk, sk * tc / n, ck, cc }' >> "$work/rounds"
  done
done
# median of a target's column c over the rounds
median() {
  awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$work/rounds" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# One INSERT per row, autocommit, on a sample.
$PSQL -c "TRUNCATE bench_typed" >/dev/null
head -n "$INSERT_SAMPLE" "$work/events.csv" |
  awk -F, '{ printf "INSERT INTO bench_typed VALUES (%c%s%c, %s, %s, %s, %s, %c%s%c);\n", 39, $1, 39, $2, $3, $4, $5, 39, $6, 39 }' > "$work/inserts.sql"
start=$(now); $PSQL -f "$work/inserts.sql" >/dev/null; end=$(now)
t_insert=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')

r_kn=$(rate "$N" "$t_kafka_narrow"); r_kt=$(rate "$N" "$t_kafka_typed"); r_kr=$(rate "$N" "$t_kafka_raw")
r_cn=$(rate "$N" "$t_copy_narrow"); r_ct=$(rate "$N" "$t_copy_typed"); r_cr=$(rate "$N" "$t_copy_raw")
r_in=$(rate "$INSERT_SAMPLE" "$t_insert")
echo "rows: $N keyed JSON events over $PARTS partitions; consumers: batch 10000, parallelism 2"
printf "%-34s %10s rows/s  (%ss; steady %s rows/s)\n" "Kafka → narrow, no index (json)" "$r_kn" "$t_kafka_narrow" "$s_kafka_narrow"
printf "%-34s %10s rows/s  (%ss)\n" "COPY → narrow, no index (csv)" "$r_cn" "$t_copy_narrow"
printf "%-34s %10s rows/s  (%ss; steady %s rows/s)\n" "Kafka → typed, indexed (json)" "$r_kt" "$t_kafka_typed" "$s_kafka_typed"
printf "%-34s %10s rows/s  (%ss)\n" "COPY → typed, indexed (csv)" "$r_ct" "$t_copy_typed"
printf "%-34s %10s rows/s  (%ss; steady %s rows/s)\n" "Kafka → jsonb table (jsonb)" "$r_kr" "$t_kafka_raw" "$s_kafka_raw"
printf "%-34s %10s rows/s  (%ss)\n" "COPY → jsonb table" "$r_cr" "$t_copy_raw"
printf "%-34s %10s rows/s  (%s rows, %ss)\n" "INSERT per row → typed table" "$r_in" "$INSERT_SAMPLE" "$t_insert"
for k in narrow typed raw; do
  echo "rounds, $k (kafka/COPY end to end / steady): $(awk -v k="$k" '$1 == k { printf "%s%.2f/%.2f", sep, $3, $4; sep = ", " }' "$work/rounds")"
done
echo "ratio kafka/COPY narrow: $(median narrow 3 | xargs printf %.2f)x end to end, $(median narrow 4 | xargs printf %.2f)x steady   (median of $ROUNDS; goal >= 0.8x / 0.9x)"
echo "ratio kafka/COPY typed:  $(median typed 3 | xargs printf %.2f)x end to end, $(median typed 4 | xargs printf %.2f)x steady   (median of $ROUNDS; goal >= 0.8x / 0.9x)"
echo "ratio kafka/COPY jsonb:  $(median raw 3 | xargs printf %.2f)x end to end, $(median raw 4 | xargs printf %.2f)x steady   (median of $ROUNDS; goal >= 0.9x)"
echo "pool workers' peak memory (VmHWM, MB): narrow $(cat "$work/hwm_bench_narrow"), typed $(cat "$work/hwm_bench_typed"), jsonb $(cat "$work/hwm_bench_raw")"
echo "ratio kafka typed / INSERT per row: $(ratio "$r_kt" "$r_in")x"
# Server CPU per row (less sensitive to other load on the machine than wall time): the consumer's
# workers (fetch, librdkafka's threads, parse, render, COPY, commit) against COPY's backend.
us() { awk -v c="$1" -v t="$TICK" -v n="$N" 'BEGIN { printf "%.2f", c / t * 1e6 / n }'; }
for k in narrow typed raw; do
  ck=$(median $k 5); cc=$(median $k 6)
  echo "server CPU per row, $k (median): kafka $(us "$ck") us, COPY $(us "$cc") us, ratio $(awk -v a="$ck" -v b="$cc" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')x"
done
$PSQL -c "DROP TABLE bench_narrow, bench_typed, bench_raw" -c "ALTER SYSTEM RESET duet.kafka_poll_interval" -c "SELECT pg_reload_conf()" >/dev/null
