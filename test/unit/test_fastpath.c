/*
 * test_fastpath.c — the VM's fast paths against its general ones, in one build: the numeric tier
 * (calc/fastpath.c) against the stack VM (the program's tier taken away) on every combination of
 * awkward doubles, and OP_CONCAT_N / OP_CASEMAP (lower(x) || '/' || y in one allocation) against
 * the nested CONCATs and lower() calls they replace — results, and errors with their positions;
 * constant case arms folded.
 * test/unit/vm_diff.sh compares both with the previous engine on the conformance and fuzz formulas.
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
#include "calc_int.h"				/* program->fast, the opcodes */

#include "alloc_count.h"

static bool
same(const duet_value *a, const duet_value *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case DUET_T_NUMBER:
			return memcmp(&a->u.num, &b->u.num, sizeof(double)) == 0;
		case DUET_T_INT:
			return a->u.i == b->u.i;
		case DUET_T_BOOL:
			return a->u.boolean == b->u.boolean;
		case DUET_T_STRING:
			return a->u.str.len == b->u.str.len &&
				memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0;
		default:
			return true;
	}
}

/* Every tier opcode and condition form; each must get a tier (the test says so if not). */
static const char *const tier_formulas[] = {
	"case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end",
	"a + b + c", "a - b * c", "(a + 1) / (b - 2)", "3 / a", "a / 0", "a % b", "a % 3", "7 % a", "-a * b",
	"2 - a", "a * 1e308", "round(a / b * 100, 2)", "round(a)", "round(a, -1) + b",
	"clamp(a * b, -1, 1)", "clamp(a, 2, 1)",
	"case when a > b then a when a < b then b else 0.5 end",
	"case when a != 1.5 then 1 else 2 end",
	"case when not (a >= b) then 'lt' when a <= c then 'le' end",
	"case when a is not null and b is null then a else -b end",
	"case when a = b or not (b = c) then c end",
	"case when a < 0 and (b > 0 or c is null) then true else false end",
	"case when 1 < a then a when 0 = b then null else c end",
	"if(a > 0, a, b) * 2",
	"a + case when b > 0 then b else c end",
	"case when a > 0 and true then a end", "case when a > 0 or null then a else b end",
	"case when not (null) or a < 1 then a end", "case when false or a = b then a end",
	"case when not (a != b) then 1 when not (a is null) then 2 else 3 end",
	"case when not (a < 1 or b > 2) then a end",
	"case when not (a < 1 and b > 2) then a end",
	"case when a = 9007199254740992 then 1 else 0 end",
};

/*
 * The numeric tier gives the stack VM's results bit for bit: every formula above over every
 * combination of NULL, ±0, ±inf, NaN, huge and plain doubles; an integer input takes the VM.
 */
static void
test_tier_matches_stack_vm(void **state)
{
	static const double nums[] = {0, -0.0, 1.5, -2, 3, 1e308, -1e308, INFINITY, -INFINITY, NAN, 0.1};
	const int	nn = (int) (sizeof(nums) / sizeof(nums[0])) + 2;	/* + NULL + an integer */
	duet_vm    *vm = duet_vm_new(),
			   *vm2 = duet_vm_new();
	long		cases = 0;

	(void) state;
	for (size_t f = 0; f < sizeof(tier_formulas) / sizeof(tier_formulas[0]); f++)
	{
		duet_error	err;
		duet_program *p = duet_compile(tier_formulas[f], SIZE_MAX, NULL, &err);
		duet_fast  *tier;
		size_t		nv;
		int			combos = 1;

		if (!p)
			fail_msg("%s: %s", tier_formulas[f], err.message);
		if (!p->fast)
			fail_msg("%s: no numeric tier", tier_formulas[f]);
		nv = duet_program_nvars(p);
		for (size_t k = 0; k < nv; k++)
			combos *= nn;
		for (int c = 0; c < combos; c++)
		{
			duet_value	vars[4],
						r1,
						r2;
			duet_errclass c1,
						c2;
			int			x = c;

			for (size_t k = 0; k < nv; k++, x /= nn)
				vars[k] = x % nn == nn - 2 ? duet_null() : x % nn == nn - 1 ? duet_int(2) :
					duet_number(nums[x % nn]);
			c1 = duet_eval(p, vars, vm, &r1, &err);
			tier = p->fast;
			p->fast = NULL;		/* the stack VM */
			c2 = duet_eval(p, vars, vm, &r2, &err);
			p->fast = tier;
			cases++;
			if (c1 != c2 || (c1 == DUET_OK && !same(&r1, &r2)))
				fail_msg("%s, case %d: tier %d (type %d, %.17g), VM %d (type %d, %.17g)",
						 tier_formulas[f], c, c1, r1.type, r1.u.num, c2, r2.type, r2.u.num);
		}
		/* duet_eval_batch (the tier's batch loop, the VM for the other rows) gives the same */
		{
			enum
			{
				NR = 64
			};
			duet_value	cols[4 * NR],
						outs[NR],
						r1;
			size_t		done;

			for (int r = 0; r < NR; r++)
				for (size_t k = 0; k < nv; k++)
				{
					int			x = (r * 7 + (int) k * 5) % nn;

					cols[k * NR + r] = x == nn - 2 ? duet_null() : x == nn - 1 ? duet_int(2) :
						duet_number(nums[x]);
				}
			assert_int_equal(duet_eval_batch(p, cols, NR, NR, vm, outs, &err, &done), DUET_OK);
			assert_int_equal(done, NR);
			for (int r = 0; r < NR; r++)
			{
				duet_value	row[4];

				for (size_t k = 0; k < nv; k++)
					row[k] = cols[k * NR + r];
				assert_int_equal(duet_eval(p, row, vm2, &r1, &err), DUET_OK);
				if (!same(&r1, &outs[r]))
					fail_msg("%s: batch row %d differs", tier_formulas[f], r);
			}
		}
		duet_program_free(p);
	}
	assert_true(cases > 10000);
	duet_vm_free(vm);
	duet_vm_free(vm2);
}

/* What the tier does not do stays with the stack VM. */
static void
test_tier_only_numbers(void **state)
{
	static const char *const none[] = {
		"a", "1 + 2", "a || b", "a ^ 2", "case when a then 1 end", "abs(a)", "a between 1 and 2",
		"case when a > 0 then b end || 'x'", "a in (1, 2)", "coalesce(a, 0)", "clamp(a, b, 1)",
		"a > 1", "case when a > 0 then 1 else 2 end + case when b > 0 then 3 else 4 end",
		"a / b",				/* one superinstruction: duet_eval's own fast path */
	};
	duet_error	err;

	(void) state;
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
	{
		duet_program *p = duet_compile(none[i], SIZE_MAX, NULL, &err);

		assert_non_null(p);
		if (p->fast)
			fail_msg("%s: has a numeric tier", none[i]);
		duet_program_free(p);
	}
}

/* lower()/upper() fused into || map every byte as the functions do (ASCII only). */
static void
test_casemap_matches_functions(void **state)
{
	duet_program *fused[2],
			   *invm[2],
			   *plain[2];
	duet_vm    *vm = duet_vm_new(),
			   *vm2 = duet_vm_new();
	char		s[64];
	duet_error	err;

	(void) state;
	fused[0] = duet_compile("lower(s) || ''", SIZE_MAX, NULL, &err);
	fused[1] = duet_compile("upper(s) || ''", SIZE_MAX, NULL, &err);
	/* the same CONCAT_N inside the VM: the outer || has an expression operand */
	invm[0] = duet_compile("(lower(s) || '') || (t || t)", SIZE_MAX, NULL, &err);
	invm[1] = duet_compile("(upper(s) || '') || (t || t)", SIZE_MAX, NULL, &err);
	plain[0] = duet_compile("lower(s)", SIZE_MAX, NULL, &err);
	plain[1] = duet_compile("upper(s)", SIZE_MAX, NULL, &err);
	assert_int_equal(fused[0]->code[fused[0]->ncode - 2].op, OP_CONCAT_N);
	assert_int_equal(fused[0]->code[1].op, OP_CASEMAP);
	assert_int_equal(fused[0]->ncat, 2);	/* duet_eval_concat */
	assert_int_equal(invm[0]->ncat, 0);
	for (int b = 0; b < 256; b++)
		for (size_t len = 0; len <= 40; len++)
			for (int u = 0; u < 2; u++)
			{
				duet_value	v[2],
							r1,
							r2;

				for (size_t i = 0; i < len; i++)
					s[i] = (char) ((b + i * 37) % 256);
				v[0] = duet_string(s, len);
				v[1] = duet_string("", 0);
				assert_int_equal(duet_eval(plain[u], v, vm2, &r2, &err), DUET_OK);
				assert_int_equal(duet_eval(fused[u], v, vm, &r1, &err), DUET_OK);
				assert_true(same(&r1, &r2));
				assert_int_equal(duet_eval(invm[u], v, vm, &r1, &err), DUET_OK);
				assert_true(same(&r1, &r2));
			}
	for (int u = 0; u < 2; u++)
	{
		duet_program_free(fused[u]);
		duet_program_free(invm[u]);
		duet_program_free(plain[u]);
	}
	duet_vm_free(vm);
	duet_vm_free(vm2);
}

static void
expect_eval(const char *src, const duet_value *vars, duet_errclass cls, int col, const char *msg)
{
	duet_limits lim = {0, 0, 0, 16};
	duet_compile_options opts = {.limits = &lim};
	duet_error	err;
	duet_program *p = duet_compile(src, SIZE_MAX, &opts, &err);
	duet_vm    *vm = duet_vm_new();
	duet_value	out;

	if (!p)
		fail_msg("%s: %s", src, err.message);
	if (duet_eval(p, vars, vm, &out, &err) != cls || (cls != DUET_OK && (err.line != 1 || err.column != col)) ||
		(msg && !strstr(err.message, msg)))
		fail_msg("%s: got %s@%d:%d (%s), expected %s@1:%d", src, duet_errclass_name(err.cls),
				 err.line, err.column, err.message, duet_errclass_name(cls), col);
	duet_vm_free(vm);
	duet_program_free(p);
}

/*
 * (a || b) || c in one instruction keeps the nested form's errors: the limit (16 bytes here) at
 * the || that crosses it, lower()'s own errors at its call, and a bad variable after the first ||
 * only when that one succeeded — in the order the nested form raises them.
 */
static void
test_concat_errors_in_order(void **state)
{
	duet_value	v[3];
	duet_value	bad;

	(void) state;
	bad.type = DUET_T_ANY;		/* no value type: "bound to an invalid value" */
	bad.u.num = 0;
	/* a || b || c: the first || at column 3, the second at 8, c at 11 */
	v[0] = duet_string("12345678", 8);
	v[1] = duet_string("123456789", 9);
	v[2] = duet_string("x", 1);
	expect_eval("a || b || c", v, DUET_ERR_LIMIT, 3, "17 bytes");
	v[2] = bad;
	expect_eval("a || b || c", v, DUET_ERR_LIMIT, 3, "17 bytes");	/* before c is loaded */
	v[1] = duet_null();
	expect_eval("a || b || c", v, DUET_ERR_TYPE, 11, "invalid value");	/* NULL first, then c */
	v[1] = duet_string("12345678", 8);
	v[2] = duet_string("x", 1);
	expect_eval("a || b || c", v, DUET_ERR_LIMIT, 8, "17 bytes");
	v[2] = duet_null();
	expect_eval("a || b || c", v, DUET_OK, 0, NULL);
	v[0] = duet_number(1.0 / 3);	/* 18 bytes of text: the inner || raises it */
	expect_eval("a || b || c", v, DUET_ERR_LIMIT, 3, "18 bytes");
	expect_eval("a || b || 'c'", v, DUET_ERR_LIMIT, 3, "18 bytes");
	/* lower(a) || '/' || b: lower at column 1, the first || at 10, the second at 17, b at 20 */
	v[0] = duet_string("ABCDEFGHIJKLMNOPQ", 17);
	v[1] = bad;
	expect_eval("lower(a) || '/' || b", v, DUET_ERR_LIMIT, 1, "17 bytes");
	v[0] = duet_number(1);
	expect_eval("lower(a) || '/' || b", v, DUET_ERR_TYPE, 1, "function lower cannot take a number");
	v[0] = duet_string("ABCDEFGH", 8);
	v[1] = duet_string("12345678", 8);
	expect_eval("lower(a) || '/' || b", v, DUET_ERR_LIMIT, 17, "17 bytes");
	v[1] = bad;
	expect_eval("lower(a) || '/' || b", v, DUET_ERR_TYPE, 20, "invalid value");
}

/* The label formula's program, and its result. */
static void
test_label_program(void **state)
{
	duet_error	err;
	duet_program *p = duet_compile("lower(channel) || '/' || region", SIZE_MAX, NULL, &err);
	duet_vm    *vm = duet_vm_new();
	duet_value	v[2] = {duet_string("SOCIAL", 6), duet_string("us-east", 7)},
				out;
	char	   *text = duet_program_explain(p);

	(void) state;
	assert_non_null(strstr(text, "CASEMAP           "));
	assert_non_null(strstr(text, "; lower"));
	assert_non_null(strstr(text, "CONCAT_N          1 3 1"));
	assert_int_equal(p->ncat, 3);	/* duet_eval_concat */
	assert_int_equal(duet_eval(p, v, vm, &out, &err), DUET_OK);
	assert_int_equal(out.u.str.len, 14);
	assert_memory_equal(out.u.str.ptr, "social/us-east", 14);
	free(text);
	duet_vm_free(vm);
	duet_program_free(p);
}

/* Arms behind constant conditions are folded away; what is left is what the case would give. */
static void
test_constant_case_arms_folded(void **state)
{
	static const struct
	{
		const char *formula;
		int			ncode;
		const char *listing;	/* in the program's listing */
	}			cases[] = {
		{"case when false then x when true then y else z end", 1, "RETURN_VAR        1          ; y"},
		{"case when null then x else y end", 1, "RETURN_VAR        1"},
		{"case when false then x end", 2, "CONST             0          ; null"},
		{"case when null then x when y > 0 then 2 when true then 3 else z end", 6, "CMP_VC"},
		{"if(true, x * 2, y)", 2, "MUL_VC"},
	};
	duet_vm    *vm = duet_vm_new();

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		duet_error	err;
		duet_program *p = duet_compile(cases[i].formula, SIZE_MAX, NULL, &err);
		char	   *text;

		assert_non_null(p);
		text = duet_program_explain(p);
		if (p->ncode != cases[i].ncode || !strstr(text, cases[i].listing))
			fail_msg("%s:\n%s", cases[i].formula, text);
		free(text);
		duet_program_free(p);
	}
	duet_vm_free(vm);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tier_matches_stack_vm),
		cmocka_unit_test(test_tier_only_numbers),
		cmocka_unit_test(test_casemap_matches_functions),
		cmocka_unit_test(test_concat_errors_in_order),
		cmocka_unit_test(test_label_program),
		cmocka_unit_test(test_constant_case_arms_folded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
