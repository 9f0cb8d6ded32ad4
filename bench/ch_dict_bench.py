#!/usr/bin/env python3
"""ch_dict_bench.py — keys/s of duet_udf --dictionary (ClickHouse 18.16's executable dictionary
source) against `cat` of the same bytes, and against a baseline duet_udf in the same run.

  ch_dict_bench.py DUET_UDF [BASELINE_DUET_UDF]

Keys: 200 000 rows of (formula, inputs JSON) as a complex_key_cache dictionary pipes its missing
keys: a ratio over integer counters, a spend ratio over doubles, a comparison and a three-input
pacing formula, with inputs of 2-4 numbers each. The outputs of both builds are checked equal
first (the keys avoid the JSON edges whose answers changed). Best of 3 alternating runs; each run
is `duet_udf --dictionary < keys > /dev/null`. Then instructions per key (callgrind, 20 000 keys).
"""
import os
import random
import subprocess
import sys
import tempfile
import time


def keys(n):
    rnd = random.Random(31)
    out = []
    for i in range(n):
        c, m = rnd.randint(0, 5000), rnd.randint(1, 10 ** 6)
        k = i % 4
        if k == 0:
            out.append('clicks / impressions\t{"clicks": %d, "impressions": %d}' % (c, m))
        elif k == 1:
            out.append('spend * 1000 / impressions\t{"spend": %.2f, "impressions": %d}' % (c / 7, m))
        elif k == 2:
            out.append('spend > budget\t{"spend": %.3f, "budget": %d}' % (c * 1.5, m % 9000))
        else:
            out.append('clamp(spend / (budget * elapsed / period), 0, 2)\t'
                       '{"spend": %.2f, "budget": %d, "elapsed": %d, "period": 720}' % (c / 3, m % 5000 + 1, i % 720))
    return ('\n'.join(out) + '\n').encode()


def timed(argv, path):
    with open(path, 'rb') as f, open(os.devnull, 'wb') as null:
        t = time.perf_counter()
        subprocess.run(argv, stdin=f, stdout=null, check=True)
        return time.perf_counter() - t


def callgrind(udf, data, work):
    out = os.path.join(work, 'cg.out')
    subprocess.run(['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out, udf, '--dictionary'],
                   input=data, capture_output=True, check=True)
    for line in open(out):
        if line.startswith('summary:') or line.startswith('totals:'):
            return int(line.split()[1])
    return 0


def main():
    udfs = sys.argv[1:]
    n = 200000
    data = keys(n)
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, 'keys.tsv')
        with open(path, 'wb') as f:
            f.write(data)
        outs = [subprocess.run([u, '--dictionary'], input=data, capture_output=True, check=True).stdout for u in udfs]
        if len(outs) == 2 and outs[0] != outs[1]:
            sys.exit('outputs differ between the two builds')
        best = {}
        for _ in range(3):
            for name, argv in [('cat', ['cat'])] + [(u, [u, '--dictionary']) for u in udfs]:
                best[name] = min(best.get(name, 1e9), timed(argv, path))
        mb = len(data) / 1e6
        print('%d keys, %.1f MB; cat %.0f MB/s' % (n, mb, mb / best['cat']))
        for i, u in enumerate(udfs):
            print('%s: %.2f M keys/s (%.0f MB/s, %.3fx cat bytes/s)' % (
                'after' if i == 0 else 'baseline', n / best[u] / 1e6, mb / best[u], best['cat'] / best[u]))
        if len(udfs) == 2:
            print('after/baseline keys/s: %.2fx' % (best[udfs[1]] / best[udfs[0]]))
        small = b'\n'.join(data.split(b'\n')[:20000]) + b'\n'
        irs = [callgrind(u, small, work) for u in udfs]
        for i, ir in enumerate(irs):
            print('%s: %.0f Ir/key (callgrind, 20000 keys)' % ('after' if i == 0 else 'baseline', ir / 20000))
        if len(irs) == 2 and irs[1]:
            print('after/baseline instructions: %.3fx' % (irs[0] / irs[1]))


if __name__ == '__main__':
    main()
