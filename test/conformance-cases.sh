#!/bin/sh
# Prints every case of test/conformance/*.tsv as file<TAB>line<TAB>formula<TAB>inputs<TAB>expected,
# skipping comments and blank lines; sql/calc_conformance.sql loads this with \copy FROM PROGRAM.
cd "$(dirname "$0")/conformance" || exit 1
exec awk 'BEGIN { OFS = "\t" } !/^#/ && NF > 0 { print FILENAME, FNR, $0 }' *.tsv
