/*
 * kafka_sql_int.h — the argument checks and catalog steps of the Kafka SQL API, shared by its
 * files:
 *
 *   kafka_sql.c     consume, stop, start, drop, reset, topic grants, publish
 *   kafka_alter.c   duet_kafka_alter: change a consumer, keeping its offsets
 *   kafka_replay.c  duet_kafka_replay: dead letters into the target again, exactly once
 *
 * Not used outside these files.
 */
#ifndef DUET_KAFKA_SQL_INT_H
#define DUET_KAFKA_SQL_INT_H

#include "fmgr.h"
#include "utils/jsonb.h"

#include "kafka.h"

/* Argument n, not null (errors name it what); an integer also in [min, max]. */
extern char *duet_kafka_arg_text(FunctionCallInfo fcinfo, int n, const char *what);
extern int	duet_kafka_arg_int(FunctionCallInfo fcinfo, int n, const char *what, int min, int max);

/* 'earliest', 'latest' or a timestamp, normalised; errors otherwise. */
extern char *duet_kafka_check_position(const char *pos);
extern void duet_kafka_check_column_map(Jsonb *map, DuetKafkaFormat format);

/* Checks the properties (as the caller); returns the names of the secret ones, a text[] Datum. */
extern Datum duet_kafka_check_properties(Jsonb *props, const char *brokers);

/* Errors unless owner may INSERT into target (the consumer writes as its owner). */
extern void duet_kafka_check_insert(Oid target, Oid owner);

/*
 * Locks the consumer's row (FOR UPDATE) and checks caller may manage it (its owner, a member of
 * the owner, or a superuser); returns its id. SPI connected, as the bootstrap superuser.
 */
extern int32 duet_kafka_consumer_for_update(const char *name, Oid caller);

#endif							/* DUET_KAFKA_SQL_INT_H */
