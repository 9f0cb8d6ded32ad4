/*
 * kafka_replay.c — duet_kafka_replay(name, ids, partition, from_offset, to_offset): a consumer's
 * dead letters through the ingest path again, once the target (or the consumer, with
 * duet_kafka_alter) is fixed.
 *
 * Exactly once, in the caller's transaction: the consumer's row is locked (FOR UPDATE: its
 * workers' batches wait, as for any change), the selected dead letters too; they are ingested in
 * offset order, in chunks of the consumer's batch size, by the same code as a batch from Kafka
 * (kafka_ingest.c: COPY as the owner, bad rows isolated; upsert mode applies). A message that
 * lands leaves duet.kafka_dead_letters in the same transaction; one that fails again stays, with
 * the new error and detail. A second replay running at the same time waits for the first and
 * finds the rows it took gone.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "kafka.h"
#include "kafka_sql_int.h"
#include "privileged.h"

/* Step 1, as the bootstrap superuser: the consumer and the dead letters selected, locked. */
typedef struct ReplayRead
{
	Oid			caller;
	const char *name;
	Datum		ids;			/* bigint[] or 0 */
	Datum		partition;		/* int4 or 0 */
	Datum		from_offset;	/* int8 or 0 */
	Datum		to_offset;		/* int8 or 0 */
	bool		has_partition;
	bool		has_from;
	bool		has_to;
	MemoryContext cxt;
	DuetKafkaTarget target;		/* out */
	int			batch_size;
	int			n;
	int64	   *dl_ids;
	DuetKafkaReplayed *msgs;
} ReplayRead;

static void
replay_read(void *arg)
{
	ReplayRead *r = arg;
	int32		id;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	MemoryContext old;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	id = duet_kafka_consumer_for_update(r->name, r->caller);
	if (SPI_execute_with_args("SELECT c.target::pg_catalog.oid, c.owner::pg_catalog.oid, c.format, c.column_map, "
							  "c.topic, c.batch_size FROM duet.kafka_consumers c WHERE c.id OPERATOR(pg_catalog.=) $1",
							  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(id)}, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read duet.kafka_consumers");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(r->cxt);
	r->target.relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	r->target.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	r->target.format = duet_kafka_format_parse(SPI_getvalue(tup, desc, 3));
	{
		Datum		map = SPI_getbinval(tup, desc, 4, &isnull);

		r->target.column_map = isnull ? NULL : DatumGetJsonbPCopy(map);
	}
	r->target.topic = SPI_getvalue(tup, desc, 5);
	r->batch_size = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	duet_kafka_upsert_load(&r->target, id);
	MemoryContextSwitchTo(old);

	if (SPI_execute_with_args("SELECT d.id, d.partition, d.\"offset\", d.key, d.value, "
							  "(pg_catalog.date_part('epoch', d.message_timestamp) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, "
							  "d.headers::pg_catalog.text, "
							  "pg_catalog.jsonb_typeof(d.headers) OPERATOR(pg_catalog.=) 'null' "
							  "FROM duet.kafka_dead_letters d WHERE d.consumer_id OPERATOR(pg_catalog.=) $1 "
							  "AND ($2 IS NULL OR d.id OPERATOR(pg_catalog.=) ANY ($2)) "
							  "AND ($3 IS NULL OR d.partition OPERATOR(pg_catalog.=) $3) "
							  "AND ($4 IS NULL OR d.\"offset\" OPERATOR(pg_catalog.>=) $4) "
							  "AND ($5 IS NULL OR d.\"offset\" OPERATOR(pg_catalog.<) $5) "
							  "ORDER BY d.partition, d.\"offset\", d.id FOR UPDATE OF d",
							  5, (Oid[]) {INT4OID, INT8ARRAYOID, INT4OID, INT8OID, INT8OID},
							  (Datum[]) {Int32GetDatum(id), r->ids, r->partition, r->from_offset, r->to_offset},
							  (char[]) {' ', r->ids ? ' ' : 'n', r->has_partition ? ' ' : 'n',
							  r->has_from ? ' ' : 'n', r->has_to ? ' ' : 'n'},
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.kafka_dead_letters");
	old = MemoryContextSwitchTo(r->cxt);
	r->n = (int) SPI_processed;
	r->dl_ids = palloc(sizeof(int64) * Max(r->n, 1));
	r->msgs = palloc0(sizeof(DuetKafkaReplayed) * Max(r->n, 1));
	for (int i = 0; i < r->n; i++)
	{
		DuetKafkaReplayed *m = &r->msgs[i];
		Datum		d;

		tup = SPI_tuptable->vals[i];
		desc = SPI_tuptable->tupdesc;
		r->dl_ids[i] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		m->m._private = (void *) &duet_kafka_replayed_marker;
		m->m.partition = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		m->m.offset = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		d = SPI_getbinval(tup, desc, 4, &isnull);
		if (!isnull)
		{
			bytea	   *key = DatumGetByteaPCopy(d);

			m->m.key = VARDATA(key);
			m->m.key_len = VARSIZE(key) - VARHDRSZ;
		}
		d = SPI_getbinval(tup, desc, 5, &isnull);
		if (!isnull)
		{
			bytea	   *value = DatumGetByteaPCopy(d);

			m->m.payload = VARDATA(value);
			m->m.len = VARSIZE(value) - VARHDRSZ;
		}
		d = SPI_getbinval(tup, desc, 6, &isnull);
		m->timestamp_ms = isnull ? -1 : DatumGetInt64(d);
		d = SPI_getbinval(tup, desc, 8, &isnull);
		m->headers_invalid = !isnull && DatumGetBool(d);
		if (!m->headers_invalid)
			m->headers = SPI_getvalue(tup, desc, 7);
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
}

/* Step 3, as the bootstrap superuser: the landed dead letters go, the failed ones get their new error. */
typedef struct ReplayWrite
{
	int			nlanded;
	Datum	   *landed;			/* int8 ids */
	List	   *failed;			/* DuetKafkaDeadLetter, msgidx into ids */
	int64	   *ids;
} ReplayWrite;

static void
replay_write(void *arg)
{
	ReplayWrite *w = arg;
	ListCell   *lc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (w->nlanded > 0 &&
		SPI_execute_with_args("DELETE FROM duet.kafka_dead_letters WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
							  1, (Oid[]) {INT8ARRAYOID},
							  (Datum[]) {PointerGetDatum(construct_array(w->landed, w->nlanded, INT8OID, sizeof(int64),
																		 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE))},
							  NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete the replayed dead letters");
	foreach(lc, w->failed)
	{
		DuetKafkaDeadLetter *dl = lfirst(lc);

		if (SPI_execute_with_args("UPDATE duet.kafka_dead_letters SET error = $2, detail = $3, "
								  "failed_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) $1",
								  3, (Oid[]) {INT8OID, TEXTOID, TEXTOID},
								  (Datum[]) {Int64GetDatum(w->ids[dl->msgidx]), CStringGetTextDatum(dl->error),
								  dl->detail ? CStringGetTextDatum(dl->detail) : (Datum) 0},
								  (char[]) {' ', ' ', dl->detail ? ' ' : 'n'}, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update a dead letter");
	}
	SPI_finish();
}

PG_FUNCTION_INFO_V1(duet_kafka_replay);

Datum
duet_kafka_replay(PG_FUNCTION_ARGS)
{
	ReplayRead	r = {GetUserId(), duet_kafka_arg_text(fcinfo, 0, "name")};
	int64		replayed = 0;
	int64		failed = 0;
	TupleDesc	desc;
	Datum		result[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "duet_kafka_replay must return a record");
	r.ids = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	r.has_partition = !PG_ARGISNULL(2);
	r.partition = r.has_partition ? PG_GETARG_DATUM(2) : (Datum) 0;
	r.has_from = !PG_ARGISNULL(3);
	r.from_offset = r.has_from ? PG_GETARG_DATUM(3) : (Datum) 0;
	r.has_to = !PG_ARGISNULL(4);
	r.to_offset = r.has_to ? PG_GETARG_DATUM(4) : (Datum) 0;
	r.cxt = CurrentMemoryContext;
	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, replay_read, &r);

	/* SPI for the staging table of upsert mode, created as the caller */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int s = 0; s < r.n; s += r.batch_size)
	{
		int			n = Min(r.batch_size, r.n - s);
		rd_kafka_message_t **msgs = palloc(sizeof(rd_kafka_message_t *) * n);
		bool	   *dead_at = palloc0(sizeof(bool) * n);
		List	   *dead = NIL;
		ListCell   *lc;
		ReplayWrite w = {0, palloc(sizeof(Datum) * n), NIL, r.dl_ids + s};

		CHECK_FOR_INTERRUPTS();
		for (int i = 0; i < n; i++)
			msgs[i] = &r.msgs[s + i].m;
		(void) duet_kafka_ingest(&r.target, msgs, n, &dead);
		foreach(lc, dead)
			dead_at[((DuetKafkaDeadLetter *) lfirst(lc))->msgidx] = true;
		for (int i = 0; i < n; i++)
			if (!dead_at[i])
				w.landed[w.nlanded++] = Int64GetDatum(r.dl_ids[s + i]);
		w.failed = dead;
		duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, replay_write, &w);
		replayed += w.nlanded;
		failed += list_length(dead);
	}
	SPI_finish();

	result[0] = Int64GetDatum(replayed);
	result[1] = Int64GetDatum(failed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, nulls)));
}
