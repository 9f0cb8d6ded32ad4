/*
 * kafka_sql.c — the SQL API of Kafka consumers: consume, stop, start, drop, reset (alter and replay
 * are in kafka_alter.c and kafka_replay.c).
 *
 * duet.kafka_consumers holds librdkafka properties (SASL passwords, keys), so only superusers
 * can read it. These functions run as their caller, check what the caller may do (EXECUTE is
 * granted to duet_kafka_admin; a consumer's owner must be able to INSERT into its target; only
 * the owner or a superuser manages a consumer), then write the catalog as the bootstrap superuser.
 * Workers notice changes within duet.kafka_poll_interval.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "kafka_sql_int.h"
#include "pg_duet.h"
#include "privileged.h"

#define RESET_TIMEOUT_MS	5000	/* per broker request of duet_kafka_reset */

static bool
valid_chars(const char *s, const char *extra)
{
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && strchr(extra, *s) == NULL)
			return false;
	return true;
}

char *
duet_kafka_arg_text(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

int
duet_kafka_arg_int(FunctionCallInfo fcinfo, int n, const char *what, int min, int max)
{
	int			v;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	v = PG_GETARG_INT32(n);
	if (v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %d and %d", what, min, max),
				 errdetail("The value given was %d.", v)));
	return v;
}

/* 'earliest', 'latest' or a timestamptz literal, normalised. */
char *
duet_kafka_check_position(const char *pos)
{
	if (strcmp(pos, "earliest") == 0 || strcmp(pos, "latest") == 0)
		return pstrdup(pos);
	PG_TRY();
	{
		Datum		ts = DirectFunctionCall3(timestamptz_in, CStringGetDatum(pos),
											 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));

		/* Stored in ISO form at UTC, so a worker reads it back whatever its DateStyle. */
		Datum		utc = DirectFunctionCall2(timestamptz_zone, CStringGetTextDatum("UTC"), ts);

		pos = text_to_cstring(DatumGetTextPP(DirectFunctionCall2(timestamp_to_char, utc,
																  CStringGetTextDatum("YYYY-MM-DD HH24:MI:SS.US+00"))));
	}
	PG_CATCH();
	{
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid start offset \"%s\"", pos),
				 errhint("Use 'earliest', 'latest' or a timestamp.")));
	}
	PG_END_TRY();
	return (char *) pos;
}

void
duet_kafka_check_column_map(Jsonb *map, DuetKafkaFormat format)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		want_array = (format == DUET_FORMAT_CSV);

	if (map == NULL)
		return;
	if (want_array ? !JB_ROOT_IS_ARRAY(map) || JB_ROOT_IS_SCALAR(map) : !JB_ROOT_IS_OBJECT(map))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column_map must be a JSON %s for format %s", want_array ? "array" : "object",
						format == DUET_FORMAT_CSV ? "csv" : format == DUET_FORMAT_JSON ? "json" : "jsonb or text"),
				 errhint(want_array ? "List the target columns the CSV fields fill, in order." :
						 format == DUET_FORMAT_JSON ? "Map JSON keys to column names: {\"key\": \"column\"}." :
						 "Name the column that receives the message: {\"value\": \"column\"}.")));
	it = JsonbIteratorInit(&map->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if ((tok == WJB_VALUE || tok == WJB_ELEM) && v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column_map values must be column names (strings)")));
		if (tok == WJB_KEY && format != DUET_FORMAT_JSON &&
			(v.val.string.len != 5 || strncmp(v.val.string.val, "value", 5) != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column_map for format jsonb or text takes only the key \"value\"")));
	}
}

/* Checks props; returns the names of those that hold secrets (text[] Datum, maybe empty). */
Datum
duet_kafka_check_properties(Jsonb *props, const char *brokers)
{
	ArrayBuildState *secrets = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char		errbuf[512];
	rd_kafka_conf_t *conf;

	if (props == NULL)
		return makeArrayResult(secrets, CurrentMemoryContext);
	if (!JB_ROOT_IS_OBJECT(props))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("properties must be a JSON object of librdkafka settings")));
	it = JsonbIteratorInit(&props->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		if (!duet_kafka_property_allowed(name, false) &&
			(!superuser() || !duet_kafka_property_allowed(name, true)))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("Kafka property \"%s\" cannot be set here", name),
					 errdetail(duet_kafka_property_allowed(name, true) ?
							   "Only superusers may set properties that reach the server's files or load code." :
							   "pg_duet sets this property itself.")));
		if (duet_kafka_property_secret(name))
			accumArrayResult(secrets, CStringGetTextDatum(name), false, TEXTOID, CurrentMemoryContext);
	}
	conf = duet_kafka_conf_new(brokers, props, errbuf, sizeof(errbuf));
	if (conf == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka property"),
				 errdetail("%s", errbuf)));
	rd_kafka_conf_destroy(conf);
	return makeArrayResult(secrets, CurrentMemoryContext);
}

void
duet_kafka_check_insert(Oid target, Oid owner)
{
	if (pg_class_aclcheck(target, owner, ACL_INSERT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(target, owner, ACL_INSERT, ACLMASK_ANY) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(target)),
				 errdetail("A consumer writes as its owner, who needs INSERT on the target.")));
}

/* A consumer catalog change, run as the bootstrap superuser: consumer admins cannot read it. */
typedef struct CatalogChange
{
	Oid			caller;
	const char *name;			/* the consumer */
	const char *sql;
	int			nargs;
	Oid		   *types;
	Datum	   *values;
	const char *nulls;
	bool		check_owner;	/* lock the consumer's row and check the caller may manage it */
} CatalogChange;

static void require_topic(const char *topic, const char *action);

static void
catalog_change(void *arg)
{
	CatalogChange *c = arg;
	Datum		values[FUNC_MAX_ARGS];
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	memcpy(values, c->values, sizeof(Datum) * c->nargs);
	if (c->check_owner)
		values[0] = Int32GetDatum(duet_kafka_consumer_for_update(c->name, c->caller));
	ret = SPI_execute_with_args(c->sql, c->nargs, c->types, values, c->nulls, false, 0);
	if (ret < 0)
		elog(ERROR, "could not change duet.kafka_consumers: %s", SPI_result_code_string(ret));
	if (!c->check_owner && SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("Kafka consumer \"%s\" already exists", c->name)));
	SPI_finish();
}

PG_FUNCTION_INFO_V1(duet_kafka_consume);

Datum
duet_kafka_consume(PG_FUNCTION_ARGS)
{
	char	   *name = duet_kafka_arg_text(fcinfo, 0, "name");
	char	   *topic = duet_kafka_arg_text(fcinfo, 1, "topic");
	Oid			target;
	char	   *brokers = duet_kafka_arg_text(fcinfo, 3, "brokers");
	char	   *format_name = duet_kafka_arg_text(fcinfo, 4, "format");
	int			batch_size = duet_kafka_arg_int(fcinfo, 5, "batch_size", 1, 1000000);
	int			flush_ms = duet_kafka_arg_int(fcinfo, 6, "flush_interval_ms", 1, 3600000);
	char	   *position = duet_kafka_check_position(duet_kafka_arg_text(fcinfo, 7, "start_offset"));
	int			parallelism = duet_kafka_arg_int(fcinfo, 8, "parallelism", 1, 32);
	Jsonb	   *column_map = PG_ARGISNULL(9) ? NULL : PG_GETARG_JSONB_P(9);
	Jsonb	   *props = PG_ARGISNULL(10) ? NULL : PG_GETARG_JSONB_P(10);
	DuetKafkaTarget t = {0};
	Datum		secret_names;
	bool		current;

	if (PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("target must not be null")));
	target = PG_GETARG_OID(2);
	if (name[0] == '\0' || strlen(name) >= NAMEDATALEN || !valid_chars(name, "_.-"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid Kafka consumer name \"%s\"", name),
				 errdetail("A name has 1 to %d letters, digits, '_', '.' or '-'.", NAMEDATALEN - 1)));
	if (topic[0] == '\0' || strlen(topic) > 249 || !valid_chars(topic, "_.-"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid Kafka topic name \"%s\"", topic),
				 errdetail("A topic has 1 to 249 letters, digits, '_', '.' or '-'.")));
	if (brokers[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("brokers must not be empty"),
				 errhint("Give the bootstrap servers as host:port[,host:port...].")));
	t.relid = target;
	t.owner = GetUserId();
	t.format = duet_kafka_format_parse(format_name);
	t.column_map = column_map;
	t.topic = topic;
	duet_kafka_check_column_map(column_map, t.format);
	/* upsert settings: only in the 0.2.0 SQL, whose function has the arguments */
	if (PG_NARGS() > 13)
		duet_kafka_upsert_parse(&t, duet_kafka_arg_text(fcinfo, 11, "mode"),
								PG_ARGISNULL(12) ? (Datum) 0 : PG_GETARG_DATUM(12),
								duet_kafka_arg_text(fcinfo, 13, "key_source"));
	secret_names = duet_kafka_check_properties(props, brokers);
	duet_kafka_check_insert(target, GetUserId());
	duet_kafka_target_check(&t);
	current = duet_sql_is_current();
	if (current)
		require_topic(topic, "consume");

	{
		Oid			types[16] = {TEXTOID, TEXTOID, OIDOID, TEXTOID, TEXTOID, INT4OID, INT4OID, TEXTOID,
		INT4OID, JSONBOID, JSONBOID, OIDOID, TEXTARRAYOID, TEXTOID, TEXTARRAYOID, TEXTOID};
		Datum		values[16] = {CStringGetTextDatum(name), CStringGetTextDatum(topic),
			ObjectIdGetDatum(target), CStringGetTextDatum(brokers), CStringGetTextDatum(format_name),
			Int32GetDatum(batch_size), Int32GetDatum(flush_ms), CStringGetTextDatum(position),
			Int32GetDatum(parallelism), JsonbPGetDatum(column_map), JsonbPGetDatum(props),
			ObjectIdGetDatum(GetUserId()), secret_names,
			CStringGetTextDatum(t.nkeys > 0 ? "upsert" : "append"),
			t.nkeys > 0 ? PG_GETARG_DATUM(12) : (Datum) 0,
		CStringGetTextDatum(t.keys_from_key ? "key" : "value")};
		char		nulls[16] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', column_map ? ' ' : 'n',
		props ? ' ' : 'n', ' ', ' ', ' ', t.nkeys > 0 ? ' ' : 'n', ' '};

		/*
		 * The secret properties ($13 names them) go to a table of their own, never dumped. SQL of
		 * 0.1.0 (before ALTER EXTENSION UPDATE) has neither that table nor topic grants: there
		 * the consumer is recorded as 0.1.0 did, and the update moves its secrets.
		 */
		CatalogChange c = {GetUserId(), name,
			current ?
			"WITH c AS (INSERT INTO duet.kafka_consumers (name, topic, target, brokers, format, batch_size, "
			"flush_interval_ms, start_position, parallelism, column_map, properties, owner, mode, "
			"key_columns, key_source) "
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 OPERATOR(pg_catalog.-) $13, $12, $14, $15, $16) "
			"ON CONFLICT (name) DO NOTHING RETURNING id), "
			"s AS (INSERT INTO duet.kafka_consumer_secrets (consumer_id, properties) "
			"SELECT c.id, p.secret FROM c, (SELECT pg_catalog.jsonb_object_agg(e.key, e.value) AS secret "
			"FROM pg_catalog.jsonb_each($11) e WHERE e.key OPERATOR(pg_catalog.=) ANY ($13)) p "
			"WHERE p.secret IS NOT NULL) "
			"SELECT c.id FROM c" :
			"INSERT INTO duet.kafka_consumers (name, topic, target, brokers, format, batch_size, "
			"flush_interval_ms, start_position, parallelism, column_map, properties, owner) "
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (name) DO NOTHING",
		current ? 16 : 12, types, values, nulls, false};

		duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, catalog_change, &c);
	}
	duet_workers_warn(psprintf("Kafka consumer \"%s\"", name));
	duet_kafka_pool_warn(psprintf("Kafka consumer \"%s\"", name));
	PG_RETURN_VOID();
}

/* Locks the consumer's row and checks the caller may manage it; returns its id. */
int32
duet_kafka_consumer_for_update(const char *name, Oid caller)
{
	bool		isnull;
	Oid			owner;
	int32		id;

	if (SPI_execute_with_args("SELECT id, owner::pg_catalog.oid FROM duet.kafka_consumers "
							  "WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)},
							  NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.kafka_consumers");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("Kafka consumer \"%s\" does not exist", name)));
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!superuser_arg(caller) && !has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of Kafka consumer \"%s\"", name)));
	return id;
}

/* Runs sql ($1 the consumer's id, $2 position) once the caller is known to manage the consumer. */
static void
consumer_update(const char *name, const char *sql, const char *position)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {(Datum) 0, position ? CStringGetTextDatum(position) : (Datum) 0};
	CatalogChange c = {GetUserId(), name, sql, 2, types, values, position ? NULL : " n", true};

	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, catalog_change, &c);
}

PG_FUNCTION_INFO_V1(duet_kafka_stop);
Datum
duet_kafka_stop(PG_FUNCTION_ARGS)
{
	consumer_update(duet_kafka_arg_text(fcinfo, 0, "name"),
					"UPDATE duet.kafka_consumers SET enabled = false WHERE id OPERATOR(pg_catalog.=) $1 AND $2 IS NULL", NULL);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(duet_kafka_start);
Datum
duet_kafka_start(PG_FUNCTION_ARGS)
{
	consumer_update(duet_kafka_arg_text(fcinfo, 0, "name"),
					"UPDATE duet.kafka_consumers SET enabled = true WHERE id OPERATOR(pg_catalog.=) $1 AND $2 IS NULL", NULL);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(duet_kafka_drop);
Datum
duet_kafka_drop(PG_FUNCTION_ARGS)
{
	consumer_update(duet_kafka_arg_text(fcinfo, 0, "name"),
					"DELETE FROM duet.kafka_consumers WHERE id OPERATOR(pg_catalog.=) $1 AND $2 IS NULL", NULL);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(duet_kafka_reset);

/* duet_kafka_reset, first step as the bootstrap superuser: lock the consumer, read how to reach it. */
typedef struct ResetTarget
{
	Oid			caller;
	const char *name;
	MemoryContext cxt;			/* where the results go */
	int32		id;				/* out */
	char	   *topic;
	char	   *brokers;
	Jsonb	   *properties;
} ResetTarget;

static void
reset_read(void *arg)
{
	ResetTarget *r = arg;
	bool		isnull;
	Datum		d;
	MemoryContext old;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	r->id = duet_kafka_consumer_for_update(r->name, r->caller);
	if (SPI_execute_with_args(duet_sql_is_current() ?
							  "SELECT c.topic, c.brokers, " DUET_KAFKA_PROPERTIES_SQL " FROM duet.kafka_consumers c "
							  "WHERE c.id OPERATOR(pg_catalog.=) $1" :
							  "SELECT c.topic, c.brokers, c.properties FROM duet.kafka_consumers c "
							  "WHERE c.id OPERATOR(pg_catalog.=) $1",
							  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(r->id)},
							  NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read duet.kafka_consumers");
	old = MemoryContextSwitchTo(r->cxt);
	r->topic = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	r->brokers = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	r->properties = isnull ? NULL : DatumGetJsonbPCopy(d);
	MemoryContextSwitchTo(old);
	SPI_finish();
}

/* Second step: the new generation and its concrete offsets, in the caller's transaction. */
typedef struct ResetWrite
{
	int32		id;
	const char *position;
	int			nparts;
	int32	   *parts;
	int64	   *offsets;
	int64	   *skip_ms;
} ResetWrite;

static void
reset_write(void *arg)
{
	ResetWrite *w = arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("UPDATE duet.kafka_consumers SET start_position = $2, "
							  "generation = generation OPERATOR(pg_catalog.+) 1 WHERE id OPERATOR(pg_catalog.=) $1",
							  2, (Oid[]) {INT4OID, TEXTOID},
							  (Datum[]) {Int32GetDatum(w->id), CStringGetTextDatum(w->position)},
							  NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_execute_with_args("DELETE FROM duet.kafka_offsets WHERE consumer_id OPERATOR(pg_catalog.=) $1",
							  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(w->id)},
							  NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not reset Kafka consumer %d", w->id);
	duet_kafka_store_positions(w->id, w->parts, w->offsets, w->skip_ms, w->nparts);
	SPI_finish();
}

/*
 * duet_kafka_reset(name, position): move the consumer to position. The position is resolved here,
 * against the brokers, into an offset per partition, stored in this transaction with a new
 * generation: the workers of the old generation end (a batch in flight either commits before, and
 * is then overridden, or sees the new generation and is discarded), the new ones start from these
 * offsets. So what is produced after the reset commits is always read, however long the hand-over
 * takes. The brokers must be reachable.
 */
Datum
duet_kafka_reset(PG_FUNCTION_ARGS)
{
	char	   *name = duet_kafka_arg_text(fcinfo, 0, "name");
	char	   *position = duet_kafka_check_position(duet_kafka_arg_text(fcinfo, 1, "start_at"));
	ResetTarget r = {GetUserId(), name, CurrentMemoryContext};
	ResetWrite	w = {0};
	char		errbuf[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *volatile rk = NULL;
	volatile bool ok = true;

	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, reset_read, &r);

	conf = duet_kafka_conf_new(r.brokers, r.properties, errbuf, sizeof(errbuf));
	if (conf == NULL ||
		!duet_kafka_conf_set(conf, "client.id", psprintf("pg_duet-%s-reset", name), errbuf, sizeof(errbuf)) ||
		(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, sizeof(errbuf))) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot create a Kafka client for consumer \"%s\"", name),
				 errdetail("%s", errbuf)));
	PG_TRY();
	{
		ok = duet_kafka_topic_partitions(rk, r.topic, RESET_TIMEOUT_MS, &w.parts, &w.nparts,
										 errbuf, sizeof(errbuf));
		if (ok)
		{
			w.offsets = palloc(sizeof(int64) * w.nparts);
			w.skip_ms = palloc(sizeof(int64) * w.nparts);
			ok = duet_kafka_resolve_positions(rk, r.topic, w.parts, w.nparts, position, RESET_TIMEOUT_MS,
											  w.offsets, w.skip_ms, errbuf, sizeof(errbuf));
		}
	}
	PG_FINALLY();
	{
		rd_kafka_destroy(rk);
	}
	PG_END_TRY();
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("cannot resolve position \"%s\" of Kafka consumer \"%s\"", position, name),
				 errdetail("%s", errbuf),
				 errhint("duet_kafka_reset asks the brokers for the offsets of the new position and stores them "
						 "with the reset; try again when they are reachable.")));

	w.id = r.id;
	w.position = position;
	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, reset_write, &w);
	PG_RETURN_VOID();
}

/* ---- topic grants ------------------------------------------------------------------------- */

/* Whether role may publish to or consume (action) topic: a superuser, or a grant says so. */
static bool
topic_allowed(Oid role, const char *topic, const char *action)
{
	if (superuser_arg(role))
		return true;

	/*
	 * The grants of every role are read, as the bootstrap superuser; what the caller learns is
	 * only this one answer. Joined to pg_roles: a grant of a dropped role matches no one.
	 */
	return duet_privileged_exists(BOOTSTRAP_SUPERUSERID,
								  "SELECT FROM duet.kafka_topic_grants g JOIN pg_catalog.pg_roles r "
								  "ON r.oid OPERATOR(pg_catalog.=) g.grantee::pg_catalog.oid "
								  "WHERE pg_catalog.pg_has_role($1, r.oid, 'USAGE') "
								  "AND CASE $3 WHEN 'publish' THEN g.may_publish ELSE g.may_consume END "
								  "AND (g.topic_pattern OPERATOR(pg_catalog.=) $2 OR "
								  "(pg_catalog.right(g.topic_pattern, 1) OPERATOR(pg_catalog.=) '*' AND "
								  "pg_catalog.starts_with($2, pg_catalog.rtrim(g.topic_pattern, '*'))))",
								  3, (Oid[]) {OIDOID, TEXTOID, TEXTOID},
								  (Datum[]) {ObjectIdGetDatum(role), CStringGetTextDatum(topic),
								  CStringGetTextDatum(action)});
}

static void
require_topic(const char *topic, const char *action)
{
	if (!topic_allowed(GetUserId(), topic, action))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s Kafka topic \"%s\"", action, topic),
				 errdetail("Topics are shared by every tenant; a superuser grants them in duet.kafka_topic_grants."),
				 errhint("For example: INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_%s) "
						 "VALUES ('%s', '%s', true);", action, topic, GetUserNameFromId(GetUserId(), false))));
}

PG_FUNCTION_INFO_V1(duet_kafka_topic_allowed);

/* duet.duet_kafka_topic_allowed(role, topic, action) → bool, for the rules' topic check. */
Datum
duet_kafka_topic_allowed(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(topic_allowed(PG_GETARG_OID(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
								 text_to_cstring(PG_GETARG_TEXT_PP(2))));
}

PG_FUNCTION_INFO_V1(duet_kafka_publish);

/*
 * duet_kafka_publish(topic, key, value, headers) → the outbox id. The caller's grant on the topic
 * is checked here, as the caller; the event is then written as the owner.
 */
Datum
duet_kafka_publish(PG_FUNCTION_ARGS)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[4];
	char		nulls[4];

	for (int i = 0; i < 4; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	if (!PG_ARGISNULL(0))
		require_topic(text_to_cstring(PG_GETARG_TEXT_PP(0)), "publish");
	PG_RETURN_INT64(duet_run_as_owner("SELECT duet.duet_kafka_outbox_insert($1, $2, $3, $4)",
									  4, types, values, nulls));
}
