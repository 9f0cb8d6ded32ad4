/*
 * kafka_consumer.c — a consumer worker: one partition group of one consumer, exactly once.
 *
 * Offsets live in duet.kafka_offsets, not in Kafka: each batch's rows, its dead letters and the
 * partitions' next offsets commit in one transaction, and a (re)started worker assigns its
 * partitions at the stored offsets (assign(), no consumer group: nothing to rebalance, and the
 * mock broker's group joins are slow). A batch first locks the consumer row (FOR SHARE) and
 * checks the generation and the stored offsets it read from, so a reset, stop or drop committed
 * meanwhile — or a second worker — can never commit a row twice. Errors that are not about a
 * message (permissions, a dropped table, lost broker) abort the batch; the worker reports them in
 * duet.kafka_status, waits, seeks back to its last committed offsets and tries again.
 *
 * Never a silent jump: auto.offset.reset is "error", so a stored offset the broker no longer has
 * (retention deleted it before it was read) stops that partition with an error instead of
 * librdkafka's default jump to the end. The worker then resumes at the low watermark and records
 * the skipped range in duet.kafka_gaps, with a WARNING, in the same transaction as the new offset.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "pg_duet.h"
#include "privileged.h"
#include "worker.h"
#include "kafka_consumer.h"

#define ERROR_BACKOFF_MS	5000
#define IDLE_POLL_MS		200
#define LOCK_WAIT_MS		30000	/* for the previous worker of this partition group to end */

/* Reads the consumer's row; exits quietly when it is gone, stopped or of another generation. */
static void
load_consumer(Consumer *c)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(c->args.consumer_id)};
	MemoryContext oldcxt;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
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
	if (SPI_processed == 0)
	{
		/* Dropped before we started: nothing to do. */
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		proc_exit(0);
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	if (DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull)) != c->args.generation ||
		!DatumGetBool(SPI_getbinval(tup, desc, 14, &isnull)))
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		proc_exit(0);
	}
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
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
	MemoryContextSwitchTo(oldcxt);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Advisory locks taken from SQL have 1 or 2 in the tag's fourth field; ours has this, so no
 * session (any role may take advisory locks) can hold a consumer's lock and keep it from running.
 */
#define KAFKA_WORKER_LOCK_SPACE 0x6475	/* "du" */

static bool
try_worker_lock(Consumer *c)
{
	LOCKTAG		tag;
	bool		got;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) c->args.consumer_id, (uint32) c->args.group,
						 KAFKA_WORKER_LOCK_SPACE);
	StartTransactionCommand();
	got = LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
	CommitTransactionCommand();
	return got;
}

/*
 * A library newer than the database's pg_duet SQL (a rolling restart, before ALTER EXTENSION
 * pg_duet UPDATE) writes columns and tables the old SQL lacks: wait for the update, saying so
 * once. Nothing is lost meanwhile: the offsets stay where they are.
 */
static void
wait_for_current_sql(Consumer *c)
{
	bool		logged = false;

	for (;;)
	{
		bool		current;

		StartTransactionCommand();
		current = duet_sql_is_current();
		CommitTransactionCommand();
		if (current)
			return;
		if (!logged)
			ereport(LOG,
					(errmsg("Kafka consumer %d waits for ALTER EXTENSION pg_duet UPDATE: the database's pg_duet SQL is older than the library (%s)",
							c->args.consumer_id, PG_DUET_VERSION)));
		logged = true;
		duet_kafka_consumer_sleep(5000);
	}
}

/*
 * The partition group's session lock. After a reset the new generation starts while the old
 * worker is still ending (the supervisor signals it in the same pass): wait for it, briefly, so
 * the hand-over takes milliseconds rather than a restart delay. The offsets it starts from were
 * stored by the reset itself, so nothing depends on who wins.
 */
static void
take_worker_lock(Consumer *c)
{
	for (int i = 0; i < LOCK_WAIT_MS / 50; i++)
	{
		if (try_worker_lock(c))
			return;
		duet_kafka_consumer_sleep(50);
	}
	ereport(LOG,
			(errmsg("Kafka consumer \"%s\" group %d is already running", c->name, c->args.group)));
	proc_exit(1);
}

void
duet_kafka_consumer_sleep(long ms)
{
	duet_worker_wait(ms);		/* SIGTERM ends the worker here (die) */
}

/* Partitions of the topic in this worker's group, waiting while the broker is unreachable. */
static void
discover_partitions(Consumer *c)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, c->topic, NULL);

	for (;;)
	{
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_resp_err_t err = rd_kafka_metadata(c->rk, 0, rkt, &md, 5000);

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0 &&
			md->topics[0].partition_cnt > 0)
		{
			c->assigned = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
			for (int i = 0; i < md->topics[0].partition_cnt; i++)
			{
				int32		p = md->topics[0].partitions[i].id;

				if (p % c->parallelism == c->args.group)
					rd_kafka_topic_partition_list_add(c->assigned, c->topic, p);
			}
			rd_kafka_metadata_destroy(md);
			break;
		}
		{
			char		msg[DUET_KAFKA_ERRLEN];

			snprintf(msg, sizeof(msg), "cannot read metadata of topic \"%s\": %s", c->topic,
					 err ? rd_kafka_err2str(err) : rd_kafka_err2str(md->topics[0].err));
			duet_kafka_slot_error(c->slot, msg);
			duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
		}
		if (md)
			rd_kafka_metadata_destroy(md);
		duet_kafka_consumer_sleep(1000);
	}
	rd_kafka_topic_destroy(rkt);
}

/*
 * Stored next offsets; partitions without one (a new consumer, a new partition) start at
 * start_position, resolved now and stored right away. (A reset stores its offsets itself.)
 */
static void
resolve_offsets(Consumer *c)
{
	rd_kafka_topic_partition_list_t *parts = c->assigned;

	c->skip_before_ms = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * Max(parts->cnt, 1));
	c->out_of_range = MemoryContextAllocZero(TopMemoryContext, sizeof(bool) * Max(parts->cnt, 1));
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	for (int i = 0; i < parts->cnt; i++)
	{
		rd_kafka_topic_partition_t *tp = &parts->elems[i];
		Datum		vals[4] = {Int32GetDatum(c->args.consumer_id), Int32GetDatum(tp->partition), 0, 0};
		bool		isnull;
		char		errbuf[DUET_KAFKA_ERRLEN];

		SPI_execute_with_args("SELECT next_offset, (pg_catalog.date_part('epoch', skip_before) OPERATOR(pg_catalog.*) 1000)"
							  "::pg_catalog.int8 FROM duet.kafka_offsets "
							  "WHERE consumer_id OPERATOR(pg_catalog.=) $1 AND partition OPERATOR(pg_catalog.=) $2",
							  2, (Oid[]) {INT4OID, INT4OID}, vals, NULL, true, 1);
		c->skip_before_ms[i] = -1;
		if (SPI_processed == 1)
		{
			Datum		skip;

			tp->offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			skip = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			if (!isnull)
				c->skip_before_ms[i] = DatumGetInt64(skip);
			continue;
		}
		while (!duet_kafka_resolve_position(c->rk, c->topic, tp->partition, c->start_position,
											BROKER_TIMEOUT_MS, &tp->offset, &c->skip_before_ms[i],
											errbuf, sizeof(errbuf)))
		{
			duet_kafka_slot_error(c->slot, errbuf);
			duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
			duet_kafka_consumer_sleep(1000);
		}
		vals[2] = Int64GetDatum(tp->offset);
		vals[3] = Int64GetDatum(c->skip_before_ms[i]);
		SPI_execute_with_args("INSERT INTO duet.kafka_offsets (consumer_id, partition, next_offset, skip_before) "
							  "VALUES ($1, $2, $3, CASE WHEN $4 OPERATOR(pg_catalog.>=) 0 "
							  "THEN pg_catalog.to_timestamp($4 OPERATOR(pg_catalog./) 1000.0) END)", 4,
							  (Oid[]) {INT4OID, INT4OID, INT8OID, INT8OID}, vals, NULL, false, 0);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

void
duet_kafka_consumer_assign(Consumer *c)
{
	rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, c->assigned);

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

static void
report_watermarks(Consumer *c)
{
	for (int i = 0; i < c->assigned->cnt; i++)
	{
		int64		low,
					high = -1;

		if (rd_kafka_get_watermark_offsets(c->rk, c->topic, c->assigned->elems[i].partition,
										   &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR)
			duet_kafka_slot_watermark(c->slot, c->assigned->elems[i].partition, high);
	}
}

/*
 * Gathers up to batch_size messages, waiting at most flush_interval after the first; returns the
 * number gathered (0 when idle). SIGTERM ends the worker inside (die): nothing is committed yet.
 */
static int
gather(Consumer *c, rd_kafka_message_t **msgs)
{
	int			n = 0;
	TimestampTz first = 0;

	while (n < c->batch_size)
	{
		long		wait = IDLE_POLL_MS;
		rd_kafka_message_t *m;

		CHECK_FOR_INTERRUPTS();	/* a fast shutdown does not wait for a full batch */

		if (n > 0)
		{
			long		left = c->flush_ms -
				(long) ((GetCurrentTimestamp() - first) / 1000);

			if (left <= 0)
				break;
			wait = Min(left, IDLE_POLL_MS);
		}
		m = rd_kafka_consumer_poll(c->rk, (int) wait);
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (m == NULL)
		{
			if (n == 0)
				break;
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
			m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
		{
			/*
			 * The broker no longer has (or does not yet have) the next offset of a partition, whose
			 * fetching has stopped (auto.offset.reset = error): end the batch here; the main loop
			 * commits it, then settles the partition's position (handle_out_of_range).
			 */
			rd_kafka_topic_partition_t *tp = assigned_partition(c, m->partition);

			if (tp)
			{
				c->out_of_range[tp - c->assigned->elems] = true;
				c->any_out_of_range = true;
			}
			duet_kafka_slot_error(c->slot, rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			break;
		}
		if (m->err)
		{
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				duet_kafka_slot_error(c->slot, rd_kafka_message_errstr(m));
				if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT || m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
					duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
			}
			rd_kafka_message_destroy(m);
			continue;
		}
		if (n == 0)
			first = GetCurrentTimestamp();
		msgs[n++] = m;
	}
	return n;
}

/*
 * Whether this worker's generation is still the consumer's and it is enabled, with the row
 * locked FOR SHARE (SPI connected, in the transaction that writes): a committed stop, drop,
 * reset or change ends the worker before it writes anything.
 */
bool
duet_kafka_generation_current(Consumer *c)
{
	bool		isnull;

	SPI_execute_with_args("SELECT generation OPERATOR(pg_catalog.=) $2 AND enabled FROM duet.kafka_consumers "
						  "WHERE id OPERATOR(pg_catalog.=) $1 FOR SHARE",
						  2, (Oid[]) {INT4OID, INT4OID},
						  (Datum[]) {Int32GetDatum(c->args.consumer_id), Int32GetDatum(c->args.generation)},
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

void
duet_kafka_consumer_main(Datum arg)
{
	Consumer	c = {0};
	char		errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_message_t **msgs;
	MemoryContext batchcxt;

	volatile bool stop = false;

	memcpy(&c.args, MyBgworkerEntry->bgw_extra, sizeof(c.args));
	/*
	 * SIGTERM is die(): it ends the worker at the next CHECK_FOR_INTERRUPTS, inside a batch too
	 * (COPY checks per row); the batch's transaction aborts with its offsets, so the next worker
	 * reads those messages again and nothing is lost or doubled.
	 */
	duet_worker_init(DUET_WORKER_DIE);
	duet_worker_connect(NULL, c.args.dboid);
	wait_for_current_sql(&c);
	load_consumer(&c);
	c.slot = duet_kafka_slot_claim(c.args.dboid, c.args.consumer_id, c.args.group, c.name);
	take_worker_lock(&c);
	pgstat_report_appname(psprintf("pg_duet kafka consumer %s", c.name));

	conf = duet_kafka_conf_new(c.brokers, c.properties, errstr, sizeof(errstr));
	if (conf == NULL ||
		!duet_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
		!duet_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, sizeof(errstr)) ||
		/* Never librdkafka's silent jump to the end: an offset out of range is an error we handle. */
		!duet_kafka_conf_set(conf, "auto.offset.reset", "error", errstr, sizeof(errstr)) ||
		!duet_kafka_conf_set(conf, "client.id", psprintf("pg_duet-%s", c.name), errstr, sizeof(errstr)) ||
		/* librdkafka wants a group for assign(); nothing is committed to it. */
		!duet_kafka_conf_set(conf, "group.id", psprintf("pg_duet-%u-%s", MyDatabaseId, c.name), errstr, sizeof(errstr)) ||
		(c.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))) == NULL)
	{
		duet_kafka_slot_error(c.slot, errstr);
		duet_kafka_slot_set_state(c.slot, DUET_KAFKA_ERROR);
		ereport(LOG, (errmsg("Kafka consumer \"%s\": %s", c.name, errstr)));
		/* A bad configuration does not heal: stay visible in the status, idle, until changed. */
		for (;;)
			duet_kafka_consumer_sleep(60000);
	}
	rd_kafka_poll_set_consumer(c.rk);
	discover_partitions(&c);
	resolve_offsets(&c);
	duet_kafka_consumer_assign(&c);
	duet_kafka_slot_set_state(c.slot, DUET_KAFKA_IDLE);

	msgs = MemoryContextAlloc(TopMemoryContext, sizeof(rd_kafka_message_t *) * c.batch_size);
	batchcxt = duet_worker_loop_context("duet kafka batch");
	while (!stop && duet_worker_loop(batchcxt, NULL))
	{
		volatile int n;

		pgstat_report_activity(STATE_IDLE, NULL);
		n = gather(&c, msgs);
		report_watermarks(&c);
		if (n == 0)
		{
			if (c.any_out_of_range && !duet_kafka_handle_out_of_range(&c))
				break;
			if (c.slot->state != DUET_KAFKA_BROKER_DOWN)
				duet_kafka_slot_set_state(c.slot, DUET_KAFKA_IDLE);
			continue;
		}
		duet_kafka_slot_set_state(c.slot, DUET_KAFKA_RUNNING);
		PG_TRY();
		{
			bool		carry_on = duet_kafka_process_batch(&c, msgs, n, batchcxt);

			if (!carry_on)
				stop = true;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/* Not about a message: report, roll back, and retry from the committed offsets. */
			MemoryContextSwitchTo(batchcxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			duet_kafka_slot_error(c.slot, edata->message);
			duet_kafka_slot_set_state(c.slot, DUET_KAFKA_ERROR);
			ereport(LOG,
					(errmsg("Kafka consumer \"%s\" batch failed: %s", c.name, edata->message),
					 errhint("The batch is retried from the last committed offsets.")));
			for (int i = 0; i < n; i++)
				rd_kafka_message_destroy(msgs[i]);
			n = 0;
			duet_kafka_consumer_sleep(ERROR_BACKOFF_MS);
			duet_kafka_consumer_assign(&c);
		}
		PG_END_TRY();
		for (int i = 0; i < n; i++)
			rd_kafka_message_destroy(msgs[i]);
		MemoryContextReset(batchcxt);
		if (c.any_out_of_range && !stop && !duet_kafka_handle_out_of_range(&c))
			break;
	}
	rd_kafka_consumer_close(c.rk);
	rd_kafka_destroy(c.rk);
	proc_exit(0);
}
