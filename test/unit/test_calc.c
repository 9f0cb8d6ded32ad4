/*
 * test_calc.c — calc's C API: compile/evaluate, binding, errors with positions and excerpts,
 * limits (length, depth, constants, run-time string size), allocation behaviour of warm
 * evaluation, number formatting. Language semantics are covered by the conformance vectors.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "duet_calc.h"
#include "calc_int.h"				/* the opcode table */

#include "alloc_count.h"

static size_t
duet_vm_allocations(const duet_vm *vm)
{
	(void) vm;
	return allocations;
}

static duet_program *
compile_ok(const char *src)
{
	duet_error	err;
	duet_program *p = duet_compile(src, SIZE_MAX, NULL, &err);

	if (p == NULL)
		fail_msg("compile of \"%s\" failed: %s", src, err.message);
	return p;
}

static void
test_compile_once_eval_many(void **state)
{
	duet_program *p = compile_ok("revenue / spend");
	duet_vm    *vm = duet_vm_new();
	duet_value	vars[2],
				out;
	duet_error	err;

	(void) state;
	assert_int_equal(duet_program_nvars(p), 2);
	assert_string_equal(duet_program_var(p, 0), "revenue");
	assert_string_equal(duet_program_var(p, 1), "spend");
	assert_null(duet_program_var(p, 2));
	assert_int_equal(duet_program_type(p), DUET_T_NUMBER);
	for (int i = 1; i <= 1000; i++)
	{
		vars[0] = duet_number(3.0 * i);
		vars[1] = duet_number(i);
		assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
		assert_int_equal(out.type, DUET_T_NUMBER);
		assert_true(out.u.num == 3.0);
	}
	vars[1] = duet_number(0);
	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
	assert_int_equal(out.type, DUET_T_NULL);
	vars[1] = duet_null();
	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
	assert_int_equal(out.type, DUET_T_NULL);
	duet_vm_free(vm);
	duet_program_free(p);
}

/*
 * Pattern functions (calc/pattern.c): a constant pattern is compiled by duet_compile, so even the
 * first evaluation compiles nothing (the only allocation is the vm's match state, made once); a
 * pattern from a variable is compiled on its first use (a copy for the vm's cache) and then found
 * there. Warm evaluations of either allocate nothing; a second vm shares the program's pattern.
 */
static void
test_patterns_compile_once(void **state)
{
	duet_program *pc = compile_ok("regexp_match(x, '^a+$') and like(x, 'a%')");
	duet_program *pv = compile_ok("regexp_match(x, pat)");
	duet_vm    *vm = duet_vm_new(),
			   *vm2 = duet_vm_new();
	duet_value	vars[2],
				out;
	duet_error	err;
	size_t		before;

	(void) state;
	vars[0] = duet_string("aaa", 3);
	vars[1] = duet_string("^a", 2);
	before = allocations;
	assert_int_equal(duet_eval(pc, vars, vm, &out, &err), DUET_OK);
	assert_true(out.type == DUET_T_BOOL && out.u.boolean);
	assert_int_equal(allocations - before, 2);	/* the vm's stack and pattern state; no compile */
	before = allocations;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(duet_eval(pc, vars, vm, &out, &err), DUET_OK);
	assert_int_equal(allocations - before, 0);
	before = allocations;
	assert_int_equal(duet_eval(pv, vars, vm, &out, &err), DUET_OK);
	assert_true(out.type == DUET_T_BOOL && out.u.boolean);
	assert_int_equal(allocations - before, 1);	/* the cache's copy of "^a": compiled once */
	before = allocations;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(duet_eval(pv, vars, vm, &out, &err), DUET_OK);
	assert_int_equal(allocations - before, 0);
	vars[0] = duet_string("bab", 3);
	assert_int_equal(duet_eval(pc, vars, vm2, &out, &err), DUET_OK);
	assert_true(out.type == DUET_T_BOOL && !out.u.boolean);
	/* a catastrophic pattern is an error after bounded work, never a hang */
	{
		duet_program *pb = compile_ok("regexp_match(x, '(a|a)+$')");
		char		subject[64];

		memset(subject, 'a', 60);
		subject[60] = 'b';
		vars[0] = duet_string(subject, 61);
		assert_int_equal(duet_eval(pb, vars, vm, &out, &err), DUET_ERR_LIMIT);
		assert_non_null(strstr(err.message, "backtracking limit"));
		duet_program_free(pb);
	}
	duet_vm_free(vm);
	duet_vm_free(vm2);
	duet_program_free(pc);
	duet_program_free(pv);
}

/* After one warm-up evaluation, evaluating again (same or shorter strings) allocates nothing. */
static void
test_warm_eval_allocates_nothing(void **state)
{
	duet_program *p = compile_ok("upper(name) || ' / ' || round(x, 2) || replace(name, 'a', 'xyz')");
	duet_vm    *vm = duet_vm_new();
	duet_value	vars[2],
				out;
	duet_error	err;
	size_t		warm;
	char		name[2000];

	(void) state;
	memset(name, 'a', sizeof(name));
	vars[0] = duet_string(name, sizeof(name));
	vars[1] = duet_number(1.23456);
	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
	warm = duet_vm_allocations(vm);
	assert_true(warm > 0);
	for (int i = 0; i < 500; i++)
	{
		vars[0] = duet_string(name, (size_t) (i * 4) % sizeof(name));
		vars[1] = duet_number(i * 0.37);
		assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
		assert_int_equal(out.type, DUET_T_STRING);
	}
	assert_int_equal(duet_vm_allocations(vm), warm);
	duet_vm_free(vm);
	duet_program_free(p);
}

/* Earlier string results of one evaluation stay valid while later ones grow the arena. */
static void
test_arena_growth_keeps_earlier_strings(void **state)
{
	duet_program *p = compile_ok("a || '|' || (b || b || b || b) || '|' || a");
	duet_vm    *vm = duet_vm_new();
	duet_value	vars[2],
				out;
	duet_error	err;
	char	   *big = malloc(100000);

	(void) state;
	memset(big, 'b', 100000);
	vars[0] = duet_string("head", 4);
	vars[1] = duet_string(big, 100000);
	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
	assert_int_equal(out.u.str.len, 4 + 1 + 400000 + 1 + 4);
	assert_memory_equal(out.u.str.ptr, "head|b", 6);
	assert_memory_equal(out.u.str.ptr + out.u.str.len - 6, "b|head", 6);
	free(big);
	duet_vm_free(vm);
	duet_program_free(p);
}

static void
expect_error(const char *src, duet_errclass cls, int line, int col, const char *msg_part)
{
	duet_error	err;
	duet_program *p = duet_compile(src, SIZE_MAX, NULL, &err);

	if (p != NULL)
		fail_msg("\"%s\" compiled", src);
	if (err.cls != cls || err.line != line || err.column != col)
		fail_msg("\"%s\": got %s@%d:%d (%s), expected %s@%d:%d", src, duet_errclass_name(err.cls),
				 err.line, err.column, err.message, duet_errclass_name(cls), line, col);
	if (msg_part && strstr(err.message, msg_part) == NULL)
		fail_msg("\"%s\": message \"%s\" lacks \"%s\"", src, err.message, msg_part);
}

static void
test_errors_have_positions_and_excerpts(void **state)
{
	duet_error	err;

	(void) state;
	assert_null(duet_compile("clicks / (impressions", SIZE_MAX, NULL, &err));
	assert_int_equal(err.cls, DUET_ERR_SYNTAX);
	assert_int_equal(err.line, 1);
	assert_int_equal(err.column, 22);
	assert_string_equal(err.expected, "\")\"");
	assert_string_equal(err.excerpt, "clicks / (impressions\n                     ^");

	/* columns count characters, lines are 1-based */
	assert_null(duet_compile("'héé' ||\n  'x' +* 2", SIZE_MAX, NULL, &err));
	assert_int_equal(err.line, 2);
	assert_int_equal(err.column, 8);
	assert_string_equal(err.excerpt, "  'x' +* 2\n       ^");
	assert_string_equal(err.expected, "an expression");

	/* a type error points at the operator; columns count characters, not bytes */
	assert_null(duet_compile("'é' * 2", SIZE_MAX, NULL, &err));
	assert_int_equal(err.cls, DUET_ERR_TYPE);
	assert_int_equal(err.column, 5);
	assert_string_equal(err.excerpt, "'é' * 2\n    ^");

	expect_error("", DUET_ERR_SYNTAX, 1, 1, "end of formula");
	expect_error("1 2", DUET_ERR_SYNTAX, 1, 3, "expected an operator or end of formula");
	expect_error("nosuch(1)", DUET_ERR_UNKNOWN_FUNCTION, 1, 1, "nosuch");
	expect_error("x + round(1, 2, 3)", DUET_ERR_ARITY, 1, 5, "1 to 2 arguments");
	expect_error("'abc", DUET_ERR_SYNTAX, 1, 1, "unterminated string");
	expect_error("a ! b", DUET_ERR_SYNTAX, 1, 3, "unexpected character");
	expect_error("1 < 2 < 3", DUET_ERR_SYNTAX, 1, 7, "do not chain");
	expect_error("case when x then 1", DUET_ERR_SYNTAX, 1, 19, "\"end\"");
	expect_error("1e999", DUET_ERR_SYNTAX, 1, 1, "out of range");
	expect_error("x +\n\n   é", DUET_ERR_SYNTAX, 3, 4, "unexpected character");
}

static void
test_long_line_excerpt_is_windowed(void **state)
{
	char	   *src = malloc(10001);
	duet_error	err;

	(void) state;
	for (int i = 0; i < 5000; i++)
		memcpy(src + 2 * i, "1+", 2);
	src[9999] = '*';
	src[10000] = '\0';
	assert_null(duet_compile(src, SIZE_MAX, NULL, &err));
	assert_true(strlen(err.excerpt) < sizeof(err.excerpt));
	assert_non_null(strstr(err.excerpt, "..."));
	assert_int_equal(err.excerpt[strlen(err.excerpt) - 1], '^');
	free(src);
}

static void
test_limits(void **state)
{
	duet_limits lim = {100, 10, 3, 16};
	duet_compile_options opts = {.limits = &lim};
	duet_error	err;
	duet_program *p;
	duet_vm    *vm = duet_vm_new();
	duet_value	vars[1],
				out;
	char		buf[200];

	(void) state;
	memset(buf, ' ', sizeof(buf));
	buf[0] = '1';
	assert_null(duet_compile(buf, sizeof(buf), &opts, &err));
	assert_int_equal(err.cls, DUET_ERR_LIMIT);
	assert_non_null(strstr(err.message, "200 bytes long (limit 100)"));

	assert_null(duet_compile("((((((((((((1))))))))))))", SIZE_MAX, &opts, &err));
	assert_int_equal(err.cls, DUET_ERR_LIMIT);
	assert_non_null(strstr(err.message, "nested too deeply"));
	assert_int_equal(err.line, 1);

	assert_null(duet_compile("x + 1 + 2 + 3 + 4", SIZE_MAX, &opts, &err));
	assert_int_equal(err.cls, DUET_ERR_LIMIT);
	assert_non_null(strstr(err.message, "constants"));
	p = duet_compile("x + 1 + 1 + 1 + 1", SIZE_MAX, &opts, &err);	/* duplicates share one */
	assert_non_null(p);
	duet_program_free(p);

	p = duet_compile("x || x", SIZE_MAX, &opts, &err);
	assert_non_null(p);
	vars[0] = duet_string("12345678", 8);
	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
	vars[0] = duet_string("123456789", 9);
	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_ERR_LIMIT);
	assert_non_null(strstr(err.message, "exceeds the limit"));
	assert_int_equal(err.column, 3);
	duet_program_free(p);
	/* a constant string over the limit fails at compile time, when folding */
	assert_null(duet_compile("'123456789' || '123456789'", SIZE_MAX, &opts, &err));
	assert_int_equal(err.cls, DUET_ERR_LIMIT);
	duet_vm_free(vm);
}

/* Deep nesting is a clear error, never a stack overflow: the parser checks before recursing. */
static void
test_deep_nesting(void **state)
{
	size_t		n = 100000;
	char	   *src = malloc(2 * n + 200000);
	duet_error	err;
	const char *prefixes[] = {"(", "- ", "not ", "2^", "abs("};

	(void) state;
	for (size_t k = 0; k < 5; k++)
	{
		size_t		pl = strlen(prefixes[k]),
					o = 0;

		for (size_t i = 0; o + pl < 2 * n; i++)
		{
			memcpy(src + o, prefixes[k], pl);
			o += pl;
		}
		src[o++] = '1';
		src[o] = '\0';
		assert_null(duet_compile(src, o, &(duet_compile_options) {.limits = &(duet_limits) {1 << 20, 0, 0, 0}}, &err));
		assert_int_equal(err.cls, DUET_ERR_LIMIT);
		assert_non_null(strstr(err.message, "nested too deeply (limit 256)"));
	}
	/* long flat chains (no parser recursion, a tall left-deep tree) compile correctly or hit a limit */
	for (int terms = 1000; terms <= 60000; terms *= 60)
	{
		size_t		o = 0;
		duet_program *p;

		for (int i = 0; i < terms; i++)
			o += (size_t) sprintf(src + o, "x+");
		src[o++] = 'x';
		src[o] = '\0';
		p = duet_compile(src, o, &(duet_compile_options) {.limits = &(duet_limits) {1 << 20, 0, 0, 0}}, &err);
		if (p)
		{
			duet_vm    *vm = duet_vm_new();
			duet_value	x = duet_number(1),
						out;

			assert_int_equal(duet_eval(p, &x, vm, &out, &err), DUET_OK);
			assert_true(out.u.num == terms + 1);
			duet_vm_free(vm);
			duet_program_free(p);
		}
		else
			assert_int_equal(err.cls, DUET_ERR_LIMIT);
	}
	free(src);
}

static duet_type
typed_vars(void *arg, const char *name, size_t len)
{
	(void) arg;
	if (len == 1 && name[0] == 's')
		return DUET_T_STRING;
	if (len == 1 && name[0] == 'n')
		return DUET_T_NUMBER;
	return DUET_T_ANY;
}

static void
test_static_types(void **state)
{
	duet_compile_options opts = {.var_type = typed_vars};
	duet_error	err;
	duet_program *p;
	duet_vm    *vm = duet_vm_new();
	duet_value	vars[1],
				out;

	(void) state;
	assert_null(duet_compile("n + s", SIZE_MAX, &opts, &err));
	assert_int_equal(err.cls, DUET_ERR_TYPE);
	assert_int_equal(err.column, 3);
	/* unknown type: the same error at run time, with the operator's position */
	p = duet_compile("1 + x", SIZE_MAX, &opts, &err);
	assert_non_null(p);
	assert_int_equal(duet_program_type(p), DUET_T_NUMBER);
	vars[0] = duet_string("a", 1);
	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_ERR_TYPE);
	assert_int_equal(err.column, 3);
	assert_int_equal(out.type, DUET_T_NULL);
	duet_program_free(p);

	p = duet_compile("if(x > 0, 'pos', 'neg')", SIZE_MAX, NULL, &err);
	assert_int_equal(duet_program_type(p), DUET_T_STRING);
	duet_program_free(p);
	p = duet_compile("coalesce(x, 1)", SIZE_MAX, NULL, &err);
	assert_int_equal(duet_program_type(p), DUET_T_ANY);
	duet_program_free(p);
	p = duet_compile("null", SIZE_MAX, NULL, &err);
	assert_int_equal(duet_program_type(p), DUET_T_NULL);
	duet_program_free(p);
	duet_vm_free(vm);
}

static void
test_inputs_are_sanitised(void **state)
{
	duet_program *p = compile_ok("x");
	duet_vm    *vm = duet_vm_new();
	duet_value	v,
				out;
	duet_error	err;

	(void) state;
	v = duet_number(-0.0);
	assert_int_equal(duet_eval(p, &v, vm, &out, &err), DUET_OK);
	assert_false(signbit(out.u.num));
	v = duet_number(INFINITY);
	assert_int_equal(duet_eval(p, &v, vm, &out, &err), DUET_OK);
	assert_int_equal(out.type, DUET_T_NULL);
	v = duet_number(NAN);
	assert_int_equal(duet_eval(p, &v, vm, &out, &err), DUET_OK);
	assert_int_equal(out.type, DUET_T_NULL);
	v.type = DUET_T_ANY;
	assert_int_equal(duet_eval(p, &v, vm, &out, &err), DUET_ERR_TYPE);
	v = duet_string(NULL, 3);
	assert_int_equal(duet_eval(p, &v, vm, &out, &err), DUET_ERR_TYPE);
	duet_vm_free(vm);
	duet_program_free(p);
}

static void
check_format(double d, const char *want)
{
	char		buf[32];
	size_t		n = duet_format_number(d, buf, sizeof(buf));

	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
	if (isfinite(d))
		assert_true(strtod(buf, NULL) == d || (d == 0 && strtod(buf, NULL) == 0));
}

static void
test_format_number(void **state)
{
	(void) state;
	check_format(3, "3");
	check_format(0.1, "0.1");
	check_format(-0.0, "0");
	check_format(1e300, "1e+300");
	check_format(1e15, "1000000000000000");
	check_format(1e21, "1e+21");
	check_format(1e-7, "1e-7");
	check_format(123456789012345, "123456789012345");
	check_format(0.0001, "0.0001");
	check_format(0.00001, "0.00001");
	check_format(1.0 / 3, "0.3333333333333333");
	check_format(0.1 + 0.2, "0.30000000000000004");
	check_format(-2.5, "-2.5");
	check_format(5e-324, "5e-324");
	check_format(1.7976931348623157e308, "1.7976931348623157e+308");
	check_format(100, "100");
	check_format(NAN, "null");
	check_format(-INFINITY, "null");
	/* a small buffer is truncated, still terminated */
	{
		char		small[4];

		duet_format_number(123456, small, sizeof(small));
		assert_string_equal(small, "123");
	}
}

static void
test_names(void **state)
{
	(void) state;
	assert_string_equal(duet_errclass_name(DUET_ERR_SYNTAX), "syntax");
	assert_string_equal(duet_errclass_name(DUET_ERR_UNKNOWN_FUNCTION), "unknown_function");
	assert_string_equal(duet_errclass_name(DUET_ERR_UNKNOWN_VARIABLE), "unknown_variable");
	assert_string_equal(duet_errclass_name(DUET_ERR_NOMEM), "nomem");
	assert_string_equal(duet_type_name(DUET_T_BOOL), "boolean");
}

/* A program is immutable: evaluating it concurrently from two vms gives independent results. */
static void
test_two_vms_share_a_program(void **state)
{
	duet_program *p = compile_ok("s || '!'");
	duet_vm    *v1 = duet_vm_new(),
			   *v2 = duet_vm_new();
	duet_value	a = duet_string("one", 3),
				b = duet_string("two", 3),
				o1,
				o2;
	duet_error	err;

	(void) state;
	assert_int_equal(duet_eval(p, &a, v1, &o1, &err), DUET_OK);
	assert_int_equal(duet_eval(p, &b, v2, &o2, &err), DUET_OK);
	assert_memory_equal(o1.u.str.ptr, "one!", 4);
	assert_memory_equal(o2.u.str.ptr, "two!", 4);
	duet_vm_free(v1);
	duet_vm_free(v2);
	duet_program_free(p);
	duet_program_free(NULL);
	duet_vm_free(NULL);
}

/* Every opcode has a name and a line of documentation; the listing names operands. */
static void
test_explain(void **state)
{
	static const struct
	{
		const char *formula;
		const char *expect[4];
	}			cases[] = {
		{"clicks / impressions", {"2 instructions, 2 variables", "DIV_VV            0 1        ; clicks / impressions", "RETURN\n"}},
		{"x", {"RETURN_VAR        0          ; x\n"}},
		{"round(x * 2, 2) || 'it''s'", {"MUL_VC", "; x * 2", "ROUND_C           2          ; round(top, 2)", "'it''s'"}},
		{"case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end",
		 {"ISNULL_V          0 0        ; budget is null", "CMP_VC            0 0 10     ; budget = 0", "JUMP_UNLESS_TRUE  6          ; to 6", "CLAMP_CC"}},
		{"a not in (1, 2) and b between 1 and 2 and abs(a) > 1", {"IN                2 1        ; not in, 2 items", "BETWEEN           0", "CALL              ", "; abs/1 numeric"}},
	};

	(void) state;
	for (int op = 0; op < OP_NCODES; op++)
	{
		assert_non_null(duet_opcodes[op].name);
		assert_non_null(duet_opcodes[op].doc);
	}
	assert_string_equal(duet_opcodes[OP_JUMP_UNLESS_TRUE].name, "JUMP_UNLESS_TRUE");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		duet_program *p = compile_ok(cases[i].formula);
		char	   *text = duet_program_explain(p);

		assert_non_null(text);
		for (int k = 0; k < 4 && cases[i].expect[k]; k++)
			if (!strstr(text, cases[i].expect[k]))
				fail_msg("explain of \"%s\" lacks \"%s\":\n%s", cases[i].formula, cases[i].expect[k], text);
		free(text);
		duet_program_free(p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compile_once_eval_many),
		cmocka_unit_test(test_warm_eval_allocates_nothing),
		cmocka_unit_test(test_patterns_compile_once),
		cmocka_unit_test(test_arena_growth_keeps_earlier_strings),
		cmocka_unit_test(test_errors_have_positions_and_excerpts),
		cmocka_unit_test(test_long_line_excerpt_is_windowed),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_static_types),
		cmocka_unit_test(test_inputs_are_sanitised),
		cmocka_unit_test(test_format_number),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_two_vms_share_a_program),
		cmocka_unit_test(test_explain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
