#!/usr/bin/env python3
"""ch_udf_tests.py — duet_udf through the ClickHouse-faithful harness (test/ch_harness.py).

  ch_udf_tests.py --user-scripts DIR [--conformance DIR] [--valgrind] [--only NAME]

DIR holds duet_udf and duet_metrics.tsv (make install-clickhouse). Parts:
  conformance  every vector of test/conformance/*.tsv, in every format and protocol mode, and
               through the dictionary mode: results identical to the expected (calc's) values
  protocol     block sizes 1/3/65536 and uneven tails, pool reuse, chunk headers, NULLs, escapes,
               invalid UTF-8 bytes, integer/Bool types, constant arguments, named metrics, timeouts
  int_results  Int64/UInt64 results, exact in every format and mode; doubles and out-of-range fail
               (test/ch_udf_values.py, as the postgres part's jsonb numbers differential)
  robustness   malformed input straight on the pipe: exit 1, one stderr line, never a wrong row count
  valgrind     (--valgrind) a subset of the protocol runs under valgrind
Prints one line per check and "N passed, N failed".
"""
import argparse
import decimal
import glob
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ch_harness import Harness, UdfError, arg_spec, function_xml, functions_xml  # noqa: E402

FORMATS = ['TabSeparated', 'CSV', 'JSONEachRow', 'RowBinary']
FORMULA_COL = '__formula'


class Results:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, ok, detail=''):
        if ok:
            self.passed += 1
            print('ok   %s' % name)
        else:
            self.failed += 1
            print('FAIL %s%s' % (name, (': ' + detail) if detail else ''))
        sys.stdout.flush()
        return ok


class Env:
    def __init__(self, user_scripts, work):
        self.work = work
        self.user_scripts = user_scripts
        self.work = work
        self.udf = os.path.join(user_scripts, 'duet_udf')
        self.n = 0

    def harness(self, elements):
        self.n += 1
        path = os.path.join(self.work, 'functions_%d.xml' % self.n)
        with open(path, 'w') as f:
            f.write(functions_xml(elements))
        return Harness(path, self.user_scripts)


def formula_fn(name, ftype, fmt, args, rtype, chunk=False, prog='duet_udf', **kw):
    cmd = '%s --formula --format %s --arguments %s --returns %s%s' % (
        prog, fmt, arg_spec(args), rtype, ' --chunk-header' if chunk else '')
    return function_xml(name, ftype, fmt, cmd, args, rtype, chunk_header=chunk, **kw)


MODES = [  # (type, chunk header, block size)
    ('executable', False, 65536),
    ('executable_pool', True, 1),
    ('executable_pool', False, 3),
]

# ---------------------------------------------------------------- conformance


def unescape_formula(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == '\\' and i + 1 < len(s) and s[i + 1] in 'nt\\':
            out.append({'n': '\n', 't': '\t', '\\': '\\'}[s[i + 1]])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return ''.join(out)


def jsonb_number(text):
    """A JSON number as jsonb reads it and duet_calc binds it (ch_udfs/udf_jsonb.c): an int when no
    digits follow the point once the exponent is applied and it fits in 64 bits, else the correctly
    rounded float (inf beyond the doubles: the harness sends inf, which duet_udf reads as NULL)."""
    d = decimal.Decimal(text)
    integral = d.as_tuple().exponent >= 0
    if d == 0:
        return 0 if integral else 0.0
    if integral and d.adjusted() < 19 and -2**63 <= int(d) < 2**63:
        return int(d)
    return float(d) + 0.0                  # + 0.0: jsonb has no -0


def load_vectors(directory):
    """(where, formula, inputs as [(name, value)], expected, inputs text as written)"""
    vecs = []
    for path in sorted(glob.glob(os.path.join(directory, '*.tsv'))):
        with open(path, encoding='utf-8') as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip('\n')
                if not line or line.startswith('#'):
                    continue
                parts = line.split('\t')
                if len(parts) != 3:
                    raise SystemExit('%s:%d: expected 3 tab-separated fields' % (path, lineno))
                vecs.append(('%s:%d' % (os.path.basename(path), lineno), unescape_formula(parts[0]),
                             json.loads(parts[1], object_pairs_hook=lambda kv: list(kv),
                                        parse_int=jsonb_number, parse_float=jsonb_number),
                             parts[2], parts[1]))
    return vecs


def value_type(v):
    if v is None:
        return 'Nullable(Nothing)'
    if isinstance(v, bool):
        return 'Nullable(Bool)'
    if isinstance(v, int) and -2**63 <= v < 2**63:
        return 'Nullable(Int64)'         # an integer input, exact as jsonb binds it in PostgreSQL
    if isinstance(v, (int, float)):
        return 'Nullable(Float64)'
    if isinstance(v, str):
        return 'Nullable(String)'
    raise ValueError('input of type %s' % type(v).__name__)


def return_type(expected):
    if isinstance(expected, bool):
        return 'Nullable(Bool)'
    if isinstance(expected, str):
        return 'Nullable(String)'
    return 'Nullable(Float64)'


def same(result, expected):
    if expected is None:
        return result is None
    if isinstance(expected, bool):
        return result is not None and bool(result) == expected and isinstance(result, bool)
    if isinstance(expected, str):
        return result == expected.encode('utf-8')
    return isinstance(result, float) and not isinstance(result, bool) and result == float(expected) \
        and math.copysign(1, result) == math.copysign(1, float(expected))


def error_matches(message, expected):
    tag = expected                       # error:<class> or error:<class>@line:col
    if '@' in tag:
        return (tag + ':') in message
    return (tag + ':') in message or (tag + '@') in message


def conformance(env, res, directory):
    vecs = load_vectors(directory)
    if not vecs:
        res.check('conformance vectors present in %s' % directory, False, 'no vectors')
        return
    groups, errors, unusable = {}, [], []
    for v in vecs:
        where, formula, inputs, expected, _ = v
        try:
            args = [(FORMULA_COL, 'String')] + [(k, value_type(x)) for k, x in inputs]
        except ValueError as e:
            unusable.append((where, str(e)))
            continue
        if expected.startswith('error:'):
            errors.append((where, formula, inputs, args, expected))
            continue
        exp = json.loads(expected)
        groups.setdefault((tuple(args), return_type(exp)), []).append((where, formula, inputs, exp))
    for where, why in unusable:
        res.check('conformance %s representable as ClickHouse arguments' % where, False, why)

    # Every non-error vector, grouped by signature, in every format and protocol mode.
    for fmt in FORMATS:
        for ftype, chunk, block in MODES:
            elements, calls = [], []
            for gi, ((args, rtype), items) in enumerate(sorted(groups.items(), key=lambda kv: repr(kv[0]))):
                name = 'g%d' % gi
                elements.append(formula_fn(name, ftype, fmt, list(args), rtype, chunk))
                calls.append((name, items))
            h = env.harness(elements)
            bad, total = [], 0
            try:
                for name, items in calls:
                    rows = [[f] + [x for _, x in inp] for _, f, inp, _ in items]
                    out = h.call(name, rows, block_size=block)
                    for (where, f, inp, exp), got in zip(items, out):
                        total += 1
                        if not same(got, exp):
                            bad.append('%s %r: got %r, want %r' % (where, f, got, exp))
                h.close()
            except UdfError as e:
                bad.append('query failed: %s' % e)
            res.check('conformance %s %s%s block %d: %d vectors' % (
                fmt, ftype, ' +chunk_header' if chunk else '', block, total), not bad, '; '.join(bad[:5]))

    # Error vectors: each alone; the query must fail with the vector's error class, whatever the
    # declared result type (so a result-type mismatch cannot pass for the expected error).
    bad = []
    for where, formula, inputs, args, expected in errors:
        for rtype in ('Nullable(Float64)', 'Nullable(String)', 'Nullable(Bool)'):
            h = env.harness([formula_fn('e', 'executable', 'TabSeparated', args, rtype)])
            try:
                got = h.call('e', [[formula] + [x for _, x in inputs]])
                bad.append('%s %r (%s): returned %r, want %s' % (where, formula, rtype, got, expected))
            except UdfError as e:
                if not error_matches(str(e), expected):
                    bad.append('%s %r (%s): %s, want %s' % (where, formula, rtype, e, expected))
    res.check('conformance error vectors: %d, each failing the query with its class' % len(errors),
              not bad, '; '.join(bad[:5]))

    # Dictionary mode: the whole file in one pipe, the inputs as written (1E2, 1e400: udf_jsonb.c),
    # results as the conformance notation.
    keys = [(f, raw) for _, f, _, _, raw in vecs]
    data = b''.join(tsv_field(f) + b'\t' + tsv_field(i) + b'\n' for f, i in keys)
    p = subprocess.run([env.udf, '--dictionary'], input=data, capture_output=True, timeout=120)
    lines = p.stdout.split(b'\n')[:-1]
    bad = []
    if p.returncode != 0 or p.stderr or len(lines) != len(vecs):
        bad.append('rc %d, %d rows for %d keys, stderr %r' % (p.returncode, len(lines), len(vecs), p.stderr[:200]))
    else:
        for (where, f, inp, expected, raw), line in zip(vecs, lines):
            cols = line.split(b'\t')
            if len(cols) != 3 or tsv_unescape(cols[0]) != f.encode() or tsv_unescape(cols[1]) != raw.encode():
                bad.append('%s: keys not echoed: %r' % (where, line[:100]))
                continue
            got = tsv_unescape(cols[2]).decode('utf-8', 'surrogateescape')
            if not dict_result_matches(got, expected):
                bad.append('%s %r: got %s, want %s' % (where, f, got, expected))
    res.check('conformance through --dictionary: %d vectors' % len(vecs), not bad, '; '.join(bad[:5]))

    # An array or object input is a type error, the class duet_calc gives a jsonb array (42804).
    data = b''.join(tsv_field('x + 1') + b'\t' + tsv_field(i) + b'\n' for i in ('{"x": [1, 2]}', '{"x": {"a": 1}}'))
    p = subprocess.run([env.udf, '--dictionary'], input=data, capture_output=True, timeout=120)
    got = [tsv_unescape(line.split(b'\t')[2]) for line in p.stdout.split(b'\n')[:-1]]
    res.check('--dictionary: array and object inputs are error:type', p.returncode == 0 and
              got == [b'error:type', b'error:type'], repr(got))

    # Invalid UTF-8 in a key is that key's error:input (the one UTF-8 rule, docs/calc.md "Strings");
    # the keys around it are answered as usual.
    data = (tsv_field('length(s)') + b'\t' + tsv_field('{"s": "ok"}') + b'\n' +
            tsv_field(b'length(s) + 0\xff') + b'\t' + tsv_field('{"s": "x"}') + b'\n' +
            tsv_field('length(s)') + b'\t' + tsv_field(b'{"s": "a\xc3"}') + b'\n' +
            tsv_field('length(s)') + b'\t' + tsv_field('{"s": "日本語😀"}') + b'\n')
    p = subprocess.run([env.udf, '--dictionary'], input=data, capture_output=True, timeout=120)
    got = [tsv_unescape(line.split(b'\t')[2]) for line in p.stdout.split(b'\n')[:-1]]
    res.check('--dictionary: invalid UTF-8 in a key is error:input, length() counts code points',
              p.returncode == 0 and got == [b'2', b'error:input', b'error:input', b'4'], repr(got))


def dict_result_matches(got, expected):
    if expected.startswith('error:'):
        return got == expected or ('@' not in expected and got.split('@')[0] == expected)
    if got.startswith('error:'):
        return False
    return same_json(json.loads(got), json.loads(expected))


def same_json(a, b):
    if isinstance(b, bool) or b is None or isinstance(b, str):
        return type(a) is type(b) and a == b
    if isinstance(b, int) and abs(b) > 2**53:   # an exact integer: digit for digit
        return isinstance(a, int) and not isinstance(a, bool) and a == b
    return isinstance(a, (int, float)) and not isinstance(a, bool) and float(a) == float(b)


def tsv_field(s):
    from ch_harness import tsv_escape
    return tsv_escape(s.encode('utf-8') if isinstance(s, str) else s)


def tsv_unescape(b):
    from ch_harness import tsv_unescape as u
    return u(b)


# ---------------------------------------------------------------- protocol


def div_or_null(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def protocol(env, res):
    rnd = random.Random(42)
    n = 65536 * 2 + 7                                     # two full blocks and an uneven tail
    rows = []
    for i in range(n):
        c = None if i % 97 == 0 else float(rnd.randint(0, 1000))
        m = None if i % 89 == 0 else float(rnd.choice([0, rnd.randint(1, 100000)]))
        rows.append([c, m])
    want = [div_or_null(c, m) for c, m in rows]
    args = [('clicks', 'Nullable(Float64)'), ('impressions', 'Nullable(Float64)')]
    for fmt in FORMATS:
        for ftype, chunk, block in (('executable', False, 65536), ('executable_pool', True, 65536),
                                    ('executable_pool', False, 65536), ('executable_pool', True, 3)):
            cmd = 'duet_udf --metric ctr --format %s%s' % (fmt, ' --chunk-header' if chunk else '')
            h = env.harness([function_xml('ctr', ftype, fmt, cmd, args, 'Nullable(Float64)',
                                          chunk_header=chunk, pool_size=2)])
            nrows = n if block > 3 else 3001
            try:
                got = h.call('ctr', rows[:nrows], block_size=block)
                h.close()
                ok = got == want[:nrows]
                detail = '' if ok else 'first difference at row %d' % next(
                    i for i, (a, b) in enumerate(zip(got, want)) if a != b)
            except UdfError as e:
                ok, detail = False, str(e)
            blocks = -(-nrows // block)
            procs_ok = h.stats['processes'] == (blocks if ftype == 'executable' else 1)
            res.check('metric ctr %s %s%s, %d rows in blocks of %d (%d processes)' % (
                fmt, ftype, ' +chunk_header' if chunk else '', nrows, block, h.stats['processes']),
                ok and procs_ok, detail or 'process count %d' % h.stats['processes'])

    # NULLs and escapes: every special byte, quotes, commas, unicode (invalid UTF-8 is an input
    # error in every format: robustness() below).
    specials = ['', 'plain', 'tab\there', 'new\nline', 'back\\slash', "quo'te", 'dq"uote', 'com,ma',
                'nul\0byte', 'cr\rlf', '\b\f', 'ünïcødé ✓', '😀 4-byte', '\\N', 'N', None]
    srows = [[a, b] for a in specials for b in specials]
    swant = [None if a is None or b is None else (a if isinstance(a, bytes) else a.encode()) +
             (b if isinstance(b, bytes) else b.encode()) for a, b in srows]
    sargs = [(FORMULA_COL, 'String'), ('a', 'Nullable(String)'), ('b', 'Nullable(String)')]
    for fmt in FORMATS:
        frows = [['a || b'] + r for r in srows]
        fwant = swant
        for ftype, chunk, block in MODES:
            h = env.harness([formula_fn('cat', ftype, fmt, sargs, 'Nullable(String)', chunk)])
            try:
                got = h.call('cat', frows, block_size=block)
                h.close()
                bad = [(frows[i], g, w) for i, (g, w) in enumerate(zip(got, fwant)) if g != w]
                res.check('strings with escapes %s %s%s block %d (%d rows)' % (
                    fmt, ftype, ' +chunk_header' if chunk else '', block, len(frows)), not bad, repr(bad[:2]))
            except UdfError as e:
                res.check('strings with escapes %s %s' % (fmt, ftype), False, str(e))

    # Integer, Float32 and Bool arguments; UInt8, Bool, String and non-Nullable results.
    targs = [(FORMULA_COL, 'String'), ('i8', 'Int8'), ('u64', 'UInt64'), ('i64', 'Nullable(Int64)'),
             ('f32', 'Float32'), ('u16', 'UInt16'), ('flag', 'Bool')]
    trows = [['i8 + u64', -128, 2 ** 53, None, 0.5, 65535, True],
             ['i64 * f32', 127, 0, -2 ** 40, 0.25, 0, False],
             ['u16 - i8', 5, 9223372036854775807, 7, -1.5, 300, True]]
    twant = [-128.0 + 2 ** 53, float(-2 ** 40) * 0.25, 300.0 - 5]
    for fmt in FORMATS:
        h = env.harness([formula_fn('t', 'executable', fmt, targs, 'Float64')])
        try:
            got = h.call('t', trows)
            res.check('integer/Float32/Bool argument types %s' % fmt, got == twant, repr(got))
        except UdfError as e:
            res.check('integer/Float32/Bool argument types %s' % fmt, False, str(e))
        # a UInt64 beyond 2^63 - 1 is not a formula integer: an input error, never a rounded double
        h = env.harness([formula_fn('t', 'executable', fmt, targs, 'Float64')])
        try:
            got = h.call('t', [['u64', 0, 18446744073709551615, None, 0.5, 0, True]])
            res.check('UInt64 beyond 2^63 - 1 is an error %s' % fmt, False, 'returned %r' % got)
        except UdfError as e:
            res.check('UInt64 beyond 2^63 - 1 is an error %s' % fmt, 'beyond the formula integers' in str(e), str(e))
        cargs = [(FORMULA_COL, 'String'), ('a', 'Nullable(Float64)'), ('b', 'Float64')]
        for rtype, crow, cwant in (('UInt8', [['a > b', 2, 1], ['a < b', 2, 1], ['a > b', None, 1]], [1, 0, 0]),
                                   ('Nullable(UInt8)', [['a > b', 2, 1], ['a > b', None, 1]], [1, None]),
                                   ('Bool', [['a > b', 2, 1], ['a < b', 2, 1]], [True, False]),
                                   ('Nullable(Bool)', [['a = b', 1, 1], ['a = b', None, 1]], [True, None])):
            h = env.harness([formula_fn('c', 'executable_pool', fmt, cargs, rtype, True)])
            try:
                got = h.call('c', crow, block_size=2)
                h.close()
                res.check('%s result %s' % (rtype, fmt), got == cwant, repr(got))
            except UdfError as e:
                res.check('%s result %s' % (rtype, fmt), False, str(e))

    # Constant arguments: ClickHouse evaluates once, with a single row.
    h = env.harness([formula_fn('k', 'executable', 'TabSeparated',
                                [(FORMULA_COL, 'String'), ('x', 'Float64')], 'Nullable(Float64)')])
    got = h.call('k', [['x * 2', 21.0]] * 1000, constant=(True, True))
    res.check('constant arguments: one block of one row for 1000 result rows',
              got == [42.0] * 1000 and h.stats['blocks'] == 1 and h.stats['processes'] == 1, repr(h.stats))

    # A formula that does not compile fails the query with its position.
    h = env.harness([formula_fn('s', 'executable_pool', 'RowBinary', [(FORMULA_COL, 'String')],
                                'Nullable(Float64)', True)])
    try:
        h.call('s', [['1 +']])
        res.check('syntax error fails the query with line:column', False, 'no error')
    except UdfError as e:
        res.check('syntax error fails the query with line:column', 'error:syntax@1:' in str(e), str(e))

    # Timeouts: a command that never answers hits command_read_timeout; the harness kills it.
    stall = os.path.join(env.user_scripts, 'stall.sh')
    with open(stall, 'w') as f:
        f.write('#!/bin/sh\nexec sleep 60\n')
    os.chmod(stall, 0o755)
    h = env.harness([function_xml('stall', 'executable_pool', 'TabSeparated', 'stall.sh',
                                  [('x', 'Float64')], 'Float64', read_timeout=300)])
    try:
        h.call('stall', [[1.0]])
        res.check('command_read_timeout enforced', False, 'no timeout')
    except UdfError as e:
        res.check('command_read_timeout enforced', 'command_read_timeout' in str(e), str(e))
    finally:
        for p in h.pools.get('stall', []):
            p.kill()
        os.unlink(stall)

    # The shipped example configurations, as ClickHouse would load them.
    here = os.path.dirname(os.path.abspath(__file__))
    h = Harness(os.path.join(here, '..', 'ch_udfs', 'duet_metrics_function.xml'), env.user_scripts)
    try:
        got = [h.call('ctr', [[3.0, 40.0], [None, 1.0]]), h.call('cpm', [[2.5, 1000.0]]),
               h.call('over_budget', [[120.0, 100.0], [80.0, 100.0], [1.0, None]], block_size=2)]
        h.close()
        res.check('example ch_udfs/duet_metrics_function.xml', got == [[3 / 40, None], [2.5], [1, 0, None]], repr(got))
    except UdfError as e:
        res.check('example ch_udfs/duet_metrics_function.xml', False, str(e))
    h = Harness(os.path.join(here, '..', 'ch_udfs', 'duet_formula_function.xml'), env.user_scripts)
    try:
        got = [h.call('duet_formula', [['x / y * 100', 3.0, 40.0, None, ''], ['z', 1.0, 2.0, None, None]]),
               h.call('duet_formula_string', [["label || 'x'", None, None, None, 'camp\tA']])]
        h.close()
        res.check('example ch_udfs/duet_formula_function.xml', got == [[3 / 40 * 100, None], [b'camp\tAx']], repr(got))
    except UdfError as e:
        res.check('example ch_udfs/duet_formula_function.xml', False, str(e))

    # The harness's own checks fail on a UDF that breaks the protocol (so they can fail at all).
    for script, ftype, body, want in (
            ('twice.sh', 'executable_pool', 'while read -r l; do echo "$l"; echo "$l"; done', 'rows'),
            ('short.sh', 'executable', 'head -n 1', 'Unexpected end of stream'),
            ('noisy.sh', 'executable', 'cat; echo warning >&2', 'stderr'),
            ('exit3.sh', 'executable', 'cat; exit 3', 'exit code 3')):
        path = os.path.join(env.user_scripts, script)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n%s\n' % body)
        os.chmod(path, 0o755)
        h = env.harness([function_xml('bad', ftype, 'TabSeparated', script, [('x', 'Float64')], 'Float64')])
        try:
            h.call('bad', [[1.0], [2.0], [3.0]], block_size=3)
            h.close()
            res.check('harness rejects %s (%s)' % (script, want), False, 'no error')
        except UdfError as e:
            res.check('harness rejects %s (%s)' % (script, want), want in str(e), str(e))
        finally:
            for p in h.pools.get('bad', []):
                p.kill()
            os.unlink(path)

    # A command that never reads: the block (larger than a pipe buffer) hits command_write_timeout.
    with open(stall, 'w') as f:
        f.write('#!/bin/sh\nexec sleep 60\n')
    os.chmod(stall, 0o755)
    h = env.harness([function_xml('stall', 'executable_pool', 'TabSeparated', 'stall.sh', [('x', 'Float64')],
                                  'Float64', read_timeout=10000, write_timeout=300)])
    try:
        t0 = time.time()
        h.call('stall', [[float(i)] for i in range(100000)])
        res.check('command_write_timeout enforced', False, 'no timeout')
    except UdfError as e:
        res.check('command_write_timeout enforced (%.1fs)' % (time.time() - t0),
                  'command_write_timeout' in str(e) and time.time() - t0 < 5, str(e))
    finally:
        for p in h.pools.get('stall', []):
            p.kill()
        os.unlink(stall)

    # A definitions-file metric whose variables are bound by the configured argument names.
    h = env.harness([function_xml('roas', 'executable_pool', 'JSONEachRow',
                                  'duet_udf --metric roas --format JSONEachRow --chunk-header',
                                  [('revenue', 'Nullable(Float64)'), ('spend', 'Nullable(Float64)')],
                                  'Nullable(Float64)', chunk_header=True)])
    try:
        got = h.call('roas', [[300.0, 100.0], [None, 5.0], [1.0, 0.0]], block_size=2)
        h.close()
        res.check('named metric roas by argument names (JSONEachRow pool)', got == [3.0, None, None], repr(got))
    except UdfError as e:
        res.check('named metric roas by argument names (JSONEachRow pool)', False, str(e))


# ---------------------------------------------------------------- robustness


def rb_f64(*vals):
    import struct
    out = b''
    for v in vals:
        out += b'\x01' if v is None else b'\x00' + struct.pack('<d', v)
    return out


def robustness(env, res):
    u = env.udf
    f2 = ['--formula', '--arguments', 'f:String,a:Nullable(Float64)', '--returns', 'Nullable(Float64)']
    metric = ['--metric', 'ctr']
    s2 = ['--formula', '--arguments', 'f:String,s:Nullable(String)', '--returns', 'Nullable(Float64)']
    big = 20 * 1024 * 1024
    cases = [
        # name, argv, stdin, complete good rows before the fault, expected stderr text
        ('truncated RowBinary Float64', metric + ['--format', 'RowBinary'], rb_f64(1, 2) + b'\x00\x01\x02', 1,
         'truncated RowBinary'),
        ('truncated RowBinary String', f2 + ['--format', 'RowBinary'], b'\x05a', 0, 'truncated RowBinary'),
        ('RowBinary String length beyond the row limit', f2 + ['--format', 'RowBinary', '--max-row-bytes', '1000'],
         b'\xff\xff\xff\xff\x0f', 0, 'exceeds the row limit'),
        ('RowBinary bad Nullable flag', metric + ['--format', 'RowBinary'], rb_f64(1, 2) + b'\x02', 1,
         'invalid Nullable flag'),
        ('TabSeparated too few columns', metric, b'1\t2\n3\n', 1, '1 TabSeparated columns, expected 2'),
        ('TabSeparated too many columns', metric, b'1\t2\t3\n', 0, 'more than 2 TabSeparated columns'),
        ('TabSeparated without final newline', metric, b'1\t2\n3\t4', 1, 'ends inside the row'),
        ('TabSeparated not a number', metric, b'1\t2\nx\t4\n', 1, 'invalid Nullable(Float64) value "x"'),
        ('TabSeparated NULL in non-Nullable', ['--formula', '--arguments', 'f:String,a:Float64', '--returns',
                                               'Float64'], b'a\t\\N\n', 0, 'NULL in column a'),
        ('CSV too many columns', metric + ['--format', 'CSV'], b'1,2\n1,2,3\n', 1, 'more than 2 CSV columns'),
        ('CSV unterminated quote', f2 + ['--format', 'CSV'], b'"a,1\n', 0, 'ends inside the row'),
        ('JSONEachRow invalid JSON', metric + ['--format', 'JSONEachRow'], b'{"clicks":1,"impressions":2}\n{"clicks":\n',
         1, 'invalid JSONEachRow row'),
        ('JSONEachRow invalid UTF-8', f2 + ['--format', 'JSONEachRow'], b'{"f":"a\xff","a":1}\n', 0,
         'invalid JSONEachRow row'),
        # one UTF-8 rule in every format: a String argument that is not UTF-8 fails the block
        ('TabSeparated invalid UTF-8', s2, b'length(s)\tok\nlength(s)\ta\xff\n', 1, 'invalid UTF-8 in String value of column s'),
        ('TabSeparated truncated UTF-8', s2, b'length(s)\ta\xc3\n', 0, 'invalid UTF-8 in String value of column s'),
        ('TabSeparated overlong UTF-8', s2, b'length(s)\t\xc0\xaf\n', 0, 'invalid UTF-8 in String value of column s'),
        ('TabSeparated UTF-8 surrogate', s2, b'length(s)\t\xed\xa0\x80\n', 0, 'invalid UTF-8 in String value of column s'),
        ('TabSeparated invalid UTF-8 in the formula', s2, b'length(s)\xff\tok\n', 0, 'invalid UTF-8 in String value of column f'),
        ('CSV invalid UTF-8', s2 + ['--format', 'CSV'], b'length(s),ok\nlength(s),"a\xfe"\n', 1,
         'invalid UTF-8 in String value of column s'),
        ('RowBinary invalid UTF-8', s2 + ['--format', 'RowBinary'], b'\x09length(s)\x00\x02ok\x09length(s)\x00\x02a\xff', 1,
         'invalid UTF-8 in String value of column s'),
        ('RowBinary code point beyond U+10FFFF', s2 + ['--format', 'RowBinary'], b'\x09length(s)\x00\x04\xf4\x90\x80\x80', 0,
         'invalid UTF-8 in String value of column s'),
        ('JSONEachRow invalid UTF-8 in a String argument', s2 + ['--format', 'JSONEachRow'], b'{"f":"length(s)","s":"a\xff"}\n', 0,
         'invalid JSONEachRow row'),
        ('JSONEachRow missing key', metric + ['--format', 'JSONEachRow'], b'{"clicks":1}\n', 0,
         'missing key "impressions"'),
        ('JSONEachRow unknown key', metric + ['--format', 'JSONEachRow'], b'{"clicks":1,"impressions":2,"x":3}\n', 0,
         'unknown key "x"'),
        ('chunk header announces more rows than sent', metric + ['--chunk-header'], b'3\n1\t2\n3\t4\n', 2,
         'announced 3 rows, input ended after 2'),
        ('chunk header announces fewer rows than sent', metric + ['--chunk-header'], b'1\n1\t2\n3\t4\n', 1,
         'chunk header'),
        ('chunk header missing', metric + ['--chunk-header', '--format', 'RowBinary'], rb_f64(1, 2), 0,
         'chunk header'),
        ('huge string over --max-row-bytes', f2 + ['--max-row-bytes', '100000'], b'x' * 200000 + b'\t1\n', 0,
         'row larger than 100000 bytes'),
        ('unknown variable', f2, b'a + b\t1\n', 0, 'error:unknown_variable'),
    ]
    for name, argv, data, good, text in cases:
        p = subprocess.run([u] + argv, input=data, capture_output=True, timeout=60)
        err = p.stderr.decode('utf-8', 'replace')
        nlines = err.count('\n')
        out_rows = count_rows(argv, p.stdout)
        ok = p.returncode == 1 and nlines == 1 and err.endswith('\n') and text in err and out_rows <= good
        res.check('robustness: %s' % name, ok, 'rc %d, stderr %r, %d output rows (at most %d allowed)' % (
            p.returncode, err, out_rows, good))

    # Big but legal values arrive whole (the engine measures all 20 MiB); building a string past the
    # engine's limit is a clear formula error, not a crash or a short row.
    import struct
    for fmt, data in (('TabSeparated', b'length(a)\t' + b'y' * big + b'\n'),
                      ('RowBinary', b'\x09length(a)\x00' + leb(big) + b'y' * big)):
        p = subprocess.run([u, '--formula', '--format', fmt, '--arguments', 'f:String,a:Nullable(String)',
                            '--returns', 'Nullable(Float64)'], input=data, capture_output=True, timeout=120)
        want = b'%d\n' % big if fmt == 'TabSeparated' else b'\x00' + struct.pack('<d', big)
        res.check('%d MiB string argument %s' % (big >> 20, fmt), p.returncode == 0 and not p.stderr and p.stdout == want,
                  'rc %d %r %r' % (p.returncode, p.stderr[:200], p.stdout[:40]))
    p = subprocess.run([u, '--formula', '--arguments', 'f:String,a:Nullable(String)', '--returns', 'Nullable(String)'],
                       input=b'a || a\t' + b'y' * big + b'\n', capture_output=True, timeout=120)
    res.check('string result over the engine limit: error:limit, one stderr line, no row',
              p.returncode == 1 and p.stderr.count(b'\n') == 1 and b'error:limit' in p.stderr and not p.stdout,
              'rc %d %r' % (p.returncode, p.stderr[:200]))
    p = subprocess.run([u] + metric + ['--chunk-header'], input=b'', capture_output=True, timeout=10)
    res.check('empty input: exit 0, no output', p.returncode == 0 and not p.stdout and not p.stderr)


def leb(n):
    out = bytearray()
    while True:
        out.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            return bytes(out)


def count_rows(argv, out):
    if '--format' in argv and argv[argv.index('--format') + 1] == 'RowBinary':
        return len(out) // 9                   # Nullable(Float64): flag + 8 bytes at most
    return out.count(b'\n')


# ---------------------------------------------------------------- PostgreSQL → ClickHouse


def postgres(env, res, psql):
    """Metrics defined in PostgreSQL, run through the XML and definitions duet_clickhouse_config()
    generates: defined once, evaluated by duet_udf exactly as ClickHouse would call it."""
    import shutil
    db = 'chudf_metrics_%d' % os.getpid()

    def sql(q, database=db):
        p = subprocess.run([psql, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', database, '-c', q],
                           capture_output=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError('psql: %s' % p.stderr.decode()[:500])
        return p.stdout.decode()

    sql('CREATE DATABASE %s' % db, 'postgres')
    try:
        sql('CREATE EXTENSION pg_duet')
        sql("SELECT duet_metric_define('ctr', 'clicks / impressions', 'click-through rate')")
        sql("SELECT duet_metric_define('over_budget', 'spend > budget', 'spend beyond budget')")
        sql("SELECT duet_metric_define('label', 'campaign || '' #'' || \"ad group\"', 'label', "
            "'{\"campaign\": \"String\", \"ad group\": \"String\"}')")
        # a metric calling a metric: duet_udf expands ctr from the same definitions file
        sql("SELECT duet_metric_define('ctr_pct', 'round(ctr() * 100, 2)', 'CTR in percent')")
        scripts = os.path.join(env.work, 'pg_scripts')
        os.makedirs(scripts, exist_ok=True)
        shutil.copy2(env.udf, os.path.join(scripts, 'duet_udf'))
        for fmt in FORMATS:
            for pool in ('true', 'false'):
                xml = sql("SELECT xml FROM duet_clickhouse_config('%s', %s)" % (fmt, pool))
                defs = sql("SELECT definitions FROM duet_clickhouse_config('%s', %s)" % (fmt, pool))
                with open(os.path.join(scripts, 'duet_metrics.tsv'), 'w') as f:
                    f.write(defs)
                cfg = os.path.join(env.work, 'pg_functions.xml')
                with open(cfg, 'w') as f:
                    f.write(xml)
                h = Harness(cfg, scripts)
                try:
                    got = [h.call('ctr', [[3.0, 40.0], [None, 2.0], [1.0, 0.0]], block_size=2),
                           h.call('over_budget', [[120.0, 100.0], [80.0, 100.0], [None, 1.0]]),
                           h.call('label', [['brand', 'exact\tmatch'], ['x', None]]),
                           h.call('ctr_pct', [[3.0, 40.0], [1.0, 0.0], [None, 1.0]])]
                    h.close()
                    want = [[3 / 40, None, None], [1, 0, None], [b'brand #exact\tmatch', None], [7.5, None, None]]
                    types = [h.functions[n].return_type for n in ('ctr', 'over_budget', 'label')]
                    res.check('duet_clickhouse_config(%s, pool %s) runs in the harness: %s' % (fmt, pool, ', '.join(types)),
                              got == want and types == ['Nullable(Float64)', 'Nullable(UInt8)', 'Nullable(String)'],
                              repr(got))
                except UdfError as e:
                    res.check('duet_clickhouse_config(%s, pool %s) runs in the harness' % (fmt, pool), False, str(e))
        from ch_udf_values import jsonb_numbers  # noqa: E402
        jsonb_numbers(env, res, psql, db)
    finally:
        sql('DROP DATABASE %s' % db, 'postgres')


# ---------------------------------------------------------------- valgrind


def valgrind(env, res):
    wrapper = os.path.join(env.user_scripts, 'duet_udf_vg')
    with open(wrapper, 'w') as f:
        f.write('#!/bin/sh\nexec valgrind -q --error-exitcode=99 --leak-check=full '
                '--errors-for-leak-kinds=definite,indirect "$(dirname "$0")/duet_udf" "$@"\n')
    os.chmod(wrapper, 0o755)
    args = [('clicks', 'Nullable(Float64)'), ('impressions', 'Nullable(Float64)')]
    rows = [[float(i % 13) if i % 7 else None, float(i % 5)] for i in range(5000)]
    want = [div_or_null(c, m) for c, m in rows]
    for fmt in FORMATS:
        h = env.harness([function_xml('ctr', 'executable_pool', fmt, 'duet_udf_vg --metric ctr --format %s '
                                      '--chunk-header' % fmt, args, 'Nullable(Float64)', chunk_header=True,
                                      read_timeout=60000)])
        try:
            got = h.call('ctr', rows, block_size=1000)
            h.close()
            res.check('valgrind: metric ctr %s pool, 5 blocks' % fmt, got == want)
        except UdfError as e:
            res.check('valgrind: metric ctr %s pool' % fmt, False, str(e))
        sargs = [(FORMULA_COL, 'String'), ('a', 'Nullable(String)'), ('b', 'Nullable(String)')]
        h = env.harness([formula_fn('cat', 'executable', fmt, sargs, 'Nullable(String)',
                                    prog='duet_udf_vg', read_timeout=60000)])
        try:
            got = h.call('cat', [['a || b', 'x\t', 'y\n'], ['a || b', None, 'z'], ['b || a', 'p', 'q']])
            res.check('valgrind: formula mode strings %s' % fmt, got == [b'x\ty\n', None, b'qp'], repr(got))
        except UdfError as e:
            res.check('valgrind: formula mode strings %s' % fmt, False, str(e))
    for name, data in (('dictionary', b'a / b\t{"a":1,"b":4}\n(\t{}\nx\tnot json\n'),):
        p = subprocess.run([wrapper, '--dictionary'], input=data, capture_output=True, timeout=120)
        res.check('valgrind: %s mode' % name, p.returncode == 0 and not p.stderr and p.stdout.count(b'\n') == 3,
                  p.stderr.decode()[:300])
    for argv, data in ((['--metric', 'ctr', '--format', 'RowBinary'], rb_f64(1, 2) + b'\x00\x01'),
                       (['--metric', 'ctr', '--format', 'JSONEachRow'], b'{"clicks":1}\n')):
        p = subprocess.run([wrapper] + argv, input=data, capture_output=True, timeout=120)
        res.check('valgrind: error path %s' % argv[-1], p.returncode == 1 and p.stderr.count(b'\n') == 1,
                  p.stderr.decode()[:300])
    os.unlink(wrapper)


def dates(env, res):
    """Date and DateTime arguments and results, in every format and protocol mode."""
    import datetime as dt
    rows = [[dt.date(2026, 12, 1), dt.datetime(2026, 12, 3, 12, 0, 0), dt.datetime(2026, 12, 11), 300.0, 1000.0],
            [dt.date(1970, 1, 1), dt.datetime(1970, 1, 1, 0, 0, 1), dt.datetime(2106, 2, 7, 6, 28, 15), 1.0, 2.0],
            [dt.date(2149, 6, 6), dt.datetime(2024, 2, 29, 23, 59, 59), dt.datetime(2024, 3, 1), 0.0, 1.0],
            [None, None, None, None, None]]
    args = [('d', 'Nullable(Date)'), ('t', 'Nullable(DateTime)'), ('e', 'Nullable(DateTime)'),
            ('spend', 'Nullable(Float64)'), ('budget', 'Nullable(Float64)')]
    pacing = ("spend / (budget * date_diff('hour', timestamp(d), t) / date_diff('hour', timestamp(d), e))")

    def py_pacing(r):
        d, t, e, s, b = r
        if d is None:
            return None
        start = dt.datetime(d.year, d.month, d.day)
        h = lambda x: int((x - dt.datetime(1970, 1, 1)).total_seconds() // 3600)
        num, den = h(t) - h(start), h(e) - h(start)
        if num == 0 or den == 0 or b == 0:
            return None
        return s / (b * num / den)
    cases = [
        ('date_add(\'day\', 1, date(t))', 'Nullable(Date)',
         [None if r[1] is None else r[1].date() + dt.timedelta(days=1) for r in rows]),
        ('date_trunc(\'hour\', date_add(\'minute\', 59, t))', 'Nullable(DateTime)',
         [None if r[1] is None else (r[1] + dt.timedelta(minutes=59)).replace(minute=0, second=0) for r in rows]),
        ('d', 'Nullable(DateTime)', [None if r[0] is None else dt.datetime(r[0].year, r[0].month, r[0].day)
                                     if r[0].year < 2106 else 'range' for r in rows]),
        ('t', 'Nullable(String)', [None if r[1] is None else r[1].strftime('%Y-%m-%d %H:%M:%S').encode()
                                   for r in rows]),
        ('extract(\'epoch\', e) * 1.0', 'Nullable(Float64)',
         [None if r[2] is None else float((r[2] - dt.datetime(1970, 1, 1)).total_seconds()) for r in rows]),
        (pacing, 'Nullable(Float64)', [py_pacing(r) for r in rows]),
    ]
    for formula, rtype, want in cases:
        for fmt in FORMATS:
            for ftype, chunk, block in MODES:
                h = env.harness([formula_fn('f', ftype, fmt, [(FORMULA_COL, 'String')] + args, rtype, chunk)])
                name = 'dates %s -> %s, %s %s%s block %d' % (formula, rtype, fmt, ftype,
                                                            ' +chunk_header' if chunk else '', block)
                try:
                    if 'range' in want:
                        try:
                            got = h.call('f', [[formula] + r for r in rows], block_size=block)
                            res.check(name + ': a value beyond DateTime fails', False, repr(got))
                        except UdfError as e:
                            res.check(name + ': a value beyond DateTime fails', 'error:range' in str(e), str(e))
                        h.close()
                        continue
                    got = h.call('f', [[formula] + r for r in rows], block_size=block)
                    h.close()
                    ok = all((g is None and w is None) or (g is not None and w is not None and
                             (abs(g - w) < 1e-12 * max(1, abs(w)) if isinstance(w, float) else g == w))
                             for g, w in zip(got, want))
                    res.check(name, ok and len(got) == len(want), 'got %r, want %r' % (got, want))
                except UdfError as e:
                    res.check(name, False, str(e))
    # now() is the block's time: one value for every row of a block, in every mode
    for fmt in FORMATS:
        for ftype, chunk in (('executable', False), ('executable_pool', True), ('executable_pool', False)):
            h = env.harness([formula_fn('n', ftype, fmt, [(FORMULA_COL, 'String'), ('x', 'Float64')],
                                        'String', chunk)])
            name = 'dates: now() is one time per block (%s %s%s)' % (fmt, ftype, ' +chunk_header' if chunk else '')
            try:
                got = h.call('n', [["format_datetime(now(), '%F %T.%f') || ' ' || x", float(i)] for i in range(20000)],
                             block_size=65536)
                h.close()
                times = {g.rsplit(b' ', 1)[0] for g in got}
                res.check(name, len(got) == 20000 and len(times) == 1 and
                          all(g.endswith(b' %d' % i) for i, g in enumerate(got)), repr(sorted(times)[:3]))
            except UdfError as e:
                res.check(name, False, str(e))
    # a Date argument is a formula date
    h = env.harness([formula_fn('f', 'executable', 'TabSeparated', [(FORMULA_COL, 'String'), ('d', 'Date')],
                                'Nullable(Float64)')])
    try:
        got = h.call('f', [["extract('year', d)", dt.date(2026, 12, 2)]])
        res.check('dates: a Date argument reads as a formula date', got == [2026.0] or got == [2026], repr(got))
    except UdfError as e:
        res.check('dates: a Date argument reads as a formula date', False, str(e))
    h.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--user-scripts', required=True)
    ap.add_argument('--conformance')
    ap.add_argument('--valgrind', action='store_true')
    ap.add_argument('--only')
    ap.add_argument('--psql', help='psql of a running cluster with pg_duet (PGHOST/PGPORT/PGUSER)')
    a = ap.parse_args()
    res = Results()
    with tempfile.TemporaryDirectory() as work:
        env = Env(os.path.abspath(a.user_scripts), work)
        from ch_udf_values import int_results  # noqa: E402 (its helpers come from this file)
        parts = [('protocol', lambda: protocol(env, res)), ('int_results', lambda: int_results(env, res)),
                 ('robustness', lambda: robustness(env, res)), ('dates', lambda: dates(env, res))]
        if a.conformance:
            parts.insert(0, ('conformance', lambda: conformance(env, res, a.conformance)))
        if a.psql:
            parts.append(('postgres', lambda: postgres(env, res, a.psql)))
        if a.valgrind:
            parts.append(('valgrind', lambda: valgrind(env, res)))
        for name, fn in parts:
            if a.only and a.only != name:
                continue
            print('--- %s' % name)
            try:
                fn()
            except Exception as e:             # a harness crash is a failure, not a silent pass
                import traceback
                traceback.print_exc()
                res.check('%s part ran to completion' % name, False, repr(e))
    print('%d passed, %d failed' % (res.passed, res.failed))
    sys.exit(1 if res.failed else 0)


if __name__ == '__main__':
    main()
