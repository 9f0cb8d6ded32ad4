#!/usr/bin/env bash
# test/unit/vm_diff.sh [REV]: builds calc/ at REV (default: main) with symbols renamed old_*, and
# runs test/unit/vm_diff.c against the working tree's build/libduetcalc.a.
set -euo pipefail
cd "$(dirname "$0")/../.."
rev=${1:-main}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
git archive "$rev" calc | tar -x -C "$tmp"
for f in "$tmp"/calc/*.c; do gcc -std=c11 -O2 -fPIC -I"$tmp/calc" -c "$f" -o "${f%.c}.o"; done
ar rcs "$tmp/old.a" "$tmp"/calc/*.o
nm -g --defined-only "$tmp/old.a" | awk 'NF==3 {print $3" old_"$3}' | sort -u > "$tmp/map"
objcopy --redefine-syms="$tmp/map" "$tmp/old.a" "$tmp/old_r.a"
make -s build/libduetcalc.a
lib=$(pg_config --pkglibdir)
gcc -O1 -g -Icalc test/unit/vm_diff.c -o "$tmp/vm_diff" "$tmp/old_r.a" build/libduetcalc.a \
  "$lib/libpgcommon.a" "$lib/libpgport.a" -lpcre2-8 -lm
"$tmp/vm_diff" test/conformance/*.tsv test/fuzz/calc/*
