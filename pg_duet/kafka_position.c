/*
 * kafka_position.c — a start position ('earliest', 'latest' or a time) resolved against the broker
 * into a concrete offset per partition.
 *
 * duet_kafka_reset resolves the new position inside its own transaction and stores the offsets
 * with it, so the position is the broker's at the reset, not whenever a worker gets round to it;
 * a worker resolves the position only for partitions with no stored offset (a new consumer, a new
 * partition).
 */
#include "postgres.h"

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
 * The first offset of partition at position: the low watermark for 'earliest', the high one for
 * 'latest'; for a time, the broker's answer when it names a message, otherwise (no such message,
 * or a broker without timestamp lookup such as the mock) the low watermark. For a time,
 * *skip_before_ms is set so that older messages from there on are passed over until one at or
 * after it; else -1. False with errbuf when the broker cannot answer.
 */
bool
duet_kafka_resolve_position(rd_kafka_t *rk, const char *topic, int32 partition, const char *position,
							int timeout_ms, int64 *offset, int64 *skip_before_ms, char *errbuf, size_t errlen)
{
	int64		low,
				high;
	int64		ts_ms = duet_kafka_position_time_ms(position);
	rd_kafka_resp_err_t err;

	*skip_before_ms = -1;
	err = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		snprintf(errbuf, errlen, "cannot read the offsets of partition %d of topic \"%s\": %s",
				 (int) partition, topic, rd_kafka_err2str(err));
		return false;
	}
	if (ts_ms >= 0)
	{
		rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(1);

		rd_kafka_topic_partition_list_add(q, topic, partition)->offset = ts_ms;
		err = rd_kafka_offsets_for_times(rk, q, timeout_ms);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR && q->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
			q->elems[0].offset >= low && q->elems[0].offset < high)
			low = q->elems[0].offset;
		rd_kafka_topic_partition_list_destroy(q);
		*skip_before_ms = ts_ms;
		*offset = low;
	}
	else
		*offset = strcmp(position, "latest") == 0 ? high : low;
	return true;
}
