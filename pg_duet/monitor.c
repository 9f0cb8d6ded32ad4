/*
 * monitor.c — the figures for monitoring: duet_metrics_*() functions, read by Prometheus's
 * postgres_exporter (exporter/pg_duet_queries.yaml) and by the view duet.health.
 *
 * Every function returns counts and names only, never tenant content (no message, SQL, question,
 * error text or raw bytes), and decides itself what the caller may see:
 *
 *   - monitors (superusers, members of pg_monitor or of duet_monitor): every tenant's rows;
 *   - anyone else: the rows of the tenant it acts for (duet_current_tenant(), verified against
 *     the membership tables), Kafka consumers of the roles it acts as (as duet.kafka_status
 *     shows them), the outbox's state for Kafka admins; nothing without a tenant.
 *
 * So the functions are granted to PUBLIC and duet.health (security_invoker) is the same for
 * everyone: a tenant member's dashboard sees its own tenant, the exporter every tenant. Rows are
 * read as the extension owner (rules, alerts) or the bootstrap superuser (the Kafka catalog, as
 * kafka_sql.c does), with the caller's scope passed as parameters; counters come from shared
 * memory (monitor_stats.c, config_cache.c).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "monitor.h"
#include "pg_duet.h"
#include "tenant.h"

typedef struct MonitorScope
{
	Oid			caller;
	bool		all;			/* a monitor: every tenant */
	char	   *tenant;			/* else the caller's verified tenant, NULL when none */
} MonitorScope;

static bool
member_of(Oid caller, const char *role)
{
	Oid			r = get_role_oid(role, true);

	return OidIsValid(r) && has_privs_of_role(caller, r);
}

static void
monitor_scope(MonitorScope *s)
{
	const char *t;

	s->caller = GetUserId();
	s->all = superuser_arg(s->caller) || has_privs_of_role(s->caller, ROLE_PG_MONITOR) ||
		member_of(s->caller, "duet_monitor");
	t = s->all ? NULL : duet_current_tenant_name();
	s->tenant = t ? pstrdup(t) : NULL;
}

/* ---- rows read by SPI as a privileged role, into the function's result ------------------- */

typedef struct MonitorQuery
{
	const char *sql;
	int			nargs;
	Oid		   *types;
	Datum	   *values;
	char	   *nulls;
	ReturnSetInfo *rsinfo;
} MonitorQuery;

static void
monitor_query_fn(void *arg)
{
	MonitorQuery *q = arg;
	TupleDesc	desc = q->rsinfo->setDesc;
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);
	int			ret;
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(q->sql, q->nargs, q->types, q->values, q->nulls, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "monitoring query failed: %s", SPI_result_code_string(ret));
	if (SPI_tuptable->tupdesc->natts != desc->natts)
		elog(ERROR, "monitoring query returned %d columns, expected %d",
			 SPI_tuptable->tupdesc->natts, desc->natts);
	for (i = 0; i < SPI_processed; i++)
	{
		int			c;

		for (c = 0; c < desc->natts; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c + 1, &nulls[c]);
		tuplestore_putvalues(q->rsinfo->setResult, desc, values, nulls);
	}
	SPI_finish();
}

static void
monitor_query(FunctionCallInfo fcinfo, Oid role, const char *sql, int nargs, Oid *types,
			  Datum *values, char *nulls)
{
	MonitorQuery q;

	q.sql = sql;
	q.nargs = nargs;
	q.types = types;
	q.values = values;
	q.nulls = nulls;
	q.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	duet_run_privileged(role, NULL, monitor_query_fn, &q);
}

static Datum
int8_array(const int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

typedef struct StaleRules
{
	Datum		ids;			/* int8[] of the counted rules */
	int64	   *stale;			/* out: those that no longer exist */
	int			nstale;
} StaleRules;

static void
stale_rules_fn(void *arg)
{
	StaleRules *st = arg;
	Oid			type = INT8ARRAYOID;
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT s.id FROM pg_catalog.unnest($1) AS s(id) "
							  "WHERE NOT EXISTS (SELECT FROM duet.rules r WHERE r.id OPERATOR(pg_catalog.=) s.id)",
							  1, &type, &st->ids, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "monitoring query failed");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			st->stale[st->nstale++] = DatumGetInt64(d);
	}
	SPI_finish();
}

PG_FUNCTION_INFO_V1(duet_metrics_rules);

/*
 * duet_metrics_rules() → per tenant and severity: rules, enabled, evaluations, errors, rows
 * evaluated (counters since the server started), alerts pending, firing, recovering, in error.
 */
Datum
duet_metrics_rules(PG_FUNCTION_ARGS)
{
	MonitorScope scope;
	MonitorRuleCount *counts;
	int			n;
	int			i;
	int64	   *cols[4];
	Datum	   *last;
	Oid			types[7] = {BOOLOID, TEXTOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
	INT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		values[7];
	char		nulls[8] = "       ";

	InitMaterializedSRF(fcinfo, 0);
	monitor_scope(&scope);
	if (!scope.all && scope.tenant == NULL)
		return (Datum) 0;
	counts = duet_monitor_rule_counts(&n);
	for (i = 0; i < 4; i++)
		cols[i] = palloc(sizeof(int64) * Max(n, 1));
	last = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		cols[0][i] = counts[i].rule_id;
		cols[1][i] = (int64) counts[i].evaluations;
		cols[2][i] = (int64) counts[i].errors;
		cols[3][i] = (int64) counts[i].rows;
		last[i] = TimestampTzGetDatum(counts[i].last_at);
	}
	values[0] = BoolGetDatum(scope.all);
	values[1] = scope.tenant ? CStringGetTextDatum(scope.tenant) : (Datum) 0;
	nulls[1] = scope.tenant ? ' ' : 'n';
	for (i = 0; i < 4; i++)
		values[2 + i] = int8_array(cols[i], n);
	values[6] = PointerGetDatum(construct_array(last, n, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	/* The rules and alerts tables belong to the owner (and show it every tenant). */
	monitor_query(fcinfo, duet_extension_owner(),
				  "WITH s AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), "
				  "                                  pg_catalog.unnest($5), pg_catalog.unnest($6), "
				  "                                  pg_catalog.unnest($7)) "
				  "             AS s(rule_id, evaluations, errors, rows_evaluated, last_at)), "
				  "a AS (SELECT rule_id, "
				  "             pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'pending') AS pending, "
				  "             pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'firing') AS firing, "
				  "             pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'recovering') AS recovering, "
				  "             pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'error') AS in_error "
				  "        FROM duet.alerts GROUP BY rule_id) "
				  "SELECT r.tenant, r.severity, pg_catalog.count(*), "
				  "       pg_catalog.count(*) FILTER (WHERE r.enabled), "
				  "       coalesce(pg_catalog.sum(s.evaluations), 0)::pg_catalog.int8, "
				  "       coalesce(pg_catalog.sum(s.errors), 0)::pg_catalog.int8, "
				  "       coalesce(pg_catalog.sum(s.rows_evaluated), 0)::pg_catalog.int8, "
				  "       coalesce(pg_catalog.sum(a.pending), 0)::pg_catalog.int8, "
				  "       coalesce(pg_catalog.sum(a.firing), 0)::pg_catalog.int8, "
				  "       coalesce(pg_catalog.sum(a.recovering), 0)::pg_catalog.int8, "
				  "       coalesce(pg_catalog.sum(a.in_error), 0)::pg_catalog.int8, "
				  "       pg_catalog.max(s.last_at) "
				  "  FROM duet.rules r "
				  "  LEFT JOIN s ON s.rule_id OPERATOR(pg_catalog.=) r.id "
				  "  LEFT JOIN a ON a.rule_id OPERATOR(pg_catalog.=) r.id "
				  " WHERE $1 OR r.tenant OPERATOR(pg_catalog.=) $2 "
				  " GROUP BY r.tenant, r.severity ORDER BY r.tenant, r.severity",
				  7, types, values, nulls);

	/* Counters of rules dropped since (not counted for 10 s: see duet_monitor_forget_rules). */
	if (n > 0)
	{
		StaleRules	st;

		st.ids = values[2];
		st.stale = palloc(sizeof(int64) * n);
		st.nstale = 0;
		duet_run_privileged(duet_extension_owner(), NULL, stale_rules_fn, &st);
		duet_monitor_forget_rules(st.stale, st.nstale,
								  GetCurrentTimestamp() - 10 * USECS_PER_SEC);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(duet_metrics_ask);

/*
 * duet_metrics_ask() → per tenant and status (ok, cached, rejected, failed, over_budget,
 * cancelled): calls, HTTP requests, corrections, tokens in and out, total latency (ms), and the
 * latency histogram as Prometheus has it: bucket bounds (s) and cumulative counts per bound.
 */
Datum
duet_metrics_ask(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MonitorScope scope;
	MonitorAskCount *counts;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	monitor_scope(&scope);
	counts = duet_monitor_ask_counts(&n);
	for (i = 0; i < n; i++)
	{
		MonitorAskCount *c = &counts[i];
		Datum		values[10];
		bool		nulls[10] = {0};
		Datum		bounds[MONITOR_LATENCY_BUCKETS];
		Datum		cumulative[MONITOR_LATENCY_BUCKETS];
		uint64		sum = 0;
		int			b;

		if (!scope.all && !(c->has_tenant && scope.tenant && strcmp(c->tenant, scope.tenant) == 0))
			continue;
		values[0] = c->has_tenant ? CStringGetTextDatum(c->tenant) : (Datum) 0;
		nulls[0] = !c->has_tenant;
		values[1] = CStringGetTextDatum(c->status);
		values[2] = Int64GetDatum((int64) c->calls);
		values[3] = Int64GetDatum((int64) c->attempts);
		values[4] = Int64GetDatum((int64) c->corrections);
		values[5] = Int64GetDatum((int64) c->tokens_in);
		values[6] = Int64GetDatum((int64) c->tokens_out);
		values[7] = Float8GetDatum(c->latency_ms);
		for (b = 0; b < MONITOR_LATENCY_BUCKETS; b++)
		{
			sum += c->latency_buckets[b];
			bounds[b] = Float8GetDatum(duet_monitor_latency_bounds[b]);
			cumulative[b] = Int64GetDatum((int64) sum);
		}
		values[8] = PointerGetDatum(construct_array(bounds, MONITOR_LATENCY_BUCKETS, FLOAT8OID,
													sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[9] = PointerGetDatum(construct_array(cumulative, MONITOR_LATENCY_BUCKETS, INT8OID,
													sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(duet_metrics_kafka);

/*
 * duet_metrics_kafka() → per Kafka consumer: state, workers, rows, bytes, batches, errors, dead
 * letters, lag, rows/s, messages skipped, and the age (s) of the oldest partition high watermark
 * behind the lag (NULL when none has been seen current); for monitors every consumer, else those of the roles
 * the caller acts as (the rule of duet.kafka_status).
 */
Datum
duet_metrics_kafka(PG_FUNCTION_ARGS)
{
	MonitorScope scope;
	Oid			types[2] = {BOOLOID, OIDOID};
	Datum		values[2];

	InitMaterializedSRF(fcinfo, 0);
	monitor_scope(&scope);
	values[0] = BoolGetDatum(scope.all);
	values[1] = ObjectIdGetDatum(scope.caller);
	/* The consumer catalog is the bootstrap superuser's (kafka_sql.c reads it the same way). */
	monitor_query(fcinfo, BOOTSTRAP_SUPERUSERID,
				  "SELECT k.name, k.topic, k.state, k.workers, k.rows::pg_catalog.int8, "
				  "       k.bytes::pg_catalog.int8, k.batches::pg_catalog.int8, "
				  "       k.errors::pg_catalog.int8, k.dead_letters, coalesce(k.lag, 0), "
				  "       k.rate::pg_catalog.float8, k.gap_messages, "
				  "       (SELECT pg_catalog.max(EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) ps.high_watermark_at))"
				  "          ::pg_catalog.float8 FROM duet.kafka_partition_status ps WHERE ps.name OPERATOR(pg_catalog.=) k.name) "
				  "  FROM duet.kafka_status k "
				  " WHERE $1 OR pg_catalog.pg_has_role($2, k.owner::pg_catalog.oid, 'USAGE') "
				  " ORDER BY k.name",
				  2, types, values, NULL);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(duet_metrics_outbox);

/*
 * duet_metrics_outbox() → the outbox: events pending, age of the oldest (s), sent in the last
 * hour, when the last was sent (monitors and Kafka admins: it carries every tenant's events).
 */
Datum
duet_metrics_outbox(PG_FUNCTION_ARGS)
{
	MonitorScope scope;

	InitMaterializedSRF(fcinfo, 0);
	monitor_scope(&scope);
	if (!scope.all && !member_of(scope.caller, "duet_kafka_admin"))
		return (Datum) 0;
	monitor_query(fcinfo, BOOTSTRAP_SUPERUSERID,
				  "SELECT o.pending, "
				  "       coalesce(EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) o.oldest_pending_at), 0)::pg_catalog.float8, "
				  "       o.sent_last_hour, o.last_sent_at "
				  "  FROM duet.kafka_outbox_status o",
				  0, NULL, NULL, NULL);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(duet_metrics_server);

/*
 * duet_metrics_server() → one row for monitors: whether the counters exist, whether the workers
 * serve this database, config cache hits, misses and bypasses (the whole server), counts lost to
 * full counter tables.
 */
Datum
duet_metrics_server(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MonitorScope scope;
	Datum		values[7];
	bool		nulls[7] = {0};
	uint64		hits;
	uint64		misses;
	uint64		bypasses;
	const char *hint;

	InitMaterializedSRF(fcinfo, 0);
	monitor_scope(&scope);
	if (!scope.all)
		return (Datum) 0;
	duet_config_cache_counts(&hits, &misses, &bypasses);
	values[0] = BoolGetDatum(duet_monitor_available());
	values[1] = BoolGetDatum(duet_workers_problem(&hint) == NULL);
	values[2] = Int64GetDatum((int64) hits);
	values[3] = Int64GetDatum((int64) misses);
	values[4] = Int64GetDatum((int64) bypasses);
	if (hits + misses > 0)
		values[5] = Float8GetDatum((double) hits / (double) (hits + misses));
	else
		nulls[5] = true;
	values[6] = Int64GetDatum((int64) duet_monitor_dropped());
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(duet_metrics_workers);

/*
 * duet_metrics_workers() → for monitors, the background workers of each kind running for this
 * database (the rule and pipeline schedulers serve the whole server). pg_stat_activity shows
 * other sessions' backend type only to superusers and pg_read_all_stats, hence the bootstrap
 * superuser; a client naming its application "pg_duet ..." is not a worker and is not counted.
 */
Datum
duet_metrics_workers(PG_FUNCTION_ARGS)
{
	MonitorScope scope;

	InitMaterializedSRF(fcinfo, 0);
	monitor_scope(&scope);
	if (!scope.all)
		return (Datum) 0;
	monitor_query(fcinfo, BOOTSTRAP_SUPERUSERID,
				  "SELECT w.worker, "
				  "       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a "
				  "         WHERE pg_catalog.starts_with(a.backend_type, 'pg_duet ' OPERATOR(pg_catalog.||) w.worker) "
				  "           AND (a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database() "
				  "                OR w.worker OPERATOR(pg_catalog.=) ANY (ARRAY['rule scheduler', 'pipeline scheduler']))) "
				  "  FROM (VALUES ('kafka supervisor'), ('kafka pool'), ('kafka outbox publisher'), "
				  "               ('alertmanager sender'), ('rule scheduler'), ('rule evaluation'), "
				  "               ('pipeline scheduler'), ('pipeline runner'), ('ask audit')) AS w(worker)",
				  0, NULL, NULL, NULL);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(duet_metrics_pipelines);

/*
 * duet_metrics_pipelines() → per tenant and pipeline: state, mode, lag (rows past the position,
 * and seconds since the last success while rows wait), runs and rows in, out and dropped over the
 * last 5 minutes, failed runs over 24 hours, rows quarantined and not replayed, ages of the last
 * run and success. Figures of duet.pipeline_status (one computation of them), read as the
 * extension owner for the caller's scope; never a transform, position, error text or row.
 */
Datum
duet_metrics_pipelines(PG_FUNCTION_ARGS)
{
	MonitorScope scope;
	Oid			types[2] = {BOOLOID, TEXTOID};
	Datum		values[2];
	char		nulls[3] = "  ";

	InitMaterializedSRF(fcinfo, 0);
	monitor_scope(&scope);
	if (!scope.all && scope.tenant == NULL)
		return (Datum) 0;
	values[0] = BoolGetDatum(scope.all);
	values[1] = scope.tenant ? CStringGetTextDatum(scope.tenant) : (Datum) 0;
	nulls[1] = scope.tenant ? ' ' : 'n';
	monitor_query(fcinfo, duet_extension_owner(),
				  "SELECT s.tenant, s.name, s.mode, s.state, s.lag_rows, "
				  "       CASE WHEN s.lag_rows OPERATOR(pg_catalog.>) 0 "
				  "            THEN EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) "
				  "                 coalesce(s.last_success_at, p.created_at))::pg_catalog.float8 "
				  "            WHEN s.lag_rows IS NULL THEN NULL ELSE 0 END, "
				  "       s.runs_5m, s.rows_in_5m::pg_catalog.int8, s.rows_out_5m::pg_catalog.int8, "
				  "       s.rows_dropped_5m::pg_catalog.int8, s.errors_24h, s.quarantined, "
				  "       EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) s.last_run_at)::pg_catalog.float8, "
				  "       EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) s.last_success_at)::pg_catalog.float8 "
				  "  FROM duet.pipeline_status s "
				  "  JOIN duet.pipelines p ON (p.tenant OPERATOR(pg_catalog.=) s.tenant) "
				  "                       AND (p.name OPERATOR(pg_catalog.=) s.name) "
				  " WHERE $1 OR s.tenant OPERATOR(pg_catalog.=) $2 "
				  " ORDER BY s.tenant, s.name",
				  2, types, values, nulls);
	return (Datum) 0;
}
