/*
 * kafka_group.c — several servers, one consumer group (duet.kafka_group_mode).
 *
 * With the setting on, a consumer's partition groups do not pick their partitions themselves
 * (p % parallelism): each is a member of the Kafka consumer group "pg_duet.<consumer name>", the
 * same on every server that has a consumer of that name, and the group coordinator splits the
 * topic's partitions among all members of all servers. The offsets stay in each server's
 * database, committed with the rows; the group's committed offsets only hand a partition over:
 *
 * - on revoke, the messages gathered but not committed are dropped (the next owner reads them
 *   from the committed offset), and the partitions' committed positions — those stored with the
 *   rows — are committed to the group, synchronously, before the partitions are let go;
 * - on assign, each partition starts at the later of the group's committed offset and this
 *   database's stored one (the stored one is raised first, in its own transaction), so what
 *   another server ingested is not read again and nothing is skipped; a partition neither knows
 *   starts at the consumer's start position;
 * - after every batch the new positions are committed to the group asynchronously, so after a
 *   crash of a server (no revoke) its partitions' next owner repeats at most the batches whose
 *   group commit had not arrived: one batch per partition group in practice (docs/kafka.md).
 *
 * The rebalance callback runs on the pool worker's thread inside rd_kafka_consumer_poll; an error
 * in it must not unwind through librdkafka, so it is caught there and the group is reopened.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "kafka.h"
#include "kafka_consumer.h"

bool		duet_kafka_group_mode = false;

/* The group's committed offsets raise the stored ones (or are stored, where none is). */
static void
store_group_offsets(Consumer *c, rd_kafka_topic_partition_list_t *committed)
{
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	for (int i = 0; i < committed->cnt; i++)
	{
		rd_kafka_topic_partition_t *tp = &committed->elems[i];

		if (tp->err || tp->offset < 0)
			continue;			/* the group has none: ours (or the start position) */
		SPI_execute_with_args("INSERT INTO duet.kafka_offsets AS o (consumer_id, partition, next_offset) "
							  "VALUES ($1, $2, $3) ON CONFLICT (consumer_id, partition) DO UPDATE "
							  "SET next_offset = excluded.next_offset, skip_before = NULL, updated_at = pg_catalog.now() "
							  "WHERE o.next_offset OPERATOR(pg_catalog.<) excluded.next_offset", 3,
							  (Oid[]) {INT4OID, INT4OID, INT8OID},
							  (Datum[]) {Int32GetDatum(c->args.consumer_id), Int32GetDatum(tp->partition),
							  Int64GetDatum(tp->offset)},
							  NULL, false, 0);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static void
group_adopt(Consumer *c, const rd_kafka_topic_partition_list_t *given)
{
	rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_copy(given);
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_copy(given);
	rd_kafka_resp_err_t err = rd_kafka_committed(c->rk, committed, BROKER_TIMEOUT_MS);

	if (err)
	{
		rd_kafka_topic_partition_list_destroy(committed);
		rd_kafka_topic_partition_list_destroy(parts);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("cannot read the committed offsets of Kafka consumer group \"pg_duet.%s\": %s",
						c->name, rd_kafka_err2str(err))));
	}
	store_group_offsets(c, committed);
	rd_kafka_topic_partition_list_destroy(committed);
	if (!duet_kafka_consumer_resolve(c, parts, c->start_position))
	{
		rd_kafka_topic_partition_list_destroy(parts);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("cannot resolve the start of the partitions assigned to Kafka consumer \"%s\"", c->name)));
	}
	err = rd_kafka_assign(c->rk, c->assigned);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("cannot assign Kafka partitions: %s", rd_kafka_err2str(err))));
	ereport(LOG,
			(errmsg("Kafka consumer \"%s\" group %d was assigned %d partitions of topic \"%s\" by consumer group \"pg_duet.%s\"",
					c->name, c->args.group, c->assigned->cnt, c->topic, c->name)));
}

static void
group_revoke(Consumer *c)
{
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

	duet_kafka_consumer_drop_messages(c);
	if (c->assigned->cnt > 0)
		err = rd_kafka_commit(c->rk, c->assigned, 0);
	if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		ereport(LOG,
				(errmsg("Kafka consumer \"%s\" could not commit its offsets to consumer group \"pg_duet.%s\" at a rebalance: %s",
						c->name, c->name, rd_kafka_err2str(err)),
				 errhint("The next owner of its partitions may ingest the last batch again.")));
	rd_kafka_assign(c->rk, NULL);
	rd_kafka_topic_partition_list_destroy(c->assigned);
	c->assigned = rd_kafka_topic_partition_list_new(0);
	c->any_out_of_range = false;
	duet_kafka_slot_forget_partitions(c->slot);
}

static void
rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	Consumer   *c = opaque;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
			group_adopt(c, parts);
		else
			group_revoke(c);
	}
	PG_CATCH();
	{
		duet_kafka_consumer_failed(c, cxt, "rebalance",
								   "The consumer is opened again; its partitions go to the other members meanwhile.");
		rd_kafka_assign(rk, NULL);
		c->phase = CONSUMER_DONE;
	}
	PG_END_TRY();
}

/* The handle's group settings, before rd_kafka_new. */
bool
duet_kafka_group_conf(Consumer *c, rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
	/*
	 * A member that is gone (its server crashed) is noticed after session.timeout.ms, and its
	 * partitions move only then; 10 s rather than librdkafka's 45 s. (The dev broker also waits
	 * that long, less a second, for the members to rejoin at every rebalance.)
	 */
	if (!duet_kafka_conf_set(conf, "group.id", psprintf("pg_duet.%s", c->name), errstr, errlen) ||
		!duet_kafka_conf_set(conf, "session.timeout.ms", "10000", errstr, errlen))
		return false;
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	return true;
}

/* Joins the group: partitions come through the rebalance callback. */
void
duet_kafka_group_join(Consumer *c)
{
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	rd_kafka_topic_partition_list_add(topics, c->topic, RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(c->rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("cannot join Kafka consumer group \"pg_duet.%s\": %s", c->name, rd_kafka_err2str(err))));
	c->assigned = rd_kafka_topic_partition_list_new(0);
	c->skip_before_ms = MemoryContextAllocZero(c->cxt, sizeof(int64));
	c->out_of_range = MemoryContextAllocZero(c->cxt, sizeof(bool));
}

/* After a batch committed: its positions to the group, without waiting. */
void
duet_kafka_group_committed(Consumer *c)
{
	if (c->assigned->cnt > 0)
		(void) rd_kafka_commit(c->rk, c->assigned, 1);
}
