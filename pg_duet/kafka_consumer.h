/*
 * kafka_consumer.h — one served consumer partition group's state, shared by kafka_consumer.c
 * (open, gather, close), kafka_batch.c (a batch's transaction), kafka_gaps.c and the pool worker
 * that schedules it (kafka_pool.c).
 */
#ifndef DUET_KAFKA_CONSUMER_H
#define DUET_KAFKA_CONSUMER_H

#include "kafka.h"
#include "nodes/bitmapset.h"
#include "storage/latch.h"

#define BROKER_TIMEOUT_MS	5000

typedef enum ConsumerPhase
{
	CONSUMER_OPENING,			/* reading its row, claiming its slot, connecting, resolving offsets */
	CONSUMER_RUNNING,
	CONSUMER_BROKEN,			/* bad configuration: visible in the status until it changes */
	CONSUMER_DONE				/* stopped, dropped, changed or moved: the pool closes it */
} ConsumerPhase;

/* librdkafka log lines reaching the server log: at most LOG_LINES_PER_MINUTE a minute */
typedef struct DuetKafkaLogLimit
{
	int			in_window;		/* lines this minute */
	int			dropped;
	TimestampTz window_at;
} DuetKafkaLogLimit;

struct DuetKafkaClient;			/* kafka_client.c */
struct DuetKafkaLane;			/* kafka_lane.c */

typedef struct Consumer
{
	DuetKafkaWorkerArgs args;
	int32		pool_worker;	/* index of the pool worker serving it */
	bool		group_mode;		/* a member of Kafka group "pg_duet.<name>" (kafka_group.c) */
	MemoryContext cxt;			/* everything of this consumer; deleted at close */
	char	   *name;
	char	   *topic;
	char	   *brokers;
	char	   *start_position;
	int			batch_size;
	int			flush_ms;
	int			parallelism;
	Jsonb	   *properties;
	DuetKafkaTarget target;
	rd_kafka_t *rk;				/* its own (group mode) or its client's */
	rd_kafka_t *lookup_rk;		/* for metadata and offset lookups: its own, or its client's lookup
								 * client (never fetching, so never held behind a fetch) */
	struct DuetKafkaClient *client; /* the shared client (not group mode), NULL until opened */
	struct DuetKafkaLane *lane; /* not group mode: the fetch of its topic it follows */
	Bitmapset  *lane_parts;		/* its partitions the lane fetches for it */
	rd_kafka_message_t **inbox; /* a shared lane's messages for it, not yet taken (a ring) */
	int			inbox_head;
	int			inbox_len;
	rd_kafka_queue_t *queue;	/* group mode: the consumer queue (messages, errors, logs) */
	int			event_fd[2];	/* librdkafka writes to [1] when the queue gets something */
	rd_kafka_topic_partition_list_t *assigned;	/* offsets = next offset to commit from */
	int64	   *skip_before_ms; /* per assigned partition: skip older messages; -1 = off */
	bool	   *out_of_range;	/* per assigned partition: the broker no longer has its offset */
	bool		any_out_of_range;
	DuetKafkaSlot *slot;

	/* scheduling (kafka_pool.c) */
	ConsumerPhase phase;
	TimestampTz not_before;		/* no turn before this (error backoff, slot busy) */
	TimestampTz metadata_at;	/* partitions last looked up */
	rd_kafka_message_t **msgs;	/* gathered, not yet committed */
	int			nmsgs;
	TimestampTz first_at;		/* when msgs[0] was gathered */
	bool		pending;		/* the queue may hold more than was taken */
	DuetKafkaLogLimit log;		/* group mode: its own client's log lines */
} Consumer;

/* kafka_consumer.c */
extern Consumer *duet_kafka_consumer_new(const DuetKafkaWorkerArgs *unit, int32 pool_worker);
extern void duet_kafka_consumer_turn(Consumer *c);	/* at most one batch */
extern long duet_kafka_consumer_timeout(Consumer *c, TimestampTz now);	/* -1: only on an event */
extern void duet_kafka_consumer_close(Consumer *c);
extern void duet_kafka_consumer_failed(Consumer *c, MemoryContext cxt, const char *what, const char *hint);
extern void duet_kafka_consumer_assign(Consumer *c);
extern bool duet_kafka_consumer_resolve(Consumer *c, rd_kafka_topic_partition_list_t *parts,
										const char *position);
extern void duet_kafka_consumer_drop_messages(Consumer *c);
extern bool duet_kafka_generation_current(Consumer *c);
extern bool duet_kafka_batch_abandon(void);
extern bool duet_kafka_offset_lock(Consumer *c, int32 partition, int64 *stored);
extern bool duet_kafka_offset_moved(Consumer *c, int32 partition);

/*
 * kafka_handle.c: the group's librdkafka handle, whose queue (messages, errors, logs) signals
 * event_fd[0] when it gets something, and whose error and log callbacks run on the pool
 * worker's thread, inside rd_kafka_consumer_poll.
 */
extern bool duet_kafka_handle_new(Consumer *c, char *errstr, size_t errlen, bool *transient);
extern void duet_kafka_handle_event(Consumer *c);	/* event_fd[0] is readable */
extern void duet_kafka_handle_watermarks(Consumer *c);
extern void duet_kafka_handle_destroy(Consumer *c);
extern bool duet_kafka_event_pipe(rd_kafka_queue_t *queue, int fd[2], char *errstr, size_t errlen);
extern void duet_kafka_event_pipe_drain(int fd);
extern void duet_kafka_event_pipe_close(rd_kafka_queue_t *queue, int fd[2]);
extern bool duet_kafka_err_unreachable(int err);
extern int	duet_kafka_handle_take(Consumer *c, rd_kafka_message_t **msgs, int n);
extern rd_kafka_t *duet_kafka_handle_create(rd_kafka_conf_t *conf, void *opaque,
										   void (*on_error) (rd_kafka_t *, int, const char *, void *),
										   void (*on_log) (const rd_kafka_t *, int, const char *, const char *),
										   int (*on_stats) (rd_kafka_t *, char *, size_t, void *),
										   char *errstr, size_t errlen);
extern bool duet_kafka_handle_conf(rd_kafka_conf_t *conf, const char *name, char *errstr, size_t errlen);
extern void duet_kafka_log_line(DuetKafkaLogLimit *limit, const char *who, int level, const char *fac,
								const char *buf);

/* kafka_stats.c: one statistics event of a client, for the consumers it serves */
extern int	duet_kafka_stats_apply(List *consumers, const char *json, size_t len);

/*
 * kafka_client.c: consumers of one pool worker with the same owner, brokers and properties share one
 * librdkafka client (not in group mode); each follows a lane of it (kafka_lane.c).
 */
typedef struct DuetKafkaClient
{
	char	   *key;			/* owner, brokers and properties */
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;	/* main queue: errors and log lines of the client */
	int			event_fd[2];
	rd_kafka_t *lookup;			/* same settings, never fetches: metadata and offset lookups */
	rd_kafka_queue_t *lookup_queue; /* its main queue */
	int			lookup_fd[2];
	List	   *members;		/* Consumer * */
	List	   *lanes;			/* DuetKafkaLane *, one per topic */
	DuetKafkaLogLimit log;
} DuetKafkaClient;

extern bool duet_kafka_clients_changed; /* a client or lane (an event pipe) came or went */
extern bool duet_kafka_client_attach(Consumer *c, char *errstr, size_t errlen, bool *transient);
extern void duet_kafka_client_assign(Consumer *c);
extern void duet_kafka_client_merge(Consumer *c);
extern void duet_kafka_client_detach(Consumer *c);
extern void duet_kafka_client_wait_events(WaitEventSet *wes);
extern int	duet_kafka_client_event_count(void);
extern int	duet_kafka_client_count(void);
extern bool duet_kafka_client_event(void *user_data);
extern List *duet_kafka_lappend_top(List *list, void *p);

/*
 * kafka_lane.c: one fetch of a topic's partitions in a client, followed by the consumers at its
 * position; messages reach every follower reading their partition.
 */
/* What a lane knows of one partition of its topic. */
typedef struct DuetKafkaLanePartition
{
	int64		next;			/* offset of the next message handed out */
	int			readers;		/* followers reading it; 0 = not fetched */
	bool		stopped;		/* librdkafka stopped fetching it (offset out of range) */
} DuetKafkaLanePartition;

typedef struct DuetKafkaLane
{
	DuetKafkaClient *client;
	char	   *topic;
	rd_kafka_topic_t *rkt;
	rd_kafka_queue_t *queue;	/* its partitions are started into it */
	int			event_fd[2];
	List	   *followers;		/* Consumer * */
	int			nparts;			/* partitions 0 .. nparts - 1 have an entry in parts */
	DuetKafkaLanePartition *parts;
	bool		blocked;		/* a full inbox left messages in the queue: wake all on room */
} DuetKafkaLane;

extern DuetKafkaLane *duet_kafka_lane_new(DuetKafkaClient *cl, const char *topic);
extern DuetKafkaLane *duet_kafka_lane_of(DuetKafkaClient *cl, const char *topic);
extern bool duet_kafka_lane_fits(DuetKafkaLane *l, Consumer *c);
extern void duet_kafka_lane_place(DuetKafkaLane *l, Consumer *c);
extern void duet_kafka_lane_leave(Consumer *c, int elevel);
extern int	duet_kafka_lane_take(Consumer *c, rd_kafka_message_t **msgs, int n);
extern void duet_kafka_lane_event(DuetKafkaLane *l);
extern void duet_kafka_message_release(rd_kafka_message_t *m);

/* kafka_group.c: several servers, one consumer group. */
extern bool duet_kafka_group_conf(Consumer *c, rd_kafka_conf_t *conf, char *errstr, size_t errlen);
extern void duet_kafka_group_join(Consumer *c);
extern void duet_kafka_group_committed(Consumer *c);

/* kafka_pool.c: called before a batch runs the target's code (triggers, defaults, checks). */
extern void duet_kafka_pool_session_for(Consumer *c);

/* kafka_batch.c: one gathered batch in one transaction; false when this worker must stop. */
extern bool duet_kafka_process_batch(Consumer *c, rd_kafka_message_t **msgs, int n,
									 MemoryContext batchcxt);

/* kafka_gaps.c: settles flagged partitions; false when this worker must stop. */
extern bool duet_kafka_handle_out_of_range(Consumer *c);

#endif							/* DUET_KAFKA_CONSUMER_H */
