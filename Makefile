# pg_duet — top-level build (PGXS). See README.md; the layout is DESIGN.md §2.
#
#   make             build pg_duet.so, libduetcalc.a and the ch_udfs executables
#   make install     install the extension into the PostgreSQL found by $(PG_CONFIG)
#   make check       everything: unit, pg_regress, TAP, harness, conformance (test/check.sh), on a
#                    private installation and a cluster of its own
#   make installcheck        pg_regress suites (sql/, expected/) against an installed, running server
#   make prove_installcheck  TAP tests (test/t/*.pl) on clusters of their own, from the installed server
#   make demo        the main scenario on a local cluster (demo/run.sh); make demo-stop ends it
#   make bench       benchmarks with ratios against baselines measured in the same run
#
# Components add their own rules in mk/*.mk, so each concern stays in one place.

EXTENSION  = pg_duet
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" pg_duet.control)
PG_CONFIG ?= pg_config
BUILD     := build

# `make check` is ours, not PGXS's (PGXS refuses it); keep PGXS out of that invocation.
ifeq ($(MAKECMDGOALS),check)
.PHONY: check
check:
	@test/check.sh
else

MODULE_big = pg_duet
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard pg_duet/*.c)))
DATA_built = pg_duet--$(EXTVERSION).sql
# The frozen install script of every released version and the update script between each pair.
DATA       = $(wildcard pg_duet/pg_duet--*.sql)
EXTRA_CLEAN = $(BUILD) pg_duet--$(EXTVERSION).sql

# Tests against an installed server (PGXS conventions, as pgvector and pg_cron). pg_regress finds
# the server through PGHOST/PGPORT/PGUSER and runs every sql/*.sql in name order in database
# contrib_regression; mk/test.mk adds prove_installcheck for the TAP tests. REGRESS must be set
# before PGXS is included.
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=$(EXTENSION)

# PostgreSQL's own flags plus ours; unused-parameter is inherent to PG_FUNCTION_ARGS.
PG_CPPFLAGS = -I$(CURDIR)/calc -I$(CURDIR)/pg_duet
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK  = $(BUILD)/libduetcalc.a -lpcre2-8 -lm

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks header dependencies only in a server built with --enable-depend: every object
# depends on every header (a header change rebuilds the extension; never a stale object).
$(OBJS): $(wildcard pg_duet/*.h calc/*.h)

# The install script is assembled from one file per concern, in name order.
pg_duet--$(EXTVERSION).sql: $(sort $(wildcard pg_duet/sql/*.sql))
	cat $^ > $@

UNIT_TESTS :=
include $(sort $(wildcard mk/*.mk))

# Unit tests: mk/*.mk append binaries to UNIT_TESTS; test/suites/10-unit.sh runs them.
.PHONY: unit-tests print-unit-tests
unit-tests: $(UNIT_TESTS)
print-unit-tests:
	@echo $(UNIT_TESTS)

$(shlib): $(BUILD)/libduetcalc.a

.PHONY: demo demo-stop bench
demo:
	@demo/run.sh
demo-stop:
	@demo/run.sh stop
bench:
	@bench/run.sh
endif
