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
 * - A client fetches a topic's partitions in one lane (kafka_lane.c), which every consumer of the
 *   topic at the lane's position follows. Each consumer keeps its own offsets in the database;
 *   placing it (at its start, after a failed batch or a gap, with new partitions) puts it into a
 *   lane that fits its committed offsets: its own lane if it is the only follower (restarted
 *   there), else a fitting lane of a client with its settings, else a new lane in a client that
 *   does not fetch the topic yet, else a new client. A consumer that has caught up with another
 *   lane of its topic, as followed as its own or more, moves into it (duet_kafka_client_merge);
 *   the lane it left closes with its last follower, the client with its last member.
 * - Partitions are started with librdkafka's simple consumer API (rd_kafka_consume_start_queue).
 *   Why not the high-level assign(): incremental_unassign() returns before the partition's fetcher
 *   has stopped, and the stop, when it comes, clears the partition queue's forwarding; a queue
 *   forwarded again in between was cleared and the partition's messages went to the client's
 *   queue instead (a consumer stalled after a gap, once in a few runs of 053). rd_kafka_consume_stop
 *   returns only when the fetcher has stopped, and consume_start_queue forwards in the same call.
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

static List *clients = NIL;		/* DuetKafkaClient *, in TopMemoryContext */
bool		duet_kafka_clients_changed = false;

/* The lists outlive the turn that changes them (the pool worker's loop context is reset). */
List *
duet_kafka_lappend_top(List *list, void *p)
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
	Assert(cl->members == NIL && cl->lanes == NIL);
	duet_kafka_clients_changed = true;
	duet_kafka_event_pipe_close(cl->queue, cl->event_fd);
	if (cl->queue)
		rd_kafka_queue_destroy(cl->queue);
	if (cl->rk)
		rd_kafka_destroy(cl->rk);	/* its members have stopped their partitions */
	duet_kafka_event_pipe_close(cl->lookup_queue, cl->lookup_fd);
	if (cl->lookup_queue)
		rd_kafka_queue_destroy(cl->lookup_queue);
	if (cl->lookup)
		rd_kafka_destroy(cl->lookup);
	clients = list_delete_ptr(clients, cl);
	pfree(cl->key);
	pfree(cl);
}

static DuetKafkaClient *
client_new(Consumer *c, char *key, char *errstr, size_t errlen, bool *transient)
{
	DuetKafkaClient *cl = MemoryContextAllocZero(TopMemoryContext, sizeof(DuetKafkaClient));
	rd_kafka_conf_t *conf = duet_kafka_conf_new(c->brokers, c->properties, errstr, errlen);
	rd_kafka_conf_t *lookup_conf;

	cl->event_fd[0] = cl->event_fd[1] = -1;
	cl->lookup_fd[0] = cl->lookup_fd[1] = -1;
	cl->key = MemoryContextStrdup(TopMemoryContext, key);
	if (conf == NULL || !duet_kafka_handle_conf(conf, c->name, errstr, errlen))
	{
		if (conf)
			rd_kafka_conf_destroy(conf);
		pfree(cl->key);
		pfree(cl);
		return NULL;
	}
	/*
	 * Lookups (metadata, watermarks, offsets) get a client of their own: a broker answers one
	 * connection's requests in order, and holds a fetch that finds no data for
	 * fetch.wait.max.ms, so behind the lanes' fetches every lookup waited up to 500 ms and the
	 * pool worker with it (measured: 0.4 ms without a fetch, 455-548 ms behind one).
	 */
	lookup_conf = rd_kafka_conf_dup(conf);
	cl->rk = duet_kafka_handle_create(conf, cl, client_error_cb, client_log_cb, client_stats_cb, errstr, errlen);
	if (cl->rk == NULL)
	{
		rd_kafka_conf_destroy(lookup_conf);
		pfree(cl->key);
		pfree(cl);
		return NULL;
	}
	clients = duet_kafka_lappend_top(clients, cl);
	duet_kafka_clients_changed = true;
	if (!duet_kafka_conf_set(lookup_conf, "statistics.interval.ms", "0", errstr, errlen) ||
		(cl->lookup = duet_kafka_handle_create(lookup_conf, cl, client_error_cb, client_log_cb, client_stats_cb,
											   errstr, errlen)) == NULL)
	{
		client_destroy(cl);
		return NULL;
	}
	cl->queue = rd_kafka_queue_get_main(cl->rk);
	cl->lookup_queue = rd_kafka_queue_get_main(cl->lookup);
	if (!duet_kafka_event_pipe(cl->queue, cl->event_fd, errstr, errlen) ||
		!duet_kafka_event_pipe(cl->lookup_queue, cl->lookup_fd, errstr, errlen))
	{
		client_destroy(cl);
		*transient = true;
		return NULL;
	}
	return cl;
}

/* c becomes a member of cl (and no longer of the client it was in, closed if it was its last). */
static void
client_move(Consumer *c, DuetKafkaClient *cl)
{
	DuetKafkaClient *old = c->client;

	Assert(c->lane == NULL);
	if (old == cl)
		return;
	if (old)
	{
		old->members = list_delete_ptr(old->members, c);
		if (old->members == NIL)
			client_destroy(old);
	}
	cl->members = duet_kafka_lappend_top(cl->members, c);
	c->client = cl;
	c->rk = cl->rk;
	c->lookup_rk = cl->lookup;
}

/* The first client with settings key that does not fetch topic (any, if topic is NULL). */
static DuetKafkaClient *
client_with(const char *key, const char *topic)
{
	ListCell   *lc;

	foreach(lc, clients)
	{
		DuetKafkaClient *cl = lfirst(lc);

		if (strcmp(cl->key, key) == 0 && (topic == NULL || duet_kafka_lane_of(cl, topic) == NULL))
			return cl;
	}
	return NULL;
}

/*
 * At open: c joins a client with its settings (or a new one), for its metadata lookups; where it
 * reads is decided when it is placed (duet_kafka_client_assign).
 */
bool
duet_kafka_client_attach(Consumer *c, char *errstr, size_t errlen, bool *transient)
{
	char	   *key = client_key(c);
	DuetKafkaClient *cl = client_with(key, NULL);

	if (cl == NULL && (cl = client_new(c, key, errstr, errlen, transient)) == NULL)
		return false;
	client_move(c, cl);
	return true;
}

/*
 * A lane of c's topic, other than c's own, that fits c's committed offsets, in a client with c's
 * settings (those of the client c is a member of), or NULL.
 */
static DuetKafkaLane *
fitting_lane(Consumer *c)
{
	ListCell   *lc;

	foreach(lc, clients)
	{
		DuetKafkaClient *cl = lfirst(lc);
		DuetKafkaLane *l;

		if (strcmp(cl->key, c->client->key) != 0)
			continue;
		l = duet_kafka_lane_of(cl, c->topic);
		if (l != NULL && l != c->lane && duet_kafka_lane_fits(l, c))
			return l;
	}
	return NULL;
}

/*
 * Every partition of c->assigned at its committed offset, in a lane that fits (see the top of
 * the file). Messages fetched before are dropped (each start of a partition's fetch is a new
 * version in librdkafka). Other consumers' positions are not touched.
 */
void
duet_kafka_client_assign(Consumer *c)
{
	DuetKafkaLane *l = c->lane;
	DuetKafkaClient *cl;

	Assert(c->client != NULL);	/* attached at open */
	/*
	 * Alone, or where the others are. A consumer waiting out a failed batch does not stay in a
	 * shared lane: its inbox would fill meanwhile and hold the others back.
	 */
	if (l != NULL && duet_kafka_lane_fits(l, c) &&
		(list_length(l->followers) == 1 || c->not_before == 0))
	{
		duet_kafka_lane_place(l, c);
		return;
	}
	duet_kafka_lane_leave(c, WARNING);
	if ((l = fitting_lane(c)) != NULL)
	{
		client_move(c, l->client);
		duet_kafka_lane_place(l, c);
		return;
	}
	/* a client with c's settings that does not fetch its topic, c's own first */
	cl = duet_kafka_lane_of(c->client, c->topic) == NULL ? c->client : client_with(c->client->key, c->topic);
	if (cl == NULL)
	{
		char		errstr[512];
		bool		transient;

		cl = client_new(c, c->client->key, errstr, sizeof(errstr), &transient);
		if (cl == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("cannot create a Kafka client for consumer \"%s\": %s", c->name, errstr)));
	}
	client_move(c, cl);
	duet_kafka_lane_place(duet_kafka_lane_new(cl, c->topic), c);
}

/*
 * c, caught up (nothing gathered, nothing in its inbox), moves into another lane of its topic
 * that stands at its offsets and has at least as many followers as its own (so moves never go
 * back and forth): one fetch fewer once its lane is empty, and one client fewer when that had
 * no other member.
 */
void
duet_kafka_client_merge(Consumer *c)
{
	DuetKafkaLane *l;

	if (c->lane == NULL || c->nmsgs > 0 || c->inbox_len > 0 || c->any_out_of_range)
		return;
	if ((l = fitting_lane(c)) == NULL ||
		list_length(l->followers) < list_length(c->lane->followers))
		return;
	duet_kafka_lane_leave(c, WARNING);
	client_move(c, l->client);
	duet_kafka_lane_place(l, c);
	ereport(DEBUG1,
			(errmsg("Kafka consumer \"%s\" group %d now shares the fetch of topic \"%s\" with %d others",
					c->name, c->args.group, c->topic, list_length(l->followers) - 1)));
}

/* c leaves its lane and its client: the last member closes the client. */
void
duet_kafka_client_detach(Consumer *c)
{
	DuetKafkaClient *cl = c->client;

	if (cl == NULL)
		return;
	duet_kafka_lane_leave(c, LOG);
	c->rk = NULL;
	c->lookup_rk = NULL;
	c->client = NULL;
	cl->members = list_delete_ptr(cl->members, c);
	if (cl->members == NIL)
		client_destroy(cl);
}

int
duet_kafka_client_count(void)
{
	return 2 * list_length(clients);	/* librdkafka handles: each fetches, or looks up */
}

/* The clients' event pipes, into the pool worker's wait set; user_data marks them as clients'. */
void
duet_kafka_client_wait_events(WaitEventSet *wes)
{
	ListCell   *lc;

	foreach(lc, clients)
	{
		DuetKafkaClient *cl = lfirst(lc);
		ListCell   *ll;

		if (cl->event_fd[0] >= 0)
			AddWaitEventToSet(wes, WL_SOCKET_READABLE, cl->event_fd[0], NULL, cl);
		if (cl->lookup_fd[0] >= 0)
			AddWaitEventToSet(wes, WL_SOCKET_READABLE, cl->lookup_fd[0], NULL, cl);
		foreach(ll, cl->lanes)
		{
			DuetKafkaLane *l = lfirst(ll);

			if (l->event_fd[0] >= 0)
				AddWaitEventToSet(wes, WL_SOCKET_READABLE, l->event_fd[0], NULL, l);
		}
	}
	duet_kafka_clients_changed = false;
}

/* How many event pipes duet_kafka_client_wait_events adds. */
int
duet_kafka_client_event_count(void)
{
	ListCell   *lc;
	int			n = 0;

	foreach(lc, clients)
		n += 2 + list_length(((DuetKafkaClient *) lfirst(lc))->lanes);
	return n;
}

/*
 * user_data of a wait event: a client's (served here: its errors and log lines, through the
 * callbacks) or a lane's (its queue has messages: its followers take them at their next turns);
 * false when it is neither (a group member's queue).
 */
bool
duet_kafka_client_event(void *user_data)
{
	ListCell   *lc;

	foreach(lc, clients)
	{
		DuetKafkaClient *cl = lfirst(lc);
		ListCell   *ll;

		if (cl == user_data)
		{
			duet_kafka_event_pipe_drain(cl->event_fd[0]);
			duet_kafka_event_pipe_drain(cl->lookup_fd[0]);
			while (rd_kafka_poll(cl->rk, 0) > 0)
				;				/* errors and log lines, through the callbacks */
			while (rd_kafka_poll(cl->lookup, 0) > 0)
				;
			return true;
		}
		foreach(ll, cl->lanes)
			if (lfirst(ll) == user_data)
			{
				duet_kafka_lane_event(lfirst(ll));
				return true;
			}
	}
	return false;
}
