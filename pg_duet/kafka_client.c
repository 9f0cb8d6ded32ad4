/*
 * kafka_client.c — one librdkafka client shared by the consumers of a pool worker.
 *
 * An idle librdkafka client costs about 0.1% of a core (its threads wake on their timers, its
 * fetch requests come back empty), so a pool worker serving a hundred consumers with a client each
 * spent ~10% of a core doing nothing. Consumers of one pool worker with the same owner, brokers
 * and properties (secret ones included) therefore share one client (rd_kafka_t): one set of
 * threads, one connection and one fetch request per broker for all their partitions. Consumers of
 * different owners never share one, so one tenant's client (its errors, its logs, its
 * connections) is never another's.
 *
 * - Each consumer has its own queue (rd_kafka_queue_new) and its own event pipe, and starts
 *   each of its partitions into it with librdkafka's simple consumer API
 *   (rd_kafka_consume_start_queue), so its messages and its partitions' errors (offset out of
 *   range) reach only it. It keeps its own offsets in the database as before; moving one
 *   consumer's partitions (a failed batch, a gap) stops only those and starts them again at the
 *   committed offsets; the others' fetch positions are left alone.
 * - Why not the high-level assign(): incremental_unassign() returns before the partition's fetcher
 *   has stopped, and the stop, when it comes, clears the partition queue's forwarding; a queue
 *   forwarded again in between was cleared and the partition's messages went to the client's
 *   queue instead (a consumer stalled after a gap, once in a few runs of 053). rd_kafka_consume_stop
 *   returns only when the fetcher has stopped, and consume_start_queue forwards in the same call.
 * - A client fetches a partition at one position only, so two consumers reading the same topic
 *   (different consumers, each with its own offsets) are never in one client: the second gets
 *   another client with the same settings. The partition groups of one consumer read disjoint
 *   partitions and may share.
 * - The client's main queue carries errors and log lines (log.queue); the pool worker waits on
 *   its event pipe too and serves it here (rd_kafka_poll): an error sets every member's status, a
 *   log line goes to the server log with the members' names, rate-limited per client.
 * - A consumer group member (duet.kafka_group_mode) keeps a client of its own (kafka_handle.c):
 *   the group protocol needs one member per client.
 *
 * The client is destroyed with its last member.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "storage/latch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "kafka.h"
#include "kafka_consumer.h"

typedef struct DuetKafkaClient
{
	char	   *key;			/* owner, brokers and properties */
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;	/* main queue: errors and log lines of the client */
	int			event_fd[2];
	List	   *members;		/* Consumer * */
	DuetKafkaLogLimit log;
} DuetKafkaClient;

static List *clients = NIL;		/* DuetKafkaClient *, in TopMemoryContext */

/* The lists outlive the turn that changes them (the pool worker's loop context is reset). */
static List *
lappend_top(List *list, void *p)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	list = lappend(list, p);
	MemoryContextSwitchTo(old);
	return list;
}

static char *
client_key(Consumer *c)
{
	return psprintf("%u\n%s\n%s", c->target.owner, c->brokers,
					c->properties ? JsonbToCString(NULL, &c->properties->root, VARSIZE(c->properties)) : "");
}

/* "consumer "a"" or "consumers "a", "b", "c" and 7 more": who a client's log line is about. */
static char *
members_text(DuetKafkaClient *cl)
{
	StringInfoData s;
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, cl->members)
	{
		Consumer   *c = lfirst(lc);

		if (!list_member_int(names, c->args.consumer_id))	/* its partition groups once */
			names = lappend_int(names, c->args.consumer_id);
	}
	initStringInfo(&s);
	appendStringInfoString(&s, list_length(names) == 1 ? "consumer " : "consumers ");
	list_free(names);
	names = NIL;
	foreach(lc, cl->members)
	{
		Consumer   *c = lfirst(lc);

		if (list_member_int(names, c->args.consumer_id))
			continue;
		if (list_length(names) == 3)
		{
			appendStringInfoString(&s, " and more");
			break;
		}
		appendStringInfo(&s, "%s\"%s\"", names ? ", " : "", c->name);
		names = lappend_int(names, c->args.consumer_id);
	}
	list_free(names);
	return s.data;
}

static void
client_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	DuetKafkaClient *cl = opaque;
	ListCell   *lc;

	foreach(lc, cl->members)
	{
		Consumer   *c = lfirst(lc);

		if (c->slot == NULL)
			continue;
		duet_kafka_slot_error(c->slot, reason);
		if (duet_kafka_err_unreachable(err))
			duet_kafka_slot_set_state(c->slot, DUET_KAFKA_BROKER_DOWN);
	}
}

static int
client_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	DuetKafkaClient *cl = opaque;

	return duet_kafka_stats_apply(cl->members, json, len);
}

static void
client_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	DuetKafkaClient *cl = rd_kafka_opaque(rk);

	if (cl == NULL || cl->members == NIL)
		return;
	duet_kafka_log_line(&cl->log, members_text(cl), level, fac, buf);
}

static void
client_destroy(DuetKafkaClient *cl)
{
	duet_kafka_event_pipe_close(cl->queue, cl->event_fd);
	if (cl->queue)
		rd_kafka_queue_destroy(cl->queue);
	if (cl->rk)
		rd_kafka_destroy(cl->rk);	/* its members have stopped their partitions */
	clients = list_delete_ptr(clients, cl);
	pfree(cl->key);
	pfree(cl);
}

static DuetKafkaClient *
client_new(Consumer *c, char *key, char *errstr, size_t errlen, bool *transient)
{
	DuetKafkaClient *cl = MemoryContextAllocZero(TopMemoryContext, sizeof(DuetKafkaClient));
	rd_kafka_conf_t *conf = duet_kafka_conf_new(c->brokers, c->properties, errstr, errlen);

	cl->event_fd[0] = cl->event_fd[1] = -1;
	cl->key = MemoryContextStrdup(TopMemoryContext, key);
	if (conf == NULL || !duet_kafka_handle_conf(conf, c->name, errstr, errlen))
	{
		if (conf)
			rd_kafka_conf_destroy(conf);
		pfree(cl->key);
		pfree(cl);
		return NULL;
	}
	cl->rk = duet_kafka_handle_create(conf, cl, client_error_cb, client_log_cb, client_stats_cb, errstr, errlen);
	if (cl->rk == NULL)
	{
		pfree(cl->key);
		pfree(cl);
		return NULL;
	}
	clients = lappend_top(clients, cl);
	cl->queue = rd_kafka_queue_get_main(cl->rk);
	if (!duet_kafka_event_pipe(cl->queue, cl->event_fd, errstr, errlen))
	{
		client_destroy(cl);
		*transient = true;
		return NULL;
	}
	return cl;
}

/* Whether c may join cl: same settings, and no other consumer of cl reads c's topic. */
static bool
client_fits(DuetKafkaClient *cl, Consumer *c, const char *key)
{
	ListCell   *lc;

	if (strcmp(cl->key, key) != 0)
		return false;
	foreach(lc, cl->members)
	{
		Consumer   *m = lfirst(lc);

		if (m->args.consumer_id != c->args.consumer_id && strcmp(m->topic, c->topic) == 0)
			return false;
	}
	return true;
}

bool
duet_kafka_client_attach(Consumer *c, char *errstr, size_t errlen, bool *transient)
{
	char	   *key = client_key(c);
	DuetKafkaClient *cl = NULL;
	ListCell   *lc;

	foreach(lc, clients)
		if (client_fits(lfirst(lc), c, key))
		{
			cl = lfirst(lc);
			break;
		}
	if (cl == NULL && (cl = client_new(c, key, errstr, errlen, transient)) == NULL)
		return false;
	c->queue = rd_kafka_queue_new(cl->rk);
	if (!duet_kafka_event_pipe(c->queue, c->event_fd, errstr, errlen))
	{
		rd_kafka_queue_destroy(c->queue);
		c->queue = NULL;
		if (cl->members == NIL)
			client_destroy(cl);
		*transient = true;		/* out of file descriptors: not the consumer's fault */
		return false;
	}
	/* the topic's settings are the client's (auto.offset.reset = error among them) */
	c->rkt = rd_kafka_topic_new(cl->rk, c->topic, NULL);
	if (c->rkt == NULL)
	{
		snprintf(errstr, errlen, "cannot open Kafka topic \"%s\": %s", c->topic,
				 rd_kafka_err2str(rd_kafka_last_error()));
		duet_kafka_event_pipe_close(c->queue, c->event_fd);
		rd_kafka_queue_destroy(c->queue);
		c->queue = NULL;
		if (cl->members == NIL)
			client_destroy(cl);
		return false;			/* a bad topic name does not heal */
	}
	c->client = cl;
	c->rk = cl->rk;
	c->client_parts = rd_kafka_topic_partition_list_new(0);
	cl->members = lappend_top(cl->members, c);
	return true;
}

/* Stops every partition the client fetches for c; each stop returns when its fetcher has stopped. */
static void
stop_partitions(Consumer *c, int elevel)
{
	for (int i = 0; i < c->client_parts->cnt; i++)
		if (rd_kafka_consume_stop(c->rkt, c->client_parts->elems[i].partition) != 0)
			ereport(elevel,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("cannot stop reading partition %d of Kafka topic \"%s\": %s",
							c->client_parts->elems[i].partition, c->topic,
							rd_kafka_err2str(rd_kafka_last_error()))));
	rd_kafka_topic_partition_list_destroy(c->client_parts);
	c->client_parts = rd_kafka_topic_partition_list_new(c->assigned ? c->assigned->cnt : 0);
}

/*
 * Every partition of c->assigned at its committed offset, into c's queue: the ones the client
 * already fetches for c are stopped first (a seek does not restart a partition stopped by an
 * offset out of range). Messages fetched before are dropped by librdkafka (each start of a
 * partition's fetch is a new version). Other members' partitions are not touched.
 */
void
duet_kafka_client_assign(Consumer *c)
{
	stop_partitions(c, ERROR);
	for (int i = 0; i < c->assigned->cnt; i++)
	{
		rd_kafka_topic_partition_t *tp = &c->assigned->elems[i];

		if (rd_kafka_consume_start_queue(c->rkt, tp->partition, tp->offset, c->queue) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("cannot read partition %d of Kafka topic \"%s\" from offset " INT64_FORMAT ": %s",
							tp->partition, c->topic, tp->offset, rd_kafka_err2str(rd_kafka_last_error()))));
		rd_kafka_topic_partition_list_add(c->client_parts, tp->topic, tp->partition);
	}
}

/* c leaves its client: its partitions are stopped; the last one closes it. */
void
duet_kafka_client_detach(Consumer *c)
{
	DuetKafkaClient *cl = c->client;

	if (cl == NULL)
		return;
	if (c->client_parts)
	{
		stop_partitions(c, LOG);
		rd_kafka_topic_partition_list_destroy(c->client_parts);
		c->client_parts = NULL;
	}
	if (c->rkt)
		rd_kafka_topic_destroy(c->rkt);
	c->rkt = NULL;
	duet_kafka_event_pipe_close(c->queue, c->event_fd);
	if (c->queue)
		rd_kafka_queue_destroy(c->queue);
	c->queue = NULL;
	c->rk = NULL;
	c->client = NULL;
	cl->members = list_delete_ptr(cl->members, c);
	if (cl->members == NIL)
		client_destroy(cl);
}

int
duet_kafka_client_count(void)
{
	return list_length(clients);
}

/* The clients' event pipes, into the pool worker's wait set; user_data marks them as clients'. */
void
duet_kafka_client_wait_events(WaitEventSet *wes)
{
	ListCell   *lc;

	foreach(lc, clients)
	{
		DuetKafkaClient *cl = lfirst(lc);

		if (cl->event_fd[0] >= 0)
			AddWaitEventToSet(wes, WL_SOCKET_READABLE, cl->event_fd[0], NULL, cl);
	}
}

/*
 * user_data of a wait event: a client's (served here: its errors and log lines, through the
 * callbacks) or a consumer's (its queue has messages: taken at its next turn).
 */
void
duet_kafka_client_event(void *user_data)
{
	ListCell   *lc;

	foreach(lc, clients)
	{
		DuetKafkaClient *cl = lfirst(lc);

		if (cl != user_data)
			continue;
		duet_kafka_event_pipe_drain(cl->event_fd[0]);
		while (rd_kafka_poll(cl->rk, 0) > 0)
			;					/* errors and log lines, through the callbacks */
		return;
	}
	duet_kafka_handle_event(user_data);
}
