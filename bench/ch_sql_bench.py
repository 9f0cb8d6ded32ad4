#!/usr/bin/env python3
"""ch_sql_bench.py — Duet's generated ClickHouse expression (calc/sqlgen_ch.c) against a
hand-written expression and against duet_udf (the executable dictionary, 18.16's executable
path), on the same rows of a real ClickHouse 18.16 server (test/ch_server.py's private one).

  ch_sql_bench.py --udf build/ch_udfs/duet_udf --tool build/unit/sqlgen_cases --dir build/bench/ch_sql
                  [--rows 10000000] [--udf-rows 1000000]

Rows: a Memory table of Nullable(Float64) columns from numbers(N) (spend is 0 on 0.1 % of the
rows). Each query is sum(expression) FORMAT TabSeparated; best of --rounds alternating rounds,
timed as the server reports it (the HTTP response's X-ClickHouse-Summary is not in 18.16, so the
wall time of the request on loopback). The results are first checked: the generated expression
equals duet_udf on every one of --udf-rows rows. duet_udf runs with a cold cache (SYSTEM RELOAD
DICTIONARY before each round), so every key goes through the pipe.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test'))
import ch_server  # noqa: E402
import ch_sql_conformance  # noqa: E402

ROAS = 'revenue / spend'
PACING = 'case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end'
HAND = {
    ROAS: 'if(spend = 0, NULL, revenue / spend)',
    PACING: 'if(isNull(budget) OR budget = 0, NULL, least(greatest(spend / (budget * elapsed / period), 0.), 2.))',
}
KEY = ("concat('{\"revenue\": ', ifNull(toString(revenue), 'null'), ', \"spend\": ', "
       "ifNull(toString(spend), 'null'), '}')")
UDF_KEY = "dictGetString('duet_calc', 'result', tuple('revenue / spend', %s))" % KEY


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--udf', required=True)
    ap.add_argument('--tool', required=True)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--rows', type=int, default=10_000_000)
    ap.add_argument('--udf-rows', type=int, default=1_000_000)
    ap.add_argument('--rounds', type=int, default=3)
    a = ap.parse_args()
    comp = ch_sql_conformance.Compiler(a.tool)
    types = {n: 'Float64' for n in ('revenue', 'spend', 'budget', 'elapsed', 'period')}
    gen = {}
    for f in (ROAS, PACING):
        res = comp.compile(f, {k: v for k, v in types.items() if k in f})
        if 'sql' not in res:
            raise SystemExit('%r does not compile: %s' % (f, res))
        gen[f] = res['sql']
    comp.close()
    srv = ch_server.Server(a.dir, a.udf)
    signal_stop = srv.stop
    try:
        srv.start()
        port = srv.http

        def q(sql, timeout=600):
            ok, body = ch_sql_conformance.http_query(port, sql, timeout=timeout)
            if not ok:
                raise RuntimeError(body.decode('utf-8', 'replace')[:500])
            return body.decode().strip()

        def timed(sql):
            t = time.perf_counter()
            q(sql)
            return time.perf_counter() - t

        print('clickhouse-server %s, %d rows (generated vs hand-written), %d rows (vs duet_udf)' % (
            q('SELECT version()'), a.rows, a.udf_rows))
        for name, n in (('bench_rows', a.rows), ('bench_udf_rows', a.udf_rows)):
            q('CREATE TABLE %s (revenue Nullable(Float64), spend Nullable(Float64), budget Nullable(Float64), '
              'elapsed Nullable(Float64), period Nullable(Float64)) ENGINE = Memory' % name)
            q('INSERT INTO %s SELECT (number %% 1000) * 1.5, number %% 997, (number %% 50) * 100, '
              'number %% 24, 24. FROM numbers(%d)' % (name, n))
        # the generated expression gives duet_udf's result on every row
        # as text: both write the shortest digits (18.16's toFloat64OrNull is not exact)
        bad = q("SELECT countIf(NOT ((isNull(g) AND u = 'null') OR toString(g) = u)) FROM "
                "(SELECT %s AS g, %s AS u FROM bench_udf_rows)" % (gen[ROAS], UDF_KEY))
        print('check: generated expression vs duet_udf on %d rows: %s differ' % (a.udf_rows, bad))
        if bad != '0':
            raise SystemExit(1)
        for f in (ROAS, PACING):
            bad = q('SELECT countIf(NOT ((isNull(g) AND isNull(h)) OR g = h)) FROM (SELECT %s AS g, %s AS h FROM bench_rows)'
                    % (gen[f], HAND[f]))
            print('check: generated vs hand-written %r on %d rows: %s differ' % (f, a.rows, bad))
        best = {}
        for r in range(a.rounds):
            for f in (ROAS, PACING):
                for kind, expr in (('hand', HAND[f]), ('generated', gen[f])):
                    t = timed('SELECT sum(%s) FROM bench_rows FORMAT TabSeparated' % expr)
                    best[(f, kind)] = min(best.get((f, kind), t), t)
            t = timed('SELECT sum(%s) FROM bench_udf_rows FORMAT TabSeparated' % gen[ROAS])
            best[('udf_rows', 'generated')] = min(best.get(('udf_rows', 'generated'), t), t)
            t = timed('SELECT sum(length(%s)) FROM bench_udf_rows FORMAT TabSeparated' % KEY)
            best[('udf_rows', 'keys')] = min(best.get(('udf_rows', 'keys'), t), t)
            q('SYSTEM RELOAD DICTIONARY duet_calc')
            t = timed('SELECT sum(toFloat64OrNull(%s)) FROM bench_udf_rows FORMAT TabSeparated' % UDF_KEY)
            best[('udf_rows', 'udf')] = min(best.get(('udf_rows', 'udf'), t), t)
        for f in (ROAS, PACING):
            h, g = best[(f, 'hand')], best[(f, 'generated')]
            print('%-12s hand-written %6.2f ns/row  generated %6.2f ns/row  ratio generated/hand %.2fx' % (
                'roas' if f == ROAS else 'pacing', h / a.rows * 1e9, g / a.rows * 1e9, g / h))
        g, k, u = best[('udf_rows', 'generated')], best[('udf_rows', 'keys')], best[('udf_rows', 'udf')]
        print('roas, %d rows: generated %.1f ns/row, building the dictionary keys alone %.1f ns/row, '
              'duet_udf (cold cache) %.1f ns/row: ratio duet_udf/generated %.0fx' % (
                  a.udf_rows, g / a.udf_rows * 1e9, k / a.udf_rows * 1e9, u / a.udf_rows * 1e9, u / g))
    finally:
        signal_stop()


if __name__ == '__main__':
    main()
