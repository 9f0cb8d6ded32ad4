#!/usr/bin/env python3
"""clickhouse_demo.py DIR — the demo's ClickHouse half (demo/steps/60-clickhouse.sh).

1. The XML PostgreSQL generated, driven by the ClickHouse-faithful harness exactly as a ClickHouse
   query `SELECT name, ctr(clicks, impressions), roas(revenue, spend), … FROM totals` would call
   duet_udf (RowBinary, executable_pool, chunk headers).
2. A real ClickHouse server (Debian's 18.16, which predates executable UDFs) computing the same
   metric through duet_udf's dictionary mode, with the formula PostgreSQL stored.
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, '..', 'test'))
from ch_harness import Harness, UdfError  # noqa: E402
from ch_server import Server  # noqa: E402


def main():
    d = sys.argv[1]
    totals = []
    with open(os.path.join(d, 'totals.tsv')) as f:
        for line in f:
            name, clicks, imps, spend, revenue, budget = line.rstrip('\n').split('\t')
            totals.append((name, float(clicks), float(imps), float(spend), float(revenue), float(budget)))
    h = Harness(os.path.join(d, 'duet_function.xml'), os.path.join(d, 'user_scripts'))
    try:
        ctr = h.call('ctr', [[t[1], t[2]] for t in totals])
        roas = h.call('roas', [[t[4], t[3]] for t in totals])
        pacing = h.call('pacing', [[t[3], t[5]] for t in totals])
        over = h.call('over_budget', [[t[3], t[5]] for t in totals])
        h.close()
    except UdfError as e:
        sys.exit('ClickHouse UDF call failed: %s' % e)
    print('\nThrough the ClickHouse executable UDF protocol (harness; %d duet_udf processes, pooled):'
          % h.stats['processes'])
    print('%-20s %10s %8s %8s %12s' % ('campaign', 'ctr', 'roas', 'pacing%', 'over_budget'))
    for t, c, r, p, o in zip(totals, ctr, roas, pacing, over):
        print('%-20s %10.5f %8.3f %8s %12s' % (t[0], c, r, p, o))

    print('\nIn a real ClickHouse server (18.16, executable dictionary over duet_udf --dictionary):')
    with open(os.path.join(d, 'duet_metrics.tsv')) as f:
        roas_formula = next(l.split('\t')[3].rstrip('\n') for l in f if l.startswith('roas\t'))
    srv = Server(os.path.join(d, 'server'), os.path.join(d, 'user_scripts', 'duet_udf'))
    try:
        srv.start()
        srv.query('CREATE TABLE totals (campaign String, revenue Float64, spend Float64) ENGINE = Memory')
        srv.query('INSERT INTO totals FORMAT TabSeparated',
                  data=''.join('%s\t%r\t%r\n' % (t[0], t[4], t[3]) for t in totals).encode())
        q = ("SELECT campaign, dictGetString('duet_calc', 'result', tuple('%s', "
             "concat('{\"revenue\":', toString(revenue), ',\"spend\":', toString(spend), '}'))) AS roas "
             "FROM totals ORDER BY campaign FORMAT PrettyCompactNoEscapes" % roas_formula.replace("'", "\\'"))
        print('clickhouse-client --query "%s"' % q.replace('FORMAT PrettyCompactNoEscapes', '').strip())
        print(srv.query(q).decode().rstrip())
        same = srv.query("SELECT dictGetString('duet_calc', 'result', tuple('%s', '%s'))" % (
            roas_formula, json.dumps({'revenue': totals[0][4], 'spend': totals[0][3]}))).decode().strip()
        print('first campaign: ClickHouse %s, harness %r -> %s' % (
            same, roas[0], 'identical' if float(same) == roas[0] else 'DIFFERENT'))
    except RuntimeError as e:
        print('ClickHouse server part skipped: %s' % e)
    finally:
        srv.stop()


if __name__ == '__main__':
    main()
