/*
 * kafka_position.c — a start position ('earliest', 'latest' or a time) resolved against the broker
 * into a concrete offset per partition.
 *
 * duet_kafka_reset resolves the new position inside its own transaction and stores the offsets
 * with it, so the position is the broker's at the reset, not whenever a worker gets round to it;
 * a worker resolves the position only for partitions with no stored offset (a new consumer, a new
 * partition). Both store what they resolved with duet_kafka_store_positions.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "kafka.h"

/* The position as milliseconds since the Unix epoch, or -1 for 'earliest' and 'latest'. */
int64
duet_kafka_position_time_ms(const char *position)
{
	TimestampTz ts;

	if (strcmp(position, "earliest") == 0 || strcmp(position, "latest") == 0)
		return -1;
	ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(position),
												 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	return (int64) ((ts - SetEpochTimestamp()) / 1000);
}

/* The topic's partition ids (palloc'd) in *parts; false with errbuf on failure. */
bool
duet_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int32 **parts,
							int *nparts, char *errbuf, size_t errlen)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;
	bool		ok = false;

	if (rkt == NULL)
	{
		snprintf(errbuf, errlen, "%s", rd_kafka_err2str(rd_kafka_last_error()));
		return false;
	}
	err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(errbuf, errlen, "cannot read metadata of topic \"%s\": %s", topic, rd_kafka_err2str(err));
	else if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(errbuf, errlen, "cannot read metadata of topic \"%s\": %s", topic,
				 rd_kafka_err2str(md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
	else if (md->topics[0].partition_cnt <= 0)
		snprintf(errbuf, errlen, "topic \"%s\" has no partitions", topic);
	else
	{
		*nparts = md->topics[0].partition_cnt;
		*parts = palloc(sizeof(int32) * *nparts);
		for (int i = 0; i < *nparts; i++)
			(*parts)[i] = md->topics[0].partitions[i].id;
		ok = true;
	}
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return ok;
}

/*
 * Each partition's offset at stamp — RD_KAFKA_OFFSET_BEGINNING (the low watermark),
 * RD_KAFKA_OFFSET_END (the high one) or a time in ms — into out: one ListOffsets request per
 * leader for all of them (rd_kafka_offsets_for_times passes the stamp as the request's
 * timestamp, and -2 and -1 are the protocol's earliest and latest). With must, false with errbuf
 * when a partition has no answer; without, such a partition's out is -1.
 */
static bool
list_offsets(rd_kafka_t *rk, const char *topic, const int32 *parts, int nparts, int64 stamp,
			 int timeout_ms, bool must, int64 *out, char *errbuf, size_t errlen)
{
	rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(nparts);
	rd_kafka_resp_err_t err;
	bool		ok = true;

	for (int i = 0; i < nparts; i++)
		rd_kafka_topic_partition_list_add(q, topic, parts[i])->offset = stamp;
	err = rd_kafka_offsets_for_times(rk, q, timeout_ms);
	for (int i = 0; i < nparts && ok; i++)
	{
		/* answered in the order asked; found by partition all the same */
		rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(q, topic, parts[i]);
		rd_kafka_resp_err_t perr = err ? err : tp ? tp->err : RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;

		out[i] = (perr == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0) ? tp->offset : -1;
		if (must && out[i] < 0)
		{
			snprintf(errbuf, errlen, "cannot read the offsets of partition %d of topic \"%s\": %s",
					 (int) parts[i], topic,
					 rd_kafka_err2str(perr ? perr : RD_KAFKA_RESP_ERR__NO_OFFSET));
			ok = false;
		}
	}
	rd_kafka_topic_partition_list_destroy(q);
	return ok;
}

/*
 * The first offset of each of parts at position, in offsets: the low watermark for 'earliest',
 * the high one for 'latest'; for a time, the broker's answer where it names a message, otherwise
 * (no such message, or a broker without timestamp lookup such as the mock) the low watermark.
 * For a time, skip_before_ms[i] is set so that older messages from there on are passed over until
 * one at or after it; else -1. At most three requests per leader, whatever the number of
 * partitions (one per partition and watermark cost a new consumer of 64 partitions ~50 ms of its
 * start). False with errbuf when the brokers cannot answer.
 */
bool
duet_kafka_resolve_positions(rd_kafka_t *rk, const char *topic, const int32 *parts, int nparts,
							 const char *position, int timeout_ms, int64 *offsets,
							 int64 *skip_before_ms, char *errbuf, size_t errlen)
{
	int64		ts_ms = duet_kafka_position_time_ms(position);
	int64	   *high;
	int64	   *at;

	for (int i = 0; i < nparts; i++)
		skip_before_ms[i] = ts_ms;	/* -1 for 'earliest' and 'latest' */
	if (nparts == 0)
		return true;
	if (ts_ms < 0)
		return list_offsets(rk, topic, parts, nparts,
							strcmp(position, "latest") == 0 ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING,
							timeout_ms, true, offsets, errbuf, errlen);
	high = palloc(sizeof(int64) * nparts);
	at = palloc(sizeof(int64) * nparts);
	if (!list_offsets(rk, topic, parts, nparts, RD_KAFKA_OFFSET_BEGINNING, timeout_ms, true, offsets,
					  errbuf, errlen) ||
		!list_offsets(rk, topic, parts, nparts, RD_KAFKA_OFFSET_END, timeout_ms, true, high,
					  errbuf, errlen))
		return false;
	(void) list_offsets(rk, topic, parts, nparts, ts_ms, timeout_ms, false, at, errbuf, errlen);
	for (int i = 0; i < nparts; i++)
		if (at[i] >= offsets[i] && at[i] < high[i])
			offsets[i] = at[i];
	pfree(high);
	pfree(at);
	return true;
}

/*
 * Stores the n resolved positions of consumer_id's partitions parts (SPI connected), in one
 * statement: the next offsets and, for a time, the time before which messages are passed over.
 */
void
duet_kafka_store_positions(int32 consumer_id, const int32 *parts, const int64 *offsets,
						   const int64 *skip_before_ms, int n)
{
	Datum	   *p = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *o = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *s = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		p[i] = Int32GetDatum(parts[i]);
		o[i] = Int64GetDatum(offsets[i]);
		s[i] = Int64GetDatum(skip_before_ms[i]);
	}
	if (SPI_execute_with_args("INSERT INTO duet.kafka_offsets (consumer_id, partition, next_offset, skip_before) "
							  "SELECT $1, p, o, CASE WHEN s OPERATOR(pg_catalog.>=) 0 "
							  "THEN pg_catalog.to_timestamp(s OPERATOR(pg_catalog./) 1000.0) END "
							  "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) "
							  "AS u(p, o, s)", 4,
							  (Oid[]) {INT4OID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID},
							  (Datum[]) {Int32GetDatum(consumer_id),
							  PointerGetDatum(construct_array(p, n, INT4OID, sizeof(int32), true, TYPALIGN_INT)),
							  PointerGetDatum(construct_array(o, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
							  PointerGetDatum(construct_array(s, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE))},
							  NULL, false, 0) != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "could not store the offsets of Kafka consumer %d", consumer_id);
}
