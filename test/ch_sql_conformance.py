"""ch_sql_conformance.py — the conformance vectors through the ClickHouse SQL that Duet generates
(calc/sqlgen_ch.c), run on the real ClickHouse server of test/ch_server.py.

Every vector expecting a value is compiled to a ClickHouse expression by build/unit/sqlgen_cases
(its variables typed by their JSON inputs: number → Float64, string → String, boolean → Bool as
UInt8, null → Float64, else String, else Bool, whichever the formula accepts) and evaluated inline in
a SELECT over its inputs as typed, materialized columns (numbers bit-exact through
reinterpretAsFloat64). The result must be the vector's exactly (numbers as doubles, never -0;
booleans 1/0; NULL), or the formula refused by name. An integer input is a Float64 to the
expression (as to the executable UDF's Float64 arguments): where Duet over the inputs as doubles
differs from the vector (integer semantics, exact beyond 2^53), the case is listed as 'integer
input' and compared with Duet over the doubles instead. The listing of outcomes, refusals by
construct, integer inputs and untyped cases must equal test/ch_sql_conformance.expected, so a new
refusal or a new success shows as a difference.
"""
import json
import struct
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from ch_harness import tsv_unescape


def ch_string(s):
    out = bytearray(b"'")
    for c in s.encode('utf-8'):
        if c in (0x27, 0x5c):
            out += b'\\' + bytes([c])
        elif c < 0x20 or c == 0x7f:
            out += b'\\x%02X' % c
        else:
            out.append(c)
    return (out + b"'").decode('utf-8')


def ch_ident(name):
    return '`' + name.replace('\\', '\\\\').replace('`', '\\`') + '`'


def column(value, typ):
    """An input as a typed, materialized column."""
    ch = {'Float64': 'Float64', 'String': 'String', 'Bool': 'UInt8'}[typ]
    if value is None:
        return 'materialize(CAST(NULL AS Nullable(%s)))' % ch
    if typ == 'Float64':
        return "materialize(toNullable(reinterpretAsFloat64(unhex('%s'))))" % struct.pack('<d', float(value)).hex()
    if typ == 'Bool':
        return 'materialize(toNullable(toUInt8(%d)))' % (1 if value else 0)
    return 'materialize(toNullable(%s))' % ch_string(value)


def json_type(v, null_type):
    if v is None:
        return null_type
    if isinstance(v, bool):
        return 'Bool'
    if isinstance(v, (int, float)):
        return 'Float64'
    return 'String'


def is_int_input(v):
    return isinstance(v, int) and not isinstance(v, bool)


class Compiler:
    def __init__(self, tool):
        self.proc = subprocess.Popen([tool], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def compile(self, formula, types, doubles=None):
        req = {'formula': formula, 'types': types}
        if doubles is not None:
            req['doubles'] = doubles
        self.proc.stdin.write(json.dumps(req) + '\n')
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def http_query(port, sql, timeout=60):
    req = urllib.request.Request('http://127.0.0.1:%d/' % port, data=sql.encode('utf-8'), method='POST')
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return True, r.read()
    except urllib.error.HTTPError as e:
        return False, e.read()


def result_matches(typ, text, want):
    """ClickHouse's TabSeparated result (type, value) against a JSON value."""
    if text == b'\\N':
        return want is None
    if want is None:
        return False
    if isinstance(want, bool):
        return 'UInt8' in typ and text == (b'1' if want else b'0')
    if isinstance(want, (int, float)):
        if 'Float64' not in typ:
            return False
        try:
            got = float(text)
        except ValueError:
            return False
        # Duet never gives -0
        return got == float(want) and not (got == 0 and text.startswith(b'-'))
    return 'String' in typ and tsv_unescape(text) == want.encode('utf-8')


def run(port, tool, vectors, expected_path, out_path):
    """Returns (passed, detail, listing) for the ClickHouse SQL conformance."""
    comp = Compiler(tool)
    rows = []
    try:
        for where, formula, pairs, expected, *_ in vectors:
            if expected.startswith('error:'):
                continue
            want = json.loads(expected)
            inputs = dict(pairs)
            has_int = any(is_int_input(v) for v in inputs.values())
            doubles = {k: float(v) if is_int_input(v) else v for k, v in inputs.items()} if has_int else None
            res, types = None, None
            for null_type in ('Float64', 'String', 'Bool'):
                types = {k: json_type(v, null_type) for k, v in inputs.items()}
                res = comp.compile(formula, types, doubles)
                if 'error' not in res or None not in inputs.values():
                    break
            if 'refused' in res:
                rows.append((where, formula, expected, 'refused', res['refused']))
                continue
            if 'error' in res:
                rows.append((where, formula, expected, 'typed', res['error']))
                continue
            cols = ', '.join('%s AS %s' % (column(inputs[k], types[k]), ch_ident(k)) for k in inputs)
            sql = ('SELECT toTypeName(duet_result_), duet_result_ FROM (SELECT %s AS duet_result_ FROM (SELECT %s)) '
                   'FORMAT TabSeparated' % (res['sql'], cols or '0 AS duet_no_input_'))
            ok, body = http_query(port, sql)
            if not ok:
                rows.append((where, formula, expected, 'WRONG', 'raised: ' + body.decode('utf-8', 'replace').strip()[:300]))
                continue
            typ, text = body.rstrip(b'\n').split(b'\t', 1)
            typ = typ.decode()
            if has_int and 'duet' in res and not same_value(res['duet'], want):
                if result_matches(typ, text, res['duet']):
                    rows.append((where, formula, expected, 'integer input',
                                 '%s as doubles' % json.dumps(res['duet'])))
                else:
                    rows.append((where, formula, expected, 'WRONG', 'gave %s %s (Duet over doubles: %s)' % (
                        typ, text.decode('utf-8', 'replace'), json.dumps(res['duet']))))
                continue
            if result_matches(typ, text, want):
                rows.append((where, formula, expected, 'ok', ''))
            else:
                rows.append((where, formula, expected, 'WRONG', 'gave %s %s' % (typ, text.decode('utf-8', 'replace'))))
    finally:
        comp.close()
    listing = render(rows)
    with open(out_path, 'w', encoding='utf-8') as f:
        f.write(listing)
    with open(expected_path, encoding='utf-8') as f:
        expected_listing = f.read()
    counts = {}
    for r in rows:
        counts[r[3]] = counts.get(r[3], 0) + 1
    return rows, counts, listing == expected_listing


def same_value(a, b):
    if isinstance(b, bool) or b is None or isinstance(b, str):
        return type(a) is type(b) and a == b
    return isinstance(a, (int, float)) and not isinstance(a, bool) and float(a) == float(b)


def render(rows):
    out = ['# ClickHouse SQL conformance (test/ch_sql_conformance.py): outcomes']
    counts = {}
    for r in rows:
        counts[r[3]] = counts.get(r[3], 0) + 1
    for k in sorted(counts):
        out.append('%s\t%d' % (k, counts[k]))
    out.append('# every case that differs or raises (none)')
    out += ['%s\t%s\t%s\t%s' % (w, f, e, d) for w, f, e, o, d in rows if o == 'WRONG']
    out.append('# refused, by construct')
    by = {}
    for w, f, e, o, d in rows:
        if o == 'refused':
            by.setdefault(d.replace(' does not compile to ClickHouse SQL', ''), []).append(w)
    for k in sorted(by):
        out.append('%s\t%d\t%s' % (k, len(by[k]), ' '.join(by[k])))
    out.append('# integer inputs, compared with Duet over the inputs as doubles')
    out += ['%s\t%s\t%s\t%s' % (w, f, e, d) for w, f, e, o, d in rows if o == 'integer input']
    out.append('# not typed from their inputs')
    out += ['%s\t%s\t%s' % (w, f, d) for w, f, e, o, d in rows if o == 'typed']
    return '\n'.join(out) + '\n'


# ---------------------------------------------------------------- generated rows

EDGE = [None, 0.0, -0.0, 1.0, -1.0, 2.5, -7.5, 3.0, 0.1, 1e308, -1e308, 1e200, 1e-200, 5e-324, -5e-324,
        2.2250738585072014e-308, 9007199254740993.0, float('inf'), float('-inf'), float('nan')]

NUMBER_FORMULAS = [
    'x + y', 'x - y', 'x * y', 'x / y', '-x', 'x + 0', 'x', 'x < y', 'x = y', 'x >= y', 'x between y and 1',
    'x not between -1 and y', 'x in (y, 1, null)', 'x not in (y, 2.5)', 'least(x, y, 1)', 'greatest(x, null, y)',
    'least(x, y)', 'nullif(x, y)', 'coalesce(x, y, 0)', 'ifnull(x, y)', 'safe_divide(x, y)',
    'safe_divide(x, y, -1)', 'clamp(x, y, 2)', 'clamp(x, -1, 1)', 'sign(x)', 'abs(x)', 'floor(x)', 'ceil(x)',
    'trunc(x)', 'sqrt(x)', 'ln(x)', 'log10(x)', 'log(x, y)', 'log(2, x)', 'x > 1 and y > 1', 'x > 1 or y < 1',
    'x / y * 100 + 1', 'case when x > y then x / y when x is null then -1 end', 'if(x > y, x, y)',
    'x is null', 'y is not null', '(x - y) * (x + y) / 2', 'x ^ y', 'pow(x, 0.5)', 'exp(x)', 'exp(y / 100) * x',
]
BOOL_FORMULAS = [
    'a and b', 'a or b', 'not a', 'a and b or c', 'a or b and not c', 'a and (b or c)',
    'case when a then 1 when b then 2 else 3 end', 'if(a, 1, 2)', 'a = b', 'a <> b', 'a is null',
    'coalesce(a, b)', 'nullif(a, b)', 'a in (b, c)', 'not (a or b)',
]


def random_doubles(n, rnd):
    out = []
    while len(out) < n:
        k = len(out) % 4
        if k == 0:
            v = struct.unpack('<d', struct.pack('<Q', rnd.getrandbits(64)))[0]
        elif k == 1:
            v = rnd.uniform(-1e6, 1e6)
        elif k == 2:
            v = rnd.random() * 10 ** rnd.randint(-300, 300)
        else:
            v = float(rnd.randint(-1000, 1000))
        out.append(v)
    return out


def rowbinary_nullable(v, fmt):
    return b'\x01' if v is None else b'\x00' + struct.pack(fmt, v)


def duet_input(v):
    """What Duet reads from a ClickHouse Float64 input: non-finite values are NULL (ch_udfs/udf_types.c)."""
    if v is None or v != v or v in (float('inf'), float('-inf')):
        return None
    return v


def generated(port, tool, seed=11, nrandom=3000):
    """Rows of edge and random values through formulas: the generated expression against Duet
    (the same engine, over the same inputs), every row. Returns (checks, failures)."""
    import random
    rnd = random.Random(seed)
    pairs = [(x, y) for x in EDGE for y in EDGE]
    xs, ys = random_doubles(nrandom, rnd), random_doubles(nrandom, rnd)
    pairs += list(zip(xs, ys))
    bools = [(a, b, c) for a in (None, False, True) for b in (None, False, True) for c in (None, False, True)]
    # names that a naive quoting would let out of the identifier
    odd = ['a`) -> 1; --', 'b\\c "d"']
    grids = [
        ('duet_num_grid', pairs, '<d', NUMBER_FORMULAS, {'x': 'Float64', 'y': 'Float64'}),
        ('duet_bool_grid', [tuple(None if v is None else int(v) for v in r) for r in bools], '<B', BOOL_FORMULAS,
         {'a': 'Bool', 'b': 'Bool', 'c': 'Bool'}),
        ('duet_name_grid', pairs[:len(EDGE) ** 2], '<d', ['"%s" * 2 + "%s"' % (odd[0], odd[1].replace('"', '""'))],
         {odd[0]: 'Float64', odd[1]: 'Float64'}),
    ]
    comp = Compiler(tool)
    results = []
    try:
        for table, rows, fmt, formulas, types in grids:
            names = list(types)
            cols = ', '.join('%s Nullable(%s)' % (ch_ident(n), 'UInt8' if t == 'Bool' else t) for n, t in types.items())
            for sql in ('DROP TABLE IF EXISTS %s' % table,
                        'CREATE TABLE %s (id UInt32, %s) ENGINE = Memory' % (table, cols)):
                ok, body = http_query(port, sql)
                if not ok:
                    raise RuntimeError(body.decode('utf-8', 'replace'))
            data = b''.join(struct.pack('<I', i) + b''.join(rowbinary_nullable(v, fmt) for v in r)
                            for i, r in enumerate(rows))
            req = urllib.request.Request('http://127.0.0.1:%d/?query=%s' % (
                port, urllib.parse.quote('INSERT INTO %s FORMAT RowBinary' % table)), data=data, method='POST')
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
            for formula in formulas:
                res = comp.compile(formula, types)
                if 'sql' not in res:
                    results.append((formula, len(rows), ['not compiled: %s' % res]))
                    continue
                ok, body = http_query(port, 'SELECT id, toTypeName(duet_result_), duet_result_ FROM (SELECT id, %s AS duet_result_ '
                                      'FROM %s) ORDER BY id FORMAT TabSeparated' % (res['sql'], table), timeout=120)
                if not ok:
                    results.append((formula, len(rows), ['raised: ' + body.decode('utf-8', 'replace')[:300]]))
                    continue
                bad = []
                lines = body.rstrip(b'\n').split(b'\n')
                for line, r in zip(lines, rows):
                    i, typ, text = line.split(b'\t', 2)
                    doubles = {n: (duet_input(v) if fmt == '<d' else (None if v is None else bool(v)))
                               for n, v in zip(names, r)}
                    want = comp.compile(formula, types, doubles)
                    if 'duet_error' in want:
                        bad.append('row %s %r: Duet raised %s' % (i.decode(), r, want['duet_error']))
                    elif not result_matches(typ.decode(), text, want['duet']):
                        bad.append('row %s %r: gave %s %s, Duet %s' % (i.decode(), r, typ.decode(),
                                                                     text.decode('utf-8', 'replace'), json.dumps(want['duet'])))
                if len(lines) != len(rows):
                    bad.append('%d rows for %d' % (len(lines), len(rows)))
                results.append((formula, len(rows), bad))
    finally:
        comp.close()
    return results
