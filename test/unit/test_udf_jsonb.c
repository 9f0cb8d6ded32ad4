/*
 * test_udf_jsonb.c — ch_udfs/udf_jsonb.c (JSON numbers as jsonb + duet_calc bind them) and the
 * Int64/UInt64 result check (udf_check_int_result). The expectations are PostgreSQL 15's: each
 * number text was checked with '{"x": TEXT}'::jsonb and duet_calc; test/ch_udf_tests.py compares
 * the dictionary mode with duet_calc itself over thousands of texts.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "udf.h"
#include "udf_jsonb.h"

typedef struct number_case
{
	const char *text;
	char		kind;			/* 'i' integer, 'd' double, 'n' NULL, 'x' refused */
	int64_t		i;
	double		d;
} number_case;

static const number_case number_cases[] = {
	{"0", 'i', 0, 0}, {"-0", 'i', 0, 0}, {"7", 'i', 7, 0}, {"1E2", 'i', 100, 0}, {"1e+2", 'i', 100, 0},
	{"1e02", 'i', 100, 0}, {"1.5e1", 'i', 15, 0}, {"0.1e1", 'i', 1, 0}, {"0e1000", 'i', 0, 0},
	{"0e1073741822", 'i', 0, 0}, {"1e18", 'i', 1000000000000000000, 0},
	{"9223372036854775807", 'i', INT64_MAX, 0}, {"-9223372036854775808", 'i', INT64_MIN, 0},
	{"922337203685477580.7e1", 'i', INT64_MAX, 0}, {"-92233720368547758.08e2", 'i', INT64_MIN, 0},
	{"1.0", 'd', 0, 1.0}, {"-0.0", 'd', 0, 0.0}, {"0.0e-5", 'd', 0, 0.0}, {"100e-2", 'd', 0, 1.0},
	{"1.50e1", 'd', 0, 15.0}, {"1e19", 'd', 0, 1e19}, {"9223372036854775808", 'd', 0, 9223372036854775808.0},
	{"-9223372036854775809", 'd', 0, -9223372036854775808.0},
	{"123456789012345678901234567890", 'd', 0, 1.2345678901234568e29},
	{"1e-400", 'd', 0, 0.0}, {"-1e-400", 'd', 0, 0.0}, {"5e-324", 'd', 0, 5e-324}, {"2e-324", 'd', 0, 0.0},
	{"1.7976931348623157e308", 'd', 0, 1.7976931348623157e308},
	{"1e400", 'n', 0, 0}, {"-1e400", 'n', 0, 0}, {"1.7976931348623159e308", 'n', 0, 0}, {"1e131071", 'n', 0, 0}, {"0.01e131073", 'n', 0, 0},
	{"1e-16383", 'd', 0, 0.0}, {"0e-16383", 'd', 0, 0.0},
	/* numeric cannot hold these: jsonb_in refuses the document */
	{"1e131072", 'x', 0, 0}, {"1e-16384", 'x', 0, 0}, {"1.5e-16383", 'x', 0, 0}, {"0e-16384", 'x', 0, 0},
	{"0e1073741823", 'x', 0, 0}, {"1e-1073741823", 'x', 0, 0}, {"1e99999999999999999999", 'x', 0, 0},
	/* no JSON number */
	{"01", 'x', 0, 0}, {"-01", 'x', 0, 0}, {"00", 'x', 0, 0}, {"1.", 'x', 0, 0}, {".5", 'x', 0, 0}, {"-", 'x', 0, 0}, {"+1", 'x', 0, 0}, {"1e", 'x', 0, 0},
	{"1e+", 'x', 0, 0}, {"--1", 'x', 0, 0}, {"1.2.3", 'x', 0, 0}, {"1.e3", 'x', 0, 0}, {"1e5e5", 'x', 0, 0}, {"", 'x', 0, 0}, {"0x10", 'x', 0, 0},
};

static void
test_numbers(void **state)
{
	(void) state;
	for (size_t k = 0; k < sizeof(number_cases) / sizeof(number_cases[0]); k++)
	{
		const number_case *c = &number_cases[k];
		duet_value	v;
		bool		ok = udf_jsonb_number(c->text, strlen(c->text), &v);

		if (c->kind == 'x')
		{
			if (ok)
				fail_msg("%s: accepted, jsonb refuses it", c->text);
			continue;
		}
		if (!ok)
			fail_msg("%s: refused", c->text);
		if (c->kind == 'i' && !(v.type == DUET_T_INT && v.u.i == c->i))
			fail_msg("%s: want the integer %lld", c->text, (long long) c->i);
		if (c->kind == 'd' && !(v.type == DUET_T_NUMBER && v.u.num == c->d && (c->d != 0 || !signbit(v.u.num))))
			fail_msg("%s: want the double %.17g", c->text, c->d);
		if (c->kind == 'n' && v.type != DUET_T_NULL)
			fail_msg("%s: want NULL", c->text);
	}
}

static void
test_documents(void **state)
{
	udf_jsonb	d;
	duet_value	v;
	static const char *refused[] = {
		"{\"x\": 01}", "{\"x\": [1, 1e131072]}", "{\"x\": 1}x", "{\"x\": 1true}", "{\"x\": -}", "{\"x\": NaN}",
		"{\"x\": \"a\"1}", "{\"x\": 1 2}", "[1e400", "{\"x\": 1.}", "{\"s\": \"a\\u0000\"}",
	};

	(void) state;
	udf_jsonb_init(&d);
	/* numbers inside strings stay strings; a number after an escaped quote is a number */
	{
		const char *doc = "{\"s\": \"1e400 \\\" 2\", \"x\": 1E2, \"a\": [1e400, {\"b\": -0.0}], \"y\": 2.5}";

		assert_true(udf_jsonb_parse(&d, doc, strlen(doc)));
	}
	assert_true(json_is_object(d.root));
	assert_true(udf_jsonb_value(&d, json_object_get(d.root, "s"), &v));
	assert_int_equal(v.type, DUET_T_STRING);
	assert_int_equal(v.u.str.len, 9);
	assert_memory_equal(v.u.str.ptr, "1e400 \" 2", 9);
	assert_true(udf_jsonb_value(&d, json_object_get(d.root, "x"), &v));
	assert_true(v.type == DUET_T_INT && v.u.i == 100);
	assert_true(udf_jsonb_value(&d, json_object_get(d.root, "y"), &v));
	assert_true(v.type == DUET_T_NUMBER && v.u.num == 2.5);
	assert_false(udf_jsonb_value(&d, json_object_get(d.root, "a"), &v));	/* an array: type error */
	assert_int_equal(d.nnums, 4);
	/* many numbers: indices longer than their tokens */
	{
		char		big[8000];
		size_t		n = 0;

		n += (size_t) snprintf(big + n, sizeof(big) - n, "{\"a\": [");
		for (int i = 0; i < 1500; i++)
			n += (size_t) snprintf(big + n, sizeof(big) - n, "%s%d", i ? "," : "", i % 10);
		n += (size_t) snprintf(big + n, sizeof(big) - n, "], \"x\": 7}");
		assert_true(udf_jsonb_parse(&d, big, n));
		assert_true(udf_jsonb_value(&d, json_object_get(d.root, "x"), &v));
		assert_true(v.type == DUET_T_INT && v.u.i == 7);
		assert_int_equal(json_integer_value(json_array_get(json_object_get(d.root, "a"), 1234)), 1234);
		assert_true(d.nums[1234].type == DUET_T_INT && d.nums[1234].u.i == 4);
	}
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++)
		if (udf_jsonb_parse(&d, refused[k], strlen(refused[k])))
			fail_msg("%s: accepted", refused[k]);
	udf_jsonb_free(&d);
}

static void
test_int_results(void **state)
{
	udf_column	c;
	udf_error	err;
	duet_value	v;

	(void) state;
	memset(&c, 0, sizeof(c));
	strcpy(c.name, "result");
	c.type.base = UDF_INT64;
	c.type.nullable = true;
	assert_true(udf_result_type_supported(c.type));
	v = duet_int(INT64_MIN);
	assert_true(udf_check_int_result(&c, &v, &err));
	v = duet_number(4.0);
	assert_false(udf_check_int_result(&c, &v, &err));
	assert_string_equal(err.message, "error:type: the formula returned the double 4, not an integer, for column "
						"result of type Nullable(Int64)");
	v = duet_null();
	assert_true(udf_check_int_result(&c, &v, &err));
	c.type.base = UDF_UINT64;
	c.type.nullable = false;
	v = duet_int(INT64_MAX);
	assert_true(udf_check_int_result(&c, &v, &err));
	v = duet_int(-1);
	assert_false(udf_check_int_result(&c, &v, &err));
	assert_string_equal(err.message, "error:range: the formula returned -1, outside column result of type UInt64");
	c.type.base = UDF_FLOAT64;
	v = duet_number(0.5);
	assert_true(udf_check_int_result(&c, &v, &err));
	c.type.base = UDF_INT32;
	assert_false(udf_result_type_supported(c.type));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_documents),
		cmocka_unit_test(test_int_results),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
