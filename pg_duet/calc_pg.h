/*
 * calc_pg.h — the PostgreSQL face of the Duet formula engine (calc/duet_calc.h).
 *
 *   calc_cache.c   per-backend cache of compiled programs (bounded, LRU, pinned by call sites)
 *   calc_error.c   engine errors as PostgreSQL errors (errcode, errdetail with line:column, hint)
 *   calc_value.c   the one PostgreSQL <-> Duet value layer: type rules, column lookup, results
 *   calc_bind.c    per-call-site state (fn_extra): variables bound from a row or a jsonb object
 *   calc_sql.c     duet_calc(), duet_calc_number(), duet_formula_check(), duet_calc_cache_stats()
 *
 * Strings cross the boundary as UTF-8 (the engine's encoding), converted from and to the
 * database encoding when that is not UTF-8.
 */
#ifndef DUET_CALC_PG_H
#define DUET_CALC_PG_H

#include "postgres.h"

#include <math.h>

#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

#include "duet_calc.h"

/* ---- calc_cache.c ---- */

/*
 * A compiled program shared by the backend cache and the call sites that use it. The cache owns
 * it while it is cached; call sites pin it, so eviction of a pinned program only unlinks it and
 * the last unpin frees it (duet_program_free: the engine allocates with malloc).
 */
typedef struct PgcalcProgram
{
	dlist_node	lru_node;		/* position in the cache's LRU list, while cached */
	struct PgcalcProgram *bucket_next;	/* hash chain, while cached */
	uint32		hash;
	bool		cached;
	int			pins;
	char	   *key;			/* formula (UTF-8), '\0', type signature */
	size_t		key_len;
	duet_program *program;
	int			nvars;
	duet_type	result_type;
	uint64		metrics_stamp;	/* expanded metrics as of this duet_metrics_load stamp; 0: none */
} PgcalcProgram;

/* duet.calc_cache_size: programs kept per backend. */
extern int	pgcalc_cache_size;

/* Counters shown by duet_calc_cache_stats(), since the backend started. */
typedef struct PgcalcCacheStats
{
	int			entries;		/* programs in the cache now */
	int64		lookups;		/* pgcalc_program_get calls */
	int64		compiles;		/* of which compiled (misses, including failed compiles) */
	int64		evictions;
} PgcalcCacheStats;

extern PgcalcCacheStats pgcalc_cache_stats;


/*
 * The program for formula (UTF-8) compiled with the variable types in sig (one character per
 * variable of the untyped program, in its order: 'n' number, 's' string, 'b' boolean, 'a' any;
 * sig_len 0 compiles untyped). Returned pinned; raises the compile error, if any.
 */
extern PgcalcProgram *pgcalc_program_get(const char *formula, size_t formula_len,
										 const PgcalcProgram *untyped,
										 const char *sig, size_t sig_len);
extern void pgcalc_program_unpin(PgcalcProgram *prog);

/* The backend's evaluation scratch (one per backend: evaluation is never re-entered). */
extern duet_vm *pgcalc_vm(void);

/* ---- calc_error.c ---- */

/* Raises err (from compiling, or evaluating when evaluating) as a PostgreSQL error. */
extern void pgcalc_report(const duet_error *err, bool evaluating) pg_attribute_noreturn();
extern int	pgcalc_errcode(duet_errclass cls);

/* Database encoding <-> UTF-8; return the input when no conversion is needed. */
extern const char *pgcalc_to_utf8(const char *s, size_t len, size_t *out_len);
extern char *pgcalc_from_utf8(const char *s, size_t len);

/* ---- calc_value.c: used by duet_calc (calc_bind.c) and rules (rules_formula.c) alike ---- */

/* How a variable's datums are read (the column's base type); docs/calc.md has the table. */
typedef enum PgcalcColumnKind
{
	PGCALC_COL_INT2,
	PGCALC_COL_INT4,
	PGCALC_COL_INT8,
	PGCALC_COL_OID,
	PGCALC_COL_FLOAT4,
	PGCALC_COL_FLOAT8,
	PGCALC_COL_NUMERIC,
	PGCALC_COL_TEXT,			/* text, varchar */
	PGCALC_COL_BPCHAR,			/* trailing blanks are not significant, as in PostgreSQL */
	PGCALC_COL_NAME,
	PGCALC_COL_CSTRING,			/* an untyped literal passed to "any" */
	PGCALC_COL_BOOL,
	PGCALC_COL_DATE,			/* a Duet date */
	PGCALC_COL_TIMESTAMP,		/* timestamp and timestamptz: a Duet timestamp (UTC) */
	PGCALC_COL_OTHER			/* uuid, enums: their output function's text, a string */
} PgcalcColumnKind;

typedef struct PgcalcColumn
{
	PgcalcColumnKind kind;
	Oid			typid;			/* base type */
	FmgrInfo	output;			/* PGCALC_COL_OTHER: the type's output function */
} PgcalcColumn;

/*
 * Sets up col for values of typid (output function state in mcxt); returns its signature
 * character, '\0' for a type that is not a formula value (the _or_error form raises then).
 */
extern char pgcalc_column_init(PgcalcColumn *col, Oid typid, MemoryContext mcxt);
extern char pgcalc_column_init_or_error(PgcalcColumn *col, Oid typid, const char *name,
										MemoryContext mcxt);
extern duet_type pgcalc_sig_type(char sig);
/* 0-based index of the column a variable names (exact, else the unique case-insensitive match), or -1. */
extern int	pgcalc_find_column(TupleDesc desc, const char *name, bool *ambiguous);
/* A non-null datum as a Duet value; converted strings are allocated in CurrentMemoryContext. */
extern duet_value pgcalc_datum_value(const PgcalcColumn *col, Datum d);

/* Inputs outside the finite doubles (NaN, Infinity) are NULL, like such results. */
static inline duet_value
pgcalc_number_or_null(double d)
{
	return isfinite(d) ? duet_number(d) : duet_null();
}

/*
 * pgcalc_datum_value with the per-row common cases inline (float8, bigint): the positional
 * binding calls it for every argument of every row.
 */
static inline duet_value
pgcalc_datum_value_inline(const PgcalcColumn *col, Datum d)
{
	if (col->kind == PGCALC_COL_FLOAT8)
		return pgcalc_number_or_null(DatumGetFloat8(d));
	if (col->kind == PGCALC_COL_INT8)
		return duet_int(DatumGetInt64(d));
	return pgcalc_datum_value(col, d);
}
/* A jsonb scalar as a Duet value; returns its signature character, '\0' for arrays and objects. */
extern char pgcalc_jsonb_value(const JsonbValue *v, duet_value *out);
extern double pgcalc_numeric_double(Numeric num);
extern duet_value pgcalc_jsonb_number(Numeric num);
/* Results: as jsonb (numbers in duet_format_number's digits), as text for messages. */
extern Jsonb *pgcalc_value_jsonb(const duet_value *v);
extern char *pgcalc_value_text(const duet_value *v);

/* ---- calc_bind.c ---- */

/* Per call site (fn_extra), in fn_mcxt; released by a reset callback on fn_mcxt. */
typedef struct PgcalcSite
{
	MemoryContext mcxt;			/* fn_mcxt */
	MemoryContext scratch;		/* reset at every call: detoasted and converted inputs */
	MemoryContext formula_cxt;	/* reset when the formula changes */
	MemoryContext row_cxt;		/* reset when the row type changes */
	MemoryContextCallback release;

	/* the formula the programs below were obtained for, as given (database encoding) */
	char	   *formula;
	int			formula_len;
	const char *formula_utf8;
	size_t		formula_utf8_len;

	PgcalcProgram *untyped;		/* pinned: every variable of type any */
	PgcalcProgram *typed;		/* pinned, or == untyped; NULL until the types are known */
	int			nvars;			/* of untyped, whose variable order the arrays below use */
	char	  **var_names;		/* database encoding, for lookups and messages */
	int		   *var_name_lens;
	char	   *sig;			/* typed's signature: one type character per variable */
	char	   *cur_sig;		/* the signature of the current input */
	int		   *perm;			/* typed variable i is untyped variable perm[i] */
	int			typed_nvars;
	duet_value *in;				/* inputs in untyped order */
	duet_value *vars;			/* inputs in typed order */

	/* row binding: valid while the row's type, typmod and (named types) tupdesc are unchanged */
	bool		row_mapped;
	Oid			row_type;
	int32		row_typmod;
	TypeCacheEntry *row_typentry;	/* named composite types: to notice ALTER TYPE/TABLE */
	uint64		row_tupdesc_id;
	struct TupleTableSlot *row_slot;
	int			row_max_attno;
	int		   *var_attno;		/* per variable: 0-based attribute index */
	PgcalcColumn *var_col;

	/* positional binding (duet_calc_args): the argument types are fixed per call site */
	bool		args_mapped;

	/*
	 * The formula argument is a Const (formula_is_const in calc_bind.c): the same text for
	 * every row of this call site, so once its programs are found it is not compared again.
	 */
	bool		formula_stable;
} PgcalcSite;

extern PgcalcSite *pgcalc_site(FunctionCallInfo fcinfo, bool row_form);
/* pgcalc_site_formula's lookup, when the formula may have changed since the last call */
extern void pgcalc_site_formula_lookup(PgcalcSite *site, text *formula);

/*
 * Makes the site's programs those of formula. Inline: a constant formula whose programs are
 * found costs one test per row, not a call and a comparison.
 */
static inline void
pgcalc_site_formula(PgcalcSite *site, text *formula)
{
	if (site->untyped != NULL && site->formula_stable)
		return;
	pgcalc_site_formula_lookup(site, formula);
}
extern const duet_value *pgcalc_bind_jsonb(PgcalcSite *site, Jsonb *vars);
extern const duet_value *pgcalc_bind_row(PgcalcSite *site, HeapTupleHeader rec);
/* pgcalc_bind_args's first call at a site: maps the argument types (raises on a bad one) */
extern void pgcalc_bind_args_map(PgcalcSite *site, FunctionCallInfo fcinfo);

/* Positional binding (duet_calc_args): argument i + 1 is variable i. Inline: once per row. */
static inline const duet_value *
pgcalc_bind_args(PgcalcSite *site, FunctionCallInfo fcinfo)
{
	MemoryContext old;

	if (!site->args_mapped)
		pgcalc_bind_args_map(site, fcinfo);
	old = MemoryContextSwitchTo(site->scratch);
	for (int i = 0; i < site->typed_nvars; i++)
	{
		int			j = site->perm[i];

		site->vars[i] = PG_ARGISNULL(j + 1) ? duet_null()
			: pgcalc_datum_value_inline(&site->var_col[j], PG_GETARG_DATUM(j + 1));
	}
	MemoryContextSwitchTo(old);
	return site->vars;
}

/* Evaluates the site's typed program on vars; raises run-time errors. Inline: once per row. */
static inline void
pgcalc_eval(PgcalcSite *site, const duet_value *vars, duet_value *out)
{
	duet_error	err;

	if (duet_eval(site->typed->program, vars, pgcalc_vm(), out, &err) != DUET_OK)
		pgcalc_report(&err, true);
}

/* now() and today() of vm's evaluations: the statement's start (calc_value.c) */
void		pgcalc_set_now(duet_vm *vm);

#endif							/* DUET_CALC_PG_H */
