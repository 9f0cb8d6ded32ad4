/*
 * sqlgen.c — a formula as one SQL expression with exactly Duet's semantics (docs/metrics.md,
 * "Native SQL").
 *
 * The formula is parsed, its metrics expanded, type-checked and constant-folded by the compiler
 * (duet_compile_tree, compile.c); this file writes the checked tree as SQL. Every construct either
 * has an exact translation or is refused by name (never an approximation):
 *
 * - numbers are float8 and every value is kept as Duet keeps it, finite or NULL and never -0: a
 *   variable is read as CASE WHEN v - v = 0 THEN v + 0 END (infinities and NaN give NaN, so NULL);
 * - PostgreSQL raises on float8 overflow and on underflow to zero where Duet gives NULL or 0, so
 *   + - * / run natively only where the operands cannot overflow or underflow (|x| ≤ 2^1022 for
 *   + and -, 2^-511 ≤ |x| ≤ 2^511 or 0 for * and /) and otherwise call Duet for that one
 *   operation (duet_calc_number_args, exact); division by zero is NULL;
 * - strings compare bytewise (COLLATE "C"), as Duet's do;
 * - and/or/not, comparisons, is null, between, in, case/if, coalesce, nullif, least, greatest,
 *   abs, sign, floor, ceil, trunc, sqrt, ln, log10, log(b, x), clamp, ifnull and safe_divide are
 *   SQL's own with Duet's NULL rules;
 * - an exact integer (DUET_T_INT) constant within ±2^53 is a float8 literal (the same number);
 *   integer + - * whose result may leave ±2^53 (int_bound) and larger constants are refused;
 * - anything else (round, mod, div, %, ^, pow, exp, ||, the string and format functions, a builtin
 *   this file does not know — one added later fails safe) is refused.
 *
 * Every name is written by the caller's var_sql callback (quoted identifiers or $n), so no text
 * of the formula reaches the SQL unquoted; string constants are E'' literals with \ and ' escaped.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

/* the largest SQL text one formula may become (guards repeat their operands) */
#define SQL_MAX_LEN (256 * 1024)

typedef struct sqlgen
{
	const duet_sql_options *o;
	char	   *buf;
	size_t		len,
				cap;
	bool		failed;			/* out of memory or too long (err filled) */
	bool	   *refused;
	duet_type	type;			/* the formula's result type */
	duet_error *err;
	const char *src;
	size_t		srclen;
} sqlgen;

static void
put(sqlgen *g, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
put(sqlgen *g, const char *fmt,...)
{
	va_list		ap;
	int			n;

	if (g->failed)
		return;
	for (;;)
	{
		va_start(ap, fmt);
		n = vsnprintf(g->buf ? g->buf + g->len : NULL, g->buf ? g->cap - g->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
		{
			g->failed = true;
			return;
		}
		if (g->buf && g->len + (size_t) n < g->cap)
		{
			g->len += (size_t) n;
			return;
		}
		if (g->len + (size_t) n >= SQL_MAX_LEN)
		{
			duet_set_runtime_error(g->err, DUET_ERR_LIMIT, 0, 0,
								   "formula is longer than %d bytes as SQL (limit)", SQL_MAX_LEN);
			g->failed = true;
			return;
		}
		{
			size_t		cap = g->cap ? g->cap * 2 : 256;
			char	   *nb;

			while (cap <= g->len + (size_t) n)
				cap *= 2;
			if (!(nb = realloc(g->buf, cap)))
			{
				duet_set_runtime_error(g->err, DUET_ERR_NOMEM, 0, 0, "out of memory");
				g->failed = true;
				return;
			}
			g->buf = nb;
			g->cap = cap;
		}
	}
}

static bool
refuse(sqlgen *g, const node *n, const char *what)
{
	if (!g->failed)
	{
		duet_set_error(g->err, DUET_ERR_TYPE, g->src, g->srclen, n->line, n->col, "",
					   "%s does not compile to %s SQL", what,
					   g->o->dialect == DUET_SQL_POSTGRES ? "PostgreSQL" : "ClickHouse");
		*g->refused = true;
		g->failed = true;
	}
	return false;
}

static bool expr(sqlgen *g, const node *n);

/*
 * An operand of guarded arithmetic: a number variable as it is. Its range test is false for
 * infinities and NaN (NaN sorts above every number in PostgreSQL), so those reach Duet, which
 * reads them as NULL, and the native branch adds +0 to its result, so -0 needs no care.
 */
static void
operand(sqlgen *g, const node *n)
{
	const char *v;

	if (n->kind == N_VAR && n->type == DUET_T_NUMBER &&
		(v = g->o->var_sql(g->o->arg, n->value.u.str.ptr, n->value.u.str.len)))
		put(g, "%s", v);
	else
		expr(g, n);
}

/* lo <= x <= hi, both bounds signed (a float8 literal each): two comparisons, no abs() call */
static void
between(sqlgen *g, const node *x, int lo_sign, int lo, int hi_sign, int hi)
{
	operand(g, x);
	put(g, " OPERATOR(pg_catalog.>=) ");
	put(g, "'%.17g'::pg_catalog.float8", lo_sign * ldexp(1.0, lo));
	put(g, " AND ");
	operand(g, x);
	put(g, " OPERATOR(pg_catalog.<=) ");
	put(g, "'%.17g'::pg_catalog.float8", hi_sign * ldexp(1.0, hi));
}

/*
 * |x| <= 2^hi, and for lo > -2000 also |x| >= 2^lo (or x = 0 when zero_ok), written as signed
 * ranges so that positive data passes after two comparisons. False for NULL, ±inf and NaN (NaN
 * sorts above every number in PostgreSQL).
 */
static void
in_range(sqlgen *g, const node *x, int lo, int hi, bool zero_ok)
{
	put(g, "(");
	if (lo > -2000)
	{
		between(g, x, 1, lo, 1, hi);
		put(g, " OR ");
		between(g, x, -1, hi, -1, lo);
	}
	else
		between(g, x, -1, hi, 1, hi);
	if (zero_ok)
	{
		put(g, " OR ");
		operand(g, x);
		put(g, " OPERATOR(pg_catalog.=) '0'::pg_catalog.float8");
	}
	put(g, ")");
}

/* int_bound: not an integer at run time */
#define NOT_INT UINT64_MAX
#define EXACT_LIMIT (UINT64_C(1) << 53)

/*
 * A bound on |n| where n may be an exact integer at run time (docs/calc.md, "Integers"), NOT_INT
 * where it never is. Variables are double precision parameters, so only an integer constant, a
 * value chosen or kept from one (case/if arms, coalesce/ifnull/nullif/least/greatest/clamp
 * arguments, safe_divide's default; least/greatest skip NULLs, so least(x, 0) may be the integer
 * 0), abs/sign/floor/ceil/trunc or unary minus of one, or + - * of two such values can be one.
 * Within ±2^53 every integer is a float8 and float8 + - * of such integers is exact, so the
 * translation keeps Duet's result; a bound beyond 2^53 is refused (arith, expr).
 */
static uint64_t
int_bound(const node *n)
{
	uint64_t	bound = NOT_INT;

	switch (n->kind)
	{
		case N_CONST:
			if (n->value.type == DUET_T_INT)
				bound = n->value.u.i < 0 ? (uint64_t) 0 - (uint64_t) n->value.u.i : (uint64_t) n->value.u.i;
			break;
		case N_NEG:
			bound = int_bound(n->kids[0]);
			break;
		case N_BINOP:
			if (n->op == T_PLUS || n->op == T_MINUS || n->op == T_STAR)
			{
				uint64_t	x = int_bound(n->kids[0]),
							y = int_bound(n->kids[1]);

				if (x != NOT_INT && y != NOT_INT)
				{
					if (x > EXACT_LIMIT || y > EXACT_LIMIT)
						bound = EXACT_LIMIT + 1;
					else if (n->op == T_STAR)
						bound = y && x > (EXACT_LIMIT + 1) / y ? EXACT_LIMIT + 1 : x * y;
					else
						bound = x + y;
				}
			}
			break;
		case N_CASE:
			/* the arms' values (odd positions) and the else (last) */
			for (int i = 1; i <= n->nkids; i += 2)
			{
				uint64_t	k = int_bound(n->kids[i < n->nkids ? i : n->nkids - 1]);

				if (k != NOT_INT && (bound == NOT_INT || k > bound))
					bound = k;
			}
			break;
		case N_CALL:
			{
				static const char *const keep[] = {"abs", "sign", "floor", "ceil", "trunc", "coalesce",
				"ifnull", "nullif", "least", "greatest", "clamp", "safe_divide"};
				const char *name = n->fn->name;
				/* safe_divide may give its default (argument 3) as it is */
				int			from = strcmp(name, "safe_divide") == 0 ? 2 : 0;

				for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
					if (strcmp(name, keep[i]) == 0)
						for (int k = from; k < n->nkids; k++)
						{
							uint64_t	b = int_bound(n->kids[k]);

							if (b != NOT_INT && (bound == NOT_INT || b > bound))
								bound = b;
						}
				if (bound != NOT_INT && strcmp(name, "sign") == 0)
					bound = 1;
				break;
			}
		default:
			break;
	}
	return bound;
}

/* a op b (op + - * /) with Duet's guards; a division by zero is NULL */
static bool
arith(sqlgen *g, const node *n, const node *a, const node *b, int opt)
{
	const char *op = opt == T_PLUS ? "+" : opt == T_MINUS ? "-" : opt == T_STAR ? "*" : "/";
	int			lo = opt == T_PLUS || opt == T_MINUS ? -5000 : -511,
				hi = opt == T_PLUS || opt == T_MINUS ? 1022 : 511;
	uint64_t	bound;

	/*
	 * integer + - * integer is exact in Duet (overflow: error range); float8 is exact only while
	 * the result stays within ±2^53
	 */
	if (opt != T_SLASH && (bound = int_bound(n)) != NOT_INT && bound > EXACT_LIMIT)
	{
		char		what[80];

		snprintf(what, sizeof(what), "exact integer arithmetic beyond ±2^53 (operator %s)", op);
		return refuse(g, n, what);
	}
	put(g, "CASE ");
	if (opt == T_SLASH)
	{
		put(g, "WHEN ");
		operand(g, b);
		put(g, " OPERATOR(pg_catalog.=) '0'::pg_catalog.float8 THEN NULL::pg_catalog.float8 ");
	}
	put(g, "WHEN ");
	in_range(g, a, lo, hi, lo > -2000);
	put(g, " AND ");
	in_range(g, b, lo, hi, opt == T_STAR);
	/* x + 0 turns the -0 of 0 * -1, 0 / -1 into +0 */
	put(g, " THEN ((");
	operand(g, a);
	put(g, ") OPERATOR(pg_catalog.%s) (", op);
	operand(g, b);
	put(g, ")) OPERATOR(pg_catalog.+) '0'::pg_catalog.float8 ELSE %s('x %s y', ", g->o->fallback, op);
	operand(g, a);
	put(g, ", ");
	operand(g, b);
	put(g, ") END");
	return !g->failed;
}

static void
string_literal(sqlgen *g, const char *s, size_t len)
{
	put(g, "E'");
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '\'' || s[i] == '\\')
			put(g, "%c%c", s[i], s[i]);
		else
			put(g, "%c", s[i]);
	}
	put(g, "'::pg_catalog.text");
}

static const char *
cmp_op(int op)
{
	switch (op)
	{
		case T_EQ: return "=";
		case T_NE: return "<>";
		case T_LT: return "<";
		case T_LE: return "<=";
		case T_GT: return ">";
		default: return ">=";
	}
}

/* (a <op> b), bytewise for strings */
static void
compare(sqlgen *g, const node *a, const char *op, const node *b)
{
	put(g, "((");
	expr(g, a);
	put(g, ")%s OPERATOR(pg_catalog.%s) (", a->type == DUET_T_STRING ? " COLLATE pg_catalog.\"C\"" : "", op);
	expr(g, b);
	put(g, "))");
}

static void
list(sqlgen *g, const node *n, int from)
{
	for (int i = from; i < n->nkids; i++)
	{
		if (i > from)
			put(g, ", ");
		expr(g, n->kids[i]);
	}
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
				put(g, "pg_catalog.%s(", name);
			else
				put(g, "%s(", i == 2 || i == 6 ? "COALESCE" : i == 3 ? "NULLIF" : i == 4 ? "LEAST" : "GREATEST");
			list(g, n, 0);
			put(g, ")");
			/* least/greatest/nullif of strings compare with the collation: only "C" is Duet's */
			if (i >= 3 && i <= 5 && n->kids[0]->type == DUET_T_STRING)
				return refuse(g, n, "function least/greatest/nullif of strings");
			return !g->failed;
		}
	for (size_t i = 0; i < sizeof(normalized) / sizeof(normalized[0]); i++)
		if (strcmp(name, normalized[i]) == 0)
		{
			put(g, "(pg_catalog.%s(", name);
			expr(g, n->kids[0]);
			put(g, ") OPERATOR(pg_catalog.+) '0'::pg_catalog.float8)");
			return !g->failed;
		}
	if (strcmp(name, "sqrt") == 0 || strcmp(name, "ln") == 0 || strcmp(name, "log10") == 0)
	{
		/* Duet: sqrt of a negative, ln/log10 of x <= 0 are NULL; PostgreSQL raises */
		put(g, "CASE WHEN ");
		expr(g, n->kids[0]);
		put(g, " OPERATOR(pg_catalog.%s) '0'::pg_catalog.float8 THEN pg_catalog.%s(",
			name[0] == 's' ? ">=" : ">", name[0] == 's' ? "sqrt" : name[1] == 'n' ? "ln" : "log10");
		expr(g, n->kids[0]);
		put(g, ") END");
		return !g->failed;
	}
	if (strcmp(name, "safe_divide") == 0)
	{
		/* x / y, except that y = 0 (x not NULL) gives the default d (NULL without one) */
		put(g, "CASE WHEN (");
		expr(g, n->kids[0]);
		put(g, ") IS NOT NULL AND ");
		operand(g, n->kids[1]);
		put(g, " OPERATOR(pg_catalog.=) '0'::pg_catalog.float8 THEN ");
		if (n->nkids > 2)
			expr(g, n->kids[2]);
		else
			put(g, "NULL::pg_catalog.float8");
		put(g, " ELSE ");
		arith(g, n, n->kids[0], n->kids[1], T_SLASH);
		put(g, " END");
		return !g->failed;
	}
	if (strcmp(name, "log") == 0)
	{
		/* Duet: NULL for b <= 0, b = 1, x <= 0; ln(x) / ln(b) is finite there; + 0 for -0 */
		put(g, "CASE WHEN (");
		expr(g, n->kids[0]);
		put(g, ") OPERATOR(pg_catalog.>) '0'::pg_catalog.float8 AND (");
		expr(g, n->kids[0]);
		put(g, ") OPERATOR(pg_catalog.<>) '1'::pg_catalog.float8 AND (");
		expr(g, n->kids[1]);
		put(g, ") OPERATOR(pg_catalog.>) '0'::pg_catalog.float8 THEN (pg_catalog.ln(");
		expr(g, n->kids[1]);
		put(g, ") OPERATOR(pg_catalog./) pg_catalog.ln(");
		expr(g, n->kids[0]);
		put(g, ")) OPERATOR(pg_catalog.+) '0'::pg_catalog.float8 END");
		return !g->failed;
	}
	if (strcmp(name, "clamp") == 0)
	{
		/* strict; v = x < lo ? lo : x, then v > hi ? hi : v */
		put(g, "CASE WHEN ");
		for (int i = 0; i < 3; i++)
		{
			put(g, i ? " AND (" : "(");
			expr(g, n->kids[i]);
			put(g, ") IS NOT NULL");
		}
		put(g, " THEN LEAST(GREATEST(");
		expr(g, n->kids[0]);
		put(g, ", ");
		expr(g, n->kids[1]);
		put(g, "), ");
		expr(g, n->kids[2]);
		put(g, ") END");
		return !g->failed;
	}
	{
		char		what[96];

		snprintf(what, sizeof(what), "function %s", name);
		return refuse(g, n, what);
	}
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
					put(g, "'%.17g'::pg_catalog.float8", n->value.u.num);
					break;
				case DUET_T_INT:
					/* within ±2^53 the float8 is the same number; beyond, Duet compares it exactly */
					if (n->value.u.i < -(INT64_C(1) << 53) || n->value.u.i > (INT64_C(1) << 53))
						return refuse(g, n, "an integer constant beyond ±2^53 (exact integers)");
					put(g, "'%lld'::pg_catalog.float8", (long long) n->value.u.i);
					break;
				case DUET_T_STRING:
					if (memchr(n->value.u.str.ptr, 0, n->value.u.str.len))
						return refuse(g, n, "a string with a NUL character");
					string_literal(g, n->value.u.str.ptr, n->value.u.str.len);
					break;
				case DUET_T_BOOL:
					put(g, n->value.u.boolean ? "true" : "false");
					break;
				case DUET_T_DATE:
				case DUET_T_TIMESTAMP:
					/* Duet's text and calendar rules are not PostgreSQL's (docs/dialects.md) */
					return refuse(g, n, "a date or timestamp constant");
				default:
					put(g, "NULL");
					break;
			}
			break;
		case N_VAR:
			{
				const char *v = g->o->var_sql(g->o->arg, n->value.u.str.ptr, n->value.u.str.len);

				if (!v)
					return refuse(g, n, "a variable without a declared type");
				if (n->type == DUET_T_NUMBER)
					put(g, "CASE WHEN (%s OPERATOR(pg_catalog.-) %s) OPERATOR(pg_catalog.=) "
						"'0'::pg_catalog.float8 THEN %s OPERATOR(pg_catalog.+) '0'::pg_catalog.float8 END",
						v, v, v);
				else if (n->type == DUET_T_STRING || n->type == DUET_T_BOOL)
					put(g, "%s", v);
				else
					return refuse(g, n, "a variable without a declared type");
				break;
			}
		case N_NEG:
			put(g, "('0'::pg_catalog.float8 OPERATOR(pg_catalog.-) (");
			expr(g, n->kids[0]);
			put(g, "))");
			break;
		case N_BINOP:
			if (n->op == T_CONCAT)
				return refuse(g, n, "operator ||");
			if (n->op == T_PERCENT)
				return refuse(g, n, "operator %");
			if (n->op == T_CARET)
				return refuse(g, n, "operator ^");
			return arith(g, n, n->kids[0], n->kids[1], n->op);
		case N_CMP:
			compare(g, n->kids[0], cmp_op(n->op), n->kids[1]);
			break;
		case N_AND:
		case N_OR:
			put(g, "((");
			expr(g, n->kids[0]);
			put(g, ") %s (", n->kind == N_AND ? "AND" : "OR");
			expr(g, n->kids[1]);
			put(g, "))");
			break;
		case N_NOT:
			put(g, "(NOT (");
			expr(g, n->kids[0]);
			put(g, "))");
			break;
		case N_ISNULL:
			put(g, "((");
			expr(g, n->kids[0]);
			put(g, ") IS %sNULL)", n->op ? "NOT " : "");
			break;
		case N_BETWEEN:
			put(g, "(%s(", n->op ? "NOT " : "");
			compare(g, n->kids[0], ">=", n->kids[1]);
			put(g, " AND ");
			compare(g, n->kids[0], "<=", n->kids[2]);
			put(g, "))");
			break;
		case N_IN:
			put(g, "(%s(", n->op ? "NOT " : "");
			for (int i = 1; i < n->nkids; i++)
			{
				if (i > 1)
					put(g, " OR ");
				compare(g, n->kids[0], "=", n->kids[i]);
			}
			put(g, "))");
			break;
		case N_CASE:
			{
				int			narms = n->nkids - n->op;

				put(g, "CASE");
				for (int i = 0; i < narms; i += 2)
				{
					put(g, " WHEN ");
					expr(g, n->kids[i]);
					put(g, " THEN ");
					expr(g, n->kids[i + 1]);
				}
				if (n->op)
				{
					put(g, " ELSE ");
					expr(g, n->kids[n->nkids - 1]);
				}
				put(g, " END");
				break;
			}
		case N_CALL:
			return call(g, n);
	}
	return !g->failed;
}

static bool
generate(void *arg, const node *root, const char *src, size_t srclen, duet_error *err)
{
	sqlgen	   *g = arg;

	g->err = err;
	g->src = src;
	g->srclen = srclen;
	if (g->o->dialect != DUET_SQL_POSTGRES)
		return refuse(g, root, "every formula (this dialect is not compiled yet)");
	g->type = root->type;
	put(g, "(");
	/* a NULL inside takes its type from the context; alone, it needs one */
	if (root->kind == N_CONST && root->value.type == DUET_T_NULL)
		put(g, "NULL::pg_catalog.%s", root->type == DUET_T_STRING ? "text" :
			root->type == DUET_T_BOOL ? "bool" : "float8");
	else
		expr(g, root);
	put(g, ")");
	return !g->failed;
}

char *
duet_compile_sql(const char *src, size_t len, const duet_compile_options *opts,
				 const duet_sql_options *o, duet_type *type, bool *refused, duet_error *err)
{
	sqlgen		g;

	memset(&g, 0, sizeof(g));
	g.o = o;
	g.refused = refused;
	*refused = false;
	if (!duet_compile_tree(src, len, opts, generate, &g, err))
	{
		free(g.buf);
		return NULL;
	}
	*type = g.type;
	return g.buf;
}
