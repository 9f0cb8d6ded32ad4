/*
 * kafka_shmem.c — Kafka settings, the shared-memory worker slots and the status function over them.
 *
 * Each consumer worker claims a slot and updates it once per batch (counters, rate, high
 * watermarks, last error); duet.kafka_status joins these with the committed offsets in
 * duet.kafka_offsets. One LWLock guards the array: it is touched once per batch, never per row.
 */
#include "postgres.h"

#include <signal.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "pg_duet.h"

char	   *duet_outbox_brokers = NULL;
char	   *duet_outbox_properties = NULL;
int			duet_kafka_poll_ms = 60000;

/* A process waiting on its latch for committed changes (kafka.h); a supervisor or a publisher. */
typedef struct DuetKafkaWaiter
{
	bool		in_use;
	int			what;			/* DuetKafkaWaitFor */
	Oid			dboid;
	pid_t		pid;
	Latch	   *latch;
} DuetKafkaWaiter;

/* At most one supervisor and one publisher per database the launcher serves. */
#define DUET_KAFKA_MAX_WAITERS	(2 * (DUET_KAFKA_MAX_SLOTS + 1))

typedef struct DuetKafkaShared
{
	LWLock	   *lock;
	DuetKafkaSlot slots[DUET_KAFKA_MAX_SLOTS];
	DuetKafkaWaiter waiters[DUET_KAFKA_MAX_WAITERS];
} DuetKafkaShared;

static DuetKafkaShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static DuetKafkaSlot *my_slot = NULL;
static DuetKafkaWaiter *my_waiter = NULL;

static const char *const state_names[] = {"starting", "running", "idle", "broker unreachable", "error"};

static void
kafka_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DuetKafkaShared)));
	RequestNamedLWLockTranche("pg_duet_kafka", 1);
}

static void
kafka_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pg_duet_kafka", sizeof(DuetKafkaShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(DuetKafkaShared));
		shared->lock = &(GetNamedLWLockTranche("pg_duet_kafka"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
duet_kafka_init(void)
{
	DefineCustomStringVariable("duet.outbox_brokers",
							   "Kafka bootstrap servers the outbox publisher sends to.",
							   "host:port list; empty disables the publisher. Superuser only.",
							   &duet_outbox_brokers, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("duet.outbox_properties",
							   "librdkafka properties for the outbox producer, as name=value;name=value.",
							   "For security.protocol, sasl.* and ssl.* settings. Superuser only.",
							   &duet_outbox_properties, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("duet.kafka_poll_interval",
							"How often the Kafka supervisors and outbox publishers look for changes nobody woke them for.",
							"Committed changes of duet.kafka_consumers and new outbox rows wake them at "
							"once; this is the fallback (PREPAREd transactions, a 0.1.0 schema).",
							&duet_kafka_poll_ms, 60000, 100, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = kafka_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = kafka_shmem_startup;
	duet_kafka_register_launcher();
}

static void
slot_release(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (my_slot->pid == MyProcPid)
		my_slot->in_use = false;
	LWLockRelease(shared->lock);
	my_slot = NULL;
}

DuetKafkaSlot *
duet_kafka_slot_claim(Oid dboid, int32 consumer_id, int32 group, const char *name)
{
	DuetKafkaSlot *slot = NULL;

	if (shared == NULL)
		elog(ERROR, "pg_duet Kafka shared memory is not initialised");
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < DUET_KAFKA_MAX_SLOTS && slot == NULL; i++)
		if (!shared->slots[i].in_use)
			slot = &shared->slots[i];
	if (slot)
	{
		memset(slot, 0, sizeof(*slot));
		slot->in_use = true;
		slot->pid = MyProcPid;
		slot->dboid = dboid;
		slot->consumer_id = consumer_id;
		slot->group = group;
		strlcpy(slot->name, name, NAMEDATALEN);
		slot->state = DUET_KAFKA_STARTING;
		slot->started_at = GetCurrentTimestamp();
	}
	LWLockRelease(shared->lock);
	if (slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many running Kafka workers"),
				 errdetail("At most %d consumer workers run at once.", DUET_KAFKA_MAX_SLOTS)));
	my_slot = slot;
	before_shmem_exit(slot_release, 0);
	return slot;
}

void
duet_kafka_slot_set_state(DuetKafkaSlot *slot, DuetKafkaState state)
{
	if (slot->state == state)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot->state = state;
	LWLockRelease(shared->lock);
}

void
duet_kafka_slot_error(DuetKafkaSlot *slot, const char *msg)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	strlcpy(slot->last_error, msg, DUET_KAFKA_ERRLEN);
	slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
}

void
duet_kafka_slot_batch(DuetKafkaSlot *slot, uint64 rows, uint64 bytes, uint64 errors, double seconds)
{
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (slot->last_batch_at != 0)
	{
		/* Rate smoothed with a ~10 s time constant, over the time since the previous batch. */
		double		dt = (double) (now - slot->last_batch_at) / 1000000.0;
		double		w = dt >= 10.0 ? 1.0 : dt / 10.0;

		if (dt > 0)
			slot->rate = (1 - w) * slot->rate + w * (rows / dt);
	}
	slot->rows += rows;
	slot->bytes += bytes;
	slot->errors += errors;
	slot->batches++;
	slot->last_batch_at = now;
	LWLockRelease(shared->lock);
}

void
duet_kafka_slot_watermark(DuetKafkaSlot *slot, int32 partition, int64 high)
{
	int			i;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < slot->npartitions; i++)
		if (slot->partition[i] == partition)
			break;
	if (i == slot->npartitions && i < DUET_KAFKA_MAX_PARTITIONS)
	{
		slot->partition[i] = partition;
		slot->npartitions++;
	}
	if (i < DUET_KAFKA_MAX_PARTITIONS)
		slot->high_watermark[i] = high;
	LWLockRelease(shared->lock);
}

static void
waiter_release(int code, Datum arg)
{
	if (my_waiter == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (my_waiter->pid == MyProcPid)
		my_waiter->in_use = false;
	LWLockRelease(shared->lock);
	my_waiter = NULL;
}

/* This process (connected to its database) waits for what; duet_kafka_wake() sets its latch. */
void
duet_kafka_waiter_register(DuetKafkaWaitFor what)
{
	if (shared == NULL)
		elog(ERROR, "pg_duet Kafka shared memory is not initialised");
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < DUET_KAFKA_MAX_WAITERS && my_waiter == NULL; i++)
		if (!shared->waiters[i].in_use)
		{
			my_waiter = &shared->waiters[i];
			my_waiter->in_use = true;
			my_waiter->what = what;
			my_waiter->dboid = MyDatabaseId;
			my_waiter->pid = MyProcPid;
			my_waiter->latch = &MyProc->procLatch;
		}
	LWLockRelease(shared->lock);
	/* Sized for every supervisor and publisher the launcher can run: never full. */
	if (my_waiter == NULL)
		elog(ERROR, "no free pg_duet Kafka wake-up entry");
	before_shmem_exit(waiter_release, 0);
}

/* Sets the latch of every process of database dboid waiting for one of what (a bit mask). */
void
duet_kafka_wake(int what, Oid dboid)
{
	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < DUET_KAFKA_MAX_WAITERS; i++)
		if (shared->waiters[i].in_use && (shared->waiters[i].what & what) &&
			shared->waiters[i].dboid == dboid)
			SetLatch(shared->waiters[i].latch);
	LWLockRelease(shared->lock);
}

/* A restarted supervisor ends the workers its predecessor left, so no partition has two readers. */
void
duet_kafka_terminate_db_workers(Oid dboid)
{
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < DUET_KAFKA_MAX_SLOTS; i++)
		if (shared->slots[i].in_use && shared->slots[i].dboid == dboid &&
			shared->slots[i].pid != MyProcPid)
			kill(shared->slots[i].pid, SIGTERM);
	LWLockRelease(shared->lock);
}

PG_FUNCTION_INFO_V1(duet_kafka_worker_stats);

/*
 * duet_kafka_worker_stats() → one row per (worker, partition) of this database's consumers;
 * partition is NULL for a worker that has not yet seen a partition.
 */
Datum
duet_kafka_worker_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DuetKafkaSlot *copy;
	int			nslots = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		PG_RETURN_VOID();
	copy = palloc(sizeof(DuetKafkaSlot) * DUET_KAFKA_MAX_SLOTS);
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < DUET_KAFKA_MAX_SLOTS; i++)
		if (shared->slots[i].in_use && shared->slots[i].dboid == MyDatabaseId)
			copy[nslots++] = shared->slots[i];
	LWLockRelease(shared->lock);

	for (int i = 0; i < nslots; i++)
	{
		DuetKafkaSlot *s = &copy[i];

		for (int p = 0; p < Max(s->npartitions, 1); p++)
		{
			Datum		values[15];
			bool		nulls[15] = {0};

			values[0] = Int32GetDatum(s->consumer_id);
			values[1] = Int32GetDatum(s->group);
			values[2] = Int32GetDatum(s->pid);
			values[3] = CStringGetTextDatum(state_names[s->state]);
			values[4] = Int64GetDatum((int64) s->rows);
			values[5] = Int64GetDatum((int64) s->bytes);
			values[6] = Int64GetDatum((int64) s->batches);
			values[7] = Int64GetDatum((int64) s->errors);
			values[8] = Float8GetDatum(s->rate);
			values[9] = CStringGetTextDatum(s->last_error);
			nulls[9] = (s->last_error[0] == '\0');
			values[10] = TimestampTzGetDatum(s->last_error_at);
			nulls[10] = (s->last_error_at == 0);
			values[11] = TimestampTzGetDatum(s->started_at);
			values[12] = TimestampTzGetDatum(s->last_batch_at);
			nulls[12] = (s->last_batch_at == 0);
			values[13] = Int32GetDatum(s->npartitions ? s->partition[p] : 0);
			nulls[13] = (s->npartitions == 0);
			values[14] = Int64GetDatum(s->npartitions ? s->high_watermark[p] : 0);
			nulls[14] = (s->npartitions == 0 || s->high_watermark[p] < 0);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	PG_RETURN_VOID();
}
