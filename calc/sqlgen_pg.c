/*
 * sqlgen_pg.c — the PostgreSQL dialect of duet_compile_sql (sqlgen.c; docs/metrics.md, "Native
 * SQL"): the checked tree written as one PostgreSQL 15 expression with exactly Duet's semantics.
 *
 * - numbers are float8 and every value is kept as Duet keeps it, finite or NULL and never -0: a
 *   variable is read as CASE WHEN v - v = 0 THEN v + 0 END (infinities and NaN give NaN, so NULL);
 * - PostgreSQL raises on float8 overflow, on underflow to zero and on division by zero where Duet
 *   gives NULL or 0, so + - * / are pg_duet's duet_num_add/sub/mul/div (metrics_sql_ops.c): Duet's
 *   operation in C, one function call each, as PostgreSQL's own float8 operators are;
 * - strings compare bytewise (COLLATE "C"), as Duet's do;
 * - and/or/not, comparisons, is null, between, in, case/if, coalesce, nullif, least, greatest,
 *   abs, sign, floor, ceil, trunc, sqrt, ln, log10, log(b, x), clamp, ifnull and safe_divide are
 *   SQL's own with Duet's NULL rules;
 * - anything else (round, mod, div, %, ^, pow, exp, ||, the string and format functions, a builtin
 *   this file does not know — one added later fails safe) is refused.
 *
 * Operators and functions are pg_catalog's, written qualified; string constants are E'' literals
 * with \ and ' escaped.
 */
#include <stdio.h>
#include <string.h>

#include "sqlgen.h"

/*
 * a op b (op + - * /) as Duet computes it: schema.duet_num_add/sub/mul/div (metrics_sql_ops.c),
 * one function call like PostgreSQL's own float8 operators, which raise where Duet gives NULL or 0.
 * A variable operand as it is: the function reads ±inf and NaN as Duet does (NULL).
 */
static bool
arith(sqlgen *g, const node *n, const node *a, const node *b, int opt)
{
	const char *op = opt == T_PLUS ? "+" : opt == T_MINUS ? "-" : opt == T_STAR ? "*" : "/";
	const char *v;

	/* PostgreSQL's ^ raises on overflow, underflow and a negative base with a fraction */
	if (opt == T_CARET)
		return sqlgen_refuse(g, n, "operator ^");
	if (!sqlgen_int_arith_ok(g, n, opt, op))
		return false;
	sqlgen_put(g, "%s%s(", g->o->arith_prefix,
			   opt == T_PLUS ? "add" : opt == T_MINUS ? "sub" : opt == T_STAR ? "mul" : "div");
	for (int i = 0; i < 2; i++)
	{
		const node *x = i ? b : a;

		if (i)
			sqlgen_put(g, ", ");
		if (x->kind == N_VAR && x->type == DUET_T_NUMBER &&
			(v = g->o->var_sql(g->o->arg, x->value.u.str.ptr, x->value.u.str.len)))
			sqlgen_put(g, "%s", v);
		else
			sqlgen_expr(g, x);
	}
	sqlgen_put(g, ")");
	return !g->failed;
}

/* E'' with \\ and ' doubled; a NUL has no text value */
static bool
string(sqlgen *g, const node *n)
{
	const char *s = n->value.u.str.ptr;
	size_t		len = n->value.u.str.len;

	if (memchr(s, 0, len))
		return sqlgen_refuse(g, n, "a string with a NUL character");
	sqlgen_put(g, "E'");
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '\'' || s[i] == '\\')
			sqlgen_put(g, "%c%c", s[i], s[i]);
		else
			sqlgen_put(g, "%c", s[i]);
	}
	sqlgen_put(g, "'::pg_catalog.text");
	return true;
}

static void
number(sqlgen *g, double x)
{
	sqlgen_put(g, "'%.17g'::pg_catalog.float8", x);
}

/* a number is read as Duet keeps it: finite or NULL, never -0 */
static bool
var(sqlgen *g, const node *n, const char *v)
{
	if (n->type == DUET_T_NUMBER)
		sqlgen_put(g, "CASE WHEN (%s OPERATOR(pg_catalog.-) %s) OPERATOR(pg_catalog.=) "
				   "'0'::pg_catalog.float8 THEN %s OPERATOR(pg_catalog.+) '0'::pg_catalog.float8 END",
				   v, v, v);
	else
		sqlgen_put(g, "%s", v);
	return true;
}

/* (a <op> b), bytewise for strings */
static void
compare(sqlgen *g, const node *a, const char *op, const node *b)
{
	sqlgen_put(g, "((");
	sqlgen_expr(g, a);
	sqlgen_put(g, ")%s OPERATOR(pg_catalog.%s) (", a->type == DUET_T_STRING ? " COLLATE pg_catalog.\"C\"" : "", op);
	sqlgen_expr(g, b);
	sqlgen_put(g, "))");
}

static void
list(sqlgen *g, const node *n, int from)
{
	for (int i = from; i < n->nkids; i++)
	{
		if (i > from)
			sqlgen_put(g, ", ");
		sqlgen_expr(g, n->kids[i]);
	}
}

/* SQL's and/or are three-valued as Duet's: the terms joined (an and/or node's each in parens) */
static void
logic(sqlgen *g, const node *n, int nterms, sqlgen_term term, bool is_and)
{
	bool		wrap = n->kind == N_AND || n->kind == N_OR;

	sqlgen_put(g, "(");
	for (int i = 0; i < nterms; i++)
	{
		sqlgen_put(g, "%s%s", i ? (is_and ? " AND " : " OR ") : "", wrap ? "(" : "");
		term(g, n, i);
		sqlgen_put(g, "%s", wrap ? ")" : "");
	}
	sqlgen_put(g, ")");
}

static bool
call(sqlgen *g, const node *n)
{
	const char *name = n->fn->name;
	static const char *const plain[] = {"abs", "sign", "coalesce", "nullif", "least", "greatest", "ifnull"};
	static const char *const normalized[] = {"floor", "ceil", "trunc"};

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		if (strcmp(name, plain[i]) == 0)
		{
			/* SQL's COALESCE/NULLIF/LEAST/GREATEST are keywords; abs and sign are pg_catalog's */
			if (i < 2)
				sqlgen_put(g, "pg_catalog.%s(", name);
			else
				sqlgen_put(g, "%s(", i == 2 || i == 6 ? "COALESCE" : i == 3 ? "NULLIF" : i == 4 ? "LEAST" : "GREATEST");
			list(g, n, 0);
			sqlgen_put(g, ")");
			/* least/greatest/nullif of strings compare with the collation: only "C" is Duet's */
			if (i >= 3 && i <= 5 && n->kids[0]->type == DUET_T_STRING)
				return sqlgen_refuse(g, n, "function least/greatest/nullif of strings");
			return !g->failed;
		}
	for (size_t i = 0; i < sizeof(normalized) / sizeof(normalized[0]); i++)
		if (strcmp(name, normalized[i]) == 0)
		{
			sqlgen_put(g, "(pg_catalog.%s(", name);
			sqlgen_expr(g, n->kids[0]);
			sqlgen_put(g, ") OPERATOR(pg_catalog.+) '0'::pg_catalog.float8)");
			return !g->failed;
		}
	if (strcmp(name, "sqrt") == 0 || strcmp(name, "ln") == 0 || strcmp(name, "log10") == 0)
	{
		/* Duet: sqrt of a negative, ln/log10 of x <= 0 are NULL; PostgreSQL raises */
		sqlgen_put(g, "CASE WHEN ");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, " OPERATOR(pg_catalog.%s) '0'::pg_catalog.float8 THEN pg_catalog.%s(",
			name[0] == 's' ? ">=" : ">", name[0] == 's' ? "sqrt" : name[1] == 'n' ? "ln" : "log10");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") END");
		return !g->failed;
	}
	if (strcmp(name, "safe_divide") == 0)
	{
		/* x / y, except that y = 0 (x not NULL) gives the default d (NULL without one) */
		sqlgen_put(g, "CASE WHEN (");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") IS NOT NULL AND (");
		sqlgen_expr(g, n->kids[1]);
		sqlgen_put(g, ") OPERATOR(pg_catalog.=) '0'::pg_catalog.float8 THEN ");
		if (n->nkids > 2)
			sqlgen_expr(g, n->kids[2]);
		else
			sqlgen_put(g, "NULL::pg_catalog.float8");
		sqlgen_put(g, " ELSE ");
		arith(g, n, n->kids[0], n->kids[1], T_SLASH);
		sqlgen_put(g, " END");
		return !g->failed;
	}
	if (strcmp(name, "log") == 0)
	{
		/* Duet: NULL for b <= 0, b = 1, x <= 0; ln(x) / ln(b) is finite there; + 0 for -0 */
		sqlgen_put(g, "CASE WHEN (");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") OPERATOR(pg_catalog.>) '0'::pg_catalog.float8 AND (");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ") OPERATOR(pg_catalog.<>) '1'::pg_catalog.float8 AND (");
		sqlgen_expr(g, n->kids[1]);
		sqlgen_put(g, ") OPERATOR(pg_catalog.>) '0'::pg_catalog.float8 THEN (pg_catalog.ln(");
		sqlgen_expr(g, n->kids[1]);
		sqlgen_put(g, ") OPERATOR(pg_catalog./) pg_catalog.ln(");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ")) OPERATOR(pg_catalog.+) '0'::pg_catalog.float8 END");
		return !g->failed;
	}
	if (strcmp(name, "clamp") == 0)
	{
		/* strict; v = x < lo ? lo : x, then v > hi ? hi : v */
		sqlgen_put(g, "CASE WHEN ");
		for (int i = 0; i < 3; i++)
		{
			sqlgen_put(g, i ? " AND (" : "(");
			sqlgen_expr(g, n->kids[i]);
			sqlgen_put(g, ") IS NOT NULL");
		}
		sqlgen_put(g, " THEN LEAST(GREATEST(");
		sqlgen_expr(g, n->kids[0]);
		sqlgen_put(g, ", ");
		sqlgen_expr(g, n->kids[1]);
		sqlgen_put(g, "), ");
		sqlgen_expr(g, n->kids[2]);
		sqlgen_put(g, ") END");
		return !g->failed;
	}
	return false;
}

static void
root_null(sqlgen *g, duet_type type)
{
	sqlgen_put(g, "NULL::pg_catalog.%s", type == DUET_T_STRING ? "text" : type == DUET_T_BOOL ? "bool" : "float8");
}

const sqlgen_dialect sqlgen_postgres = {
	.name = "PostgreSQL",
	.number = number,
	.string = string,
	.true_sql = "true",
	.false_sql = "false",
	.var = var,
	.neg_open = "('0'::pg_catalog.float8 OPERATOR(pg_catalog.-) (",
	.arith = arith,
	.compare = compare,
	.logic = logic,
	.not_open = "(NOT (",
	.not_close = "))",
	.negated_open = "(NOT ",
	.isnull_open = {"((", "(("},
	.isnull_close = {") IS NULL)", ") IS NOT NULL)"},
	.case_open = "CASE",
	.arm_when = " WHEN ",
	.arm_then = " THEN ",
	.arm_end = "",
	.else_open = " ELSE ",
	.no_else = "",
	.case_close = " END",
	.call = call,
	.root_null = root_null,
};
