/*
 * kafka_lane.c — one fetch of a topic's partitions, followed by every consumer at its position.
 *
 * A librdkafka client fetches a partition at one position only. Consumers reading the same topic
 * (several consumers, each with its own offsets) used to need a client each, and an idle client
 * costs ~0.07% of a core in its threads' timers and empty fetches: 100 idle consumers of one
 * topic cost 7% of a core where 100 of 100 topics, sharing one client, cost 0.6%. A lane is one
 * fetch of a topic in a client (kafka_client.c); the consumers at its position follow it and get
 * every message of their partitions from it.
 *
 * - The lane's partitions are started into its own queue (rd_kafka_consume_start_queue), each at
 *   the committed offset of the first follower reading it; for each partition the lane knows the
 *   offset of the next message it hands out (parts[].next).
 * - A consumer follows a lane only where it stands: each of its partitions that another follower
 *   reads must be fetched at exactly the consumer's committed offset (parts[].next equal to it, not
 *   stopped); the others are started (or restarted) for it. So every follower receives every
 *   message from its committed offset on, none missing, none before it.
 * - With one follower, the follower takes from the lane's queue itself, as before lanes existed.
 *   With several, a follower's take first moves what the queue holds into every follower's inbox
 *   (a ring of its batch size; as much as the fullest inbox has room for), each message shared by
 *   a reference count. All followers are served by one pool worker, turn by turn, so a follower
 *   whose inbox is full holds the others back by at most one of its batches.
 * - A follower that must be elsewhere — a failed batch goes back to its committed offsets, an
 *   offset out of range stops a partition — leaves: kafka_client.c places it at its offsets, in a
 *   lane of its own (in another client when this one fetches the topic), and moves it back into a
 *   shared lane once it has caught up with it (duet_kafka_client_merge).
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "kafka_consumer.h"

/* Messages handed to more than one follower: released when the last one is done with it. */
typedef struct SharedMessage
{
	rd_kafka_message_t *m;		/* the key */
	int			refs;
} SharedMessage;

static HTAB *shared_messages;
static long nshared;

void
duet_kafka_message_release(rd_kafka_message_t *m)
{
	if (nshared > 0)
	{
		SharedMessage *s = hash_search(shared_messages, &m, HASH_FIND, NULL);

		if (s != NULL)
		{
			if (--s->refs > 0)
				return;
			hash_search(shared_messages, &m, HASH_REMOVE, NULL);
			nshared--;
		}
	}
	rd_kafka_message_destroy(m);
}

static void
message_share(rd_kafka_message_t *m, int refs)
{
	SharedMessage *s;

	if (shared_messages == NULL)
	{
		HASHCTL		ctl = {.keysize = sizeof(rd_kafka_message_t *),.entrysize = sizeof(SharedMessage),
		.hcxt = TopMemoryContext};

		shared_messages = hash_create("duet kafka shared messages", 1024, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	s = hash_search(shared_messages, &m, HASH_ENTER, NULL);
	s->refs = refs;
	nshared++;
}

/* ---- inboxes ---- */

static void
inbox_put(Consumer *c, rd_kafka_message_t *m)
{
	Assert(c->inbox_len < c->batch_size);
	c->inbox[(c->inbox_head + c->inbox_len++) % c->batch_size] = m;
}

static int
inbox_take(Consumer *c, rd_kafka_message_t **msgs, int n)
{
	int			got = 0;

	while (got < n && c->inbox_len > 0)
	{
		msgs[got++] = c->inbox[c->inbox_head];
		c->inbox_head = (c->inbox_head + 1) % c->batch_size;
		c->inbox_len--;
	}
	return got;
}

static void
inbox_drop(Consumer *c)
{
	rd_kafka_message_t *m;

	while (inbox_take(c, &m, 1) == 1)
		duet_kafka_message_release(m);
	c->inbox_head = 0;
}

/* ---- lanes ---- */

static void lane_destroy(DuetKafkaLane *l);
static void lane_wake(DuetKafkaLane *l);

DuetKafkaLane *
duet_kafka_lane_of(DuetKafkaClient *cl, const char *topic)
{
	ListCell   *lc;

	foreach(lc, cl->lanes)
	{
		DuetKafkaLane *l = lfirst(lc);

		if (strcmp(l->topic, topic) == 0)
			return l;
	}
	return NULL;
}

/* A new lane of topic in cl, without partitions; ERROR if librdkafka or the system refuses. */
DuetKafkaLane *
duet_kafka_lane_new(DuetKafkaClient *cl, const char *topic)
{
	DuetKafkaLane *l = MemoryContextAllocZero(TopMemoryContext, sizeof(DuetKafkaLane));
	char		errstr[256];

	l->client = cl;
	l->topic = MemoryContextStrdup(TopMemoryContext, topic);
	l->event_fd[0] = l->event_fd[1] = -1;
	/* the topic's settings are the client's (auto.offset.reset = error among them) */
	l->rkt = rd_kafka_topic_new(cl->rk, topic, NULL);
	if (l->rkt == NULL)
	{
		pfree(l->topic);
		pfree(l);
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("cannot open Kafka topic \"%s\": %s", topic, rd_kafka_err2str(rd_kafka_last_error()))));
	}
	l->queue = rd_kafka_queue_new(cl->rk);
	cl->lanes = duet_kafka_lappend_top(cl->lanes, l);
	duet_kafka_clients_changed = true;
	if (!duet_kafka_event_pipe(l->queue, l->event_fd, errstr, sizeof(errstr)))
	{
		lane_destroy(l);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("cannot read Kafka topic \"%s\": %s", topic, errstr)));
	}
	return l;
}

/* A lane without followers: its partitions are stopped already. */
static void
lane_destroy(DuetKafkaLane *l)
{
	Assert(l->followers == NIL);
	duet_kafka_event_pipe_close(l->queue, l->event_fd);
	rd_kafka_queue_destroy(l->queue);	/* with what it still holds */
	rd_kafka_topic_destroy(l->rkt);
	l->client->lanes = list_delete_ptr(l->client->lanes, l);
	duet_kafka_clients_changed = true;
	if (l->parts)
		pfree(l->parts);
	pfree(l->topic);
	pfree(l);
}

/* Entries for partitions 0 .. partition. */
static void
lane_grow(DuetKafkaLane *l, int32 partition)
{
	int			n = partition + 1;

	if (n <= l->nparts)
		return;
	if (l->parts == NULL)
		l->parts = MemoryContextAlloc(TopMemoryContext, sizeof(DuetKafkaLanePartition) * n);
	else
		l->parts = repalloc(l->parts, sizeof(DuetKafkaLanePartition) * n);
	memset(l->parts + l->nparts, 0, sizeof(DuetKafkaLanePartition) * (n - l->nparts));
	l->nparts = n;
}

/* Followers other than c reading partition p of l. */
static int
other_readers(DuetKafkaLane *l, Consumer *c, int32 p)
{
	if (p >= l->nparts)
		return 0;
	return l->parts[p].readers - (c->lane == l && bms_is_member(p, c->lane_parts) ? 1 : 0);
}

/*
 * Whether c can follow l at its committed offsets: every partition of c that another follower
 * reads is fetched at exactly c's offset. Followers have one batch size: the inboxes are that
 * size, and a smaller one would cut the others' batches to it.
 */
bool
duet_kafka_lane_fits(DuetKafkaLane *l, Consumer *c)
{
	ListCell   *lc;

	foreach(lc, l->followers)
		if (((Consumer *) lfirst(lc))->batch_size != c->batch_size)
			return false;
	for (int i = 0; i < c->assigned->cnt; i++)
	{
		rd_kafka_topic_partition_t *tp = &c->assigned->elems[i];

		if (other_readers(l, c, tp->partition) > 0 &&
			(l->parts[tp->partition].stopped || l->parts[tp->partition].next != tp->offset))
			return false;
	}
	return true;
}

static void
start_partition(DuetKafkaLane *l, int32 p, int64 offset)
{
	if (rd_kafka_consume_start_queue(l->rkt, p, offset, l->queue) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("cannot read partition %d of Kafka topic \"%s\" from offset " INT64_FORMAT ": %s",
						p, l->topic, offset, rd_kafka_err2str(rd_kafka_last_error()))));
	l->parts[p].next = offset;
	l->parts[p].stopped = false;
}

/* Stops fetching p; returns when its fetcher has stopped (its queued messages are dropped). */
static void
stop_partition(DuetKafkaLane *l, int32 p, int elevel)
{
	if (rd_kafka_consume_stop(l->rkt, p) != 0)
		ereport(elevel,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("cannot stop reading partition %d of Kafka topic \"%s\": %s",
						p, l->topic, rd_kafka_err2str(rd_kafka_last_error()))));
}

/*
 * c follows l (which fits it) from its committed offsets: a partition only c reads is started
 * again there if it is not fetched from exactly there, one nobody reads is started. What c's
 * inbox held was fetched past those offsets and is dropped.
 */
static void
lane_place(DuetKafkaLane *l, Consumer *c)
{
	Assert(c->lane == NULL || c->lane == l);
	inbox_drop(c);
	if (c->inbox == NULL)
		c->inbox = MemoryContextAlloc(c->cxt, sizeof(rd_kafka_message_t *) * c->batch_size);
	if (c->lane == NULL)
	{
		c->lane = l;
		l->followers = duet_kafka_lappend_top(l->followers, c);
	}
	for (int i = 0; i < c->assigned->cnt; i++)
	{
		int32		p = c->assigned->elems[i].partition;
		int64		offset = c->assigned->elems[i].offset;

		lane_grow(l, p);
		if (!bms_is_member(p, c->lane_parts))
		{
			MemoryContext old;

			if (l->parts[p].readers == 0)
				start_partition(l, p, offset);	/* counted only once it is fetched */
			l->parts[p].readers++;
			old = MemoryContextSwitchTo(c->cxt);
			c->lane_parts = bms_add_member(c->lane_parts, p);
			MemoryContextSwitchTo(old);
		}
		else if (l->parts[p].readers == 1 && (l->parts[p].stopped || l->parts[p].next != offset))
		{
			/* a seek does not restart a partition stopped by an offset out of range */
			stop_partition(l, p, ERROR);
			start_partition(l, p, offset);
		}
	}
}

/*
 * lane_place; if librdkafka refuses a partition, c leaves the lane altogether (c->lane NULL: its
 * next take places it again) rather than follow it with a partition nobody fetches.
 */
void
duet_kafka_lane_place(DuetKafkaLane *l, Consumer *c)
{
	PG_TRY();
	{
		lane_place(l, c);
	}
	PG_CATCH();
	{
		duet_kafka_lane_leave(c, LOG);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * c stops following its lane; partitions nobody else reads are stopped, an empty lane closed. A
 * stop that fails is logged at elevel (LOG or WARNING, never an error: the lane's state stays
 * whole); its messages reach nobody and are dropped.
 */
void
duet_kafka_lane_leave(Consumer *c, int elevel)
{
	DuetKafkaLane *l = c->lane;
	int			p = -1;

	Assert(elevel < ERROR);
	if (l == NULL)
		return;
	inbox_drop(c);
	while ((p = bms_next_member(c->lane_parts, p)) >= 0)
		if (--l->parts[p].readers == 0)
			stop_partition(l, p, elevel);
	bms_free(c->lane_parts);
	c->lane_parts = NULL;
	l->followers = list_delete_ptr(l->followers, c);
	c->lane = NULL;
	if (l->followers == NIL)
		lane_destroy(l);
	else
		lane_wake(l);			/* what c's full inbox held back in the queue is theirs now */
}

/* Every follower takes at its next turn (the queue's pipe fires only when it was empty). */
static void
lane_wake(DuetKafkaLane *l)
{
	ListCell   *lc;

	l->blocked = false;
	foreach(lc, l->followers)
		((Consumer *) lfirst(lc))->pending = true;
}

/* What a message taken from l's queue tells about its partition. */
static void
lane_note(DuetKafkaLane *l, rd_kafka_message_t *m)
{
	if (m->partition < 0 || m->partition >= l->nparts)
		return;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		l->parts[m->partition].next = m->offset + 1;
	else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
			 m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
		l->parts[m->partition].stopped = true;	/* fetching it has stopped */
}

/*
 * Moves what l's queue holds (as much as the fullest inbox has room for) to the inboxes of the
 * followers reading each message's partition; an error without a partition goes to all.
 */
static void
lane_pump(DuetKafkaLane *l)
{
	int			room = PG_INT32_MAX;
	ListCell   *lc;
	rd_kafka_message_t **buf;
	ssize_t		got;

	foreach(lc, l->followers)
	{
		Consumer   *f = lfirst(lc);

		room = Min(room, f->batch_size - f->inbox_len);
	}
	if (room <= 0)
	{
		l->blocked = true;		/* lane_take wakes everyone once there is room */
		return;
	}
	buf = palloc(sizeof(rd_kafka_message_t *) * room);
	got = rd_kafka_consume_batch_queue(l->queue, 0, buf, room);
	if (got == room)
		l->blocked = true;		/* the queue may hold more than there was room for */
	for (ssize_t i = 0; i < got; i++)
	{
		rd_kafka_message_t *m = buf[i];
		bool		anyone = m->partition < 0 || m->partition >= l->nparts;
		int			refs = 0;

		lane_note(l, m);
		foreach(lc, l->followers)
		{
			Consumer   *f = lfirst(lc);

			if (anyone || bms_is_member(m->partition, f->lane_parts))
			{
				inbox_put(f, m);
				f->pending = true;
				refs++;
			}
		}
		if (refs == 0)
			rd_kafka_message_destroy(m);
		else if (refs > 1)
			message_share(m, refs);
	}
	pfree(buf);
}

/* Up to n messages (or errors) for c, without waiting. */
int
duet_kafka_lane_take(Consumer *c, rd_kafka_message_t **msgs, int n)
{
	DuetKafkaLane *l = c->lane;
	int			got;

	if (l == NULL)
		return 0;
	got = inbox_take(c, msgs, n);
	if (got > 0 && l->blocked)
		lane_wake(l);			/* room again: the others' next turns pump */
	if (got == n)
		return got;
	if (list_length(l->followers) == 1)
	{
		ssize_t		r = rd_kafka_consume_batch_queue(l->queue, 0, msgs + got, n - got);

		for (ssize_t i = 0; i < r; i++)
			lane_note(l, msgs[got + i]);
		return got + (r > 0 ? (int) r : 0);
	}
	lane_pump(l);
	return got + inbox_take(c, msgs + got, n - got);
}

/* l's queue got something: every follower looks at its next turn. */
void
duet_kafka_lane_event(DuetKafkaLane *l)
{
	duet_kafka_event_pipe_drain(l->event_fd[0]);
	lane_wake(l);
}
