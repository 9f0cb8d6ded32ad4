/*
 * kafka_batch.c — one gathered batch of a consumer worker, in one transaction, exactly once.
 *
 * The worker's poll loop (kafka_consumer.c) hands over the messages it gathered; here they are
 * filtered (redeliveries before the committed position, messages older than a reset's time),
 * loaded (kafka_ingest.c), their dead letters written, and the offsets of the partitions present
 * in the batch advanced — all in one transaction, so rows, dead letters and offsets commit
 * together or not at all.
 *
 * Per-batch cost is kept independent of the number of assigned partitions: only the partitions
 * the batch touches are locked (one SELECT … FOR UPDATE over an array of them) and updated (one
 * UPDATE … FROM unnest()), where every assigned partition used to take a locking SELECT per
 * batch, touched or not. Partitions absent from the batch are not locked: a reset or a second
 * worker that moves them is seen by the batch that next touches them (its stored offset no
 * longer matches), and the consumer row's FOR SHARE lock, taken first, orders every batch
 * against a committed reset, stop or drop.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "kafka_consumer.h"
#include "pg_duet.h"

/*
 * The dead letters of the batch, with what a replay needs to ingest them as they came: raw key
 * and value, the timestamp and the headers (JSON null when they were not valid UTF-8).
 */
static void
write_dead_letters(Consumer *c, rd_kafka_message_t **msgs, List *dead)
{
	static SPIPlanPtr plan;
	ListCell   *lc;

	if (dead == NIL)
		return;
	duet_spi_plan(&plan, "INSERT INTO duet.kafka_dead_letters (consumer_id, consumer, topic, partition, "
				  "\"offset\", key, value, error, detail, owner, tombstone, message_timestamp, headers) "
				  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
				  "CASE WHEN $12 OPERATOR(pg_catalog.>=) 0 THEN pg_catalog.to_timestamp($12 OPERATOR(pg_catalog./) 1000.0) END, "
				  "$13::pg_catalog.jsonb)",
				  13, (Oid[]) {INT4OID, TEXTOID, TEXTOID, INT4OID, INT8OID, BYTEAOID, BYTEAOID, TEXTOID,
				  TEXTOID, OIDOID, BOOLOID, INT8OID, TEXTOID});
	foreach(lc, dead)
	{
		DuetKafkaDeadLetter *dl = lfirst(lc);
		rd_kafka_message_t *m = msgs[dl->msgidx];
		bytea	   *key = NULL;
		bytea	   *value = NULL;
		char	   *headers = NULL;
		Datum		vals[13];
		char		nulls[13];

		CHECK_FOR_INTERRUPTS();
		memset(nulls, ' ', sizeof(nulls));
		if (m->payload)
		{
			value = palloc(VARHDRSZ + m->len);
			SET_VARSIZE(value, VARHDRSZ + m->len);
			if (m->len)
				memcpy(VARDATA(value), m->payload, m->len);
		}
		if (m->key)
		{
			key = palloc(VARHDRSZ + m->key_len);
			SET_VARSIZE(key, VARHDRSZ + m->key_len);
			memcpy(VARDATA(key), m->key, m->key_len);
		}
		if (duet_kafka_headers_json(m, &headers) != NULL)
			headers = "null";
		vals[0] = Int32GetDatum(c->args.consumer_id);
		vals[1] = CStringGetTextDatum(c->name);
		vals[2] = CStringGetTextDatum(c->topic);
		vals[3] = Int32GetDatum(m->partition);
		vals[4] = Int64GetDatum(m->offset);
		vals[5] = PointerGetDatum(key);
		nulls[5] = key ? ' ' : 'n';
		vals[6] = PointerGetDatum(value);
		nulls[6] = value ? ' ' : 'n';	/* a tombstone */
		vals[7] = CStringGetTextDatum(dl->error);
		vals[8] = dl->detail ? CStringGetTextDatum(dl->detail) : (Datum) 0;
		nulls[8] = dl->detail ? ' ' : 'n';
		vals[9] = ObjectIdGetDatum(c->target.owner);
		vals[10] = BoolGetDatum(m->payload == NULL);
		vals[11] = Int64GetDatum(rd_kafka_message_timestamp(m, NULL));
		vals[12] = headers ? CStringGetTextDatum(headers) : (Datum) 0;
		nulls[12] = headers ? ' ' : 'n';
		if (SPI_execute_plan(plan, vals, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not write a dead letter");
	}
}

/* The touched partitions [0, nt) of the assigned list, by index ti[]. */
typedef struct Touched
{
	int			nt;
	int		   *ti;				/* index into c->assigned */
} Touched;

static ArrayType *
int4_array(Datum *d, int n)
{
	return construct_array(d, n, INT4OID, sizeof(int32), true, TYPALIGN_INT);
}

/*
 * Locks the stored offsets of the touched partitions (one statement) and checks that each is
 * still where this worker's position says; false (batch abandoned) if one moved.
 */
static bool
lock_touched(Consumer *c, Touched *t)
{
	Datum	   *parts = palloc(sizeof(Datum) * t->nt);
	bool	   *seen;
	static SPIPlanPtr plan;

	for (int k = 0; k < t->nt; k++)
		parts[k] = Int32GetDatum(c->assigned->elems[t->ti[k]].partition);
	duet_spi_plan(&plan, "SELECT partition, next_offset FROM duet.kafka_offsets "
				  "WHERE consumer_id OPERATOR(pg_catalog.=) $1 "
				  "AND partition OPERATOR(pg_catalog.=) ANY ($2) FOR UPDATE",
				  2, (Oid[]) {INT4OID, INT4ARRAYOID});
	SPI_execute_plan(plan, (Datum[]) {Int32GetDatum(c->args.consumer_id),
					 PointerGetDatum(int4_array(parts, t->nt))}, NULL, false, 0);
	seen = palloc0(sizeof(bool) * t->nt);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int32		p = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
		int64		stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));

		for (int k = 0; k < t->nt; k++)
		{
			if (c->assigned->elems[t->ti[k]].partition != p)
				continue;
			if (stored != c->assigned->elems[t->ti[k]].offset)
				return duet_kafka_offset_moved(c, p);
			seen[k] = true;
		}
	}
	/* A touched partition without a stored offset: dropped and recreated meanwhile. */
	for (int k = 0; k < t->nt; k++)
		if (!seen[k])
			return duet_kafka_offset_moved(c, c->assigned->elems[t->ti[k]].partition);
	return true;
}

/* Advances the touched partitions' stored offsets, in one statement. */
static void
update_touched(Consumer *c, Touched *t, int64 *next, int64 *skip)
{
	Datum	   *parts = palloc(sizeof(Datum) * t->nt);
	Datum	   *offs = palloc(sizeof(Datum) * t->nt);
	Datum	   *keep = palloc(sizeof(Datum) * t->nt);
	static SPIPlanPtr plan;

	for (int k = 0; k < t->nt; k++)
	{
		parts[k] = Int32GetDatum(c->assigned->elems[t->ti[k]].partition);
		offs[k] = Int64GetDatum(next[t->ti[k]]);
		keep[k] = BoolGetDatum(skip[t->ti[k]] >= 0);
	}
	duet_spi_plan(&plan, "UPDATE duet.kafka_offsets o SET next_offset = u.next_offset, "
				  "updated_at = pg_catalog.now(), "
				  "skip_before = CASE WHEN u.keep_skip THEN o.skip_before END "
				  "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) "
				  "AS u(partition, next_offset, keep_skip) "
				  "WHERE o.consumer_id OPERATOR(pg_catalog.=) $1 "
				  "AND o.partition OPERATOR(pg_catalog.=) u.partition",
				  4, (Oid[]) {INT4OID, INT4ARRAYOID, INT8ARRAYOID, BOOLARRAYOID});
	if (SPI_execute_plan(plan, (Datum[]) {Int32GetDatum(c->args.consumer_id),
						 PointerGetDatum(int4_array(parts, t->nt)),
						 PointerGetDatum(construct_array(offs, t->nt, INT8OID, sizeof(int64),
														 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
						 PointerGetDatum(construct_array(keep, t->nt, BOOLOID, 1, true, TYPALIGN_CHAR))},
						 NULL, false, 0) != SPI_OK_UPDATE || SPI_processed != (uint64) t->nt)
		elog(ERROR, "could not advance the Kafka offsets of %d partitions", t->nt);
}

/*
 * One batch in one transaction: check we still own the offsets of the partitions in it, load
 * rows, write dead letters, advance those offsets. Returns false when this worker must stop
 * (consumer changed). Runs in batchcxt, reset by the caller after each batch.
 */
bool
duet_kafka_process_batch(Consumer *c, rd_kafka_message_t **msgs, int n, MemoryContext batchcxt)
{
	int			np = c->assigned->cnt;
	int64	   *next = palloc(sizeof(int64) * np);
	int64	   *skip = palloc(sizeof(int64) * np);
	rd_kafka_message_t **keep = palloc(sizeof(rd_kafka_message_t *) * n);
	int			nkeep = 0;
	int32		maxpart = 0;
	int		   *index_of;
	Touched		t = {0, palloc(sizeof(int) * Max(np, 1))};
	List	   *dead = NIL;
	uint64		rows;
	uint64		bytes = 0;
	TimestampTz start = GetCurrentTimestamp();

	/* partition number → index into the assigned list (-1: not ours) */
	for (int i = 0; i < np; i++)
	{
		next[i] = c->assigned->elems[i].offset;
		skip[i] = c->skip_before_ms[i];
		maxpart = Max(maxpart, c->assigned->elems[i].partition);
	}
	index_of = palloc(sizeof(int) * (maxpart + 1));
	memset(index_of, -1, sizeof(int) * (maxpart + 1));
	for (int i = 0; i < np; i++)
		index_of[c->assigned->elems[i].partition] = i;

	/* Skip anything before the committed position (a redelivery after a seek). */
	for (int i = 0; i < n; i++)
	{
		int32		p = msgs[i]->partition;
		int			pi = (p >= 0 && p <= maxpart) ? index_of[p] : -1;

		if (pi < 0 || msgs[i]->offset < next[pi])
			continue;
		if (next[pi] == c->assigned->elems[pi].offset)
			t.ti[t.nt++] = pi;	/* first message of this partition in the batch */
		next[pi] = msgs[i]->offset + 1;
		if (skip[pi] >= 0)
		{
			/* Reset to a timestamp: pass over older messages, up to the first newer one. */
			if (rd_kafka_message_timestamp(msgs[i], NULL) >= 0 &&
				rd_kafka_message_timestamp(msgs[i], NULL) < skip[pi])
				continue;
			skip[pi] = -1;
		}
		bytes += msgs[i]->len;
		keep[nkeep++] = msgs[i];
	}
	if (t.nt == 0)
		return true;			/* only redeliveries: nothing to write */

	/* The target's code (triggers, defaults) runs now: no session state of another consumer. */
	duet_kafka_pool_session_for(c);
	pgstat_report_activity(STATE_RUNNING, psprintf("ingesting %d messages of consumer %s from %s",
												   nkeep, c->name, c->topic));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	MemoryContextSwitchTo(batchcxt);

	/* A committed stop, drop, reset or change ends this worker before it writes anything. */
	if (!duet_kafka_generation_current(c))
		return duet_kafka_batch_abandon();
	if (!lock_touched(c, &t))
		return false;

	/* SPI calls leave SPI's own context current; batch data must outlive SPI_finish. */
	MemoryContextSwitchTo(batchcxt);
	rows = nkeep > 0 ? duet_kafka_ingest(&c->target, keep, nkeep, &dead) : 0;
	write_dead_letters(c, keep, dead);
	update_touched(c, &t, next, skip);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(batchcxt);

	/* Committed: only now does the in-memory position move. */
	for (int i = 0; i < np; i++)
	{
		c->assigned->elems[i].offset = next[i];
		c->skip_before_ms[i] = skip[i];
	}
	duet_kafka_slot_batch(c->slot, rows, bytes, list_length(dead),
						  (double) (GetCurrentTimestamp() - start) / 1000000.0);
	if (dead != NIL)
	{
		DuetKafkaDeadLetter *last = llast(dead);

		duet_kafka_slot_error(c->slot, psprintf("offset %lld: %s",
												(long long) keep[last->msgidx]->offset, last->error));
	}
	pgstat_report_stat(false);
	return true;
}
