/*
 * sqlgen_ch.c — the ClickHouse dialect of duet_compile_sql (sqlgen.c; docs/metrics.md, "Native
 * SQL"): the checked tree written as one ClickHouse expression with exactly Duet's semantics, in
 * functions that ClickHouse 18.16 has (the same text is the body of CREATE FUNCTION … -> expr for
 * servers from 21.10). What 18.16 does differently from Duet (docs/dialects.md), and how:
 *
 * - numbers are Float64 and every value is kept as Duet keeps it, finite or NULL and never -0: a
 *   variable is read as multiIf(isFinite(v), v + 0., NULL); ClickHouse's Float64 arithmetic is
 *   IEEE (no exception), so a + - * / b is multiIf(isFinite(a op b), (a op b) + 0., NULL) (and a
 *   variable divisor finite: x / inf is 0): an overflow, ÷0 and 0/0 (inf, nan) are NULL as in
 *   Duet, + 0. turns -0 into 0. ClickHouse computes a repeated subexpression once per block;
 * - `if(NULL, a, b)` is NULL in 18.16 and multiIf takes a NULL condition as false, so conditions
 *   are always multiIf (`if` with a NULL branch is also faster, but 18.16 makes Nullable columns
 *   of it that coalesce rejects, and crashed on one); and/or of Nullable operands is not three-valued in 18.16 (NULL OR 0 gives
 *   0), so they are written out: a and b = multiIf(a = 0, 0, b = 0, 0, isNull(a) OR isNull(b),
 *   NULL, 1); between and in through them;
 * - least/greatest propagate NULL in ClickHouse, so least(a, b) is least(coalesce(a, b),
 *   coalesce(b, a)) (NULLs skipped, NULL when all are); nullif is multiIf(a = b, NULL, a);
 * - a subnormal constant does not parse in 18.16: it is written as its bits
 *   (reinterpretAsFloat64(unhex(…))); the other doubles as %.17g, which parses exactly;
 * - booleans are UInt8 0/1 (18.16 has no Bool); strings compare bytewise, as Duet's do;
 * - ^, pow, exp, sqrt, ln, log10 are the same libm's as duet_udf's on the same machine;
 * - refused: round (18.16's rounding of halves is not Duet's, and later servers round half to
 *   even), % and mod (modulo truncates fractions), div, ||/concat and every string or
 *   format function (number text differs), least/greatest of strings (not in 18.16), a String
 *   parameter (ClickHouse Strings are bytes; Duet refuses input that is not UTF-8, which 18.16
 *   cannot check), and any builtin this file does not know.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sqlgen.h"

/* a number as a Float64 literal (never -0: Duet has none) */
static void
number(sqlgen *g, double x)
{
	char		buf[40];

	if (x != 0 && fabs(x) < DBL_MIN)
	{
		/* 18.16's parser rejects subnormal literals: the double's bytes, little-endian */
		unsigned char b[8];
		uint64_t	bits;

		memcpy(&bits, &x, sizeof(bits));
		for (int i = 0; i < 8; i++)
			b[i] = (unsigned char) (bits >> (8 * i));
		sqlgen_put(g, "reinterpretAsFloat64(unhex('%02X%02X%02X%02X%02X%02X%02X%02X'))",
				   b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
		return;
	}
	snprintf(buf, sizeof(buf), "%.17g", x == 0 ? 0.0 : x);
	/* without a point or an exponent, a literal is an integer type */
	sqlgen_put(g, x < 0 ? "(%s%s)" : "%s%s", buf, strpbrk(buf, ".e") ? "" : ".");
}

/*
 * An operand of + - * /: a number variable as it is. Its infinities and NaN give a non-finite
 * result (inf * 0 is NaN), hence NULL, except as a divisor (x / inf is 0: arith checks it), and
 * -0 is fixed by the + 0. of the result. True when it wrote the variable.
 */
static bool
operand(sqlgen *g, const node *n)
{
	const char *v;

	if (n->kind == N_VAR && n->type == DUET_T_NUMBER &&
		(v = g->o->var_sql(g->o->arg, n->value.u.str.ptr, n->value.u.str.len)))
	{
		sqlgen_put(g, "%s", v);
		return true;
	}
	sqlgen_expr(g, n);
	return false;
}

/*
 * a op b, op one of + - * /: multiIf(isFinite(a op b), (a op b) + 0., NULL), the operation
 * written twice (computed once by ClickHouse), and a variable divisor finite. Not `if`: 18.16's
 * `if` with a NULL branch makes Nullable columns that coalesce rejects or crashes the server on.
 */
/*
 * f(x [, y]) of the libm function f (pow, exp): multiIf(isFinite(f(x, y)), f(x, y) + 0., NULL).
 * ClickHouse calls the same libm as duet_udf on the same machine (the test compares them on rows
 * of random values); the operands are read as Duet reads them (pow(inf, 0) is 1, Duet's NULL).
 */
static void
libm(sqlgen *g, const char *f, const node *x, const node *y)
{
	for (int i = 0; i < 2; i++)
	{
		sqlgen_put(g, i ? ", %s(" : "multiIf(isFinite(%s(", f);
		sqlgen_expr(g, x);
		if (y)
		{
			sqlgen_put(g, ", ");
			sqlgen_expr(g, y);
		}
		sqlgen_put(g, i ? ") + 0., NULL)" : "))");
	}
}

static bool
arith(sqlgen *g, const node *n, const node *a, const node *b, int opt)
{
	const char *op = opt == T_PLUS ? "+" : opt == T_MINUS ? "-" : opt == T_STAR ? "*" : "/";
	bool		raw_divisor = false;

	if (opt == T_CARET)
	{
		/* a double in Duet, integer operands included (vm.c) */
		libm(g, "pow", a, b);
		return !g->failed;
	}
	if (!sqlgen_int_arith_ok(g, n, opt, op))
		return false;
	for (int i = 0; i < 2; i++)
	{
		sqlgen_put(g, i ? ", ((" : "multiIf(isFinite((");
		operand(g, a);
		sqlgen_put(g, ") %s (", op);
		raw_divisor = operand(g, b) && opt == T_SLASH;
		sqlgen_put(g, "))");
		if (i)
			sqlgen_put(g, " + 0., NULL)");
		else if (raw_divisor)
		{
			sqlgen_put(g, " AND isFinite(");
			operand(g, b);
			sqlgen_put(g, ")");
		}
	}
	return !g->failed;
}

/* '' with \\ and ' escaped, control bytes as \\xHH */
static bool
string(sqlgen *g, const node *n)
{
	const char *s = n->value.u.str.ptr;
	size_t		len = n->value.u.str.len;

	sqlgen_put(g, "'");
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '\'' || c == '\\')
			sqlgen_put(g, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			sqlgen_put(g, "\\x%02X", c);
		else
			sqlgen_put(g, "%c", c);
	}
	sqlgen_put(g, "'");
	return true;
}

static bool
var(sqlgen *g, const node *n, const char *v)
{
	if (n->type == DUET_T_NUMBER)
		sqlgen_put(g, "multiIf(isFinite(%s), %s + 0., NULL)", v, v);
	else if (n->type == DUET_T_BOOL)
		sqlgen_put(g, "(%s != 0)", v);
	else
		return sqlgen_refuse(g, n, "a String parameter (Duet requires UTF-8, which ClickHouse does not check)");
	return true;
}

/* (a <op> b): ClickHouse compares Float64, UInt8 and String (bytewise) as Duet does */
static void
compare(sqlgen *g, const node *a, const char *op, const node *b)
{
	sqlgen_put(g, "((");
	sqlgen_expr(g, a);
	sqlgen_put(g, ") %s (", op);
	sqlgen_expr(g, b);
	sqlgen_put(g, "))");
}

/*
 * t0 and t1 and … (or: or), three-valued: false (true) as soon as one term is, else NULL when
 * one is NULL, else true (false). Every term is 0, 1 or NULL.
 */
static void
logic(sqlgen *g, const node *n, int nterms, sqlgen_term term, bool is_and)
{
	sqlgen_put(g, "multiIf(");
	for (int i = 0; i < nterms; i++)
	{
		sqlgen_put(g, "(");
		term(g, n, i);
		sqlgen_put(g, is_and ? ") = 0, 0, " : ") = 1, 1, ");
	}
	for (int i = 0; i < nterms; i++)
	{
		sqlgen_put(g, i ? " OR isNull(" : "isNull(");
		term(g, n, i);
		sqlgen_put(g, ")");
	}
	sqlgen_put(g, is_and ? ", NULL, 1)" : ", NULL, 0)");
}

/* least/greatest skipping NULLs: least(coalesce(a, b, c), coalesce(b, a, c), …) pairwise */
static void
least_greatest(sqlgen *g, const node *n, const char *fn)
{
	if (n->nkids == 1)
	{
		sqlgen_expr(g, n->kids[0]);
		return;
	}
	for (int i = 1; i < n->nkids; i++)
		sqlgen_put(g, "%s(", fn);
	for (int i = 0; i < n->nkids; i++)
	{
		sqlgen_put(g, i ? ", coalesce(" : "coalesce(");
		sqlgen_expr(g, n->kids[i]);
		for (int k = 0; k < n->nkids; k++)
			if (k != i)
			{
				sqlgen_put(g, ", ");
				sqlgen_expr(g, n->kids[k]);
			}
		sqlgen_put(g, i ? "))" : ")");
	}
}

static bool
call(sqlgen *g, const node *n)
{
	const char *name = n->fn->name;

	if (strcmp(name, "abs") == 0)
	{
		sqlgen_put(g, "abs(");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ")");
	}
	else if (strcmp(name, "sign") == 0)
	{
		/* 18.16 has no sign() */
		sqlgen_put(g, "multiIf((");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") > 0., 1., (");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") < 0., (-1.), (");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") = 0., 0., NULL)");
	}
	else if (strcmp(name, "coalesce") == 0 || strcmp(name, "ifnull") == 0)
	{
		sqlgen_put(g, "coalesce(");
		for (int i = 0; i < n->nkids; i++)
		{
			sqlgen_put(g, i ? ", " : "");
			sqlgen_expr(g, n->kids[i]);
		}
		sqlgen_put(g, ")");
	}
	else if (strcmp(name, "nullif") == 0)
	{
		/* nullIf(a, NULL) is NULL in ClickHouse (its if takes the NULL condition as NULL) */
		sqlgen_put(g, "multiIf(");
		compare(g, n->kids[0], "=", n->kids[1]);
		sqlgen_put(g, ", NULL, ");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ")");
	}
	else if (strcmp(name, "least") == 0 || strcmp(name, "greatest") == 0)
	{
		if (n->kids[0]->type == DUET_T_STRING)
			return sqlgen_refuse(g, n, "function least/greatest of strings");
		least_greatest(g, n, name);
	}
	else if (strcmp(name, "floor") == 0 || strcmp(name, "ceil") == 0 || strcmp(name, "trunc") == 0)
	{
		/* + 0. for the -0 of ceil(-0.5) */
		sqlgen_put(g, "(%s(", name);
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") + 0.)");
	}
	else if (strcmp(name, "sqrt") == 0 || strcmp(name, "ln") == 0 || strcmp(name, "log10") == 0)
	{
		/* Duet: sqrt of a negative, ln/log10 of x <= 0 are NULL; ClickHouse gives nan, -inf */
		sqlgen_put(g, "multiIf((");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") %s 0., %s(", name[0] == 's' ? ">=" : ">",
				   name[0] == 's' ? "sqrt" : name[1] == 'n' ? "log" : "log10");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, "), NULL)");
	}
	else if (strcmp(name, "log") == 0)
	{
		/* Duet: NULL for b <= 0, b = 1, x <= 0; ln(x) / ln(b) is finite there; + 0. for -0 */
		sqlgen_put(g, "multiIf((");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") > 0. AND (");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") != 1. AND (");
		sqlgen_expr(g, n->kids[1]);
		sqlgen_put(g, ") > 0., log(");
		sqlgen_expr(g, n->kids[1]);
		sqlgen_put(g, ") / log(");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") + 0., NULL)");
	}
	else if (strcmp(name, "pow") == 0 || strcmp(name, "exp") == 0)
		libm(g, name, n->kids[0], n->nkids > 1 ? n->kids[1] : NULL);
	else if (strcmp(name, "clamp") == 0)
	{
		/* strict: ClickHouse's least/greatest propagate NULL */
		sqlgen_put(g, "least(greatest(");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ", ");
		sqlgen_expr(g, n->kids[1]);
		sqlgen_put(g, "), ");
		sqlgen_expr(g, n->kids[2]);
		sqlgen_put(g, ")");
	}
	else if (strcmp(name, "safe_divide") == 0)
	{
		/* x / y, except that y = 0 (x not NULL) gives the default d (NULL without one) */
		sqlgen_put(g, "multiIf(isNotNull(");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") AND ifNull((");
		sqlgen_expr(g, n->kids[1]);
		sqlgen_put(g, ") = 0., 0), ");
		if (n->nkids > 2)
			sqlgen_expr(g, n->kids[2]);
		else
			sqlgen_put(g, "NULL");
		sqlgen_put(g, ", ");
		arith(g, n, n->kids[0], n->kids[1], T_SLASH);
		sqlgen_put(g, ")");
	}
	else
		return false;
	return true;
}

static void
root_null(sqlgen *g, duet_type type)
{
	sqlgen_put(g, "CAST(NULL AS Nullable(%s))", type == DUET_T_STRING ? "String" : type == DUET_T_BOOL ? "UInt8" : "Float64");
}

const sqlgen_dialect sqlgen_clickhouse = {
	.name = "ClickHouse",
	.number = number,
	.string = string,
	.true_sql = "1",
	.false_sql = "0",
	.var = var,
	.neg_open = "(0. - (",
	.arith = arith,
	.compare = compare,
	.logic = logic,
	.not_open = "not(",
	.not_close = ")",
	.negated_open = "not(",
	.isnull_open = {"isNull(", "isNotNull("},
	.isnull_close = {")", ")"},
	/* multiIf: a NULL condition is false, as in Duet */
	.case_open = "multiIf(",
	.arm_when = "",
	.arm_then = ", ",
	.arm_end = ", ",
	.else_open = "",
	.no_else = "NULL",
	.case_close = ")",
	.call = call,
	.root_null = root_null,
};
