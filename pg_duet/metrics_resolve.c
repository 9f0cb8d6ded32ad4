/*
 * metrics_resolve.c — the metrics a formula may call, as the compiler's hook sees them.
 *
 * Formulas call metrics by name (docs/metrics.md); calc/ expands a call inline at compile time
 * from a definition this file hands it. The definitions of one scope — the global metrics, or the
 * current tenant's over them (tenant → global fallback, as config) — are read with SPI as the
 * calling role, so row-level security decides what a role may see, and kept in this backend until
 * duet.metrics, the tenants or role memberships change (the change epoch of change_epoch.c, bumped
 * by the statement trigger on duet.metrics at commit). The compile hook itself only looks up
 * what is loaded: nothing in it can raise inside calc.
 *
 * duet_metrics_load returns a stamp: compiled programs that expanded a metric remember it, and
 * the program cache (calc_cache.c) compiles them again when the stamp moved.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "access/xact.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "calc_pg.h"
#include "change_epoch.h"
#include "metrics.h"
#include "pg_duet.h"
#include "privileged.h"
#include "tenant.h"

static MemoryContext metrics_cxt = NULL;
static DuetMetric *metrics = NULL;
static int	nmetrics = 0;
static bool loaded = false;
static DuetCacheToken loaded_token;
static char loaded_scope[TENANT_NAME_MAXLEN + 2];
static uint64 stamp = 0;
static bool used = false;

/* Set around the compile of a rule's formulas: the rule's tenant, whoever evaluates it. */
static bool rule_scope = false;
static char *rule_tenant = NULL;

void
duet_metrics_rule_scope(bool active, const char *tenant)
{
	if (rule_tenant)
		pfree(rule_tenant);
	rule_tenant = active && tenant ? MemoryContextStrdup(TopMemoryContext, tenant) : NULL;
	rule_scope = active;
}

void
duet_metrics_forget(void)
{
	loaded = false;
}

duet_type
duet_metric_ch_type(const char *ch_type)
{
	if (strcmp(ch_type, "Nullable(String)") == 0 || strcmp(ch_type, "String") == 0)
		return DUET_T_STRING;
	if (strcmp(ch_type, "Nullable(Bool)") == 0 || strcmp(ch_type, "Bool") == 0)
		return DUET_T_BOOL;
	return DUET_T_NUMBER;
}

static char **
text_array(Datum d, int *n)
{
	Datum	   *items;
	bool	   *nulls;
	char	  **out;

	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = nulls[i] ? pstrdup("") : TextDatumGetCString(items[i]);
	return out;
}

typedef struct ReadArgs
{
	const char *tenant;
	Snapshot	snapshot;
} ReadArgs;

static void
read_rows(void *arg)
{
	const char *tenant = ((ReadArgs *) arg)->tenant;
	Snapshot	snapshot = ((ReadArgs *) arg)->snapshot;
	static SPIPlanPtr plan = NULL;
	Datum		values[1];
	char		nulls[1] = {' '};
	int			ret;
	MemoryContext old;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* Per name the global row sorts first, the tenant's after it and wins. */
	duet_spi_plan(&plan, "SELECT m.name, m.tenant, m.formula, m.arguments, m.argument_types, "
				  "m.return_type, m.depends_on, m.unit FROM duet.metrics m "
				  "WHERE m.tenant IS NULL OR m.tenant OPERATOR(pg_catalog.=) $1 "
				  "ORDER BY m.name, m.tenant NULLS FIRST", 1, (Oid[]) {TEXTOID});
	if (tenant)
		values[0] = CStringGetTextDatum(tenant);
	else
		nulls[0] = 'n';
	ret = SPI_execute_snapshot(plan, values, nulls, snapshot, InvalidSnapshot, true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "metrics lookup failed: %s", SPI_result_code_string(ret));

	old = MemoryContextSwitchTo(metrics_cxt);
	metrics = palloc0(sizeof(DuetMetric) * Max(SPI_processed, 1));
	nmetrics = 0;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		DuetMetric *m;
		char	   *name = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		const char *utf8;
		char	   *formula;
		char	  **ch_types;
		int			n;

		if (nmetrics > 0 && strcmp(metrics[nmetrics - 1].name, name) == 0)
			m = &metrics[nmetrics - 1];	/* the tenant's override replaces the global row */
		else
			m = &metrics[nmetrics++];
		memset(m, 0, sizeof(*m));
		m->name = name;
		(void) SPI_getbinval(tup, desc, 2, &isnull);
		m->tenant = isnull ? NULL : TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		formula = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		utf8 = pgcalc_to_utf8(formula, strlen(formula), &m->formula_len);
		m->formula = pnstrdup(utf8, m->formula_len);
		m->params = (const char **) text_array(SPI_getbinval(tup, desc, 4, &isnull), &m->nparams);
		ch_types = text_array(SPI_getbinval(tup, desc, 5, &isnull), &n);
		m->types = palloc(sizeof(duet_type) * Max(m->nparams, 1));
		for (int i = 0; i < m->nparams; i++)
			m->types[i] = i < n ? duet_metric_ch_type(ch_types[i]) : DUET_T_ANY;
		m->return_type = TextDatumGetCString(SPI_getbinval(tup, desc, 6, &isnull));
		m->deps = text_array(SPI_getbinval(tup, desc, 7, &isnull), &m->ndeps);
		(void) SPI_getbinval(tup, desc, 8, &isnull);
		m->unit = isnull ? NULL : TextDatumGetCString(SPI_getbinval(tup, desc, 8, &isnull));
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
}

uint64
duet_metrics_load(bool global_only)
{
	const char *tenant = rule_scope ? rule_tenant : global_only ? NULL : duet_current_tenant_name();
	char		scope[sizeof(loaded_scope) + 1];
	ReadArgs	args;
	DuetCacheToken token;
	bool		cacheable;
	Snapshot	snapshot;

	/* "" global, "t<tenant>" a tenant's as its member sees it, "r<tenant>" a rule's */
	snprintf(scope, sizeof(scope), "%s%s", tenant ? (rule_scope ? "r" : "t") : "", tenant ? tenant : "");
	if (loaded && strcmp(scope, loaded_scope) == 0 && duet_epoch_token_valid(&loaded_token))
		return stamp;

	/* A new set, or possibly one: every program that expanded a metric is compiled again. */
	stamp++;
	loaded = false;
	if (metrics_cxt == NULL)
		metrics_cxt = AllocSetContextCreate(TopMemoryContext, "pg_duet metrics", ALLOCSET_SMALL_SIZES);
	MemoryContextReset(metrics_cxt);
	metrics = NULL;
	nmetrics = 0;
	/* 0.1.0's table has no tenants: metrics are callable from formulas once the SQL is updated */
	if (!duet_sql_is_current())
		return stamp;

	/* The token is taken before the snapshot; without shared memory nothing is kept. */
	cacheable = duet_epoch_token(&token) && !IsolationUsesXactSnapshot();
	snapshot = RegisterSnapshot(IsInParallelMode() || IsolationUsesXactSnapshot() ?
								GetActiveSnapshot() : GetLatestSnapshot());
	PG_TRY();
	{
		args.tenant = tenant;
		args.snapshot = snapshot;
		/*
		 * A rule's formulas use its tenant's metrics whoever's statement fires it: read as the
		 * bootstrap superuser (above row-level security), for that one tenant only.
		 */
		if (rule_scope && tenant)
			duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, read_rows, &args);
		else
			read_rows(&args);
	}
	PG_FINALLY();
	{
		UnregisterSnapshot(snapshot);
	}
	PG_END_TRY();
	if (cacheable && duet_epoch_token_valid(&token))
	{
		loaded = true;
		loaded_token = token;
		strlcpy(loaded_scope, scope, sizeof(loaded_scope));
	}
	return stamp;
}

const DuetMetric *
duet_metrics_find(const char *name, size_t len)
{
	for (int i = 0; i < nmetrics; i++)
		if (strlen(metrics[i].name) == len && memcmp(metrics[i].name, name, len) == 0)
			return &metrics[i];
	for (int i = 0; i < nmetrics; i++)
		if (strlen(metrics[i].name) == len && pg_strncasecmp(metrics[i].name, name, len) == 0)
			return &metrics[i];
	return NULL;
}

const DuetMetric *
duet_metrics_all(int *n)
{
	*n = nmetrics;
	return metrics;
}

/* calc's hook: only looks up (never raises, never allocates). */
static bool
resolve(void *arg, const char *name, size_t len, duet_metric *out)
{
	const DuetMetric *m = duet_metrics_find(name, len);

	if (m == NULL)
		return false;
	used = true;
	out->formula = m->formula;
	out->formula_len = m->formula_len;
	out->nparams = (size_t) m->nparams;
	out->params = m->params;
	out->param_types = m->types;
	return true;
}

void
duet_metrics_options(duet_compile_options *opts)
{
	used = false;
	opts->metric = resolve;
	opts->metric_arg = NULL;
}

bool
duet_metrics_used(void)
{
	return used;
}
