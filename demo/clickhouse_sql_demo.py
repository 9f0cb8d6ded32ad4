#!/usr/bin/env python3
"""clickhouse_sql_demo.py DIR — the metrics step's ClickHouse SQL (demo/steps/70-metrics.sh).

Runs the ClickHouse expression PostgreSQL generated for roas (DIR/roas.sql, duet_metric_sql('roas',
'clickhouse')) inline in a SELECT on a real ClickHouse 18.16 server over the campaign totals
(DIR/roas_pg.tsv: campaign, revenue, spend, and duet_metrics.roas from PostgreSQL) and compares
the digits. The server is private (test/ch_server.py) and always stopped.
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, '..', 'test'))
from ch_server import Server  # noqa: E402


def main():
    d = sys.argv[1]
    with open(os.path.join(d, 'roas.sql')) as f:
        expr = f.read().strip()
    rows = []
    with open(os.path.join(d, 'roas_pg.tsv')) as f:
        for line in f:
            name, revenue, spend, pg = line.rstrip('\n').split('\t')
            rows.append((name, float(revenue), float(spend), pg))
    srv = Server(os.path.join(d, 'sql_server'), os.path.join(here, '..', 'build', 'ch_udfs', 'duet_udf'))
    try:
        srv.start()
        srv.query('CREATE TABLE totals (campaign String, revenue Nullable(Float64), spend Nullable(Float64)) ENGINE = Memory')
        srv.query('INSERT INTO totals FORMAT TabSeparated',
                  data=''.join('%s\t%r\t%r\n' % (r[0], r[1], r[2]) for r in rows).encode())
        q = 'SELECT campaign, %s AS roas FROM totals ORDER BY campaign' % expr
        print('clickhouse-client --query "%s"' % q)
        out = srv.query(q + ' FORMAT TabSeparated').decode().rstrip('\n').split('\n')
        print('%-20s %22s %22s' % ('campaign', 'ClickHouse SQL', 'duet_metrics.roas (PG)'))
        same = True
        for line, r in zip(out, rows):
            name, ch = line.split('\t')
            ok = (ch == '\\N' and r[3] == '') or (ch != '\\N' and r[3] != '' and float(ch) == float(r[3]))
            same = same and ok
            print('%-20s %22s %22s' % (name, ch, r[3] or 'NULL'))
        print('ClickHouse and PostgreSQL: %s' % ('identical digits on every campaign' if same else 'DIFFERENT'))
    except RuntimeError as e:
        print('ClickHouse server part skipped: %s' % e)
    finally:
        srv.stop()


if __name__ == '__main__':
    main()
