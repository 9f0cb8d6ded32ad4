#!/usr/bin/env bash
# ClickHouse: metrics defined once in PostgreSQL, computed by duet_udf through ClickHouse's UDF protocol and a real ClickHouse server
# Defines four metrics in PostgreSQL, writes the ClickHouse <functions> XML and duet_udf definitions it
# generates, calls the UDF as ClickHouse would, then asks a real ClickHouse 18.16 server (dictionary mode)
# for ROAS and compares the digits with PostgreSQL's.
set -euo pipefail
dir=demo/data/clickhouse
mkdir -p "$dir"
psql -q -c "SELECT name, arguments, return_type FROM (
              SELECT (duet_metric_define('ctr', 'clicks / impressions', 'click-through rate')).*
    UNION ALL SELECT (duet_metric_define('roas', 'revenue / spend', 'return on ad spend')).*
    UNION ALL SELECT (duet_metric_define('pacing', 'round(spend / budget * 100, 1)', 'budget used, percent')).*
    UNION ALL SELECT (duet_metric_define('over_budget', 'spend > budget', 'spent more than the budget')).*) m"
# The ClickHouse configuration comes out of PostgreSQL: the <functions> XML and duet_udf's definitions.
psql -q -A -t -c "SELECT xml FROM duet_clickhouse_config('RowBinary')" > "$dir/duet_function.xml"
psql -q -A -t -c "SELECT definitions FROM duet_clickhouse_config('RowBinary')" > "$dir/duet_metrics.tsv"
make -s install-clickhouse USER_SCRIPTS="$dir/user_scripts" DEFINITIONS="$dir/duet_metrics.tsv" >/dev/null
echo "ClickHouse config written to $dir/duet_function.xml (+ user_scripts/duet_udf, duet_metrics.tsv):"
sed -n '1,14p' "$dir/duet_function.xml"; echo "    ..."
psql -q -A -F $'\t' -t -c "SELECT c.name, sum(d.clicks), sum(d.impressions), sum(d.spend), sum(d.revenue), sum(d.budget)
                            FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id GROUP BY c.name ORDER BY c.name" \
  > "$dir/totals.tsv"
python3 demo/clickhouse_demo.py "$dir"
