# calc/: the Duet formula engine as a static, position-independent library shared by pg_duet.so
# and the ch_udfs executables. Own flags: plain C11, no PostgreSQL headers.
CALC_SRCS   := $(sort $(wildcard calc/*.c))
CALC_OBJS   := $(patsubst calc/%.c,$(BUILD)/calc/%.o,$(CALC_SRCS))
CALC_CFLAGS ?= -std=c11 -O2 -g -fPIC -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
# Debug builds: DUET_DEBUG turns on calc's internal asserts (the VM's stack depth, vm.c). On when
# the PostgreSQL it builds against has assertions (--enable-cassert, USE_ASSERT_CHECKING) or with
# `make CALC_DEBUG=1`; never in a release build. The fuzzer always has them.
ifeq ($(origin CALC_DEBUG),undefined)
CALC_DEBUG  := $(if $(findstring --enable-cassert,$(shell $(PG_CONFIG) --configure 2>/dev/null)),1,)
endif
CALC_CFLAGS += $(if $(filter 1,$(CALC_DEBUG)),-DDUET_DEBUG)
# COPT: PGXS's extra compiler flags, which pg_buildext sets to dpkg-buildflags' CFLAGS (hardening)
# in a Debian build (debian/rules); empty otherwise.
CALC_CFLAGS += $(COPT)

$(BUILD)/calc/%.o: calc/%.c $(wildcard calc/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CALC_CFLAGS) -Icalc -c $< -o $@

$(BUILD)/libduetcalc.a: $(CALC_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

all: $(BUILD)/libduetcalc.a

# Number digits come from PostgreSQL's Ryu (calc/number.c, docs/calc.md): pg_duet.so resolves
# double_to_shortest_decimal_bufn in the postgres binary; executables and tests link libpgcommon.
PG_PKGLIBDIR ?= $(shell $(PG_CONFIG) --pkglibdir)
CALC_LIBS    := $(PG_PKGLIBDIR)/libpgcommon.a $(PG_PKGLIBDIR)/libpgport.a -lpcre2-8 -lm

# Unit tests (cmocka): API, limits, errors and allocation behaviour; the conformance vectors.
# test/suites/10-unit.sh runs them plainly and under valgrind.
CALC_TEST_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror -Icalc \
	-DDUET_CONFORMANCE_DIR='"$(CURDIR)/test/conformance"'
CALC_TESTS := $(BUILD)/unit/test_calc $(BUILD)/unit/test_conformance $(BUILD)/unit/test_number $(BUILD)/unit/test_metric \
	$(BUILD)/unit/test_fastpath
UNIT_TESTS += $(CALC_TESTS)

$(CALC_TESTS): $(BUILD)/unit/%: test/unit/%.c test/unit/alloc_count.c test/unit/alloc_count.h test/unit/number_oracle.h \
		$(BUILD)/libduetcalc.a $(wildcard calc/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CALC_TEST_CFLAGS) $< test/unit/alloc_count.c $(CALC_TEST_EXTRA) -o $@ $(BUILD)/libduetcalc.a \
		-lcmocka -ljansson $(CALC_LIBS) \
		-Wl,--wrap=malloc,--wrap=realloc,--wrap=calloc

# The ClickHouse SQL conformance's compiler (test/ch_server.py --sql-cases): formulas in, SQL out.
$(BUILD)/unit/sqlgen_cases: test/unit/sqlgen_cases.c $(BUILD)/libduetcalc.a $(wildcard calc/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CALC_TEST_CFLAGS) $< -o $@ $(BUILD)/libduetcalc.a -ljansson $(CALC_LIBS)
# The conformance runner reads the inputs as jsonb does, with the dictionary mode's reader.
$(BUILD)/unit/test_conformance: CALC_TEST_EXTRA := ch_udfs/udf_jsonb.c -Ich_udfs
$(BUILD)/unit/test_conformance: ch_udfs/udf_jsonb.c ch_udfs/udf_jsonb.h

# libFuzzer target for compile + evaluate (clang-14, ASan + UBSan). `make fuzz` runs it for
# FUZZ_SECONDS (default 60) on test/fuzz/calc (seeds: the conformance formulas; crash inputs are
# added there) plus a scratch corpus in build/fuzz/corpus_calc. test/suites/15-fuzz-replay.sh
# replays test/fuzz/calc in `make check`.
CALC_FUZZ_CC      ?= clang-14
CALC_FUZZ_CFLAGS  := -std=c11 -g -O1 -DDUET_DEBUG -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
CALC_FUZZ_SECONDS  = $(if $(filter command line environment,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),60)

$(BUILD)/fuzz/fuzz_calc: test/fuzz/fuzz_calc.c $(CALC_SRCS) $(wildcard calc/*.h)
	@mkdir -p $(dir $@)
	$(CALC_FUZZ_CC) $(CALC_FUZZ_CFLAGS) -Icalc -o $@ $< $(CALC_SRCS) $(CALC_LIBS)

.PHONY: fuzz fuzz-calc-build fuzz-calc-replay
fuzz-calc-build: $(BUILD)/fuzz/fuzz_calc
fuzz: $(BUILD)/fuzz/fuzz_calc
	@mkdir -p $(BUILD)/fuzz/corpus_calc
	@echo "fuzz calc: $(CALC_FUZZ_SECONDS)s"
	$(BUILD)/fuzz/fuzz_calc -max_total_time=$(CALC_FUZZ_SECONDS) -max_len=512 -dict=test/fuzz/calc.dict \
	  -artifact_prefix=$(BUILD)/fuzz/calc- -print_final_stats=1 $(BUILD)/fuzz/corpus_calc test/fuzz/calc
fuzz-calc-replay: $(BUILD)/fuzz/fuzz_calc
	$(BUILD)/fuzz/fuzz_calc -runs=0 -artifact_prefix=$(BUILD)/fuzz/calc- test/fuzz/calc

# Benchmark (bench/10-calc.sh): calc against hand-written C, same inputs, same run.
$(BUILD)/bench/calc_bench: bench/calc_bench.c $(BUILD)/libduetcalc.a $(wildcard calc/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -Icalc $< -o $@ $(BUILD)/libduetcalc.a $(CALC_LIBS)
