/*
 * metrics_write.c — changing metrics: duet_metric_define/set/drop/unset/rollback[_default].
 *
 * As config_write.c does for config: the change is compiled and authorized here, as the calling
 * role — the scope is the global metrics (admin functions, revoked from PUBLIC) or the caller's
 * verified duet_current_tenant(), and the actor recorded is the caller — then stored by the
 * internal duet.duet_metric_apply() (60_metrics.sql) run as the owner, which checks what needs
 * every tenant's rows (dependents, the signature an override must keep) and writes the version.
 *
 * Here: the name (a valid identifier that is no builtin), the unit, the formula compiled against
 * the metrics of its scope (types, arity, unknown functions), and cycles — the metrics it calls,
 * transitively, must not reach it — with the cycle in errdetail. All metric writes of a database
 * serialize on one table lock taken before the checks read (lock_metrics), so two changes cannot
 * form a cycle together.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "calc_pg.h"
#include "metrics.h"
#include "pg_duet.h"
#include "privileged.h"
#include "tenant.h"

typedef struct MetricChange
{
	const char *name;
	const char *tenant;			/* NULL: global */
	char	   *formula;
	char	   *description;
	ArrayType  *typed_names;
	ArrayType  *typed_types;
	char	   *unit;
	char	   *owner;
	char	   *reason;
	int64		rolled_back_to;
} MetricChange;

static char *
opt_text(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static const char *
name_arg(FunctionCallInfo fcinfo)
{
	char	   *name;
	bool		ok;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("metric name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ok = strlen(name) > 0 && strlen(name) <= 63 && !isdigit((unsigned char) name[0]);
	for (const char *p = name; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid metric name \"%s\"", name),
				 errdetail("The name is called in formulas and becomes a SQL and a ClickHouse function name."),
				 errhint("Use letters, digits and underscores (at most 63), starting with a letter or underscore.")));
	if (duet_is_builtin(name, strlen(name)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_FUNCTION),
				 errmsg("metric name \"%s\" is a builtin function", name),
				 errdetail("A formula calling %s() would call the builtin, never the metric.", name),
				 errhint("Choose another name.")));
	return name;
}

/* A tenant change needs the caller's verified tenant (tenant.c). */
#define TENANT_HINT "Global metrics are changed with duet_metric_define()."

/* One SPI statement as the caller; the first row's first column (NULL when none) in *out. */
static bool
caller_query(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int ncols,
			 Datum *out, bool *out_null)
{
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, nargs, types, values, nulls, false, 1) < 0)
		elog(ERROR, "metric query failed: %s", sql);
	found = SPI_processed > 0;
	for (int i = 0; i < ncols; i++)
	{
		out[i] = (Datum) 0;
		out_null[i] = true;
		if (found)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &out_null[i]);
			Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, i);

			if (!out_null[i])
				out[i] = SPI_datumTransfer(d, att->attbyval, att->attlen);
		}
	}
	SPI_finish();
	return found;
}

/*
 * The writers' lock: SHARE ROW EXCLUSIVE on duet.metrics until the transaction ends (conflicts with
 * itself; readers, ACCESS SHARE, go on). Not an advisory lock: any role may take those, and one
 * holding the key would stall every tenant's metric changes. Only the owner writes duet.metrics,
 * so no other role can take a lock that conflicts with this one. duet.duet_metric_apply takes the
 * same lock (60_metrics.sql).
 */
static void
lock_metrics(void)
{
	LockRelationOid(get_relname_relid("metrics", get_namespace_oid("duet", false)), ShareRowExclusiveLock);
}

/* argument_types jsonb {"var": "ClickHouse type"} as two arrays sorted by name. */
static void
read_argument_types(Jsonb *types, MetricChange *c)
{
	Oid			argtypes[1] = {JSONBOID};
	Datum		values[1] = {JsonbPGetDatum(types)};
	Datum		out[3];
	bool		nulls[3];

	if (!JB_ROOT_IS_OBJECT(types) || JB_ROOT_IS_SCALAR(types))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument_types must be a JSON object of variable name to ClickHouse type"),
				 errhint("For example: {\"campaign\": \"String\"}.")));
	(void) caller_query("SELECT coalesce(pg_catalog.array_agg(e.key ORDER BY e.key), '{}'), "
						"coalesce(pg_catalog.array_agg(e.value OPERATOR(pg_catalog.#>>) '{}' ORDER BY e.key), '{}'), "
						"pg_catalog.bool_and(pg_catalog.jsonb_typeof(e.value) OPERATOR(pg_catalog.=) 'string') "
						"FROM pg_catalog.jsonb_each($1) e",
						1, argtypes, values, NULL, 3, out, nulls);
	if (!nulls[2] && !DatumGetBool(out[2]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument types must be strings such as \"Float64\" or \"String\"")));
	c->typed_names = DatumGetArrayTypeP(out[0]);
	c->typed_types = DatumGetArrayTypeP(out[1]);
}

/* ---- cycles: the metrics a formula calls, then theirs, must not lead back to the metric ---- */

typedef struct Calls
{
	char	  **names;
	int			n;
} Calls;

static void
add_call(void *arg, const char *name, size_t len)
{
	Calls	   *c = arg;
	const DuetMetric *m = duet_metrics_find(name, len);
	const char *canon = m ? m->name : NULL;

	if (canon == NULL)
		return;					/* not a metric: the compile reports the unknown function */
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->names[i], canon) == 0)
			return;
	c->names = c->n ? repalloc(c->names, sizeof(char *) * (c->n + 1)) : palloc(sizeof(char *));
	c->names[c->n++] = pstrdup(canon);
}

/* Depth-first from `from`; true with path filled when it reaches target. */
static bool
reaches(const char *from, const char *target, StringInfo path, int depth)
{
	const DuetMetric *m;
	int			mark = path->len;

	appendStringInfo(path, " -> %s", from);
	if (strcmp(from, target) == 0)
		return true;
	m = duet_metrics_find(from, strlen(from));
	if (m != NULL && depth < 1000)
		for (int i = 0; i < m->ndeps; i++)
			if (reaches(m->deps[i], target, path, depth + 1))
				return true;
	path->len = mark;
	path->data[mark] = '\0';
	return false;
}

static void
check_calls(const MetricChange *c, Calls *calls)
{
	duet_error	err;
	const char *src;
	size_t		len;

	memset(calls, 0, sizeof(*calls));
	src = pgcalc_to_utf8(c->formula, strlen(c->formula), &len);
	if (!duet_formula_calls(src, len, add_call, calls, &err))
		return;					/* a syntax error: the compile reports it with its position */
	for (int i = 0; i < calls->n; i++)
	{
		StringInfoData path;

		initStringInfo(&path);
		appendStringInfoString(&path, c->name);
		if (strcmp(calls->names[i], c->name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_RECURSION),
					 errmsg("metric \"%s\" calls itself", c->name),
					 errdetail("Cycle: %s -> %s.", c->name, c->name)));
		if (reaches(calls->names[i], c->name, &path, 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_RECURSION),
					 errmsg("metric \"%s\" would call itself through other metrics", c->name),
					 errdetail("Cycle: %s.", path.data),
					 errhint("A metric may call other metrics, but no chain of calls may lead back to it.")));
	}
}

/* ---- storing ---- */

static int64
apply(const char *op, const MetricChange *c, const DuetMetricSignature *sig, const Calls *calls)
{
	Oid			types[14] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTOID, TEXTARRAYOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID};
	Datum		v[14];
	char		nulls[15] = "              ";
	bool		def = sig != NULL;

	memset(v, 0, sizeof(v));
	v[0] = CStringGetTextDatum(op);
#define SET_TEXT(i, s) do { if (s) v[i] = CStringGetTextDatum(s); else nulls[i] = 'n'; } while (0)
	SET_TEXT(1, c->tenant);
	SET_TEXT(2, c->name);
	SET_TEXT(3, def ? c->formula : NULL);
	SET_TEXT(4, def ? c->description : NULL);
	if (def)
	{
		v[5] = PointerGetDatum(duet_text_array(sig->args, sig->nargs));
		v[6] = PointerGetDatum(duet_text_array(sig->ch_types, sig->nargs));
		v[7] = CStringGetTextDatum(sig->return_type);
		v[8] = PointerGetDatum(duet_text_array(calls->names, calls->n));
	}
	else
		nulls[5] = nulls[6] = nulls[7] = nulls[8] = 'n';
	SET_TEXT(9, def ? c->unit : NULL);
	SET_TEXT(10, def ? c->owner : NULL);
	SET_TEXT(11, c->reason);
	v[12] = Int64GetDatum(c->rolled_back_to);
	nulls[12] = c->rolled_back_to > 0 ? ' ' : 'n';
	v[13] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
#undef SET_TEXT
	return duet_run_as_owner("SELECT duet.duet_metric_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
							 14, types, v, nulls);
}

/* Compiles, checks and stores a definition; returns the new row (as the caller reads it). */
static Datum
define(MetricChange *c)
{
	DuetMetricSignature sig;
	Calls		calls;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	Datum		row;
	bool		row_null;

	if (c->formula == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("metric formula must not be null")));
	if (c->unit && strcmp(c->unit, "ratio") != 0 && strcmp(c->unit, "percent") != 0 &&
		strcmp(c->unit, "currency") != 0 && strcmp(c->unit, "integer") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown metric unit \"%s\"", c->unit),
				 errhint("Use ratio, percent, currency or integer, or NULL.")));
	if (c->typed_names == NULL)
	{
		c->typed_names = construct_empty_array(TEXTOID);
		c->typed_types = construct_empty_array(TEXTOID);
	}

	lock_metrics();
	duet_metrics_forget();
	(void) duet_metrics_load(c->tenant == NULL);
	check_calls(c, &calls);
	duet_metric_signature_of(c->formula, strlen(c->formula), c->typed_names, c->typed_types, &sig);
	(void) apply(c->rolled_back_to > 0 ? "rollback" : "define", c, &sig, &calls);
	duet_metrics_forget();

	values[0] = CStringGetTextDatum(c->name);
	if (c->tenant)
		values[1] = CStringGetTextDatum(c->tenant);
	else
		nulls[1] = 'n';
	if (!caller_query("SELECT m FROM duet.metrics m WHERE m.name OPERATOR(pg_catalog.=) $1 "
					  "AND (m.tenant OPERATOR(pg_catalog.=) $2 OR (m.tenant IS NULL AND $2 IS NULL))", 2, types, values, nulls, 1, &row, &row_null) ||
		row_null)
		elog(ERROR, "metric \"%s\" is not visible after it was stored", c->name);
	return row;
}

static void
read_change(FunctionCallInfo fcinfo, MetricChange *c, const char *tenant)
{
	memset(c, 0, sizeof(*c));
	c->name = name_arg(fcinfo);
	c->tenant = tenant;
	c->formula = opt_text(fcinfo, 1);
	c->description = opt_text(fcinfo, 2);
	if (!PG_ARGISNULL(3))
		read_argument_types(PG_GETARG_JSONB_P(3), c);
	c->unit = opt_text(fcinfo, 4);
	c->owner = opt_text(fcinfo, 5);
	c->reason = opt_text(fcinfo, 6);
}

PG_FUNCTION_INFO_V1(duet_metric_define);

/* duet_metric_define(name, formula, description, argument_types, unit, owner, reason) → duet.metrics */
Datum
duet_metric_define(PG_FUNCTION_ARGS)
{
	MetricChange c;
	Datum		row;

	read_change(fcinfo, &c, NULL);
	row = define(&c);
	(void) duet_metric_functions_refresh(fcinfo->flinfo->fn_oid);
	PG_RETURN_DATUM(row);
}

PG_FUNCTION_INFO_V1(duet_metric_set);

/* duet_metric_set(…the same…) → duet.metrics: the current tenant's metric */
Datum
duet_metric_set(PG_FUNCTION_ARGS)
{
	MetricChange c;

	read_change(fcinfo, &c, duet_require_tenant("duet_metric_set", TENANT_HINT));
	PG_RETURN_DATUM(define(&c));
}

static bool
drop(FunctionCallInfo fcinfo, const char *tenant)
{
	MetricChange c;

	memset(&c, 0, sizeof(c));
	c.name = name_arg(fcinfo);
	c.tenant = tenant;
	c.reason = opt_text(fcinfo, 1);
	lock_metrics();
	duet_metrics_forget();
	return apply("drop", &c, NULL, NULL) > 0;
}

PG_FUNCTION_INFO_V1(duet_metric_drop);

Datum
duet_metric_drop(PG_FUNCTION_ARGS)
{
	bool		dropped = drop(fcinfo, NULL);

	(void) duet_metric_functions_refresh(fcinfo->flinfo->fn_oid);
	PG_RETURN_BOOL(dropped);
}

PG_FUNCTION_INFO_V1(duet_metric_unset);

Datum
duet_metric_unset(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(drop(fcinfo, duet_require_tenant("duet_metric_unset", TENANT_HINT)));
}

/* Restores version of the scope's metric: the stored definition, compiled and checked again. */
static int64
rollback(FunctionCallInfo fcinfo, const char *tenant)
{
	MetricChange c;
	Oid			types[3] = {TEXTOID, TEXTOID, INT8OID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	Datum		out[6];
	bool		onull[6];

	memset(&c, 0, sizeof(c));
	c.name = name_arg(fcinfo);
	c.tenant = tenant;
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("version must not be NULL")));
	c.rolled_back_to = PG_GETARG_INT64(1);
	c.reason = opt_text(fcinfo, 2);
	values[0] = CStringGetTextDatum(c.name);
	if (tenant)
		values[1] = CStringGetTextDatum(tenant);
	else
		nulls[1] = 'n';
	values[2] = Int64GetDatum(c.rolled_back_to);
	if (!caller_query("SELECT h.formula, h.description, h.arguments, h.argument_types, h.unit, h.owner "
					  "FROM duet.metrics_history h WHERE h.name OPERATOR(pg_catalog.=) $1 "
					  "AND (h.tenant OPERATOR(pg_catalog.=) $2 OR (h.tenant IS NULL AND $2 IS NULL)) "
					  "AND h.version OPERATOR(pg_catalog.=) $3",
					  3, types, values, nulls, 6, out, onull))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("version " INT64_FORMAT " of metric \"%s\" does not exist for %s",
						c.rolled_back_to, c.name, tenant ? "this tenant" : "the global metrics"),
				 errhint("duet_metric_history('%s') lists the versions.", c.name)));
	if (onull[0])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version " INT64_FORMAT " of metric \"%s\" is a drop", c.rolled_back_to, c.name),
				 errhint("Roll back to a version that defined the metric.")));
	c.formula = TextDatumGetCString(out[0]);
	c.description = onull[1] ? NULL : TextDatumGetCString(out[1]);
	/* every argument's stored type is declared, so the signature comes out as it was */
	c.typed_names = DatumGetArrayTypeP(out[2]);
	c.typed_types = DatumGetArrayTypeP(out[3]);
	c.unit = onull[4] ? NULL : TextDatumGetCString(out[4]);
	c.owner = onull[5] ? NULL : TextDatumGetCString(out[5]);
	(void) define(&c);
	if (!caller_query("SELECT m.version FROM duet.metrics m WHERE m.name OPERATOR(pg_catalog.=) $1 "
					  "AND (m.tenant OPERATOR(pg_catalog.=) $2 OR (m.tenant IS NULL AND $2 IS NULL))", 2, types, values, nulls, 1, out, onull))
		return 0;
	return DatumGetInt64(out[0]);
}

PG_FUNCTION_INFO_V1(duet_metric_rollback);

Datum
duet_metric_rollback(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(rollback(fcinfo, duet_require_tenant("duet_metric_rollback", TENANT_HINT)));
}

PG_FUNCTION_INFO_V1(duet_metric_rollback_default);

Datum
duet_metric_rollback_default(PG_FUNCTION_ARGS)
{
	int64		version = rollback(fcinfo, NULL);

	(void) duet_metric_functions_refresh(fcinfo->flinfo->fn_oid);
	PG_RETURN_INT64(version);
}
