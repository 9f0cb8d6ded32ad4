#!/usr/bin/env python3
"""ch_udf_values.py — parts of ch_udf_tests.py about how values cross the UDF boundary:

  int_results    Int64/UInt64 results: exact in every format and protocol mode, from the formula and
                 the metric (batch) paths; a double or an out-of-range integer fails the query at its
                 row, naming the column
  jsonb_numbers  the dictionary mode's JSON inputs against duet_calc itself (a cluster with pg_duet):
                 thousands of number texts, strings jsonb refuses, duplicate keys

Run through ch_udf_tests.py (`--only int_results`, `--psql` for the postgres part).
"""
import json
import decimal
import os
import random
import shutil
import subprocess
import tempfile

from ch_harness import Harness, UdfError, function_xml, functions_xml
from ch_udf_tests import FORMATS, FORMULA_COL, MODES, formula_fn, tsv_field, tsv_unescape


def int_results(env, res):
    """Int64 and UInt64 results: exact in every format and protocol mode (RowBinary little-endian,
    TSV/CSV/JSON digits), from the formula and the metric (batch) paths; a double, or an integer
    outside the type, fails the query naming the row and the column — never a rounded row."""
    iargs = [(FORMULA_COL, 'String'), ('x', 'Nullable(Int64)')]
    fargs = [(FORMULA_COL, 'String'), ('x', 'Nullable(Int64)'), ('d', 'Nullable(Float64)')]
    cases = [  # (result type, rows, want)
        ('Nullable(Int64)', [['x', 2**63 - 1], ['x', -2**63], ['x + 1', 2**53], ['x', None], ['div(x, 2)', 7],
                             ['x * 1', 0], ['-x', 2**62 + 3]],
         [2**63 - 1, -2**63, 2**53 + 1, None, 3, 0, -(2**62 + 3)]),
        ('Nullable(UInt64)', [['x', 2**63 - 1], ['x', 0], ['x', None], ['abs(x)', -5]], [2**63 - 1, 0, None, 5]),
        ('Int64', [['x', None], ['x', -9007199254740993]], [0, -9007199254740993]),
        ('UInt64', [['x % 10', 1234567890123456789], ['x', None]], [9, 0]),
    ]
    for fmt in FORMATS:
        for ftype, chunk, block in MODES:
            bad = []
            for rtype, rows, want in cases:
                h = env.harness([formula_fn('f', ftype, fmt, iargs, rtype, chunk)])
                try:
                    got = h.call('f', rows, block_size=block)
                    h.close()
                    if got != want or any(type(g) is not int for g in got if g is not None):
                        bad.append('%s: got %r, want %r' % (rtype, got, want))
                except UdfError as e:
                    bad.append('%s: %s' % (rtype, e))
            res.check('Int64/UInt64 results %s %s%s block %d: exact' % (fmt, ftype, ' +chunk_header' if chunk else '',
                                                                        block), not bad, '; '.join(bad[:3]))
        # a double result (even 4.0) or an out-of-range integer: the query fails at that row
        bad = []
        for rtype, rows, want in (
                ('Nullable(Int64)', [['x', 1, None], ['d', 1, 4.0]], ['row 2:', 'error:type', 'double 4', 'column result']),
                ('Int64', [['x / 2', 8, None]], ['row 1:', 'error:type', 'double 4', 'column result']),
                ('Nullable(UInt64)', [['x', 1, None], ['x', 2, None], ['x - 3', 2, None]],
                 ['row 3:', 'error:range', 'returned -1', 'column result of type Nullable(UInt64)'])):
            h = env.harness([formula_fn('f', 'executable', fmt, fargs, rtype)])
            try:
                got = h.call('f', rows)
                bad.append('%s: returned %r' % (rtype, got))
            except UdfError as e:
                if not all(w in str(e) for w in want):
                    bad.append('%s: %s, want %s' % (rtype, e, want))
        res.check('Int64/UInt64 results %s: a double or out-of-range integer fails the query at its row and column'
                  % fmt, not bad, '; '.join(bad[:3]))

    # a metric declared Int64 / UInt64 in the definitions file, evaluated a batch at a time
    scripts = os.path.join(env.work, 'int_scripts')
    os.makedirs(scripts, exist_ok=True)
    shutil.copy2(env.udf, os.path.join(scripts, 'duet_udf'))
    with open(os.path.join(scripts, 'duet_metrics.tsv'), 'w') as f:
        f.write('id\tNullable(Int64)\ta:Nullable(Int64),b:Nullable(Int64)\ta * 1000000 + b\n'
                'uid\tUInt64\ta:Nullable(Int64),b:Nullable(Int64)\ta - b\n'
                'half\tNullable(Int64)\ta:Nullable(Int64),b:Nullable(Int64)\ta / b\n')
    margs = [('a', 'Nullable(Int64)'), ('b', 'Nullable(Int64)')]
    rows = [[i * 1000003, i % 1000] for i in range(3000)] + [[9223372036853, 775807], [None, 1]]
    want = [a * 1000000 + b for a, b in rows[:-1]] + [None]
    for fmt in FORMATS:
        cfg = os.path.join(env.work, 'int_functions.xml')
        with open(cfg, 'w') as f:
            f.write(functions_xml([
                function_xml(n, 'executable_pool', fmt, 'duet_udf --metric %s --format %s --chunk-header' % (n, fmt),
                             margs, t, chunk_header=True)
                for n, t in (('id', 'Nullable(Int64)'), ('uid', 'UInt64'), ('half', 'Nullable(Int64)'))]))
        h = Harness(cfg, scripts)
        try:
            got = h.call('id', rows, block_size=2000)
            ok = got == want
            errs = []
            for name, r, w in (('uid', [[5, 2], [5, 5], [5, 6]], ['row 3:', 'error:range', 'returned -1', 'UInt64']),
                               ('half', [[4, None], [5, 2]], ['row 2:', 'error:type', 'double 2.5', 'column result']),
                               ('id', [[1, 1], [9223372036854, 775808]], ['row 2:', 'error:range'])):
                try:                               # a new pool: row numbers from 1
                    errs.append('%s returned %r' % (name, Harness(cfg, scripts).call(name, r)))
                except UdfError as e:
                    if not all(x in str(e) for x in w):
                        errs.append('%s: %s' % (name, e))
            h.close()
            res.check('Int64/UInt64 metric results %s (batch path, definitions file): %d rows exact, errors at their row'
                      % (fmt, len(rows)), ok and not errs, repr(got[-3:]) + '; '.join(errs))
        except UdfError as e:
            res.check('Int64/UInt64 metric results %s' % fmt, False, str(e))


def number_tokens(n):
    """JSON number texts around every edge of jsonb's reading: int64 and double limits, exponents
    that cancel fractions, numeric's limits (16383 digits after the point, 10^131072, exponents of
    ±1073741823), and texts that are no JSON number; then random ones."""
    edges = ['0', '-0', '0.0', '-0.0', '1.0', '1E2', '1e+2', '1e02', '1.5e1', '1.50e1', '100e-2', '0.1e1',
             '9223372036854775807', '9223372036854775808', '-9223372036854775808', '-9223372036854775809',
             '18446744073709551616', '123456789012345678901234567890', '922337203685477580.7e1',
             '92233720368547758.08e2', '1e18', '1e19', '-1e18', '-9.223372036854775808e18',
             '1e400', '-1e400', '1e-400', '-1e-400', '5e-324', '2e-324', '2.4703282292062328e-324',
             '1.7976931348623157e308', '1.7976931348623159e308', '1e131071', '1e131072', '9.9e131071',
             '0.01e131073', '1e-16383', '1e-16384', '1.5e-16383', '0e-16383', '0e-16384', '0e1000000',
             '0e1073741822', '0e1073741823', '1e1073741823', '0e-1073741823', '1e99999999999999999999',
             '01', '1.', '.5', '-', '+1', '1e', '1e+', '--1', '1.2.3', '0x10', 'Infinity', '-Infinity',
             'NaN', '1_0', '1e5e5', '00', '-01', '1.e3']
    rnd = random.Random(15)
    out = list(edges)
    for _ in range(n):
        t = rnd.choice(['', '-'])
        t += rnd.choice(['0', str(rnd.randint(1, 9)) + ''.join(rnd.choice('0123456789') for _ in range(rnd.randint(0, 25)))])
        if rnd.random() < 0.5:
            t += '.' + ''.join(rnd.choice('0000123456789') for _ in range(rnd.randint(1, 22)))
        if rnd.random() < 0.6:
            e = rnd.choice([rnd.randint(-25, 25), rnd.randint(-340, 330), rnd.randint(-20, 400)])
            t += rnd.choice('eE') + rnd.choice(['', '+'] if e >= 0 else ['']) + str(e)
        out.append(t)
    return out


def jsonb_numbers(env, res, psql, db):
    """The dictionary mode's inputs against duet_calc itself: each number text as the value of x,
    through formulas that tell an integer from a double, in PostgreSQL (jsonb, duet_calc) and in
    duet_udf --dictionary; the same answers, and error:input exactly where jsonb refuses the text."""
    tokens = number_tokens(3000)
    formulas = ['x', 'x + 9223372036854775807', 'x - 9223372036854775807', "x || ''"]
    keys = []
    for i, t in enumerate(tokens):
        inputs = '{"x": %s}' % t if i % 3 else '{"a": [%s, {"b": %s}], "x": %s}' % (t, t, t)
        keys += [(f, inputs) for f in formulas]
    # strings jsonb refuses (\u0000, a lone surrogate) or decodes (a pair), and duplicate keys
    for inputs in ('{"x": "a\\u0000b"}', '{"x": 1, "s": "\\u0000"}', '{"x": "\\ud800"}', '{"x": "\\ud83d\\ude00"}',
                   '{"x": 1, "x": 2E1}', '{"x": "1e400"}', '{"x": true}', '{"x": null}'):
        keys += [(f, inputs) for f in formulas]
    with tempfile.NamedTemporaryFile('w', dir=env.work, suffix='.tsv', delete=False) as f:
        for formula, inputs in keys:
            f.write('%s\t%s\n' % (formula, inputs))
        path = f.name
    # jsonb's refusal is the dictionary's error:input; duet_calc's errors by class, as the dictionary
    # writes them (range for 22003, type for 42804)
    q = r"""
CREATE TEMP TABLE k (n serial, formula text, inputs text);
\copy k (formula, inputs) FROM '%s' WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x02')
CREATE FUNCTION pg_temp.dk(f text, t text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE j jsonb;
BEGIN
    BEGIN j := t::jsonb; EXCEPTION WHEN OTHERS THEN RETURN 'error:input'; END;
    RETURN duet_calc(f, j)::text;
EXCEPTION WHEN numeric_value_out_of_range THEN RETURN 'error:range';
          WHEN datatype_mismatch THEN RETURN 'error:type';
END $$;
SELECT pg_temp.dk(formula, inputs) FROM k ORDER BY n;
""" % path
    p = subprocess.run([psql, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', db],
                       input=q.encode(), capture_output=True, timeout=300)
    if p.returncode != 0:
        res.check('jsonb numbers: duet_calc ran', False, p.stderr.decode()[:300])
        return
    pg = p.stdout.decode().split('\n')[:-1]
    data = b''.join(tsv_field(f) + b'\t' + tsv_field(i) + b'\n' for f, i in keys)
    d = subprocess.run([env.udf, '--dictionary'], input=data, capture_output=True, timeout=120)
    dict_out = [tsv_unescape(line.split(b'\t')[2]).decode() for line in d.stdout.split(b'\n')[:-1]]

    def norm(text):
        if text.startswith('error:'):
            return text.split('@')[0]
        return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)
    bad = []
    if d.returncode != 0 or len(dict_out) != len(keys) or len(pg) != len(keys):
        bad.append('rc %d, %d dictionary rows, %d PostgreSQL rows for %d keys' % (
            d.returncode, len(dict_out), len(pg), len(keys)))
    else:
        for (f, inputs), a, b in zip(keys, pg, dict_out):
            if norm(a) != norm(b):
                bad.append('%r %s: duet_calc %s, dictionary %s' % (f, inputs[:80], a[:60], b[:60]))
    refused = sum(1 for a in pg if a == 'error:input')
    res.check('jsonb numbers: %d number texts x %d formulas, duet_calc = --dictionary (%d refused by jsonb)' % (
        len(tokens), len(formulas), refused // len(formulas)), not bad and refused > 0, '; '.join(bad[:5]))
