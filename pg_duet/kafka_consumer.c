/*
 * kafka_consumer.c — one consumer partition group served by a pool worker, exactly once.
 *
 * A pool worker (kafka_pool.c) serves many groups in turns; each has its own librdkafka handle
 * (kafka_handle.c) and its own transaction per batch, and nothing here blocks for long: a turn
 * takes what the handle's queue holds (up to batch_size) and commits it when the batch is full,
 * the queue is drained, or flush_interval passed since its first message. While the group waits
 * for something (its slot, the broker, an error backoff) the others are served.
 *
 * Offsets live in duet.kafka_offsets, not in Kafka: each batch's rows, its dead letters and the
 * partitions' next offsets commit in one transaction, and an opened group assigns its partitions
 * at the stored offsets (assign(), no consumer group: nothing to rebalance). A batch first locks
 * the consumer row (FOR SHARE) and checks the generation and the stored offsets it read from, so
 * a reset, stop or drop committed meanwhile — or a second reader — can never commit a row twice.
 * Errors that are not about a message (permissions, a dropped table, lost broker) abort the
 * batch; the group reports them in duet.kafka_status, waits, seeks back to its last committed
 * offsets and tries again.
 *
 * Never a silent jump: auto.offset.reset is "error", so a stored offset the broker no longer has
 * (retention deleted it before it was read) stops that partition with an error instead of
 * librdkafka's default jump to the end. The group then resumes at the low watermark and records
 * the skipped range in duet.kafka_gaps, with a WARNING, in the same transaction as the new offset.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "pg_duet.h"
#include "worker.h"
#include "kafka_consumer.h"

#define ERROR_BACKOFF_MS	5000
#define RETRY_MS			1000	/* broker unreachable while opening */
#define BUSY_RETRY_MS		50		/* the previous reader of the group has not let go yet */
#define METADATA_EVERY_MS	30000	/* new partitions of the topic are picked up this often */
#define OPEN_TIMEOUT_MS		2000	/* one broker request while opening: others wait meanwhile */

/* Reads the consumer's row; false when it is gone, stopped or of another generation. */
static bool
load_consumer(Consumer *c)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(c->args.consumer_id)};
	MemoryContext oldcxt;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	bool		current;
	Datum		d;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute_with_args("SELECT c.name, c.topic, c.target::pg_catalog.oid, c.brokers, c.format, "
							  "c.batch_size, c.flush_interval_ms, c.start_position, c.parallelism, c.column_map, "
							  DUET_KAFKA_PROPERTIES_SQL ", c.owner::pg_catalog.oid, c.generation, c.enabled "
							  "FROM duet.kafka_consumers c WHERE c.id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.kafka_consumers");
	tup = SPI_processed == 1 ? SPI_tuptable->vals[0] : NULL;
	desc = SPI_tuptable->tupdesc;
	current = tup != NULL &&
		DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull)) == c->args.generation &&
		DatumGetBool(SPI_getbinval(tup, desc, 14, &isnull));
	if (current)
	{
		oldcxt = MemoryContextSwitchTo(c->cxt);
		c->name = SPI_getvalue(tup, desc, 1);
		c->topic = SPI_getvalue(tup, desc, 2);
		c->target.relid = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		c->brokers = SPI_getvalue(tup, desc, 4);
		c->target.format = duet_kafka_format_parse(SPI_getvalue(tup, desc, 5));
		c->batch_size = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		c->flush_ms = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		c->start_position = SPI_getvalue(tup, desc, 8);
		c->parallelism = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
		d = SPI_getbinval(tup, desc, 10, &isnull);
		c->target.column_map = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SPI_getbinval(tup, desc, 11, &isnull);
		c->properties = isnull ? NULL : DatumGetJsonbPCopy(d);
		c->target.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull));
		c->target.topic = c->topic;
		duet_kafka_upsert_load(&c->target, c->args.consumer_id);	/* mode and key columns */
		c->msgs = palloc(sizeof(rd_kafka_message_t *) * c->batch_size);
		MemoryContextSwitchTo(oldcxt);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return current;
}

/*
 * The topic's partitions in this group, one metadata request; false (status says why) when the
 * broker did not answer.
 */
static bool
discover_partitions(Consumer *c, rd_kafka_topic_partition_list_t **parts)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->lookup_rk, c->topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(c->lookup_rk, 0, rkt, &md, OPEN_TIMEOUT_MS);
	bool		ok = false;

	if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0 &&
		md->topics[0].partition_cnt > 0)
	{
		*parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
		for (int i = 0; i < md->topics[0].partition_cnt; i++)
		{
			int32		p = md->topics[0].partitions[i].id;

			if (p % c->parallelism == c->args.group)
				rd_kafka_topic_partition_list_add(*parts, c->topic, p);
		}
		ok = true;
	}
	else
	{
		duet_kafka_slot_error(c->slot, psprintf("cannot read metadata of topic \"%s\": %s", c->topic,
												err ? rd_kafka_err2str(err) : rd_kafka_err2str(md->topics[0].err)));
		duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
	}
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	c->metadata_at = GetCurrentTimestamp();
	return ok;
}

/*
 * Stored next offsets of parts; partitions without one (a new consumer, a new partition) start
 * at position, resolved now, all in one lookup, and stored right away. (A reset stores its
 * offsets itself.) False when the broker did not answer: nothing is stored, all is tried again.
 */
bool
duet_kafka_consumer_resolve(Consumer *c, rd_kafka_topic_partition_list_t *parts, const char *position)
{
	bool		ok = true;
	int64	   *skip = MemoryContextAlloc(c->cxt, sizeof(int64) * Max(parts->cnt, 1));
	Datum	   *ids = palloc(sizeof(Datum) * Max(parts->cnt, 1));
	int32	   *missing = palloc(sizeof(int32) * Max(parts->cnt, 1));
	int		   *missing_at = palloc(sizeof(int) * Max(parts->cnt, 1));
	int			nmissing = 0;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	for (int i = 0; i < parts->cnt; i++)
	{
		ids[i] = Int32GetDatum(parts->elems[i].partition);
		parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
	}
	SPI_execute_with_args("SELECT partition, next_offset, (pg_catalog.date_part('epoch', skip_before) "
						  "OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 FROM duet.kafka_offsets "
						  "WHERE consumer_id OPERATOR(pg_catalog.=) $1 AND partition OPERATOR(pg_catalog.=) ANY ($2)",
						  2, (Oid[]) {INT4OID, INT4ARRAYOID},
						  (Datum[]) {Int32GetDatum(c->args.consumer_id),
						  PointerGetDatum(construct_array(ids, parts->cnt, INT4OID, 4, true, TYPALIGN_INT))},
						  NULL, true, 0);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		rd_kafka_topic_partition_t *tp =
			rd_kafka_topic_partition_list_find(parts, c->topic, DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull)));
		int			i = tp - parts->elems;
		Datum		sk;

		tp->offset = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		sk = SPI_getbinval(tup, desc, 3, &isnull);
		skip[i] = isnull ? -1 : DatumGetInt64(sk);
	}
	for (int i = 0; i < parts->cnt; i++)
		if (parts->elems[i].offset == RD_KAFKA_OFFSET_INVALID)
		{
			missing_at[nmissing] = i;
			missing[nmissing++] = parts->elems[i].partition;
		}
	if (nmissing > 0)
	{
		int64	   *offsets = palloc(sizeof(int64) * nmissing);
		int64	   *skip_ms = palloc(sizeof(int64) * nmissing);
		char		errbuf[DUET_KAFKA_ERRLEN];

		ok = duet_kafka_resolve_positions(c->lookup_rk, c->topic, missing, nmissing, position,
										  OPEN_TIMEOUT_MS, offsets, skip_ms, errbuf, sizeof(errbuf));
		if (ok)
		{
			duet_kafka_store_positions(c->args.consumer_id, missing, offsets, skip_ms, nmissing);
			for (int k = 0; k < nmissing; k++)
			{
				parts->elems[missing_at[k]].offset = offsets[k];
				skip[missing_at[k]] = skip_ms[k];
			}
		}
		else
		{
			duet_kafka_slot_error(c->slot, errbuf);
			duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (!ok)
		return false;
	if (c->assigned)
		rd_kafka_topic_partition_list_destroy(c->assigned);
	c->assigned = parts;
	c->skip_before_ms = skip;
	c->out_of_range = MemoryContextAllocZero(c->cxt, sizeof(bool) * Max(parts->cnt, 1));
	c->any_out_of_range = false;
	return true;
}

/*
 * Every assigned partition (again) at its committed offset: after a failed batch, a gap. In
 * consumer group mode the group's assignment is replaced by the same partitions at those offsets
 * (rd_kafka_assign): a seek cannot restart a partition that librdkafka stopped on an offset out of
 * range, and the partition would sit still after its gap was recorded.
 */
void
duet_kafka_consumer_assign(Consumer *c)
{
	rd_kafka_resp_err_t err;

	if (!c->group_mode)
	{
		duet_kafka_client_assign(c);	/* only its partitions: the client is shared */
		return;
	}
	err = rd_kafka_assign(c->rk, c->assigned);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("cannot assign Kafka partitions: %s", rd_kafka_err2str(err))));
}

static rd_kafka_topic_partition_t *
assigned_partition(Consumer *c, int32 partition)
{
	for (int i = 0; i < c->assigned->cnt; i++)
		if (c->assigned->elems[i].partition == partition)
			return &c->assigned->elems[i];
	return NULL;
}

/*
 * Whether this worker's generation is still the consumer's and it is enabled, with the row
 * locked FOR SHARE (SPI connected, in the transaction that writes): a committed stop, drop,
 * reset or change ends the worker before it writes anything.
 */
bool
duet_kafka_generation_current(Consumer *c)
{
	static SPIPlanPtr plan;
	bool		isnull;

	duet_spi_plan(&plan, "SELECT generation OPERATOR(pg_catalog.=) $2 AND enabled FROM duet.kafka_consumers "
				  "WHERE id OPERATOR(pg_catalog.=) $1 FOR SHARE", 2, (Oid[]) {INT4OID, INT4OID});
	SPI_execute_plan(plan, (Datum[]) {Int32GetDatum(c->args.consumer_id), Int32GetDatum(c->args.generation)},
					 NULL, false, 1);
	return SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Ends the transaction of a batch that must not be written (SPI connected); returns false. */
bool
duet_kafka_batch_abandon(void)
{
	SPI_finish();
	PopActiveSnapshot();
	AbortCurrentTransaction();
	return false;
}

/* Locks the partition's committed offset (FOR UPDATE); false when it has none. SPI connected. */
bool
duet_kafka_offset_lock(Consumer *c, int32 partition, int64 *stored)
{
	bool		isnull;

	SPI_execute_with_args("SELECT next_offset FROM duet.kafka_offsets "
						  "WHERE consumer_id OPERATOR(pg_catalog.=) $1 AND partition OPERATOR(pg_catalog.=) $2 FOR UPDATE",
						  2, (Oid[]) {INT4OID, INT4OID},
						  (Datum[]) {Int32GetDatum(c->args.consumer_id), Int32GetDatum(partition)},
						  NULL, false, 1);
	if (SPI_processed != 1)
		return false;
	*stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return true;
}

/* Another worker moved the partition's offset: abandon the batch, say so; returns false. */
bool
duet_kafka_offset_moved(Consumer *c, int32 partition)
{
	(void) duet_kafka_batch_abandon();
	ereport(LOG,
			(errmsg("Kafka consumer \"%s\": stored offset of partition %d moved; restarting",
					c->name, partition)));
	return false;
}

Consumer *
duet_kafka_consumer_new(const DuetKafkaWorkerArgs *unit, int32 pool_worker)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "duet kafka consumer", ALLOCSET_SMALL_SIZES);
	Consumer   *c = MemoryContextAllocZero(cxt, sizeof(Consumer));

	c->cxt = cxt;
	c->args = *unit;
	c->pool_worker = pool_worker;
	c->group_mode = duet_kafka_group_mode;
	c->event_fd[0] = c->event_fd[1] = -1;
	c->phase = CONSUMER_OPENING;
	return c;
}

void
duet_kafka_consumer_drop_messages(Consumer *c)
{
	for (int i = 0; i < c->nmsgs; i++)
		duet_kafka_message_release(c->msgs[i]);
	c->nmsgs = 0;
}

void
duet_kafka_consumer_close(Consumer *c)
{
	duet_kafka_consumer_drop_messages(c);
	duet_kafka_handle_destroy(c);
	if (c->assigned)
		rd_kafka_topic_partition_list_destroy(c->assigned);
	if (c->slot)
		duet_kafka_slot_release(c->slot);
	MemoryContextDelete(c->cxt);
}

/* One step of opening; the group is CONSUMER_RUNNING when all are done. */
static void
open_step(Consumer *c)
{
	TimestampTz now = GetCurrentTimestamp();
	rd_kafka_topic_partition_list_t *parts;

	if (c->name == NULL && !load_consumer(c))
	{
		c->phase = CONSUMER_DONE;	/* dropped, stopped or reset before we got to it */
		return;
	}
	if (c->slot == NULL)
	{
		bool		busy;

		c->slot = duet_kafka_slot_claim(c->args.dboid, c->args.consumer_id, c->args.group, c->name,
										c->pool_worker, &busy);
		if (c->slot == NULL && !busy)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many running Kafka workers"),
					 errdetail("At most %d consumer partition groups are served at once.", DUET_KAFKA_MAX_SLOTS)));
		if (c->slot == NULL)
		{
			/* Its previous reader (another pool worker, or the generation before a reset) ends soon. */
			c->not_before = TimestampTzPlusMilliseconds(now, BUSY_RETRY_MS);
			return;
		}
	}
	if (c->rk == NULL)
	{
		char		errstr[512];
		bool		transient;

		if (!duet_kafka_handle_new(c, errstr, sizeof(errstr), &transient))
		{
			duet_kafka_slot_error(c->slot, errstr);
			duet_kafka_slot_set_state(c->slot, DUET_KAFKA_ERROR);
			ereport(LOG, (errmsg("Kafka consumer \"%s\": %s", c->name, errstr)));
			/* A bad configuration does not heal: stay visible in the status until changed. */
			if (transient)
				c->not_before = TimestampTzPlusMilliseconds(now, ERROR_BACKOFF_MS);
			else
				c->phase = CONSUMER_BROKEN;
			return;
		}
	}
	if (c->group_mode)
	{
		duet_kafka_group_join(c);	/* partitions come through the rebalance callback */
		duet_kafka_slot_set_state(c->slot, DUET_KAFKA_IDLE);
		c->phase = CONSUMER_RUNNING;
		return;
	}
	if (!discover_partitions(c, &parts))
	{
		c->not_before = TimestampTzPlusMilliseconds(now, RETRY_MS);
		return;
	}
	if (!duet_kafka_consumer_resolve(c, parts, c->start_position))
	{
		rd_kafka_topic_partition_list_destroy(parts);
		c->not_before = TimestampTzPlusMilliseconds(now, RETRY_MS);
		return;
	}
	duet_kafka_consumer_assign(c);
	duet_kafka_slot_set_state(c->slot, DUET_KAFKA_IDLE);
	c->phase = CONSUMER_RUNNING;
}

/*
 * New partitions of the topic (metadata looked up every METADATA_EVERY_MS, between batches):
 * added to the assignment without a restart. They start at 'earliest' whatever the consumer's
 * start position: every message of a partition created after the consumer started is new to it.
 */
static void
refresh_partitions(Consumer *c)
{
	rd_kafka_topic_partition_list_t *parts;

	if (!discover_partitions(c, &parts))
		return;
	if (parts->cnt <= c->assigned->cnt)
	{
		rd_kafka_topic_partition_list_destroy(parts);
		return;
	}
	if (!duet_kafka_consumer_resolve(c, parts, "earliest"))
	{
		rd_kafka_topic_partition_list_destroy(parts);
		return;
	}
	ereport(LOG,
			(errmsg("Kafka consumer \"%s\" group %d now reads %d partitions of topic \"%s\"",
					c->name, c->args.group, c->assigned->cnt, c->topic)));
	duet_kafka_consumer_assign(c);
}

/*
 * Takes what the queue holds, up to batch_size, without waiting (one call for the whole take;
 * one clock reading per batch); an offset out of range flags its partition and ends the take.
 * True when the batch is to be committed now.
 */
static bool
gather(Consumer *c)
{
	bool		out_of_range = false;

	if (!c->group_mode && c->lane == NULL)
		duet_kafka_consumer_assign(c);	/* its last placing failed */
	while (c->nmsgs < c->batch_size && !out_of_range)
	{
		int			first = c->nmsgs;
		int			got = duet_kafka_handle_take(c, c->msgs + first, c->batch_size - first);

		if (got == 0)
		{
			c->pending = false;
			return c->nmsgs > 0;	/* drained: commit what arrived, do not wait for more */
		}
		for (int i = first; i < first + got; i++)
		{
			rd_kafka_message_t *m = c->msgs[i];

			if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				c->msgs[c->nmsgs++] = m;	/* the messages stay in order, errors taken out */
				continue;
			}
			if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
				m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
			{
				/*
				 * The broker no longer has (or does not yet have) the next offset of a partition,
				 * whose fetching has stopped (auto.offset.reset = error): the turn commits what was
				 * taken, then settles the partition's position (handle_out_of_range).
				 */
				rd_kafka_topic_partition_t *tp = assigned_partition(c, m->partition);

				if (tp)
				{
					c->out_of_range[tp - c->assigned->elems] = true;
					c->any_out_of_range = true;
				}
				duet_kafka_slot_error(c->slot, rd_kafka_message_errstr(m));
				out_of_range = true;
			}
			else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				duet_kafka_slot_error(c->slot, rd_kafka_message_errstr(m));
				if (duet_kafka_err_unreachable(m->err))
					duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
			}
			duet_kafka_message_release(m);
		}
		if (first == 0 && c->nmsgs > 0)
			c->first_at = GetCurrentTimestamp();
	}
	c->pending = true;			/* full, or out of range: the queue may hold more */
	return true;
}

/*
 * The one handler of a consumer's failure outside a message (a batch, a rebalance, a turn): in a
 * PG_CATCH, with cxt the context to copy the error into. Rolls back, sets the status (if it has a
 * slot) and logs what failed with the hint; the caller then decides how it is retried.
 */
void
duet_kafka_consumer_failed(Consumer *c, MemoryContext cxt, const char *what, const char *hint)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	if (c->slot)
	{
		duet_kafka_slot_error(c->slot, edata->message);
		duet_kafka_slot_set_state(c->slot, DUET_KAFKA_ERROR);
	}
	if (c->name)
		ereport(LOG,
				(errmsg("Kafka consumer \"%s\" %s failed: %s", c->name, what, edata->message),
				 errhint("%s", hint)));
	else
		ereport(LOG,
				(errmsg("Kafka consumer %d group %d %s failed: %s", c->args.consumer_id, c->args.group,
						what, edata->message),
				 errhint("%s", hint)));
	FreeErrorData(edata);
}

/* Commits the gathered batch; a failure is reported, rolled back and retried after a pause. */
static void
run_batch(Consumer *c, MemoryContext batchcxt)
{
	duet_kafka_slot_set_state(c->slot, DUET_KAFKA_RUNNING);
	PG_TRY();
	{
		if (!duet_kafka_process_batch(c, c->msgs, c->nmsgs, batchcxt))
			c->phase = CONSUMER_DONE;
		else if (c->group_mode)
			duet_kafka_group_committed(c);
	}
	PG_CATCH();
	{
		/* Not about a message: report, roll back, and retry from the committed offsets. */
		duet_kafka_consumer_failed(c, batchcxt, "batch", "The batch is retried from the last committed offsets.");
		duet_kafka_consumer_drop_messages(c);
		c->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ERROR_BACKOFF_MS);
		duet_kafka_consumer_assign(c);	/* seek back to the committed offsets */
	}
	PG_END_TRY();
	duet_kafka_consumer_drop_messages(c);
}

void
duet_kafka_consumer_turn(Consumer *c)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext batchcxt = CurrentMemoryContext;	/* the pool's per-loop context */

	if (c->not_before != 0 && now < c->not_before)
		return;
	c->not_before = 0;
	if (c->phase == CONSUMER_OPENING)
		open_step(c);
	if (c->phase != CONSUMER_RUNNING)
		return;

	if (gather(c) ||
		(c->nmsgs > 0 && TimestampDifferenceExceeds(c->first_at, now, c->flush_ms)))
		run_batch(c, batchcxt);
	if (c->phase != CONSUMER_RUNNING)
		return;
	duet_kafka_handle_watermarks(c);
	if (c->nmsgs == 0 && c->any_out_of_range && !duet_kafka_handle_out_of_range(c))
		c->phase = CONSUMER_DONE;
	else if (c->nmsgs == 0 && !c->pending && !c->group_mode &&
			 TimestampDifferenceExceeds(c->metadata_at, now, METADATA_EVERY_MS))
		refresh_partitions(c);
	if (c->nmsgs == 0 && !c->pending && !c->group_mode)
		duet_kafka_client_merge(c); /* caught up: share a fetch of its topic if one stands here */
	if (c->nmsgs == 0 && !c->pending && c->slot->state == DUET_KAFKA_RUNNING)
		duet_kafka_slot_set_state(c->slot, DUET_KAFKA_IDLE);
	pgstat_report_activity(STATE_IDLE, NULL);
}

long
duet_kafka_consumer_timeout(Consumer *c, TimestampTz now)
{
	TimestampTz at = 0;

	if (c->phase == CONSUMER_BROKEN || c->phase == CONSUMER_DONE)
		return -1;
	if (c->not_before != 0)
		at = c->not_before;
	else if (c->phase == CONSUMER_OPENING || c->pending)
		return 0;
	else if (c->nmsgs > 0)
		at = TimestampTzPlusMilliseconds(c->first_at, c->flush_ms);
	else if (c->group_mode)
		return -1;				/* the group's metadata is librdkafka's: only events */
	else
		at = TimestampTzPlusMilliseconds(c->metadata_at, METADATA_EVERY_MS);
	return at <= now ? 0 : (long) ((at - now + 999) / 1000);
}
