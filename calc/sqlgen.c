/*
 * sqlgen.c — a formula as one SQL expression with exactly Duet's semantics (docs/metrics.md,
 * "Native SQL"), in PostgreSQL's dialect (sqlgen_pg.c) or ClickHouse's (sqlgen_ch.c).
 *
 * The formula is parsed, its metrics expanded, type-checked and constant-folded by the compiler
 * (duet_compile_tree, compile.c): one front end for the bytecode and every dialect. This file
 * holds what the dialects share — the output buffer, refusals naming the construct (never an
 * approximation: a construct either translates exactly or the formula is refused), the bound on
 * exact integers, and the walk over the checked tree (sqlgen_expr), which writes each construct
 * through the dialect's hooks (sqlgen_dialect, sqlgen.h).
 *
 * Exact integers (docs/calc.md, "Integers"): both dialects write numbers as doubles. An integer
 * (DUET_T_INT) constant within ±2^53 is the same number as a double; integer + - * whose result
 * may leave ±2^53 (sqlgen_int_bound) and larger constants are refused.
 *
 * Every name is written by the caller's var_sql callback (quoted identifiers or $n), so no text
 * of the formula reaches the SQL unquoted; string constants are escaped by each dialect.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlgen.h"

/* the largest SQL text one formula may become (guards repeat their operands) */
#define SQL_MAX_LEN (256 * 1024)

void
sqlgen_put(sqlgen *g, const char *fmt,...)
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
			/* a refusal: the formula is valid, its SQL form too long (guards repeat operands) */
			duet_set_runtime_error(g->err, DUET_ERR_LIMIT, 0, 0,
								   "formula is longer than %d bytes as SQL (limit)", SQL_MAX_LEN);
			*g->refused = true;
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

bool
sqlgen_refuse(sqlgen *g, const node *n, const char *what)
{
	if (!g->failed)
	{
		duet_set_error(g->err, DUET_ERR_TYPE, g->src, g->srclen, n->line, n->col, "",
					   "%s does not compile to %s SQL", what, g->d->name);
		*g->refused = true;
		g->failed = true;
	}
	return false;
}

/*
 * A bound on |n| where n may be an exact integer at run time (docs/calc.md, "Integers"),
 * SQLGEN_NOT_INT where it never is. Variables are double parameters, so only an integer
 * constant, a value chosen or kept from one (case/if arms, coalesce/ifnull/nullif/least/greatest/
 * clamp arguments, safe_divide's default; least/greatest skip NULLs, so least(x, 0) may be the
 * integer 0), abs/sign/floor/ceil/trunc or unary minus of one, or + - * of two such values can
 * be one. Within ±2^53 every integer is a double and double + - * of such integers is exact, so
 * the translation keeps Duet's result; a bound beyond 2^53 is refused (sqlgen_int_arith_ok).
 */
uint64_t
sqlgen_int_bound(const node *n)
{
	uint64_t	bound = SQLGEN_NOT_INT;

	switch (n->kind)
	{
		case N_CONST:
			if (n->value.type == DUET_T_INT)
				bound = n->value.u.i < 0 ? (uint64_t) 0 - (uint64_t) n->value.u.i : (uint64_t) n->value.u.i;
			break;
		case N_NEG:
			bound = sqlgen_int_bound(n->kids[0]);
			break;
		case N_BINOP:
			if (n->op == T_PLUS || n->op == T_MINUS || n->op == T_STAR)
			{
				uint64_t	x = sqlgen_int_bound(n->kids[0]),
							y = sqlgen_int_bound(n->kids[1]);

				if (x != SQLGEN_NOT_INT && y != SQLGEN_NOT_INT)
				{
					if (x > SQLGEN_EXACT_LIMIT || y > SQLGEN_EXACT_LIMIT)
						bound = SQLGEN_EXACT_LIMIT + 1;
					else if (n->op == T_STAR)
						bound = y && x > (SQLGEN_EXACT_LIMIT + 1) / y ? SQLGEN_EXACT_LIMIT + 1 : x * y;
					else
						bound = x + y;
				}
			}
			break;
		case N_CASE:
			/* the arms' values (odd positions) and the else (last) */
			for (int i = 1; i <= n->nkids; i += 2)
			{
				uint64_t	k = sqlgen_int_bound(n->kids[i < n->nkids ? i : n->nkids - 1]);

				if (k != SQLGEN_NOT_INT && (bound == SQLGEN_NOT_INT || k > bound))
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
							uint64_t	b = sqlgen_int_bound(n->kids[k]);

							if (b != SQLGEN_NOT_INT && (bound == SQLGEN_NOT_INT || b > bound))
								bound = b;
						}
				if (bound != SQLGEN_NOT_INT && strcmp(name, "sign") == 0)
					bound = 1;
				break;
			}
		default:
			break;
	}
	return bound;
}

bool
sqlgen_int_const_ok(sqlgen *g, const node *n)
{
	/* within ±2^53 the double is the same number; beyond, Duet compares it exactly */
	if (n->value.u.i < -(INT64_C(1) << 53) || n->value.u.i > (INT64_C(1) << 53))
		return sqlgen_refuse(g, n, "an integer constant beyond ±2^53 (exact integers)");
	return true;
}

bool
sqlgen_int_arith_ok(sqlgen *g, const node *n, int opt, const char *op)
{
	uint64_t	bound;

	/*
	 * integer + - * integer is exact in Duet (overflow: error range); a double is exact only
	 * while the result stays within ±2^53
	 */
	if (opt != T_SLASH && (bound = sqlgen_int_bound(n)) != SQLGEN_NOT_INT && bound > SQLGEN_EXACT_LIMIT)
	{
		char		what[80];

		snprintf(what, sizeof(what), "exact integer arithmetic beyond ±2^53 (operator %s)", op);
		return sqlgen_refuse(g, n, what);
	}
	return true;
}

const char *
sqlgen_cmp_op(int op)
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

static void
term_kid(sqlgen *g, const node *n, int i)
{
	sqlgen_expr(g, n->kids[i]);
}

static void
term_between(sqlgen *g, const node *n, int i)
{
	g->d->compare(g, n->kids[0], i == 0 ? ">=" : "<=", n->kids[i + 1]);
}

static void
term_in(sqlgen *g, const node *n, int i)
{
	g->d->compare(g, n->kids[0], "=", n->kids[i + 1]);
}

bool
sqlgen_expr(sqlgen *g, const node *n)
{
	const sqlgen_dialect *d = g->d;

	if (g->failed)
		return false;
	switch (n->kind)
	{
		case N_CONST:
			switch (n->value.type)
			{
				case DUET_T_NUMBER:
					d->number(g, n->value.u.num);
					break;
				case DUET_T_INT:
					if (!sqlgen_int_const_ok(g, n))
						return false;
					d->number(g, (double) n->value.u.i);
					break;
				case DUET_T_STRING:
					return d->string(g, n) && !g->failed;
				case DUET_T_BOOL:
					sqlgen_put(g, "%s", n->value.u.boolean ? d->true_sql : d->false_sql);
					break;
				case DUET_T_DATE:
				case DUET_T_TIMESTAMP:
					/* Duet's text and calendar rules are not PostgreSQL's (docs/dialects.md) */
					return sqlgen_refuse(g, n, "a date or timestamp constant");
				default:
					sqlgen_put(g, "NULL");
					break;
			}
			break;
		case N_VAR:
			{
				const char *v = g->o->var_sql(g->o->arg, n->value.u.str.ptr, n->value.u.str.len);

				if (n->type == DUET_T_DATE || n->type == DUET_T_TIMESTAMP)
					return sqlgen_refuse(g, n, "a date or timestamp variable");
				if (!v || (n->type != DUET_T_NUMBER && n->type != DUET_T_STRING && n->type != DUET_T_BOOL))
					return sqlgen_refuse(g, n, "a variable without a declared type");
				return d->var(g, n, v) && !g->failed;
			}
		case N_NEG:
			sqlgen_put(g, "%s", d->neg_open);
			sqlgen_expr(g, n->kids[0]);
			sqlgen_put(g, "))");
			break;
		case N_BINOP:
			/* Duet's number text, string limits and fmod have no exact form in either dialect */
			if (n->op == T_CONCAT)
				return sqlgen_refuse(g, n, "operator ||");
			if (n->op == T_PERCENT)
				return sqlgen_refuse(g, n, "operator %");
			return d->arith(g, n, n->kids[0], n->kids[1], n->op);
		case N_CMP:
			d->compare(g, n->kids[0], sqlgen_cmp_op(n->op), n->kids[1]);
			break;
		case N_AND:
		case N_OR:
			d->logic(g, n, 2, term_kid, n->kind == N_AND);
			break;
		case N_NOT:
			sqlgen_put(g, "%s", d->not_open);
			sqlgen_expr(g, n->kids[0]);
			sqlgen_put(g, "%s", d->not_close);
			break;
		case N_ISNULL:
			sqlgen_put(g, "%s", d->isnull_open[n->op ? 1 : 0]);
			sqlgen_expr(g, n->kids[0]);
			sqlgen_put(g, "%s", d->isnull_close[n->op ? 1 : 0]);
			break;
		case N_BETWEEN:
		case N_IN:
			/* x between lo and hi: x >= lo and x <= hi; x in (a, b): x = a or x = b */
			sqlgen_put(g, "%s", n->op ? d->negated_open : "(");
			if (n->kind == N_BETWEEN)
				d->logic(g, n, 2, term_between, true);
			else
				d->logic(g, n, n->nkids - 1, term_in, false);
			sqlgen_put(g, ")");
			break;
		case N_CASE:
			{
				int			narms = n->nkids - n->op;

				sqlgen_put(g, "%s", d->case_open);
				for (int i = 0; i < narms; i += 2)
				{
					sqlgen_put(g, "%s", d->arm_when);
					sqlgen_expr(g, n->kids[i]);
					sqlgen_put(g, "%s", d->arm_then);
					sqlgen_expr(g, n->kids[i + 1]);
					sqlgen_put(g, "%s", d->arm_end);
				}
				if (n->op)
				{
					sqlgen_put(g, "%s", d->else_open);
					sqlgen_expr(g, n->kids[n->nkids - 1]);
				}
				else
					sqlgen_put(g, "%s", d->no_else);
				sqlgen_put(g, "%s", d->case_close);
				break;
			}
		case N_CALL:
			if (!d->call(g, n) && !g->failed)
			{
				/* a builtin the dialect does not translate (one added later fails safe) */
				char		what[96];

				snprintf(what, sizeof(what), "function %s", n->fn->name);
				return sqlgen_refuse(g, n, what);
			}
			break;
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
	g->type = root->type;
	sqlgen_put(g, "(");
	/* a NULL inside takes its type from the context; alone, it needs one */
	if (root->kind == N_CONST && root->value.type == DUET_T_NULL)
		g->d->root_null(g, root->type);
	else
		sqlgen_expr(g, root);
	sqlgen_put(g, ")");
	return !g->failed;
}

char *
duet_compile_sql(const char *src, size_t len, const duet_compile_options *opts,
				 const duet_sql_options *o, duet_type *type, bool *refused, duet_error *err)
{
	sqlgen		g;

	memset(&g, 0, sizeof(g));
	g.o = o;
	g.d = o->dialect == DUET_SQL_POSTGRES ? &sqlgen_postgres : &sqlgen_clickhouse;
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
