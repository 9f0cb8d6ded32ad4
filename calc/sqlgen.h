/*
 * sqlgen.h — what the SQL dialects of duet_compile_sql share (docs/metrics.md, "Native SQL"):
 * the output buffer, refusals naming the construct, and the bound on exact integers. The front
 * end (parse, metric expansion, type check, constant folding) is compile.c's duet_compile_tree;
 * sqlgen.c drives it and hands the checked tree to one dialect's writer:
 *
 *   sqlgen_pg.c   PostgreSQL 15
 *   sqlgen_ch.c   ClickHouse (what 18.16 runs; the same text as the body of CREATE FUNCTION)
 */
#ifndef DUET_SQLGEN_H
#define DUET_SQLGEN_H

#include <stdint.h>

#include "calc_int.h"

typedef struct sqlgen
{
	const duet_sql_options *o;
	char	   *buf;
	size_t		len,
				cap;
	bool		failed;			/* refused, out of memory or too long (err filled) */
	bool	   *refused;
	duet_type	type;			/* the formula's result type */
	duet_error *err;
	const char *src;
	size_t		srclen;
} sqlgen;

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

/* the dialects' writers: the whole formula (root) as one expression */
bool		sqlgen_postgres(sqlgen *g, const node *root);
bool		sqlgen_clickhouse(sqlgen *g, const node *root);

#endif							/* DUET_SQLGEN_H */
