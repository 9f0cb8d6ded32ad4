/*
 * kafka_gaps.c — a consumer's partitions whose stored offset the broker no longer (or not yet) has.
 *
 * Split from kafka_consumer.c: auto.offset.reset is "error", so gather() flags such a partition
 * and the consumer's main loop calls duet_kafka_handle_out_of_range() between batches.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "kafka_consumer.h"

/*
 * Partitions whose next offset the broker does not have. Below the low watermark (retention
 * deleted messages before they were read): resume there, and record the skipped range in
 * duet.kafka_gaps in the same transaction as the new offset, with a WARNING and in the status.
 * Beyond the high watermark (the partition was truncated or the topic recreated): re-read from the
 * low watermark, recorded too, so nothing new is skipped. Otherwise (the broker has it after all):
 * just fetch again. Returns false when this worker must stop (consumer changed).
 */
bool
duet_kafka_handle_out_of_range(Consumer *c)
{
	for (int i = 0; i < c->assigned->cnt; i++)
	{
		rd_kafka_topic_partition_t *tp = &c->assigned->elems[i];
		int64		low,
					high,
					stored = tp->offset,
					now_stored,
					resume,
					gap_to;
		const char *reason = NULL;
		rd_kafka_resp_err_t err;

		if (!c->out_of_range[i])
			continue;
		err = rd_kafka_query_watermark_offsets(c->lookup_rk, c->topic, tp->partition, &low, &high, BROKER_TIMEOUT_MS);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			duet_kafka_slot_error(c->slot, psprintf("cannot read the offsets of partition %d: %s",
													tp->partition, rd_kafka_err2str(err)));
			duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
			/* still flagged: tried again in a second; the pool's other groups go on meanwhile */
			c->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
			return true;
		}
		if (stored < low)
		{
			resume = gap_to = low;
			reason = "offsets out of range: deleted by the broker before they were ingested";
		}
		else if (stored > high)
		{
			resume = low;
			gap_to = stored;	/* nothing skipped: every offset the broker has is read again */
			reason = "offset beyond the high watermark: partition truncated or topic recreated, re-read from the low watermark";
		}
		else
			resume = stored;

		if (reason)
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			SPI_connect();
			/* As a batch: only this generation's worker, from the offset it owns. */
			if (!duet_kafka_generation_current(c))
				return duet_kafka_batch_abandon();
			if (!duet_kafka_offset_lock(c, tp->partition, &now_stored) || now_stored != stored)
				return duet_kafka_offset_moved(c, tp->partition);
			SPI_execute_with_args("INSERT INTO duet.kafka_gaps (consumer_id, consumer, owner, topic, partition, "
								  "from_offset, to_offset, resume_offset, reason) "
								  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", 9,
								  (Oid[]) {INT4OID, TEXTOID, OIDOID, TEXTOID, INT4OID, INT8OID, INT8OID, INT8OID, TEXTOID},
								  (Datum[]) {Int32GetDatum(c->args.consumer_id), CStringGetTextDatum(c->name),
								  ObjectIdGetDatum(c->target.owner), CStringGetTextDatum(c->topic),
								  Int32GetDatum(tp->partition), Int64GetDatum(stored), Int64GetDatum(gap_to),
								  Int64GetDatum(resume), CStringGetTextDatum(reason)},
								  NULL, false, 0);
			SPI_execute_with_args("UPDATE duet.kafka_offsets SET next_offset = $3, updated_at = pg_catalog.now() "
								  "WHERE consumer_id OPERATOR(pg_catalog.=) $1 AND partition OPERATOR(pg_catalog.=) $2", 3,
								  (Oid[]) {INT4OID, INT4OID, INT8OID},
								  (Datum[]) {Int32GetDatum(c->args.consumer_id), Int32GetDatum(tp->partition),
								  Int64GetDatum(resume)},
								  NULL, false, 0);
			SPI_finish();
			PopActiveSnapshot();
			CommitTransactionCommand();

			if (stored < low)
			{
				ereport(WARNING,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("Kafka consumer \"%s\" skipped offsets " INT64_FORMAT " to " INT64_FORMAT
								" of partition %d of topic \"%s\"", c->name, stored, low - 1, tp->partition, c->topic),
						 errdetail("The broker deleted these " INT64_FORMAT " messages (retention) before they were ingested; "
								   "ingestion resumes at its low watermark " INT64_FORMAT ".", low - stored, low),
						 errhint("The range is recorded in duet.kafka_gaps. Keep the consumer running, or raise the topic's "
								 "retention, so messages are read before they expire.")));
				duet_kafka_slot_error(c->slot, psprintf("partition %d: offsets " INT64_FORMAT " to " INT64_FORMAT
														" deleted by the broker before they were ingested (see duet.kafka_gaps)",
														tp->partition, stored, low - 1));
			}
			else
			{
				ereport(WARNING,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("Kafka consumer \"%s\": stored offset " INT64_FORMAT " of partition %d of topic \"%s\" "
								"is beyond the broker's high watermark " INT64_FORMAT, c->name, stored, tp->partition,
								c->topic, high),
						 errdetail("The partition was truncated or the topic recreated; ingestion starts again at the low "
								   "watermark " INT64_FORMAT ", so messages already ingested may be ingested again.", low),
						 errhint("This is recorded in duet.kafka_gaps.")));
				duet_kafka_slot_error(c->slot, psprintf("partition %d: stored offset " INT64_FORMAT
														" beyond the high watermark " INT64_FORMAT "; re-reading from " INT64_FORMAT,
														tp->partition, stored, high, low));
			}
		}
		else
			ereport(LOG,
					(errmsg("Kafka consumer \"%s\": offset " INT64_FORMAT " of partition %d reported out of range, "
							"but the broker holds " INT64_FORMAT " to " INT64_FORMAT "; fetching again",
							c->name, stored, tp->partition, low, high)));
		tp->offset = resume;
		c->out_of_range[i] = false;
	}
	c->any_out_of_range = false;
	/* Fetching stopped for those partitions: assign again, every partition at its committed offset. */
	duet_kafka_consumer_assign(c);
	return true;
}
