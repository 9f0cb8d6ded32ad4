#!/usr/bin/env python3
"""ch_udf_bench.py — rows/s of duet_udf against `cat` of the same bytes and a Python UDF.

Every figure is measured in this run on this machine: the metric ctr = clicks / impressions over
Nullable(Float64) arguments, N rows, each pipeline `cat input | X | cat > /dev/null`, best of R runs.
  * cat:                X = cat (the pipe limit for those bytes)
  * executable:         a new duet_udf process per 65536-row block, as ClickHouse's `executable`
  * executable_pool:    one duet_udf process, blocks with chunk headers (`executable_pool`)
  * python:             the usual ClickHouse Python UDF (TabSeparated, pool with chunk headers,
                        flushed per block), same formula and NULL handling
  * baseline (optional): a second duet_udf (argv[2], e.g. an earlier build — bench/30 builds one
                        from $DUET_BENCH_BASELINE_REV), timed as a pool in the same run

usage: ch_udf_bench.py DUET_UDF [BASELINE_DUET_UDF]
"""
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

ROWS = int(os.environ.get('DUET_BENCH_ROWS', '2000000'))
BLOCK = 65536
REPEAT = int(os.environ.get('DUET_BENCH_REPEAT', '3'))

PYTHON_UDF = r'''#!/usr/bin/env python3
import sys
def main():
    stdin, out = sys.stdin, sys.stdout
    while True:
        header = stdin.readline()
        if not header:
            break
        rows = []
        for _ in range(int(header)):
            clicks, impressions = stdin.readline().rstrip('\n').split('\t')
            if clicks == '\\N' or impressions == '\\N' or float(impressions) == 0:
                rows.append('\\N')
            else:
                rows.append(repr(float(clicks) / float(impressions)))
        out.write('\n'.join(rows) + '\n')
        out.flush()
main()
'''


def rows_data(n):
    rnd = random.Random(1)
    return [(None if i % 50 == 0 else float(rnd.randint(0, 5000)),
             None if i % 70 == 0 else float(rnd.randint(0, 10 ** 6))) for i in range(n)]


def text(v):
    if v is None:
        return b'\\N'
    return b'%d' % v if v == int(v) else repr(v).encode()


def encode(fmt, rows):
    if fmt == 'TabSeparated':
        return b''.join(text(c) + b'\t' + text(m) + b'\n' for c, m in rows)
    out = bytearray()
    for r in rows:
        for v in r:
            out += b'\x01' if v is None else b'\x00' + struct.pack('<d', v)
    return bytes(out)


def timed(cmd, repeat):
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(['sh', '-c', cmd], check=True)
        d = time.perf_counter() - t
        best = d if best is None or d < best else best
    return best


def main():
    udf = sys.argv[1]
    baseline = sys.argv[2] if len(sys.argv) > 2 else None
    scripts = os.path.dirname(os.path.abspath(udf))
    rows = rows_data(ROWS)
    print('rows: %d, blocks of %d, best of %d; metric ctr = clicks / impressions (Nullable(Float64) x2)'
          % (ROWS, BLOCK, REPEAT))
    results = {}
    with tempfile.TemporaryDirectory() as work:
        py = os.path.join(work, 'ctr.py')
        with open(py, 'w') as f:
            f.write(PYTHON_UDF)
        for fmt in ('TabSeparated', 'RowBinary'):
            blocks = [rows[i:i + BLOCK] for i in range(0, len(rows), BLOCK)]
            enc = [encode(fmt, b) for b in blocks]
            plain = os.path.join(work, fmt + '.bin')
            chunked = os.path.join(work, fmt + '.chunked')
            with open(plain, 'wb') as f:
                f.write(b''.join(enc))
            with open(chunked, 'wb') as f:
                for b, e in zip(blocks, enc):
                    f.write(b'%d\n' % len(b) + e)
            bdir = os.path.join(work, fmt + '.blocks')
            os.mkdir(bdir)
            for i, e in enumerate(enc):
                with open(os.path.join(bdir, '%05d' % i), 'wb') as f:
                    f.write(e)
            nbytes = os.path.getsize(plain)
            base = '%s --metric ctr --format %s' % (udf, fmt)
            # the reference output must be right before anything is timed
            out = subprocess.run(base.split() + ['--chunk-header'], stdin=open(chunked, 'rb'),
                                 capture_output=True, check=True).stdout
            nout = out.count(b'\n') if fmt == 'TabSeparated' else None
            assert nout in (None, ROWS), 'row count %s' % nout
            t_cat = timed('cat %s | cat | cat > /dev/null' % plain, REPEAT)
            t_pool = timed('cat %s | %s --chunk-header | cat > /dev/null' % (chunked, base), REPEAT)
            t_exec = timed('for b in %s/*; do cat "$b" | %s | cat > /dev/null; done' % (bdir, base), REPEAT)
            results[fmt] = (nbytes, t_cat, t_pool, t_exec)
            if baseline:
                # the baseline reads the definitions beside itself: the same file
                bbase = '%s --metric ctr --format %s --definitions %s' % (
                    baseline, fmt, os.path.join(scripts, 'duet_metrics.tsv'))
                bout = subprocess.run(bbase.split() + ['--chunk-header'], stdin=open(chunked, 'rb'),
                                      capture_output=True, check=True).stdout
                assert bout == out, 'the baseline duet_udf disagrees'
                results['baseline ' + fmt] = timed('cat %s | %s --chunk-header | cat > /dev/null' % (chunked, bbase),
                                                   REPEAT)
            if fmt == 'TabSeparated':
                pyout = subprocess.run([sys.executable, py], stdin=open(chunked, 'rb'), capture_output=True,
                                       check=True).stdout
                same = [a == b or (a != b'\\N' and b != b'\\N' and float(a) == float(b))
                        for a, b in zip(pyout.split(b'\n'), out.split(b'\n'))]
                assert len(pyout) > 0 and all(same) and pyout.count(b'\n') == ROWS, \
                    'the Python UDF disagrees with duet_udf'
                t_py = timed('cat %s | %s %s | cat > /dev/null' % (chunked, sys.executable, py), 1)
                results['python'] = t_py
    for fmt in ('TabSeparated', 'RowBinary'):
        nbytes, t_cat, t_pool, t_exec = results[fmt]
        print('%-12s input %6.1f MB | cat %8.1f MB/s | pool %6.2f M rows/s %7.1f MB/s = %.2fx cat bytes/s'
              ' | executable %6.2f M rows/s (%.2fx pool)' % (
                  fmt, nbytes / 1e6, nbytes / t_cat / 1e6, ROWS / t_pool / 1e6, nbytes / t_pool / 1e6,
                  t_cat / t_pool, ROWS / t_exec / 1e6, t_pool / t_exec))
    t_py = results['python']
    print('python UDF   TabSeparated pool %.2f M rows/s' % (ROWS / t_py / 1e6))
    if baseline:
        for fmt in ('TabSeparated', 'RowBinary'):
            t_b = results['baseline ' + fmt]
            print('baseline     %-12s pool %6.2f M rows/s; this build is %.2fx the baseline' % (
                fmt, ROWS / t_b / 1e6, t_b / results[fmt][2]))
    print('ratio duet_udf/python (TabSeparated pool): %.1fx   (goal >= 20x)' % (t_py / results['TabSeparated'][2]))
    print('ratio duet_udf/python (RowBinary pool vs Python TabSeparated): %.1fx' % (t_py / results['RowBinary'][2]))
    print('ratio duet_udf/cat bytes/s (TabSeparated pool): %.2fx   (goal >= 0.25x)' % (
        results['TabSeparated'][1] / results['TabSeparated'][2]))
    print('ratio duet_udf/cat bytes/s (RowBinary pool): %.2fx   (goal >= 0.6x)' % (
        results['RowBinary'][1] / results['RowBinary'][2]))

if __name__ == '__main__':
    main()
