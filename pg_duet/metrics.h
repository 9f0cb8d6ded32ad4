/*
 * metrics.h — named metrics (docs/metrics.md): definitions as the formula compiler sees them.
 *
 *   metrics_resolve.c  the metrics of a scope (global, or a tenant's over the global ones), loaded
 *                      per backend and kept while nothing changed (change_epoch.c); the compile
 *                      hook that expands them (calc/metric.c)
 *   metrics.c          signatures: a formula's arguments, their ClickHouse types, its result type
 *   metrics_write.c    duet_metric_define/set/drop/unset/rollback: compile, check, store a version
 */
#ifndef DUET_METRICS_H
#define DUET_METRICS_H

#include "duet_calc.h"
#include "utils/array.h"

typedef struct DuetMetric
{
	char	   *name;
	char	   *tenant;			/* NULL: global */
	char	   *formula;		/* UTF-8 */
	size_t		formula_len;
	int			nparams;
	const char **params;
	duet_type  *types;			/* per parameter, from the ClickHouse argument types */
	char	   *return_type;	/* ClickHouse */
	int			ndeps;
	char	  **deps;			/* metrics the formula calls */
	char	   *unit;			/* ratio, percent, currency, integer; NULL: none */
} DuetMetric;

/*
 * Makes the metrics of a scope current: global_only, or the current tenant's (its own metrics over
 * the global ones). Reads the table when it changed since the last call (as the calling role, so
 * row-level security applies). Returns a stamp that differs whenever the definitions may differ
 * from those of an earlier stamp. Call before compiling; may raise.
 */
extern uint64 duet_metrics_load(bool global_only);

/*
 * Around compiling a rule's formulas (active true, then false): load the rule's tenant's metrics
 * (NULL: the global ones) rather than the caller's.
 */
extern void duet_metrics_rule_scope(bool active, const char *tenant);

/* Forget what is loaded: the next load reads the table (after a lock taken to write it). */
extern void duet_metrics_forget(void);

/* A metric of the current scope by name (exactly, else case-insensitively), or NULL. */
extern const DuetMetric *duet_metrics_find(const char *name, size_t len);

/* All metrics of the current scope, sorted by name. */
extern const DuetMetric *duet_metrics_all(int *n);

/*
 * Sets opts' metric hook to the current scope. Nothing in the hook raises. After the compile,
 * duet_metrics_used() says whether it expanded any metric.
 */
extern void duet_metrics_options(duet_compile_options *opts);
extern bool duet_metrics_used(void);

/* metrics.c: a formula's signature (names in the database encoding, ClickHouse types) */
typedef struct DuetMetricSignature
{
	int			nargs;
	char	  **args;
	char	  **ch_types;
	char	   *return_type;
} DuetMetricSignature;

extern void duet_metric_signature_of(const char *formula, size_t formula_len,
									 ArrayType *typed_names, ArrayType *typed_types,
									 DuetMetricSignature *sig);
extern ArrayType *duet_text_array(char **items, int n);

/*
 * metrics_sql.c: regenerates schema duet_metrics (one SQL function per global metric that compiles
 * to PostgreSQL) as the extension owner; fn_oid is the calling SQL function (of the extension's
 * schema). Call after every change of a global metric, in its transaction.
 */
extern int	duet_metric_functions_refresh(Oid fn_oid);

/*
 * metrics_sql.c: metric m as one SQL expression in dialect (database encoding, palloc'd) and its
 * result type; NULL with *refusal (and *excerpt, the position, or NULL) when a construct has no
 * exact translation. Raises when it does not compile. schema: the extension's.
 */
extern char *duet_metric_sql_text(const DuetMetric *m, duet_sql_dialect dialect, const char *schema,
								  duet_type *type, char **refusal, char **excerpt);

/* name as a ClickHouse identifier (backquoted), palloc'd */
extern char *duet_ch_identifier(const char *name);

/* The formula type of a ClickHouse argument type (Nullable(String) → string, …). */
extern duet_type duet_metric_ch_type(const char *ch_type);

#endif							/* DUET_METRICS_H */
