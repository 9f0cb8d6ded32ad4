/*
 * sqlgen.h — what the SQL dialects of duet_compile_sql share (docs/metrics.md, "Native SQL"):
 * the output buffer, refusals naming the construct, and the bound on exact integers. The front
 * end (parse, metric expansion, type check, constant folding) is compile.c's duet_compile_tree;
 * sqlgen.c drives it and walks the checked tree (sqlgen_expr), writing each construct through
 * the dialect's hooks (sqlgen_dialect):
 *
 *   sqlgen_pg.c   PostgreSQL 15
 *   sqlgen_ch.c   ClickHouse (what 18.16 runs; the same text as the body of CREATE FUNCTION)
 */
#ifndef DUET_SQLGEN_H
#define DUET_SQLGEN_H

#include <stdint.h>

#include "calc_int.h"

typedef struct sqlgen sqlgen;

/* term i of an n-ary and/or (sqlgen.c writes them: a kid, or a comparison of between / in) */
typedef void (*sqlgen_term) (sqlgen *g, const node *n, int i);

/*
 * A dialect: how it writes each construct. sqlgen_expr walks the tree and calls these; the
 * dialect's hooks call sqlgen_expr for their operands. A hook that may refuse returns false
 * (after sqlgen_refuse); call returns false without writing when it does not know the function.
 */
typedef struct sqlgen_dialect
{
	const char *name;			/* in refusals: "… does not compile to <name> SQL" */
	void		(*number) (sqlgen *g, double x);	/* a finite double, never -0 */
	bool		(*string) (sqlgen *g, const node *n);	/* a string constant */
	const char *true_sql,
			   *false_sql;
	bool		(*var) (sqlgen *g, const node *n, const char *v);	/* a typed variable, v its SQL */
	const char *neg_open;		/* unary minus: neg_open x "))" */
	/* a op b, op T_PLUS T_MINUS T_STAR T_SLASH or T_CARET */
	bool		(*arith) (sqlgen *g, const node *n, const node *a, const node *b, int op);
	void		(*compare) (sqlgen *g, const node *a, const char *op, const node *b);
	/* three-valued t0 and t1 … (is_and) or t0 or t1 …, over nterms terms */
	void		(*logic) (sqlgen *g, const node *n, int nterms, sqlgen_term term, bool is_and);
	const char *not_open,		/* not x */
			   *not_close,
			   *negated_open;	/* not between / not in: negated_open (logic) ")" */
	const char *isnull_open[2],	/* [0] is null, [1] is not null */
			   *isnull_close[2];
	/* case: case_open [arm_when c arm_then v arm_end]* (else_open e | no_else) case_close */
	const char *case_open,
			   *arm_when,
			   *arm_then,
			   *arm_end,
			   *else_open,
			   *no_else,
			   *case_close;
	bool		(*call) (sqlgen *g, const node *n);
	void		(*root_null) (sqlgen *g, duet_type type);	/* a formula that is NULL */
} sqlgen_dialect;

extern const sqlgen_dialect sqlgen_postgres;
extern const sqlgen_dialect sqlgen_clickhouse;

struct sqlgen
{
	const duet_sql_options *o;
	const sqlgen_dialect *d;
	char	   *buf;
	size_t		len,
				cap;
	bool		failed;			/* refused, out of memory or too long (err filled) */
	bool	   *refused;
	duet_type	type;			/* the formula's result type */
	duet_error *err;
	const char *src;
	size_t		srclen;
};

/* appends to the SQL text; a failure (memory, SQL_MAX_LEN) sets g->failed and g->err */
void		sqlgen_put(sqlgen *g, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/* "<what> does not compile to <dialect> SQL" at n's position; returns false */
bool		sqlgen_refuse(sqlgen *g, const node *n, const char *what);

/* sqlgen_int_bound: n is never an exact integer at run time */
#define SQLGEN_NOT_INT UINT64_MAX
/* integers within ±2^53 are doubles, and + - * of them stay exact while within */
#define SQLGEN_EXACT_LIMIT (UINT64_C(1) << 53)

/* a bound on |n| where n may be an exact integer at run time, SQLGEN_NOT_INT where it never is */
uint64_t	sqlgen_int_bound(const node *n);

/*
 * The checks on exact integers that every dialect makes (both write numbers as doubles): false
 * (refused) when n, an integer constant or the operation opt (T_PLUS …) with op its text, may
 * leave ±2^53.
 */
bool		sqlgen_int_const_ok(sqlgen *g, const node *n);
bool		sqlgen_int_arith_ok(sqlgen *g, const node *n, int opt, const char *op);

/* a comparison's operator (T_EQ … T_GE): = <> < <= > >=, the same in both dialects */
const char *sqlgen_cmp_op(int op);

/* n in g's dialect; false when refused or failed */
bool		sqlgen_expr(sqlgen *g, const node *n);

#endif							/* DUET_SQLGEN_H */
