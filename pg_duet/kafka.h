/*
 * kafka.h — Kafka ingestion and outbox: declarations shared by the kafka_*.c files.
 *
 * Processes: a launcher (static worker, no database) keeps one supervisor per database listed in
 * duet.databases; a supervisor runs a bounded pool of ingestion workers (duet.kafka_pool_size)
 * plus the outbox publisher. Each pool worker serves its share of the (consumer, partition group)
 * units of duet.kafka_consumers (kafka_pool.c), each unit with its own librdkafka handle and its
 * own transaction per batch (kafka_consumer.c). Every served unit reports into a shared memory
 * slot, which the duet.kafka_status view reads; the pool's workers are registered there too.
 */
#ifndef DUET_KAFKA_H
#define DUET_KAFKA_H

#include "postgres.h"

#include <signal.h>

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "utils/jsonb.h"

#include <librdkafka/rdkafka.h>

#define DUET_KAFKA_MAX_SLOTS		1024	/* served (consumer, partition group) units, all databases */
#define DUET_KAFKA_MAX_POOL			32	/* most ingestion workers per database */
#define DUET_KAFKA_MAX_DBS			64	/* databases with a pool */
#define DUET_KAFKA_MAX_PARTITIONS	64	/* partitions reported per slot */
#define DUET_KAFKA_ERRLEN			256

/* What a worker is, passed in bgw_extra. */
typedef struct DuetKafkaWorkerArgs
{
	Oid			dboid;
	int32		consumer_id;	/* duet.kafka_consumers.id; 0 for the outbox publisher, -1 a pool worker */
	int32		group;			/* partition group: partitions p with p % parallelism == group;
								 * a pool worker's index */
	int32		generation;		/* duet.kafka_consumers.generation when started */
	char		dbname[NAMEDATALEN];	/* supervisor only */
} DuetKafkaWorkerArgs;

typedef enum DuetKafkaState
{
	DUET_KAFKA_STARTING,
	DUET_KAFKA_RUNNING,
	DUET_KAFKA_IDLE,
	DUET_KAFKA_BROKER_DOWN,
	DUET_KAFKA_ERROR
} DuetKafkaState;

/*
 * One served (consumer, partition group)'s counters; protected by the kafka LWLock. At most one
 * slot per (database, consumer, group) is in use: claiming it is what lets a pool worker read the
 * group's partitions (so two workers never do, whatever they think the assignment is).
 */
typedef struct DuetKafkaSlot
{
	bool		in_use;
	pid_t		pid;			/* the pool worker serving it */
	int32		pool_worker;	/* its index in the database's pool */
	Oid			dboid;
	int32		consumer_id;
	int32		group;
	char		name[NAMEDATALEN];
	DuetKafkaState state;
	uint64		rows;
	uint64		bytes;
	uint64		batches;
	uint64		errors;			/* messages sent to dead letters */
	double		rate;			/* rows/s, exponentially smoothed over ~10 s */
	char		last_error[DUET_KAFKA_ERRLEN];
	TimestampTz last_error_at;
	TimestampTz started_at;
	TimestampTz last_batch_at;
	int			npartitions;
	int32		partition[DUET_KAFKA_MAX_PARTITIONS];
	int64		high_watermark[DUET_KAFKA_MAX_PARTITIONS];
	TimestampTz high_watermark_at[DUET_KAFKA_MAX_PARTITIONS];	/* when known current (kafka_stats.c) */
} DuetKafkaSlot;

/* Settings (kafka_shmem.c). */
extern char *duet_outbox_brokers;
extern char *duet_outbox_properties;
extern int	duet_kafka_poll_ms;
extern int	duet_kafka_pool_size;
extern int	duet_kafka_statistics_ms;	/* librdkafka statistics.interval.ms; 0: off */
extern bool duet_kafka_group_mode;	/* kafka_group.c */

/* kafka_shmem.c */
extern void duet_kafka_shmem_init(void);
/* NULL when another worker serves the group (*busy) or every slot is taken. */
extern DuetKafkaSlot *duet_kafka_slot_claim(Oid dboid, int32 consumer_id, int32 group, const char *name,
											int32 pool_worker, bool *busy);
extern void duet_kafka_slot_release(DuetKafkaSlot *slot);
extern void duet_kafka_slot_set_state(DuetKafkaSlot *slot, DuetKafkaState state);
extern void duet_kafka_slot_error(DuetKafkaSlot *slot, const char *msg);
extern void duet_kafka_slot_batch(DuetKafkaSlot *slot, uint64 rows, uint64 bytes, uint64 errors,
								  double seconds);
/* fresh_at: when high was known current (its leader connected), or 0 (librdkafka's cached one) */
extern void duet_kafka_slot_watermark(DuetKafkaSlot *slot, int32 partition, int64 high, TimestampTz fresh_at);
extern void duet_kafka_slot_forget_partitions(DuetKafkaSlot *slot);
extern void duet_kafka_terminate_db_workers(Oid dboid);

/*
 * Wake-ups at commit (kafka_shmem.c keeps the waiters, kafka_wake.c the trigger): a supervisor
 * waits for committed changes of duet.kafka_consumers, a publisher for new duet.kafka_outbox rows,
 * on its latch; so do the pool workers, which also wait for changes of the pool's membership
 * (duet_kafka_pool_supervise). The statement trigger duet_kafka_changed_trigger() sets the latches
 * when the writing transaction commits. The poll interval stays as the fallback (a PREPAREd transaction, whose
 * COMMIT PREPARED runs elsewhere; a 0.1.0 schema, which has no trigger).
 */
typedef enum DuetKafkaWaitFor
{
	DUET_WAIT_CONSUMERS = 1 << 0,	/* the supervisor and the pool workers of the database */
	DUET_WAIT_OUTBOX = 1 << 1,		/* its outbox publisher */
	DUET_WAIT_POOL = 1 << 2			/* its pool workers: the pool's membership changed */
} DuetKafkaWaitFor;
extern void duet_kafka_waiter_register(int what);	/* a mask of DuetKafkaWaitFor */
extern void duet_kafka_wake(int what, Oid dboid);

/*
 * The database's pool in shared memory: its size and, per index, whether the supervisor runs
 * that worker (started, not yet seen stopped) and the pid it registered; problem says why the
 * pool cannot run (no background worker slot), empty when it can.
 */
extern void duet_kafka_pool_supervise(Oid dboid, int size, int needed, const bool *running,
									  const char *problem);
extern void duet_kafka_pool_join(int index);	/* a pool worker, once; left at exit */
extern void duet_kafka_pool_set_clients(int n);
extern int	duet_kafka_pool_members(Oid dboid, bool *live);	/* returns the size */
extern const char *duet_kafka_pool_problem(Oid dboid);	/* palloc'd, NULL when none */
extern void duet_kafka_pool_warn(const char *what);	/* WARNING with the problem, if any */

/* kafka_launcher.c */
extern void duet_kafka_register_launcher(void);
PGDLLEXPORT void duet_kafka_launcher_main(Datum arg);
PGDLLEXPORT void duet_kafka_supervisor_main(Datum arg);

/* kafka_pool.c */
PGDLLEXPORT void duet_kafka_pool_main(Datum arg);

/* kafka_outbox.c */
PGDLLEXPORT void duet_kafka_publisher_main(Datum arg);

/* kafka_conf.c: librdkafka configuration from a jsonb object of properties. */
extern bool duet_kafka_property_allowed(const char *name, bool superuser);
extern bool duet_kafka_property_secret(const char *name);

/* A consumer c's properties with its secret ones put back (SQL text, for the superuser readers). */
#define DUET_KAFKA_PROPERTIES_SQL \
	"(SELECT coalesce(c.properties, '{}') OPERATOR(pg_catalog.||) coalesce(s.properties, '{}') " \
	"FROM (SELECT) AS one LEFT JOIN duet.kafka_consumer_secrets s " \
	"ON s.consumer_id OPERATOR(pg_catalog.=) c.id)"
extern rd_kafka_conf_t *duet_kafka_conf_new(const char *brokers, Jsonb *props, char *errbuf, size_t errlen);
extern bool duet_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
								char *errbuf, size_t errlen);

/* kafka_position.c: a start position resolved against the broker. */
extern int64 duet_kafka_position_time_ms(const char *position);
extern bool duet_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
										int32 **parts, int *nparts, char *errbuf, size_t errlen);
extern bool duet_kafka_resolve_positions(rd_kafka_t *rk, const char *topic, const int32 *parts,
										 int nparts, const char *position, int timeout_ms,
										 int64 *offsets, int64 *skip_before_ms, char *errbuf,
										 size_t errlen);
extern void duet_kafka_store_positions(int32 consumer_id, const int32 *parts, const int64 *offsets,
									   const int64 *skip_before_ms, int n);

/*
 * One batch of messages into the target through COPY, bad messages set aside: kafka_ingest.c
 * (the COPY and its bisection), kafka_render.c (each message rendered as one row),
 * kafka_layout.c (which column takes which part of a message; formats; the target check).
 */
typedef enum DuetKafkaFormat
{
	DUET_FORMAT_JSON,
	DUET_FORMAT_JSONB,
	DUET_FORMAT_CSV,
	DUET_FORMAT_TEXT
} DuetKafkaFormat;

typedef struct DuetKafkaTarget
{
	Oid			relid;
	Oid			owner;			/* role the rows are written as */
	DuetKafkaFormat format;
	Jsonb	   *column_map;		/* NULL or the consumer's column_map */
	const char *topic;
	/* upsert mode (kafka_upsert.c): nkeys > 0; append mode: 0 */
	int			nkeys;
	char	  **key_columns;
	bool		keys_from_key;	/* key_source 'key': key columns from the message key */
} DuetKafkaTarget;

typedef struct DuetKafkaDeadLetter
{
	int			msgidx;			/* index into the batch */
	char	   *error;
	char	   *detail;
} DuetKafkaDeadLetter;

/*
 * A message read back from duet.kafka_dead_letters (duet_kafka_replay): librdkafka's struct, for
 * the ingest path, with what the dead letter kept of its timestamp and headers alongside (the
 * librdkafka accessors need a message of its own). m._private is &duet_kafka_replayed_marker.
 */
typedef struct DuetKafkaReplayed
{
	rd_kafka_message_t m;		/* first: a replayed message is passed as &m */
	int64		timestamp_ms;	/* -1: none */
	const char *headers;		/* JSON object text, or NULL: none */
	bool		headers_invalid;	/* they were not valid UTF-8 */
} DuetKafkaReplayed;

extern const char duet_kafka_replayed_marker;

#define DUET_KAFKA_IS_REPLAYED(msg) ((msg)->_private == (void *) &duet_kafka_replayed_marker)

/* kafka_render.c: m's headers as a JSON object text (*json NULL: none), or an error. */
extern const char *duet_kafka_headers_json(rd_kafka_message_t *m, char **json);

extern DuetKafkaFormat duet_kafka_format_parse(const char *name);
extern void duet_kafka_target_check(DuetKafkaTarget *target);
extern uint64 duet_kafka_ingest(DuetKafkaTarget *target, rd_kafka_message_t **msgs, int n,
								List **dead_letters);

/* kafka_upsert.c: the upsert settings, as given (mode, key_columns text[] or 0, key_source) or stored. */
extern void duet_kafka_upsert_parse(DuetKafkaTarget *t, const char *mode, Datum key_columns,
									const char *key_source);
extern void duet_kafka_upsert_load(DuetKafkaTarget *t, int32 consumer_id);

#endif							/* DUET_KAFKA_H */
