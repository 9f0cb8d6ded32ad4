# ch_udfs/: duet_udf, the ClickHouse executable UDF running Duet formulas (DESIGN.md §9).
#
#   make                                   builds build/ch_udfs/duet_udf
#   make install-clickhouse USER_SCRIPTS=/var/lib/clickhouse/user_scripts [DEFINITIONS=file]
#                                          [FUNCTIONS_DIR=/etc/clickhouse-server]
#       installs duet_udf and the metric definitions file (default: the example one; in production
#       the `definitions` column of duet_clickhouse_config()) and, when FUNCTIONS_DIR is given,
#       the example *_function.xml files
#   make fuzz-udf [FUZZ_SECONDS=20]        libFuzzer (clang-14, ASan+UBSan), one target per format
UDF_SRCS     := $(filter-out ch_udfs/duet_udf.c ch_udfs/duet_ch_sync.c,$(sort $(wildcard ch_udfs/*.c)))
UDF_OBJS     := $(patsubst ch_udfs/%.c,$(BUILD)/ch_udfs/%.o,$(UDF_SRCS))
UDF_CFLAGS   ?= -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-comment
UDF_CFLAGS   += $(COPT)		# as CALC_CFLAGS (calc.mk): the Debian build's hardening flags
UDF_CALC_LIB ?= $(BUILD)/libduetcalc.a
UDF_LIBS     := $(UDF_CALC_LIB) -ljansson $(CALC_LIBS)
UDF_BIN      := $(BUILD)/ch_udfs/duet_udf
UDF_FORMATS  := tsv csv json rowbinary

$(BUILD)/ch_udfs/%.o: ch_udfs/%.c $(wildcard ch_udfs/*.h) calc/duet_calc.h
	@mkdir -p $(dir $@)
	$(CC) $(UDF_CFLAGS) -Icalc -Ich_udfs -c $< -o $@

$(BUILD)/ch_udfs/libduetudf.a: $(UDF_OBJS)
	rm -f $@ && ar rcs $@ $^

$(UDF_BIN): $(BUILD)/ch_udfs/duet_udf.o $(BUILD)/ch_udfs/libduetudf.a $(UDF_CALC_LIB)
	$(CC) $(UDF_CFLAGS) -o $@ $< $(BUILD)/ch_udfs/libduetudf.a $(UDF_LIBS)

# Until the engine's sources exist (calc/*.c), there is nothing to link the executable against.
ifneq ($(CALC_SRCS),)
# duet-ch-sync: pulls the metrics from PostgreSQL into a user_scripts directory (libpq)
CH_SYNC_BIN  := $(BUILD)/ch_udfs/duet-ch-sync
$(CH_SYNC_BIN): ch_udfs/duet_ch_sync.c
	@mkdir -p $(dir $@)
	$(CC) $(UDF_CFLAGS) -I$(shell $(PG_CONFIG) --includedir) -o $@ $< -L$(shell $(PG_CONFIG) --libdir) -lpq

all: $(UDF_BIN) $(CH_SYNC_BIN)
UNIT_TESTS += $(BUILD)/ch_udfs/test_udf_codecs $(BUILD)/ch_udfs/test_udf_block $(BUILD)/ch_udfs/test_udf_jsonb
endif

# cmocka tests of the format codecs and the block loop (run plain and under valgrind by 10-unit).
$(BUILD)/ch_udfs/test_udf_jsonb: test/unit/test_udf_jsonb.c $(BUILD)/ch_udfs/libduetudf.a $(UDF_CALC_LIB)
	$(CC) $(UDF_CFLAGS) -Icalc -Ich_udfs -o $@ $< $(BUILD)/ch_udfs/libduetudf.a $(UDF_LIBS) -lcmocka

$(BUILD)/ch_udfs/test_udf_codecs: test/unit/test_udf_codecs.c $(BUILD)/ch_udfs/libduetudf.a $(UDF_CALC_LIB)
	$(CC) $(UDF_CFLAGS) -Icalc -Ich_udfs -o $@ $< $(BUILD)/ch_udfs/libduetudf.a $(UDF_LIBS) -lcmocka
# the block codecs against the row codecs over random inputs (same bytes, same messages)
$(BUILD)/ch_udfs/test_udf_block: test/unit/test_udf_block.c $(BUILD)/ch_udfs/libduetudf.a $(UDF_CALC_LIB)
	$(CC) $(UDF_CFLAGS) -Icalc -Ich_udfs -o $@ $< $(BUILD)/ch_udfs/libduetudf.a $(UDF_LIBS) -lcmocka

.PHONY: install-clickhouse
DEFINITIONS ?= ch_udfs/duet_metrics.example.tsv
install-clickhouse: $(UDF_BIN)
	@test -n "$(USER_SCRIPTS)" || { echo "usage: make install-clickhouse USER_SCRIPTS=dir [DEFINITIONS=file] [FUNCTIONS_DIR=dir]"; exit 2; }
	install -d "$(USER_SCRIPTS)"
	install -m 755 $(UDF_BIN) "$(USER_SCRIPTS)/duet_udf"
	install -m 644 "$(DEFINITIONS)" "$(USER_SCRIPTS)/duet_metrics.tsv"
	$(if $(FUNCTIONS_DIR),install -d "$(FUNCTIONS_DIR)" && install -m 644 ch_udfs/*_function.xml "$(FUNCTIONS_DIR)/")

# libFuzzer: each format's reader and the block loop, on the engine compiled with the same flags.
FUZZ_CC      ?= clang-14
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -Wno-comment -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 20
FUZZ_BINS    := $(patsubst %,$(BUILD)/fuzz/fuzz_udf_%,$(UDF_FORMATS))

$(BUILD)/fuzz/fuzz_udf_%: test/fuzz/fuzz_udf.c $(UDF_SRCS) $(CALC_SRCS) $(wildcard ch_udfs/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DFUZZ_FORMAT_$* -Icalc -Ich_udfs -o $@ $< $(UDF_SRCS) $(CALC_SRCS) -ljansson $(CALC_LIBS)

.PHONY: fuzz-udf fuzz-udf-build fuzz-udf-replay
fuzz-udf-build: $(FUZZ_BINS)
fuzz-udf: $(FUZZ_BINS)
	@for f in $(UDF_FORMATS); do \
	  mkdir -p $(BUILD)/fuzz/corpus_$$f && \
	  echo "fuzz $$f: $(FUZZ_SECONDS)s" && \
	  $(BUILD)/fuzz/fuzz_udf_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=0 -artifact_prefix=$(BUILD)/fuzz/ \
	    $(BUILD)/fuzz/corpus_$$f test/fuzz/corpus/$$f 2>$(BUILD)/fuzz/$$f.log || { tail -n 40 $(BUILD)/fuzz/$$f.log; exit 1; }; \
	done
# Replays the checked-in corpus (fast; part of make check through test/suites/50-clickhouse-harness.sh).
fuzz-udf-replay: $(FUZZ_BINS)
	@for f in $(UDF_FORMATS); do \
	  $(BUILD)/fuzz/fuzz_udf_$$f -runs=0 -artifact_prefix=$(BUILD)/fuzz/ test/fuzz/corpus/$$f >$(BUILD)/fuzz/replay_$$f.log 2>&1 \
	    && echo "fuzz replay $$f: ok" || { tail -n 40 $(BUILD)/fuzz/replay_$$f.log; echo "fuzz replay $$f: FAILED"; exit 1; }; \
	done
