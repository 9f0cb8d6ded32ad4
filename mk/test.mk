# Tests against an installed server, as PGXS defines them (Makefile.global):
#
#   make installcheck         pg_regress: REGRESS (every sql/*.sql, set in the Makefile) against
#                             expected/*.out, on the server PGHOST/PGPORT/PGUSER point at; results/
#                             and regression.diffs go to the current directory, or to
#                             EXTRA_REGRESS_OPTS=--outputdir=DIR
#   make prove_installcheck   TAP: PGXS's prove_installcheck recipe on PROVE_TESTS (default
#                             test/t/*.pl; PGXS would look in t/), PROVE_FLAGS=-v for every assertion.
#                             Each test initdb's clusters of its own with the binaries of
#                             $(PG_CONFIG) --bindir, so pg_duet must be installed there; run it as
#                             a user that may run PostgreSQL (not root). Logs: tmp_check/log/.
#
# PGXS keeps TAP's tmp_check/ in $(CURDIR) (it exports TESTDIR=$(CURDIR)); test/suites/40-tap.sh
# passes CURDIR=build/check/tap because the postgres OS user may not write the source tree.
# `make check` runs both through test/suites/30-regress.sh and 40-tap.sh, against the private
# installation in build/tmp_install (PG_CONFIG=build/tmp_install/.../pg_config) and its cluster.

PROVE_TESTS ?= test/t/*.pl
PG_PROVE_FLAGS += -I $(srcdir)/test/perl
EXTRA_CLEAN += results regression.diffs regression.out tmp_check

.PHONY: prove_installcheck
prove_installcheck: export DUET_ROOT := $(abspath $(srcdir))
prove_installcheck:
	$(prove_installcheck)
