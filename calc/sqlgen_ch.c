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
 * - refused: round (18.16's rounding of halves is not Duet's, and later servers round half to
 *   even), % and mod (modulo truncates fractions), div, ^/pow/exp, ||/concat and every string or
 *   format function (number text differs), least/greatest of strings (not in 18.16), a String
 *   parameter (ClickHouse Strings are bytes; Duet refuses input that is not UTF-8, which 18.16
 *   cannot check), and any builtin this file does not know.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sqlgen.h"

static bool expr(sqlgen *g, const node *n);

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
	expr(g, n);
	return false;
}

/*
 * a op b, op one of + - * /: multiIf(isFinite(a op b), (a op b) + 0., NULL), the operation
 * written twice (computed once by ClickHouse), and a variable divisor finite. Not `if`: 18.16's
 * `if` with a NULL branch makes Nullable columns that coalesce rejects or crashes the server on.
 */
static bool
arith(sqlgen *g, const node *n, const node *a, const node *b, int opt)
{
	const char *op = opt == T_PLUS ? "+" : opt == T_MINUS ? "-" : opt == T_STAR ? "*" : "/";
	bool		raw_divisor = false;

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

static void
string_literal(sqlgen *g, const char *s, size_t len)
{
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
}

/* (a <op> b): ClickHouse compares Float64, UInt8 and String (bytewise) as Duet does */
static void
compare(sqlgen *g, const node *a, const char *op, const node *b)
{
	sqlgen_put(g, "((");
	expr(g, a);
	sqlgen_put(g, ") %s (", op);
	expr(g, b);
	sqlgen_put(g, "))");
}

/* term i of a three-valued and/or: a node, or a comparison built from one */
typedef void (*term_fn) (sqlgen *g, const node *n, int i);

static void
term_kid(sqlgen *g, const node *n, int i)
{
	expr(g, n->kids[i]);
}

static void
term_between(sqlgen *g, const node *n, int i)
{
	compare(g, n->kids[0], i == 0 ? ">=" : "<=", n->kids[i + 1]);
}

static void
term_in(sqlgen *g, const node *n, int i)
{
	compare(g, n->kids[0], "=", n->kids[i + 1]);
}

/*
 * t0 and t1 and … (or: or), three-valued: false (true) as soon as one term is, else NULL when
 * one is NULL, else true (false). Every term is 0, 1 or NULL.
 */
static void
logic(sqlgen *g, const node *n, int nterms, term_fn term, bool is_and)
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
		expr(g, n->kids[0]);
		return;
	}
	for (int i = 1; i < n->nkids; i++)
		sqlgen_put(g, "%s(", fn);
	for (int i = 0; i < n->nkids; i++)
	{
		sqlgen_put(g, i ? ", coalesce(" : "coalesce(");
		expr(g, n->kids[i]);
		for (int k = 0; k < n->nkids; k++)
			if (k != i)
			{
				sqlgen_put(g, ", ");
				expr(g, n->kids[k]);
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
		expr(g, n->kids[0]);
		sqlgen_put(g, ")");
	}
	else if (strcmp(name, "sign") == 0)
	{
		/* 18.16 has no sign() */
		sqlgen_put(g, "multiIf((");
		expr(g, n->kids[0]);
		sqlgen_put(g, ") > 0., 1., (");
		expr(g, n->kids[0]);
		sqlgen_put(g, ") < 0., (-1.), (");
		expr(g, n->kids[0]);
		sqlgen_put(g, ") = 0., 0., NULL)");
	}
	else if (strcmp(name, "coalesce") == 0 || strcmp(name, "ifnull") == 0)
	{
		sqlgen_put(g, "coalesce(");
		for (int i = 0; i < n->nkids; i++)
		{
			sqlgen_put(g, i ? ", " : "");
			expr(g, n->kids[i]);
		}
		sqlgen_put(g, ")");
	}
	else if (strcmp(name, "nullif") == 0)
	{
		/* nullIf(a, NULL) is NULL in ClickHouse (its if takes the NULL condition as NULL) */
		sqlgen_put(g, "multiIf(");
		compare(g, n->kids[0], "=", n->kids[1]);
		sqlgen_put(g, ", NULL, ");
		expr(g, n->kids[0]);
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
		expr(g, n->kids[0]);
		sqlgen_put(g, ") + 0.)");
	}
	else if (strcmp(name, "sqrt") == 0 || strcmp(name, "ln") == 0 || strcmp(name, "log10") == 0)
	{
		/* Duet: sqrt of a negative, ln/log10 of x <= 0 are NULL; ClickHouse gives nan, -inf */
		sqlgen_put(g, "multiIf((");
		expr(g, n->kids[0]);
		sqlgen_put(g, ") %s 0., %s(", name[0] == 's' ? ">=" : ">",
				   name[0] == 's' ? "sqrt" : name[1] == 'n' ? "log" : "log10");
		expr(g, n->kids[0]);
		sqlgen_put(g, "), NULL)");
	}
	else if (strcmp(name, "log") == 0)
	{
		/* Duet: NULL for b <= 0, b = 1, x <= 0; ln(x) / ln(b) is finite there; + 0. for -0 */
		sqlgen_put(g, "multiIf((");
		expr(g, n->kids[0]);
		sqlgen_put(g, ") > 0. AND (");
		expr(g, n->kids[0]);
		sqlgen_put(g, ") != 1. AND (");
		expr(g, n->kids[1]);
		sqlgen_put(g, ") > 0., log(");
		expr(g, n->kids[1]);
		sqlgen_put(g, ") / log(");
		expr(g, n->kids[0]);
		sqlgen_put(g, ") + 0., NULL)");
	}
	else if (strcmp(name, "clamp") == 0)
	{
		/* strict: ClickHouse's least/greatest propagate NULL */
		sqlgen_put(g, "least(greatest(");
		expr(g, n->kids[0]);
		sqlgen_put(g, ", ");
		expr(g, n->kids[1]);
		sqlgen_put(g, "), ");
		expr(g, n->kids[2]);
		sqlgen_put(g, ")");
	}
	else if (strcmp(name, "safe_divide") == 0)
	{
		/* x / y, except that y = 0 (x not NULL) gives the default d (NULL without one) */
		sqlgen_put(g, "multiIf(isNotNull(");
		expr(g, n->kids[0]);
		sqlgen_put(g, ") AND ifNull((");
		expr(g, n->kids[1]);
		sqlgen_put(g, ") = 0., 0), ");
		if (n->nkids > 2)
			expr(g, n->kids[2]);
		else
			sqlgen_put(g, "NULL");
		sqlgen_put(g, ", ");
		arith(g, n, n->kids[0], n->kids[1], T_SLASH);
		sqlgen_put(g, ")");
	}
	else
	{
		char		what[96];

		snprintf(what, sizeof(what), "function %s", name);
		return sqlgen_refuse(g, n, what);
	}
	return !g->failed;
}

static bool
expr(sqlgen *g, const node *n)
{
	if (g->failed)
		return false;
	switch (n->kind)
	{
		case N_CONST:
			switch (n->value.type)
			{
				case DUET_T_NUMBER:
					number(g, n->value.u.num);
					break;
				case DUET_T_INT:
					if (!sqlgen_int_const_ok(g, n))
						return false;
					number(g, (double) n->value.u.i);
					break;
				case DUET_T_STRING:
					string_literal(g, n->value.u.str.ptr, n->value.u.str.len);
					break;
				case DUET_T_BOOL:
					sqlgen_put(g, n->value.u.boolean ? "1" : "0");
					break;
				default:
					sqlgen_put(g, "NULL");
					break;
			}
			break;
		case N_VAR:
			{
				const char *v = g->o->var_sql(g->o->arg, n->value.u.str.ptr, n->value.u.str.len);

				if (!v)
					return sqlgen_refuse(g, n, "a variable without a declared type");
				if (n->type == DUET_T_NUMBER)
					sqlgen_put(g, "multiIf(isFinite(%s), %s + 0., NULL)", v, v);
				else if (n->type == DUET_T_BOOL)
					sqlgen_put(g, "(%s != 0)", v);
				else if (n->type == DUET_T_STRING)
					return sqlgen_refuse(g, n, "a String parameter (Duet requires UTF-8, which ClickHouse does not check)");
				else
					return sqlgen_refuse(g, n, "a variable without a declared type");
				break;
			}
		case N_NEG:
			sqlgen_put(g, "(0. - (");
			expr(g, n->kids[0]);
			sqlgen_put(g, "))");
			break;
		case N_BINOP:
			if (n->op == T_CONCAT)
				return sqlgen_refuse(g, n, "operator ||");
			if (n->op == T_PERCENT)
				return sqlgen_refuse(g, n, "operator %");
			if (n->op == T_CARET)
				return sqlgen_refuse(g, n, "operator ^");
			return arith(g, n, n->kids[0], n->kids[1], n->op);
		case N_CMP:
			compare(g, n->kids[0], sqlgen_cmp_op(n->op), n->kids[1]);
			break;
		case N_AND:
		case N_OR:
			logic(g, n, 2, term_kid, n->kind == N_AND);
			break;
		case N_NOT:
			sqlgen_put(g, "not(");
			expr(g, n->kids[0]);
			sqlgen_put(g, ")");
			break;
		case N_ISNULL:
			sqlgen_put(g, "%s(", n->op ? "isNotNull" : "isNull");
			expr(g, n->kids[0]);
			sqlgen_put(g, ")");
			break;
		case N_BETWEEN:
		case N_IN:
			sqlgen_put(g, n->op ? "not(" : "(");
			if (n->kind == N_BETWEEN)
				logic(g, n, 2, term_between, true);
			else
				logic(g, n, n->nkids - 1, term_in, false);
			sqlgen_put(g, ")");
			break;
		case N_CASE:
			{
				int			narms = n->nkids - n->op;

				/* multiIf: a NULL condition is false, as in Duet */
				sqlgen_put(g, "multiIf(");
				for (int i = 0; i < narms; i += 2)
				{
					expr(g, n->kids[i]);
					sqlgen_put(g, ", ");
					expr(g, n->kids[i + 1]);
					sqlgen_put(g, ", ");
				}
				if (n->op)
					expr(g, n->kids[n->nkids - 1]);
				else
					sqlgen_put(g, "NULL");
				sqlgen_put(g, ")");
				break;
			}
		case N_CALL:
			return call(g, n);
	}
	return !g->failed;
}

bool
sqlgen_clickhouse(sqlgen *g, const node *root)
{
	sqlgen_put(g, "(");
	/* a NULL inside takes its type from the context; alone, it needs one */
	if (root->kind == N_CONST && root->value.type == DUET_T_NULL)
		sqlgen_put(g, "CAST(NULL AS Nullable(%s))", root->type == DUET_T_STRING ? "String" :
				   root->type == DUET_T_BOOL ? "UInt8" : "Float64");
	else
		expr(g, root);
	sqlgen_put(g, ")");
	return !g->failed;
}
