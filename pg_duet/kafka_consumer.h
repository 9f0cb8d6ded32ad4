/*
 * kafka_consumer.h — one consumer worker's state, shared by kafka_consumer.c, kafka_batch.c and
 * kafka_gaps.c.
 */
#ifndef DUET_KAFKA_CONSUMER_H
#define DUET_KAFKA_CONSUMER_H

#include "kafka.h"

#define BROKER_TIMEOUT_MS	5000

typedef struct Consumer
{
	DuetKafkaWorkerArgs args;
	char	   *name;
	char	   *topic;
	char	   *brokers;
	char	   *start_position;
	int			batch_size;
	int			flush_ms;
	int			parallelism;
	Jsonb	   *properties;
	DuetKafkaTarget target;
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *assigned;	/* offsets = next offset to commit from */
	int64	   *skip_before_ms; /* per assigned partition: skip older messages; -1 = off */
	bool	   *out_of_range;	/* per assigned partition: the broker no longer has its offset */
	bool		any_out_of_range;
	DuetKafkaSlot *slot;
} Consumer;

/* kafka_consumer.c */
extern void duet_kafka_consumer_sleep(long ms);	/* SIGTERM ends the worker here (die) */
extern void duet_kafka_consumer_assign(Consumer *c);
extern bool duet_kafka_generation_current(Consumer *c);
extern bool duet_kafka_batch_abandon(void);
extern bool duet_kafka_offset_lock(Consumer *c, int32 partition, int64 *stored);
extern bool duet_kafka_offset_moved(Consumer *c, int32 partition);

/* kafka_batch.c: one gathered batch in one transaction; false when this worker must stop. */
extern bool duet_kafka_process_batch(Consumer *c, rd_kafka_message_t **msgs, int n,
									 MemoryContext batchcxt);

/* kafka_gaps.c: settles flagged partitions; false when this worker must stop. */
extern bool duet_kafka_handle_out_of_range(Consumer *c);

#endif							/* DUET_KAFKA_CONSUMER_H */
