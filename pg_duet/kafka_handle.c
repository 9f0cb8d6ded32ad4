/*
 * kafka_handle.c — a consumer partition group's librdkafka handle, as a pool worker serves it.
 *
 * Wake on arrival: the handle's queue (messages; in group mode errors and logs too, since the
 * main and log queues are forwarded to it) writes a byte to a pipe when it goes from empty to not
 * empty (rd_kafka_queue_io_event_enable); the pool worker waits on its latch and on all those
 * pipes in one WaitEventSet, so a message is taken the moment it is fetched and an idle pool
 * costs nothing between events.
 *
 * librdkafka's error_cb and log_cb would run on its own threads, where nothing of PostgreSQL may
 * be called. With log.queue, both run on the worker's thread when it serves the main queue: a
 * group member's is forwarded to its consumer queue (rd_kafka_consumer_poll), a shared client's is
 * served by rd_kafka_poll (kafka_client.c). An error sets the group's status ("broker
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

/* Errors that mean the brokers cannot be reached (status "broker unreachable"). */
bool
duet_kafka_err_unreachable(int err)
{
	return err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
		err == RD_KAFKA_RESP_ERR__RESOLVE || err == RD_KAFKA_RESP_ERR__TIMED_OUT;
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	Consumer   *c = opaque;

	if (c->slot == NULL)
		return;
	duet_kafka_slot_error(c->slot, reason);
	if (duet_kafka_err_unreachable(err))
		duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
}

/* One librdkafka log line to the server log, "Kafka <who> librdkafka …", rate-limited. */
void
duet_kafka_log_line(DuetKafkaLogLimit *limit, const char *who, int level, const char *fac, const char *buf)
{
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(limit->window_at, now, 60000))
	{
		if (limit->dropped > 0)
			ereport(LOG,
					(errmsg("Kafka %s: %d librdkafka log lines suppressed in the last minute",
							who, limit->dropped)));
		limit->window_at = now;
		limit->in_window = 0;
		limit->dropped = 0;
	}
	if (limit->in_window++ >= LOG_LINES_PER_MINUTE)
	{
		limit->dropped++;
		return;
	}
	ereport(LOG, (errmsg("Kafka %s librdkafka %s (level %d): %s", who, fac, level, buf)));
}

static int
stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	return duet_kafka_stats_apply(list_make1(opaque), json, len);
}

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	Consumer   *c = rd_kafka_opaque(rk);

	if (c == NULL || c->name == NULL)
		return;
	duet_kafka_log_line(&c->log, psprintf("consumer \"%s\"", c->name), level, fac, buf);
}

/*
 * The settings of every pg_duet consumer client, whoever owns it: offsets are ours (no commits,
 * no silent reset), logs through log.queue. name goes into client.id.
 */
bool
duet_kafka_handle_conf(rd_kafka_conf_t *conf, const char *name, char *errstr, size_t errlen)
{
	return duet_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errlen) &&
		duet_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errlen) &&
		duet_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, errlen) &&
	/* Never librdkafka's silent jump to the end: an offset out of range is an error we handle. */
		duet_kafka_conf_set(conf, "auto.offset.reset", "error", errstr, errlen) &&
		duet_kafka_conf_set(conf, "client.id", psprintf("pg_duet-%s", name), errstr, errlen) &&
		duet_kafka_conf_set(conf, "log.queue", "true", errstr, errlen) &&
	/* how fresh the watermarks are, and when an outage is over (kafka_stats.c) */
		duet_kafka_conf_set(conf, "statistics.interval.ms", psprintf("%d", duet_kafka_statistics_ms), errstr, errlen);
}

/*
 * rd_kafka_new with conf (taken, whatever the outcome), opaque and callbacks; the log lines go to
 * the main queue (with the errors), which the caller serves or forwards. NULL (errstr says why) on
 * failure.
 */
rd_kafka_t *
duet_kafka_handle_create(rd_kafka_conf_t *conf, void *opaque,
						 void (*on_error) (rd_kafka_t *, int, const char *, void *),
						 void (*on_log) (const rd_kafka_t *, int, const char *, const char *),
						 int (*on_stats) (rd_kafka_t *, char *, size_t, void *),
						 char *errstr, size_t errlen)
{
	rd_kafka_t *rk;

	rd_kafka_conf_set_opaque(conf, opaque);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_stats_cb(conf, on_stats);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errlen);
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);	/* rd_kafka_new takes it only when it succeeds */
		return NULL;
	}
	rd_kafka_set_log_queue(rk, NULL);	/* logs into the main queue */
	return rk;
}

/* Opens the group's handle: a member of a consumer group's own client, else the shared one. */
bool
duet_kafka_handle_new(Consumer *c, char *errstr, size_t errlen, bool *transient)
{
	rd_kafka_conf_t *conf;

	*transient = false;
	if (!c->group_mode)
		return duet_kafka_client_attach(c, errstr, errlen, transient);

	conf = duet_kafka_conf_new(c->brokers, c->properties, errstr, errlen);
	if (conf == NULL ||
		!duet_kafka_handle_conf(conf, c->name, errstr, errlen) ||
		!duet_kafka_group_conf(c, conf, errstr, errlen))
	{
		if (conf)
			rd_kafka_conf_destroy(conf);
		return false;
	}
	c->rk = duet_kafka_handle_create(conf, c, error_cb, log_cb, stats_cb, errstr, errlen);
	if (c->rk == NULL)
		return false;
	c->lookup_rk = c->rk;		/* one member per client: lookups wait behind its fetches */
	rd_kafka_poll_set_consumer(c->rk);	/* the main queue (errors, logs) into the consumer queue */
	c->queue = rd_kafka_queue_get_consumer(c->rk);
	if (!duet_kafka_event_pipe(c->queue, c->event_fd, errstr, errlen))
	{
		duet_kafka_handle_destroy(c);
		*transient = true;		/* out of file descriptors: not the consumer's fault */
		return false;
	}
	return true;
}

/*
 * A pipe that the queue writes a byte to when it goes from empty to not empty; false (errstr
 * says why) when there are no file descriptors left.
 */
bool
duet_kafka_event_pipe(rd_kafka_queue_t *queue, int fd[2], char *errstr, size_t errlen)
{
	if (pipe2(fd, O_NONBLOCK | O_CLOEXEC) != 0)
	{
		snprintf(errstr, errlen, "could not create a pipe: %m");
		fd[0] = fd[1] = -1;
		return false;
	}
	rd_kafka_queue_io_event_enable(queue, fd[1], "1", 1);
	return true;
}

/* Empties an event pipe (its queue is served next). */
void
duet_kafka_event_pipe_drain(int fd)
{
	char		buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

void
duet_kafka_event_pipe_close(rd_kafka_queue_t *queue, int fd[2])
{
	if (queue)
		rd_kafka_queue_io_event_enable(queue, -1, NULL, 0);
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	fd[0] = fd[1] = -1;
}

/*
 * Takes up to n messages (or errors) for the group without waiting: from the lane it follows in
 * the shared client (kafka_lane.c); a group member's from its consumer queue, one message at a
 * time by rd_kafka_consumer_poll, which also runs its rebalance callback.
 */
int
duet_kafka_handle_take(Consumer *c, rd_kafka_message_t **msgs, int n)
{
	int			got = 0;

	if (!c->group_mode)
		return duet_kafka_lane_take(c, msgs, n);
	while (got < n && (msgs[got] = rd_kafka_consumer_poll(c->rk, 0)) != NULL)
		got++;
	return got;
}

void
duet_kafka_handle_event(Consumer *c)
{
	duet_kafka_event_pipe_drain(c->event_fd[0]);
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
			duet_kafka_slot_watermark(c->slot, c->assigned->elems[i].partition, high, 0);
	}
}

void
duet_kafka_handle_destroy(Consumer *c)
{
	if (!c->group_mode)
	{
		duet_kafka_client_detach(c);
		return;
	}
	duet_kafka_event_pipe_close(c->queue, c->event_fd);
	if (c->queue)
	{
		rd_kafka_queue_destroy(c->queue);
		c->queue = NULL;
	}
	if (c->rk)
	{
		rd_kafka_consumer_close(c->rk);
		rd_kafka_destroy(c->rk);
		c->rk = NULL;
		c->lookup_rk = NULL;
	}
}
