/*
 * kafka_handle.c — a consumer partition group's librdkafka handle, as a pool worker serves it.
 *
 * Wake on arrival: the handle's consumer queue (messages; errors and logs too, since the main
 * and log queues are forwarded to it) writes a byte to a pipe when it goes from empty to not
 * empty (rd_kafka_queue_io_event_enable); the pool worker waits on its latch and on all those
 * pipes in one WaitEventSet, so a message is taken the moment it is fetched and an idle pool
 * costs nothing between events.
 *
 * librdkafka's error_cb and log_cb would run on its own threads, where nothing of PostgreSQL may
 * be called. With log.queue and the main queue forwarded to the consumer queue, both run inside
 * rd_kafka_consumer_poll on the worker's thread: an error sets the group's status ("broker
 * unreachable" with librdkafka's words), a log line goes to the server log with the consumer's
 * name, at most LOG_LINES_PER_MINUTE a minute per group (the rest are counted and the count is
 * logged).
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "miscadmin.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "kafka_consumer.h"

#define LOG_LINES_PER_MINUTE	10

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	Consumer   *c = opaque;

	if (c->slot == NULL)
		return;
	duet_kafka_slot_error(c->slot, reason);
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
		err == RD_KAFKA_RESP_ERR__RESOLVE || err == RD_KAFKA_RESP_ERR__TIMED_OUT)
		duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
}

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	Consumer   *c = rd_kafka_opaque(rk);
	TimestampTz now = GetCurrentTimestamp();

	if (c == NULL || c->name == NULL)
		return;
	if (TimestampDifferenceExceeds(c->log_window_at, now, 60000))
	{
		if (c->logs_dropped > 0)
			ereport(LOG,
					(errmsg("Kafka consumer \"%s\": %d librdkafka log lines suppressed in the last minute",
							c->name, c->logs_dropped)));
		c->log_window_at = now;
		c->logs_in_window = 0;
		c->logs_dropped = 0;
	}
	if (c->logs_in_window++ >= LOG_LINES_PER_MINUTE)
	{
		c->logs_dropped++;
		return;
	}
	ereport(LOG,
			(errmsg("Kafka consumer \"%s\" librdkafka %s (level %d): %s", c->name, fac, level, buf)));
}

bool
duet_kafka_handle_new(Consumer *c, char *errstr, size_t errlen, bool *transient)
{
	rd_kafka_conf_t *conf = duet_kafka_conf_new(c->brokers, c->properties, errstr, errlen);

	*transient = false;

	if (conf == NULL ||
		!duet_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errlen) ||
		!duet_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, errlen) ||
		/* Never librdkafka's silent jump to the end: an offset out of range is an error we handle. */
		!duet_kafka_conf_set(conf, "auto.offset.reset", "error", errstr, errlen) ||
		!duet_kafka_conf_set(conf, "client.id", psprintf("pg_duet-%s", c->name), errstr, errlen) ||
		/* librdkafka wants a group for assign(); nothing is committed to it. */
		(c->group_mode ? !duet_kafka_group_conf(c, conf, errstr, errlen) :
		 !duet_kafka_conf_set(conf, "group.id", psprintf("pg_duet-%u-%s", MyDatabaseId, c->name), errstr, errlen)) ||
		!duet_kafka_conf_set(conf, "log.queue", "true", errstr, errlen))
	{
		if (conf)
			rd_kafka_conf_destroy(conf);
		return false;
	}
	rd_kafka_conf_set_opaque(conf, c);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errlen);
	if (c->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);	/* rd_kafka_new takes it only when it succeeds */
		return false;
	}
	rd_kafka_poll_set_consumer(c->rk);	/* the main queue (errors) into the consumer queue */
	rd_kafka_set_log_queue(c->rk, NULL);	/* logs into the main queue, so into it too */
	c->queue = rd_kafka_queue_get_consumer(c->rk);
	if (pipe2(c->event_fd, O_NONBLOCK | O_CLOEXEC) != 0)
	{
		snprintf(errstr, errlen, "could not create a pipe: %m");
		c->event_fd[0] = c->event_fd[1] = -1;
		duet_kafka_handle_destroy(c);
		*transient = true;		/* out of file descriptors: not the consumer's fault */
		return false;
	}
	rd_kafka_queue_io_event_enable(c->queue, c->event_fd[1], "1", 1);
	return true;
}

void
duet_kafka_handle_event(Consumer *c)
{
	char		buf[64];

	while (read(c->event_fd[0], buf, sizeof(buf)) > 0)
		;
	c->pending = true;
}

void
duet_kafka_handle_watermarks(Consumer *c)
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

void
duet_kafka_handle_destroy(Consumer *c)
{
	if (c->queue)
	{
		rd_kafka_queue_io_event_enable(c->queue, -1, NULL, 0);
		rd_kafka_queue_destroy(c->queue);
		c->queue = NULL;
	}
	if (c->rk)
	{
		rd_kafka_consumer_close(c->rk);
		rd_kafka_destroy(c->rk);
		c->rk = NULL;
	}
	for (int i = 0; i < 2; i++)
		if (c->event_fd[i] >= 0)
			close(c->event_fd[i]);
	c->event_fd[0] = c->event_fd[1] = -1;
}
