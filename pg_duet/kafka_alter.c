/*
 * kafka_alter.c — duet_kafka_alter(name, ...): change a consumer's brokers, properties, batch
 * size, flush interval, format, target, column map or upsert keys, keeping its offsets.
 *
 * The change is checked as the caller, exactly as duet_kafka_consume checks a new consumer (the
 * owner must be able to INSERT into the target, properties a non-superuser may set, a column map
 * that fits the format, upsert keys backed by a unique index), then written with a new
 * generation in the caller's transaction. The offsets are not touched. The running workers see
 * the new generation when they next lock the consumer row to commit a batch (a batch in flight
 * holds that lock, so the alter waits for it to commit; a batch after it is discarded before it
 * writes anything) and exit; the supervisor ends idle ones and starts the new generation, which
 * resumes at the committed offsets with the new configuration. No message is lost or doubled.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "kafka.h"
#include "kafka_sql_int.h"
#include "privileged.h"

/* The consumer as stored, and as it will be. */
typedef struct AlterState
{
	Oid			caller;
	const char *name;
	MemoryContext cxt;
	int32		id;
	Oid			owner;
	Oid			target;
	char	   *brokers;
	char	   *format;
	int32		batch_size;
	int32		flush_ms;
	Jsonb	   *column_map;
	Jsonb	   *properties;		/* all of them, secret ones included */
	char	   *mode;
	Datum		key_columns;	/* text[] or 0 */
	char	   *key_source;
	Datum		secret_names;	/* text[]: which of properties go to the secrets table */
} AlterState;

static void
alter_read(void *arg)
{
	AlterState *a = arg;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	MemoryContext old;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	a->id = duet_kafka_consumer_for_update(a->name, a->caller);
	if (SPI_execute_with_args("SELECT c.owner::pg_catalog.oid, c.target::pg_catalog.oid, c.brokers, c.format, "
							  "c.batch_size, c.flush_interval_ms, c.column_map, " DUET_KAFKA_PROPERTIES_SQL ", "
							  "c.mode, c.key_columns, c.key_source "
							  "FROM duet.kafka_consumers c WHERE c.id OPERATOR(pg_catalog.=) $1",
							  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(a->id)},
							  NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read duet.kafka_consumers");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(a->cxt);
	a->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	a->target = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	a->brokers = SPI_getvalue(tup, desc, 3);
	a->format = SPI_getvalue(tup, desc, 4);
	a->batch_size = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	a->flush_ms = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	d = SPI_getbinval(tup, desc, 7, &isnull);
	a->column_map = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	a->properties = isnull ? NULL : DatumGetJsonbPCopy(d);
	a->mode = SPI_getvalue(tup, desc, 9);
	d = SPI_getbinval(tup, desc, 10, &isnull);
	a->key_columns = isnull ? (Datum) 0 : PointerGetDatum(DatumGetArrayTypePCopy(d));
	a->key_source = SPI_getvalue(tup, desc, 11);
	MemoryContextSwitchTo(old);
	SPI_finish();
}

static void
alter_write(void *arg)
{
	AlterState *a = arg;
	Datum		id = Int32GetDatum(a->id);
	Datum		props = a->properties ? JsonbPGetDatum(a->properties) : (Datum) 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("UPDATE duet.kafka_consumers SET target = $2::pg_catalog.regclass, brokers = $3, "
							  "format = $4, batch_size = $5, flush_interval_ms = $6, column_map = $7, "
							  "properties = CASE WHEN ($8 OPERATOR(pg_catalog.-) $12) OPERATOR(pg_catalog.<>) '{}'::pg_catalog.jsonb "
							  "THEN $8 OPERATOR(pg_catalog.-) $12 END, "
							  "mode = $9, key_columns = $10, key_source = $11, "
							  "generation = generation OPERATOR(pg_catalog.+) 1 "
							  "WHERE id OPERATOR(pg_catalog.=) $1",
							  12, (Oid[]) {INT4OID, OIDOID, TEXTOID, TEXTOID, INT4OID, INT4OID, JSONBOID,
							  JSONBOID, TEXTOID, TEXTARRAYOID, TEXTOID, TEXTARRAYOID},
							  (Datum[]) {id, ObjectIdGetDatum(a->target), CStringGetTextDatum(a->brokers),
							  CStringGetTextDatum(a->format), Int32GetDatum(a->batch_size),
							  Int32GetDatum(a->flush_ms), JsonbPGetDatum(a->column_map), props,
							  CStringGetTextDatum(a->mode), a->key_columns,
							  CStringGetTextDatum(a->key_source), a->secret_names},
							  (char[]) {' ', ' ', ' ', ' ', ' ', ' ', a->column_map ? ' ' : 'n',
							  props ? ' ' : 'n', ' ', a->key_columns ? ' ' : 'n', ' ', ' '},
							  false, 0) != SPI_OK_UPDATE || SPI_processed != 1 ||
		SPI_execute_with_args("DELETE FROM duet.kafka_consumer_secrets WHERE consumer_id OPERATOR(pg_catalog.=) $1",
							  1, (Oid[]) {INT4OID}, &id, NULL, false, 0) != SPI_OK_DELETE ||
		SPI_execute_with_args("INSERT INTO duet.kafka_consumer_secrets (consumer_id, properties) "
							  "SELECT $1, p.secret FROM (SELECT pg_catalog.jsonb_object_agg(e.key, e.value) AS secret "
							  "FROM pg_catalog.jsonb_each($2) e WHERE e.key OPERATOR(pg_catalog.=) ANY ($3)) p "
							  "WHERE p.secret IS NOT NULL",
							  3, (Oid[]) {INT4OID, JSONBOID, TEXTARRAYOID},
							  (Datum[]) {id, props, a->secret_names}, (char[]) {' ', props ? ' ' : 'n', ' '},
							  false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not change Kafka consumer %d", a->id);
	SPI_finish();
}

/*
 * The stored properties with the given ones merged in, a property given as JSON null removed;
 * *set: the ones given with a value, which the caller must be allowed to set.
 */
static Jsonb *
merge_properties(Jsonb *stored, Jsonb *given, Jsonb **set)
{
	Datum		merged;

	if (!JB_ROOT_IS_OBJECT(given) || JB_ROOT_IS_SCALAR(given))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("properties must be a JSON object of librdkafka settings")));
	*set = DatumGetJsonbP(DirectFunctionCall1(jsonb_strip_nulls, JsonbPGetDatum(given)));
	merged = stored ? DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(stored), JsonbPGetDatum(given))
		: JsonbPGetDatum(given);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_strip_nulls, merged));
}

/* Names of the secret properties of props, as text[]. */
static Datum
secret_names(Jsonb *props)
{
	ArrayBuildState *names = initArrayResult(TEXTOID, CurrentMemoryContext, false);

	if (props)
	{
		JsonbIterator *it = JsonbIteratorInit(&props->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *name;

			if (tok != WJB_KEY)
				continue;
			name = pnstrdup(v.val.string.val, v.val.string.len);
			if (duet_kafka_property_secret(name))
				accumArrayResult(names, CStringGetTextDatum(name), false, TEXTOID, CurrentMemoryContext);
		}
	}
	return makeArrayResult(names, CurrentMemoryContext);
}

PG_FUNCTION_INFO_V1(duet_kafka_alter);

/*
 * duet_kafka_alter(name, brokers, properties, batch_size, flush_interval_ms, format, target,
 * column_map, mode, key_columns, key_source): each argument not null replaces the setting;
 * properties are merged (a property given as null is removed); column_map 'null'::jsonb removes
 * the map.
 */
Datum
duet_kafka_alter(PG_FUNCTION_ARGS)
{
	AlterState	a = {GetUserId(), duet_kafka_arg_text(fcinfo, 0, "name"), CurrentMemoryContext};
	DuetKafkaTarget t = {0};
	Jsonb	   *set = NULL;
	char		errbuf[512];
	rd_kafka_conf_t *conf;

	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, alter_read, &a);

	if (!PG_ARGISNULL(1))
	{
		a.brokers = duet_kafka_arg_text(fcinfo, 1, "brokers");
		if (a.brokers[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("brokers must not be empty"),
					 errhint("Give the bootstrap servers as host:port[,host:port...].")));
	}
	if (!PG_ARGISNULL(2))
		a.properties = merge_properties(a.properties, PG_GETARG_JSONB_P(2), &set);
	if (!PG_ARGISNULL(3))
		a.batch_size = duet_kafka_arg_int(fcinfo, 3, "batch_size", 1, 1000000);
	if (!PG_ARGISNULL(4))
		a.flush_ms = duet_kafka_arg_int(fcinfo, 4, "flush_interval_ms", 1, 3600000);
	if (!PG_ARGISNULL(5))
		a.format = duet_kafka_arg_text(fcinfo, 5, "format");
	if (!PG_ARGISNULL(6))
		a.target = PG_GETARG_OID(6);
	if (!PG_ARGISNULL(7))
	{
		Jsonb	   *map = PG_GETARG_JSONB_P(7);

		a.column_map = (JB_ROOT_IS_SCALAR(map) && JB_ROOT_COUNT(map) == 1 &&
						DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(map),
														 DirectFunctionCall1(jsonb_in, CStringGetDatum("null"))))) ?
			NULL : map;
	}
	if (!PG_ARGISNULL(8))
		a.mode = duet_kafka_arg_text(fcinfo, 8, "mode");
	if (!PG_ARGISNULL(9))
		a.key_columns = PG_GETARG_DATUM(9);
	else if (!PG_ARGISNULL(8) && strcmp(a.mode, "append") == 0)
		a.key_columns = (Datum) 0;	/* back to append: the stored keys go */
	if (!PG_ARGISNULL(10))
		a.key_source = duet_kafka_arg_text(fcinfo, 10, "key_source");

	/* The same checks as a new consumer's, as the caller, on the consumer as it will be. */
	t.relid = a.target;
	t.owner = a.owner;
	t.format = duet_kafka_format_parse(a.format);
	t.column_map = a.column_map;
	duet_kafka_check_column_map(a.column_map, t.format);
	duet_kafka_upsert_parse(&t, a.mode, a.key_columns, a.key_source);
	if (t.nkeys == 0)
		a.key_columns = (Datum) 0;	/* append mode stores no keys (an empty array given) */
	if (set)
		(void) duet_kafka_check_properties(set, a.brokers);
	conf = duet_kafka_conf_new(a.brokers, a.properties, errbuf, sizeof(errbuf));
	if (conf == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka property"),
				 errdetail("%s", errbuf)));
	rd_kafka_conf_destroy(conf);
	duet_kafka_check_insert(a.target, a.owner);
	duet_kafka_target_check(&t);
	a.secret_names = secret_names(a.properties);

	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, alter_write, &a);
	PG_RETURN_VOID();
}
