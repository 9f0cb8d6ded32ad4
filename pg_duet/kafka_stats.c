/*
 * kafka_stats.c — librdkafka's statistics: how fresh the watermarks are, and the end of an outage.
 *
 * The high watermark a consumer shows (its lag) is librdkafka's cached one, from the last fetch
 * response; during an outage it is simply the last one seen, and nothing in librdkafka's API says
 * so. Nor does anything announce that a broker is reachable again: an idle consumer would stay
 * "broker unreachable" until its next message. librdkafka's statistics (statistics.interval.ms,
 * duet.kafka_statistics_interval, default 15 s) say both: every broker's connection state and every partition's leader
 * and high watermark. Each statistics event, served on the pool worker's thread like the error
 * callback, stamps the watermarks of the consumer's partitions whose leader is connected
 * (duet.kafka_partition_status.high_watermark_at) and sets a consumer shown "broker unreachable"
 * back to idle once the leaders of all its partitions are connected again.
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include <jansson.h>

#include "kafka.h"
#include "kafka_consumer.h"

/* Whether broker nodeid is connected, by the statistics' "brokers" object. */
static bool
broker_up(json_t *brokers, json_int_t nodeid)
{
	const char *name;
	json_t	   *b;

	json_object_foreach(brokers, name, b)
	{
		const char *state = json_string_value(json_object_get(b, "state"));

		if (json_integer_value(json_object_get(b, "nodeid")) == nodeid && state &&
			(strcmp(state, "UP") == 0 || strcmp(state, "UPDATE") == 0))
			return true;
	}
	return false;
}

static void
apply(Consumer *c, json_t *root, TimestampTz now)
{
	json_t	   *brokers = json_object_get(root, "brokers");
	json_t	   *parts = json_object_get(json_object_get(json_object_get(root, "topics"), c->topic), "partitions");
	int			up = 0;

	if (c->slot == NULL || c->assigned == NULL || !json_is_object(parts))
		return;
	for (int i = 0; i < c->assigned->cnt; i++)
	{
		char		key[16];
		json_t	   *p;
		json_t	   *hi;

		snprintf(key, sizeof(key), "%d", c->assigned->elems[i].partition);
		p = json_object_get(parts, key);
		if (p == NULL || !broker_up(brokers, json_integer_value(json_object_get(p, "leader"))))
			continue;
		up++;
		hi = json_object_get(p, "hi_offset");
		if (json_is_integer(hi) && json_integer_value(hi) >= 0)
			duet_kafka_slot_watermark(c->slot, c->assigned->elems[i].partition, json_integer_value(hi), now);
	}
	if (up > 0 && up == c->assigned->cnt && c->slot->state == DUET_KAFKA_BROKER_DOWN)
		duet_kafka_slot_set_state(c->slot, DUET_KAFKA_IDLE);
}

/* One statistics event of a client, read by the consumers it serves. Returns 0: librdkafka frees the text. */
int
duet_kafka_stats_apply(List *consumers, const char *json, size_t len)
{
	json_error_t err;
	json_t	   *root = json_loadb(json, len, 0, &err);
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	if (root == NULL)
	{
		elog(DEBUG1, "librdkafka statistics not read: %s", err.text);
		return 0;
	}
	foreach(lc, consumers)
		apply(lfirst(lc), root, now);
	json_decref(root);
	return 0;
}
