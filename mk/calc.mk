# calc/: the Duet formula engine as a static, position-independent library shared by pg_duet.so
# and the ch_udfs executables. Own flags: plain C11, no PostgreSQL headers.
CALC_SRCS   := $(sort $(wildcard calc/*.c))
CALC_OBJS   := $(patsubst calc/%.c,$(BUILD)/calc/%.o,$(CALC_SRCS))
CALC_CFLAGS ?= -std=c11 -O2 -g -fPIC -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes

$(BUILD)/calc/%.o: calc/%.c $(wildcard calc/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CALC_CFLAGS) -Icalc -c $< -o $@

$(BUILD)/libduetcalc.a: $(CALC_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

all: $(BUILD)/libduetcalc.a

# Unit tests (cmocka): API, limits, errors and allocation behaviour; the conformance vectors.
# test/suites/10-unit.sh runs them plainly and under valgrind.
CALC_TEST_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror -Icalc \
	-DDUET_CONFORMANCE_DIR='"$(CURDIR)/test/conformance"'
CALC_TESTS := $(BUILD)/unit/test_calc $(BUILD)/unit/test_conformance
UNIT_TESTS += $(CALC_TESTS)

$(CALC_TESTS): $(BUILD)/unit/%: test/unit/%.c $(BUILD)/libduetcalc.a $(wildcard calc/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CALC_TEST_CFLAGS) $< -o $@ $(BUILD)/libduetcalc.a -lcmocka -ljansson -lm \
		-Wl,--wrap=malloc,--wrap=realloc,--wrap=calloc
