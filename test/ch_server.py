#!/usr/bin/env python3
"""ch_server.py — duet_udf inside a real ClickHouse server (Debian's 18.16).

18.16 has no executable UDFs, but its executable dictionary source with a complex_key_cache layout
pipes the missing keys to a command as TabSeparated and reads `keys<TAB>attribute` rows back. This
script starts a private server as the `clickhouse` OS user (127.0.0.1, free ports, its own config and
data directory), declares the dictionary `duet_calc` over `duet_udf --dictionary`, and checks from
clickhouse-client that dictGetString('duet_calc', 'result', tuple(formula, inputs)) gives the
conformance results for every vector and for thousands of generated keys, and that the server's own
parsers read duet_udf's Int64/UInt64 results in every format. Waits are bounded; the server is
always stopped.

With --sql-cases (build/unit/sqlgen_cases), the same server also runs the ClickHouse SQL that
Duet generates (calc/sqlgen_ch.c) for every conformance vector and for rows of edge and random
values, against Duet (test/ch_sql_conformance.py).

  ch_server.py --udf build/ch_udfs/duet_udf --dir build/ch_server [--conformance test/conformance]
               [--sql-cases build/unit/sqlgen_cases --sql-expected test/ch_sql_conformance.expected]
Prints one line per check and "N passed, N failed".
"""
import argparse
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ch_harness import arg_spec, encode_rows, tsv_escape, tsv_unescape  # noqa: E402
from ch_udf_tests import dict_result_matches, load_vectors  # noqa: E402
import ch_sql_conformance  # noqa: E402

SERVER = shutil.which('clickhouse-server') or '/usr/sbin/clickhouse-server'
CLIENT = shutil.which('clickhouse-client') or '/usr/bin/clickhouse-client'

CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{dir}/log/server.log</log>
        <errorlog>{dir}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <interserver_http_port>{inter}</interserver_http_port>
    <max_concurrent_queries>16</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <dictionaries_config>{dir}/*_dictionary.xml</dictionaries_config>
    <builtin_dictionaries_reload_interval>0</builtin_dictionaries_reload_interval>
</yandex>
"""

USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
"""

# The dictionary is the shipped example, with the command pointing at this run's copy of duet_udf.
EXAMPLE_DICTIONARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'ch_udfs', 'duet_calc_dictionary.xml')
EXAMPLE_COMMAND = '/var/lib/clickhouse/user_scripts/duet_udf'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, d, udf):
        self.dir, self.proc = os.path.abspath(d), None
        shutil.rmtree(self.dir, ignore_errors=True)
        for sub in ('log', 'data', 'tmp', 'user_files', 'format_schemas', 'user_scripts'):
            os.makedirs(os.path.join(self.dir, sub))
        self.udf = os.path.join(self.dir, 'user_scripts', 'duet_udf')
        shutil.copy2(udf, self.udf)
        os.chmod(self.udf, 0o755)
        self.tcp, self.http, self.inter = free_port(), free_port(), free_port()
        with open(os.path.join(self.dir, 'config.xml'), 'w') as f:
            f.write(CONFIG.format(dir=self.dir, tcp=self.tcp, http=self.http, inter=self.inter))
        with open(os.path.join(self.dir, 'users.xml'), 'w') as f:
            f.write(USERS)
        with open(EXAMPLE_DICTIONARY) as f:
            dictionary = f.read()
        if EXAMPLE_COMMAND not in dictionary:
            raise RuntimeError('%s does not run %s' % (EXAMPLE_DICTIONARY, EXAMPLE_COMMAND))
        with open(os.path.join(self.dir, 'duet_calc_dictionary.xml'), 'w') as f:
            f.write(dictionary.replace(EXAMPLE_COMMAND, self.udf))
        if os.getuid() == 0:
            subprocess.run(['chown', '-R', 'clickhouse:clickhouse', self.dir], check=True)

    def start(self, timeout=60):
        argv = [SERVER, '--config-file=' + os.path.join(self.dir, 'config.xml')]
        if os.getuid() == 0:
            argv = ['runuser', '-u', 'clickhouse', '--'] + argv
        self.out = open(os.path.join(self.dir, 'log', 'stdout.log'), 'wb')
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, cwd=self.dir,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('clickhouse-server exited with %d: %s' % (self.proc.returncode, self.log_tail()))
            try:
                if self.query('SELECT 1', timeout=5).strip() == b'1':
                    return
            except RuntimeError:
                pass
            time.sleep(0.3)
        raise RuntimeError('clickhouse-server not ready within %ds: %s' % (timeout, self.log_tail()))

    def query(self, sql, data=None, timeout=120):
        argv = [CLIENT, '--host=127.0.0.1', '--port=%d' % self.tcp, '--query=' + sql]
        try:
            p = subprocess.run(argv, input=data, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError('clickhouse-client timed out after %ds: %s' % (timeout, sql[:80]))
        if p.returncode != 0:
            raise RuntimeError('clickhouse-client: %s' % p.stderr.decode('utf-8', 'replace').strip()[:500])
        return p.stdout

    def log_tail(self):
        out = []
        for name in ('server.err.log', 'stdout.log'):
            try:
                with open(os.path.join(self.dir, 'log', name), 'rb') as f:
                    out.append(f.read()[-1500:].decode('utf-8', 'replace'))
            except OSError:
                pass
        return ' | '.join(out)

    def stop(self, timeout=30):
        if not self.proc or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def generated_keys(n):
    """Keys whose results Python computes independently (IEEE arithmetic is exact to compare)."""
    rnd = random.Random(7)
    out = []
    for i in range(n):
        clicks, imps = rnd.randint(0, 5000), rnd.choice([0, rnd.randint(1, 10 ** 6)])
        kind = i % 4
        if kind == 0:
            f, inputs = 'clicks / impressions', {'clicks': clicks, 'impressions': imps}
            want = 'null' if imps == 0 else json.dumps(clicks / imps)
        elif kind == 1:
            f, inputs = 'spend * 1000 / impressions', {'spend': clicks / 8, 'impressions': imps}
            want = 'null' if imps == 0 else json.dumps(clicks / 8 * 1000 / imps)
        elif kind == 2:
            f, inputs = 'clicks > impressions', {'clicks': clicks, 'impressions': imps}
            want = 'true' if clicks > imps else 'false'
        else:
            f, inputs = "name || '#' || tag", {'name': 'campaign \t%d' % i, 'tag': 'ü\\%d' % clicks}
            want = json.dumps(inputs['name'] + '#' + inputs['tag'], ensure_ascii=False)
        out.append(('gen%d' % i, f, inputs, want))
    return out


def sql_checks(srv, a, check):
    """Duet's generated ClickHouse SQL on this server (test/ch_sql_conformance.py)."""
    out = os.path.join(a.dir, 'ch_sql_conformance.out')
    rows, counts, same = ch_sql_conformance.run(srv.http, a.sql_cases, load_vectors(a.conformance),
                                                a.sql_expected, out)
    wrong = [r for r in rows if r[3] == 'WRONG']
    check('generated ClickHouse SQL over %d conformance vectors: %d compiled and agree, %d refused by name, '
          '%d integer inputs (as doubles), %d wrong' % (len(rows), counts.get('ok', 0), counts.get('refused', 0),
                                                        counts.get('integer input', 0), len(wrong)),
          not wrong, '; '.join('%s %r: %s' % (r[0], r[1], r[4]) for r in wrong[:5]))
    check('the outcomes, refusals and integer inputs listed in %s are %s' % (a.sql_expected, out), same,
          'diff -u %s %s' % (a.sql_expected, out))
    for formula, n, bad in ch_sql_conformance.generated(srv.http, a.sql_cases):
        check('generated ClickHouse SQL of %r equals Duet on %d rows of edge and random values' % (formula, n),
              not bad, '; '.join(bad[:3]))
def int_results(srv, udf, check):
    """Int64/UInt64 results as the server reads them: duet_udf's output in each format is inserted
    into a Nullable(Int64) / Nullable(UInt64) column by ClickHouse's own parser and selected back."""
    cases = (('Nullable(Int64)', [2**63 - 1, -2**63, 2**53 + 1, None, 0, -7]),
             ('Nullable(UInt64)', [2**63 - 1, 0, None, 12345678901234567]))
    for fmt in ('TabSeparated', 'CSV', 'JSONEachRow', 'RowBinary'):
        for rtype, values in cases:
            args = [('f', 'String'), ('x', 'Nullable(Int64)')]
            data = encode_rows(fmt, args, [['x', v] for v in values])
            p = subprocess.run([udf, '--formula', '--format', fmt, '--arguments', arg_spec(args), '--returns', rtype],
                               input=data, capture_output=True, timeout=60)
            table = 'r_%s_%s' % (fmt.lower(), rtype[9:-1].lower())
            try:
                if p.returncode != 0:
                    raise RuntimeError('duet_udf: %s' % p.stderr.decode()[:200])
                srv.query('CREATE TABLE %s (result %s) ENGINE = Memory'
                          % (table, rtype))
                srv.query('INSERT INTO %s FORMAT %s' % (table, fmt), data=p.stdout)
                got = srv.query('SELECT result FROM %s FORMAT TabSeparated' % table).decode().split('\n')[:-1]
                want = ['\\N' if v is None else str(v) for v in values]
                check('ClickHouse reads duet_udf\'s %s %s results exactly' % (fmt, rtype), got == want,
                      '%r, want %r' % (got, want))
            except RuntimeError as e:
                check('ClickHouse reads duet_udf\'s %s %s results' % (fmt, rtype), False, str(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--udf', required=True)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--conformance')
    ap.add_argument('--generated', type=int, default=5000)
    ap.add_argument('--sql-cases')
    ap.add_argument('--sql-expected')
    a = ap.parse_args()
    passed = failed = 0
    # A timeout's SIGTERM must still run the `finally` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    def check(name, ok, detail=''):
        nonlocal passed, failed
        passed, failed = passed + bool(ok), failed + (not ok)
        print('%s %s%s' % ('ok  ' if ok else 'FAIL', name, '' if ok else ': ' + detail))
        sys.stdout.flush()

    keys = []
    if a.conformance:
        # the inputs as written (1E2, 1e400: read as jsonb reads them, ch_udfs/udf_jsonb.c)
        keys += [(w, f, raw, exp) for w, f, _, exp, raw in load_vectors(a.conformance)]
    nconf = len(keys)
    keys += generated_keys(a.generated)
    srv = Server(a.dir, a.udf)
    try:
        srv.start()
        check('clickhouse-server %s started as clickhouse on 127.0.0.1:%d' % (
            srv.query('SELECT version()').decode().strip(), srv.tcp), True)
        srv.query('CREATE TABLE keys (id UInt32, formula String, inputs String) ENGINE = Memory')
        data = b''.join(b'%d\t%s\t%s\n' % (i, tsv_escape(f.encode()), tsv_escape(
            (inp if isinstance(inp, str) else json.dumps(inp, ensure_ascii=False)).encode()))
            for i, (_, f, inp, _) in enumerate(keys))
        srv.query('INSERT INTO keys FORMAT TabSeparated', data=data)
        # Twice: the first query fills the cache through duet_udf, the second reads the cache.
        for attempt in ('through duet_udf', 'from the dictionary cache'):
            out = srv.query("SELECT id, dictGetString('duet_calc', 'result', tuple(formula, inputs)) "
                            "FROM keys ORDER BY id FORMAT TabSeparated", timeout=300)
            rows = out.split(b'\n')[:-1]
            bad = []
            if len(rows) != len(keys):
                bad.append('%d rows for %d keys' % (len(rows), len(keys)))
            for row in rows:
                i, res = row.split(b'\t', 1)
                where, f, inp, want = keys[int(i)]
                got = tsv_unescape(res).decode('utf-8', 'surrogateescape')
                if not dict_result_matches(got, want):
                    bad.append('%s %r %s: got %s, want %s' % (where, f, str(inp)[:60], got, want))
            check('dictGetString over %d conformance vectors and %d generated keys, %s' % (
                nconf, len(keys) - nconf, attempt), not bad, '; '.join(bad[:5]))
        st = srv.query("SELECT element_count, last_exception FROM system.dictionaries "
                       "WHERE name = 'duet_calc' FORMAT TabSeparated").decode().rstrip('\n').split('\t')
        check('system.dictionaries: duet_calc holds %s cached keys, no exception' % st[0],
              len(st) == 2 and int(st[0]) > 0 and st[1] == '', repr(st))
        one = srv.query("SELECT dictGetString('duet_calc', 'result', tuple('revenue / spend', "
                        "'{\"revenue\": 300, \"spend\": 120}'))").decode().strip()
        check("dictGetString('duet_calc', 'result', tuple('revenue / spend', …)) = 2.5", one == '2.5', one)
        if a.sql_cases and a.conformance:
            sql_checks(srv, a, check)
        int_results(srv, a.udf, check)
    except RuntimeError as e:
        check('ClickHouse server run', False, str(e))
    finally:
        srv.stop()
        check('clickhouse-server stopped', srv.proc is None or srv.proc.poll() is not None)
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
