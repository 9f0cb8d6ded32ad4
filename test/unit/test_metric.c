/*
 * test_metric.c — named metrics expanded inline by the compiler (docs/calc.md, "Metrics"):
 * calls with arguments and by parameter name, composition, the program being the one the formula
 * written out gives, arity and type errors at the call, cycles and nesting limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "duet_calc.h"

typedef struct test_metric
{
	const char *name;
	const char *formula;
	const char *params[4];
	duet_type	types[4];
	size_t		nparams;
} test_metric;

static const test_metric metrics[] = {
	{"roas", "revenue / spend", {"revenue", "spend"}, {DUET_T_NUMBER, DUET_T_NUMBER}, 2},
	{"pacing", "case when budget is null or budget = 0 then null else clamp(spend / budget, 0, 2) end",
	 {"spend", "budget"}, {DUET_T_NUMBER, DUET_T_NUMBER}, 2},
	{"roas_pct", "round(roas(revenue, spend) * 100, 1)", {"revenue", "spend"}, {DUET_T_NUMBER, DUET_T_NUMBER}, 2},
	{"roas_byname", "roas() * 100", {"revenue", "spend"}, {DUET_T_NUMBER, DUET_T_NUMBER}, 2},
	{"label", "name || ': ' || n", {"name", "n"}, {DUET_T_STRING, DUET_T_ANY}, 2},
	{"loop_a", "loop_b(x) + 1", {"x"}, {DUET_T_NUMBER}, 1},
	{"loop_b", "loop_a(x) * 2", {"x"}, {DUET_T_NUMBER}, 1},
	{"self", "self(x)", {"x"}, {DUET_T_NUMBER}, 1},
	{"stray", "x + y", {"x"}, {DUET_T_NUMBER}, 1},
	{"broken", "x +", {"x"}, {DUET_T_NUMBER}, 1},
	{"twice", "x + x", {"x"}, {DUET_T_NUMBER}, 1},
};

static bool
resolve(void *arg, const char *name, size_t len, duet_metric *m)
{
	(void) arg;
	for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++)
		if (strlen(metrics[i].name) == len && memcmp(metrics[i].name, name, len) == 0)
		{
			m->formula = metrics[i].formula;
			m->formula_len = strlen(metrics[i].formula);
			m->nparams = metrics[i].nparams;
			m->params = metrics[i].params;
			m->param_types = metrics[i].types;
			return true;
		}
	return false;
}

static duet_type
strings_are_s(void *arg, const char *name, size_t len)
{
	(void) arg;
	return len >= 1 && name[0] == 's' && !(len == 5 && memcmp(name, "spend", 5) == 0)
		? DUET_T_STRING : DUET_T_ANY;
}

static duet_program *
compile_m(const char *src, duet_error *err)
{
	duet_compile_options opts;

	memset(&opts, 0, sizeof(opts));
	opts.metric = resolve;
	opts.var_type = strings_are_s;
	return duet_compile(src, SIZE_MAX, &opts, err);
}

static double
eval2(duet_program *p, double a, double b)
{
	duet_vm    *vm = duet_vm_new();
	duet_value	vars[2] = {duet_number(a), duet_number(b)};
	duet_value	out;
	duet_error	err;

	assert_int_equal(duet_eval(p, vars, vm, &out, &err), DUET_OK);
	duet_vm_free(vm);
	return out.type == DUET_T_NULL ? -1 : out.u.num;
}

/* Removes "[line:col]" and the padding after it, in place. */
static void
strip_positions(char *s)
{
	char	   *w = s;

	for (char *r = s; *r; r++)
	{
		if (*r == '[')
		{
			while (*r && *r != ']')
				r++;
			while (r[1] == ' ')
				r++;
			continue;
		}
		*w++ = *r;
	}
	*w = '\0';
}

/* The expanded program is the inline formula's program: same listing, instruction for instruction. */
static void
assert_same_program(const char *with_metric, const char *inline_formula)
{
	duet_error	err;
	duet_program *a = compile_m(with_metric, &err);
	duet_program *b;
	char	   *la,
			   *lb;

	if (!a)
		fail_msg("%s: %s", with_metric, err.message);
	b = compile_m(inline_formula, &err);
	if (!b)
		fail_msg("%s: %s", inline_formula, err.message);
	la = duet_program_explain(a);
	lb = duet_program_explain(b);
	/* positions differ (the metric's instructions point at the call); compare the rest */
	strip_positions(la);
	strip_positions(lb);
	assert_string_equal(la, lb);
	free(la);
	free(lb);
	duet_program_free(a);
	duet_program_free(b);
}

static void
test_calls_expand_inline(void **state)
{
	duet_error	err;
	duet_program *p;

	(void) state;
	assert_same_program("roas(rev, cost)", "rev / cost");
	assert_same_program("roas(a + 1, b) * 2", "(a + 1) / b * 2");
	assert_same_program("roas_pct(r, c2)", "round(r / c2 * 100, 1)");
	assert_same_program("roas_byname()", "revenue / spend * 100");
	assert_same_program("roas(1, 4)", "0.25");	/* constant folding across the call */
	assert_same_program("twice(roas(a, b))", "a / b + a / b");

	p = compile_m("roas(revenue, spend)", &err);
	assert_non_null(p);
	assert_int_equal(duet_program_nvars(p), 2);
	assert_string_equal(duet_program_var(p, 0), "revenue");
	assert_true(eval2(p, 120, 40) == 3);
	assert_true(eval2(p, 1, 0) == -1);	/* ÷0 → NULL */
	duet_program_free(p);

	/* by parameter name: the program's variables are the metric's parameters */
	p = compile_m("pacing()", &err);
	assert_non_null(p);
	assert_int_equal(duet_program_nvars(p), 2);
	assert_string_equal(duet_program_var(p, 0), "budget");
	assert_true(eval2(p, 0, 5) == -1);
	assert_true(eval2(p, 10, 5) == 0.5);
	assert_true(eval2(p, 10, 50) == 2);
	duet_program_free(p);
}

static void
expect_error(const char *src, duet_errclass cls, const char *message, int column)
{
	duet_error	err;
	duet_program *p = compile_m(src, &err);

	if (p)
		fail_msg("%s compiled", src);
	if (strstr(err.message, message) == NULL)
		fail_msg("%s: \"%s\" lacks \"%s\"", src, err.message, message);
	assert_int_equal(err.cls, cls);
	assert_int_equal(err.line, 1);
	assert_int_equal(err.column, column);
}

static void
test_errors_point_at_the_call(void **state)
{
	(void) state;
	expect_error("1 + roas(a)", DUET_ERR_ARITY, "metric roas takes 2 arguments (revenue, spend), got 1", 5);
	expect_error("roas(a, 'x')", DUET_ERR_TYPE, "metric roas expects a number for spend, not string", 9);
	expect_error("roas(a, s1)", DUET_ERR_TYPE, "metric roas expects a number for spend, not string", 9);
	expect_error("label(1, 2)", DUET_ERR_TYPE, "metric label expects a string for name, not number", 7);
	expect_error("loop_a(1)", DUET_ERR_LIMIT, "metric cycle: loop_a -> loop_b -> loop_a", 1);
	expect_error("2 * self(1)", DUET_ERR_LIMIT, "metric cycle: self -> self", 5);
	expect_error("stray(1)", DUET_ERR_UNKNOWN_VARIABLE, "metric stray uses \"y\", which is not one of its parameters", 1);
	expect_error("broken(1)", DUET_ERR_SYNTAX, "metric broken does not compile: expected an expression", 1);
	expect_error("nope(1)", DUET_ERR_UNKNOWN_FUNCTION, "unknown function \"nope\"", 1);
	/* a builtin wins over a metric: the resolver is asked only for other names */
	assert_true(duet_is_builtin("ROUND", 5));
	assert_true(duet_is_builtin("if", 2));
	assert_false(duet_is_builtin("roas", 4));
}

static bool
deep_resolve(void *arg, const char *name, size_t len, duet_metric *m)
{
	static const char *const params[] = {"x"};
	static const duet_type types[] = {DUET_T_ANY};
	static char formula[64];

	(void) arg;
	/* m0 .. m99: m<k>(x) = m<k+1>(x) + 1, m99(x) = x */
	if (len < 2 || name[0] != 'm')
		return false;
	int			k = atoi(name + 1);

	if (k < 99)
		snprintf(formula, sizeof(formula), "m%d(x) + 1", k + 1);
	else
		snprintf(formula, sizeof(formula), "x");
	m->formula = formula;
	m->formula_len = strlen(formula);
	m->nparams = 1;
	m->params = params;
	m->param_types = types;
	return true;
}

static void
test_nesting_is_bounded(void **state)
{
	duet_compile_options opts;
	duet_error	err;
	duet_program *p;
	char		src[32];

	(void) state;
	memset(&opts, 0, sizeof(opts));
	opts.metric = deep_resolve;
	snprintf(src, sizeof(src), "m%d(1)", 99 - DUET_METRIC_MAX_NESTING + 1);
	p = duet_compile(src, SIZE_MAX, &opts, &err);
	assert_non_null(p);
	duet_program_free(p);
	snprintf(src, sizeof(src), "m%d(1)", 99 - DUET_METRIC_MAX_NESTING);
	assert_null(duet_compile(src, SIZE_MAX, &opts, &err));
	assert_int_equal(err.cls, DUET_ERR_LIMIT);
	assert_non_null(strstr(err.message, "metrics nested too deeply"));
}

static bool
wide_resolve(void *arg, const char *name, size_t len, duet_metric *m)
{
	static const char *const params[] = {"x"};
	static const duet_type types[] = {DUET_T_ANY};
	static const char formula[] = "x + x + x + x + x + x + x + x";

	(void) arg;
	if (len != 1 || name[0] != 'w')
		return false;
	m->formula = formula;
	m->formula_len = strlen(formula);
	m->nparams = 1;
	m->params = params;
	m->param_types = types;
	return true;
}

/* w(x) uses its argument 8 times: w(w(w(w(w(a))))) would be 8^5 operations */
static void
test_expanded_size_is_bounded(void **state)
{
	duet_compile_options opts;
	duet_error	err;
	duet_program *p;

	(void) state;
	memset(&opts, 0, sizeof(opts));
	opts.metric = wide_resolve;
	p = duet_compile("w(w(w(a)))", SIZE_MAX, &opts, &err);	/* 8^3 uses of a */
	assert_non_null(p);
	duet_program_free(p);
	assert_null(duet_compile("w(w(w(w(w(w(w(w(w(w(w(w(a))))))))))))", SIZE_MAX, &opts, &err));
	assert_int_equal(err.cls, DUET_ERR_LIMIT);
	assert_non_null(strstr(err.message, "metrics expand to more than"));
	/* many calls, each small: the whole formula is bounded too */
	{
		char		src[40000];
		size_t		o = 0;

		for (int i = 0; i < 200; i++)
			o += (size_t) snprintf(src + o, sizeof(src) - o, "%sw(w(a))", i ? " + " : "");
		assert_null(duet_compile(src, SIZE_MAX, &opts, &err));
		assert_int_equal(err.cls, DUET_ERR_LIMIT);
		assert_non_null(strstr(err.message, "metrics expand to more than"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_calls_expand_inline),
		cmocka_unit_test(test_errors_point_at_the_call),
		cmocka_unit_test(test_nesting_is_bounded),
		cmocka_unit_test(test_expanded_size_is_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
