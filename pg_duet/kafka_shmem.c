/*
 * kafka_shmem.c — Kafka settings, the shared-memory slots and pools, and the status functions over them.
 *
 * A pool worker claims a slot for each (consumer, partition group) it serves and updates it once
 * per batch (counters, rate, high watermarks, last error); duet.kafka_status joins these with the
 * committed offsets in duet.kafka_offsets. A slot is exclusive: while one is in use for a group,
 * no other worker can claim one for it, so a group's partitions have one reader at a time. Each
 * database's pool (its size, its workers' pids, why it cannot run) is registered here too. One
 * LWLock guards it all: it is touched once per batch or per pool change, never per row.
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
int			duet_kafka_pool_size = 2;
int			duet_kafka_statistics_ms = 15000;

/* A process waiting on its latch for committed changes (kafka.h): supervisor, publisher, pool. */
typedef struct DuetKafkaWaiter
{
	bool		in_use;
	int			what;			/* a mask of DuetKafkaWaitFor */
	Oid			dboid;
	pid_t		pid;
	Latch	   *latch;
} DuetKafkaWaiter;

/* At most one supervisor, one publisher and the pool's workers per database with a pool. */
#define DUET_KAFKA_MAX_WAITERS	(DUET_KAFKA_MAX_DBS * (2 + DUET_KAFKA_MAX_POOL))

typedef struct DuetKafkaPool
{
	Oid			dboid;			/* InvalidOid: entry free */
	int32		size;			/* duet.kafka_pool_size: the assignment's modulus */
	int32		needed;			/* workers the supervisor runs: min(size, partition groups) */
	bool		running[DUET_KAFKA_MAX_POOL];	/* the supervisor started it, not seen stopped */
	pid_t		pid[DUET_KAFKA_MAX_POOL];	/* registered by the worker itself; 0 = not running */
	TimestampTz started_at[DUET_KAFKA_MAX_POOL];
	int32		clients[DUET_KAFKA_MAX_POOL];	/* librdkafka clients the worker runs */
	char		problem[DUET_KAFKA_ERRLEN];
} DuetKafkaPool;

typedef struct DuetKafkaShared
{
	LWLock	   *lock;
	DuetKafkaPool pools[DUET_KAFKA_MAX_DBS];
	DuetKafkaSlot slots[DUET_KAFKA_MAX_SLOTS];
	DuetKafkaWaiter waiters[DUET_KAFKA_MAX_WAITERS];
} DuetKafkaShared;

static DuetKafkaShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static DuetKafkaWaiter *my_waiter = NULL;
static bool exit_hook_set = false;
static int	my_pool_index = -1;

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
	DefineCustomIntVariable("duet.kafka_pool_size",
							"Most Kafka ingestion workers per database.",
							"Every consumer partition group of the database is served by one of them; "
							"fewer run when there are fewer partition groups.",
							&duet_kafka_pool_size, 2, 1, DUET_KAFKA_MAX_POOL, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.kafka_statistics_interval",
							"How often a Kafka consumer's librdkafka client reports its brokers and partitions.",
							"Stamps the high watermarks whose leader is connected (high_watermark_at) and ends "
							"'broker unreachable' once the leaders are back; 0 turns it off. Applies to "
							"consumers opened after the change.",
							&duet_kafka_statistics_ms, 15000, 0, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("duet.kafka_group_mode",
							 "Kafka consumers join the consumer group pg_duet.<name>, shared with other servers.",
							 "Consumers of the same name on several servers then split the topic's partitions; "
							 "applies to consumers opened after the change.",
							 &duet_kafka_group_mode, false, PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = kafka_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = kafka_shmem_startup;
	duet_kafka_register_launcher();
}

/* However a pool worker ends: its slots and its pool registration are freed. */
static void
worker_exit(int code, Datum arg)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < DUET_KAFKA_MAX_SLOTS; i++)
		if (shared->slots[i].in_use && shared->slots[i].pid == MyProcPid)
			shared->slots[i].in_use = false;
	for (int i = 0; i < DUET_KAFKA_MAX_DBS && my_pool_index >= 0; i++)
		if (shared->pools[i].dboid == MyDatabaseId && shared->pools[i].pid[my_pool_index] == MyProcPid)
			shared->pools[i].pid[my_pool_index] = 0;
	LWLockRelease(shared->lock);
}

static void
set_exit_hook(void)
{
	if (shared == NULL)
		elog(ERROR, "pg_duet Kafka shared memory is not initialised");
	if (!exit_hook_set)
		before_shmem_exit(worker_exit, 0);
	exit_hook_set = true;
}

DuetKafkaSlot *
duet_kafka_slot_claim(Oid dboid, int32 consumer_id, int32 group, const char *name, int32 pool_worker,
					  bool *busy)
{
	DuetKafkaSlot *slot = NULL;

	set_exit_hook();
	*busy = false;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < DUET_KAFKA_MAX_SLOTS; i++)
	{
		DuetKafkaSlot *s = &shared->slots[i];

		if (!s->in_use)
		{
			if (slot == NULL)
				slot = s;
		}
		else if (s->dboid == dboid && s->consumer_id == consumer_id && s->group == group)
			*busy = true;
	}
	if (*busy)
		slot = NULL;
	if (slot)
	{
		memset(slot, 0, sizeof(*slot));
		slot->in_use = true;
		slot->pid = MyProcPid;
		slot->pool_worker = pool_worker;
		slot->dboid = dboid;
		slot->consumer_id = consumer_id;
		slot->group = group;
		strlcpy(slot->name, name, NAMEDATALEN);
		slot->state = DUET_KAFKA_STARTING;
		slot->started_at = GetCurrentTimestamp();
	}
	LWLockRelease(shared->lock);
	return slot;
}

void
duet_kafka_slot_release(DuetKafkaSlot *slot)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
		slot->in_use = false;
	LWLockRelease(shared->lock);
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
duet_kafka_slot_watermark(DuetKafkaSlot *slot, int32 partition, int64 high, TimestampTz fresh_at)
{
	int			i;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < slot->npartitions; i++)
		if (slot->partition[i] == partition)
			break;
	if (i == slot->npartitions && i < DUET_KAFKA_MAX_PARTITIONS)
	{
		slot->partition[i] = partition;
		slot->high_watermark_at[i] = 0;
		slot->npartitions++;
	}
	if (i < DUET_KAFKA_MAX_PARTITIONS)
	{
		slot->high_watermark[i] = high;
		if (fresh_at != 0)
			slot->high_watermark_at[i] = fresh_at;
	}
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

/* This process (connected to its database) waits for what (a mask); duet_kafka_wake() sets its latch. */
void
duet_kafka_waiter_register(int what)
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
	/* Sized for every supervisor, publisher and pool worker the launcher can run: never full. */
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

/* The group's partitions were revoked (consumer group mode): they are another server's now. */
void
duet_kafka_slot_forget_partitions(DuetKafkaSlot *slot)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot->npartitions = 0;
	LWLockRelease(shared->lock);
}

/*
 * A restarted supervisor ends the pool workers its predecessor left (those serving a group and
 * idle ones), so no index runs twice.
 */
void
duet_kafka_terminate_db_workers(Oid dboid)
{
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < DUET_KAFKA_MAX_SLOTS; i++)
		if (shared->slots[i].in_use && shared->slots[i].dboid == dboid &&
			shared->slots[i].pid != MyProcPid)
			kill(shared->slots[i].pid, SIGTERM);
	for (int i = 0; i < DUET_KAFKA_MAX_DBS; i++)
		if (shared->pools[i].dboid == dboid)
			for (int k = 0; k < DUET_KAFKA_MAX_POOL; k++)
				if (shared->pools[i].pid[k] != 0 && shared->pools[i].pid[k] != MyProcPid)
					kill(shared->pools[i].pid[k], SIGTERM);
	LWLockRelease(shared->lock);
}

/* The database's pool entry, created when create (lock held exclusively then); NULL if none. */
static DuetKafkaPool *
pool_entry(Oid dboid, bool create)
{
	DuetKafkaPool *free_entry = NULL;

	for (int i = 0; i < DUET_KAFKA_MAX_DBS; i++)
	{
		if (shared->pools[i].dboid == dboid)
			return &shared->pools[i];
		if (shared->pools[i].dboid == InvalidOid && free_entry == NULL)
			free_entry = &shared->pools[i];
	}
	if (!create || free_entry == NULL)
		return NULL;
	memset(free_entry, 0, sizeof(*free_entry));
	free_entry->dboid = dboid;
	return free_entry;
}

void
duet_kafka_pool_supervise(Oid dboid, int size, int needed, const bool *running, const char *problem)
{
	DuetKafkaPool *pool;
	bool		changed = false;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	pool = pool_entry(dboid, true);
	if (pool)
	{
		changed = pool->size != Min(size, DUET_KAFKA_MAX_POOL);
		pool->size = Min(size, DUET_KAFKA_MAX_POOL);
		pool->needed = Min(needed, pool->size);
		for (int k = 0; k < DUET_KAFKA_MAX_POOL; k++)
		{
			bool		run = k < pool->size && running[k];

			changed |= pool->running[k] != run;
			pool->running[k] = run;
		}
		strlcpy(pool->problem, problem ? problem : "", DUET_KAFKA_ERRLEN);
	}
	LWLockRelease(shared->lock);
	/* The workers assign the groups among the running ones: a changed pool reassigns at once. */
	if (changed)
		duet_kafka_wake(DUET_WAIT_POOL, dboid);
}

void
duet_kafka_pool_join(int index)
{
	DuetKafkaPool *pool;

	Assert(index >= 0 && index < DUET_KAFKA_MAX_POOL);
	set_exit_hook();
	my_pool_index = index;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	pool = pool_entry(MyDatabaseId, true);
	if (pool)
	{
		pool->pid[index] = MyProcPid;
		pool->started_at[index] = GetCurrentTimestamp();
		pool->clients[index] = 0;
	}
	LWLockRelease(shared->lock);
}

/* How many librdkafka clients this pool worker runs now (duet.kafka_pool.clients). */
void
duet_kafka_pool_set_clients(int n)
{
	DuetKafkaPool *pool;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	pool = pool_entry(MyDatabaseId, false);
	if (pool && pool->pid[my_pool_index] == MyProcPid)
		pool->clients[my_pool_index] = n;
	LWLockRelease(shared->lock);
}

int
duet_kafka_pool_members(Oid dboid, bool *live)
{
	DuetKafkaPool *pool;
	int			size = 0;

	LWLockAcquire(shared->lock, LW_SHARED);
	pool = pool_entry(dboid, false);
	if (pool)
	{
		size = pool->size;
		for (int k = 0; k < size; k++)
			live[k] = pool->running[k] || pool->pid[k] != 0;
	}
	LWLockRelease(shared->lock);
	return size;
}

/*
 * A WARNING (with the fix) when this database's pool could not start a worker: the consumer
 * being created may not be served. (Until a first consumer exists no pool worker is started, so
 * the first one's status says it instead, within a poll interval.)
 */
void
duet_kafka_pool_warn(const char *what)
{
	const char *problem = duet_kafka_pool_problem(MyDatabaseId);

	if (problem)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("%s will not run: %s", what, problem),
				 errhint("Raise max_worker_processes (it also bounds parallel query workers) and restart, "
						 "or lower duet.kafka_pool_size.")));
}

const char *
duet_kafka_pool_problem(Oid dboid)
{
	DuetKafkaPool *pool;
	char	   *problem = NULL;

	if (shared == NULL)
		return NULL;
	LWLockAcquire(shared->lock, LW_SHARED);
	pool = pool_entry(dboid, false);
	if (pool && pool->problem[0] != '\0')
		problem = pstrdup(pool->problem);
	LWLockRelease(shared->lock);
	return problem;
}

PG_FUNCTION_INFO_V1(duet_kafka_pool_stats);

/*
 * duet_kafka_pool_stats() → one row per pool worker of this database: index, pid (NULL when not
 * running), since when, how many partition groups it serves with how many librdkafka clients,
 * and why the pool cannot run.
 */
Datum
duet_kafka_pool_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DuetKafkaPool copy;
	int			served[DUET_KAFKA_MAX_POOL] = {0};
	bool		found = false;

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		PG_RETURN_VOID();
	LWLockAcquire(shared->lock, LW_SHARED);
	{
		DuetKafkaPool *pool = pool_entry(MyDatabaseId, false);

		if (pool)
		{
			copy = *pool;
			found = true;
			for (int i = 0; i < DUET_KAFKA_MAX_SLOTS; i++)
				if (shared->slots[i].in_use && shared->slots[i].dboid == MyDatabaseId &&
					shared->slots[i].pool_worker >= 0 && shared->slots[i].pool_worker < DUET_KAFKA_MAX_POOL)
					served[shared->slots[i].pool_worker]++;
		}
	}
	LWLockRelease(shared->lock);
	if (!found)
		PG_RETURN_VOID();
	for (int k = 0; k < copy.size; k++)
	{
		Datum		values[6];
		bool		nulls[6] = {0};

		if (k >= copy.needed && copy.pid[k] == 0)
			continue;			/* not needed: fewer partition groups than duet.kafka_pool_size */

		values[0] = Int32GetDatum(k);
		values[1] = Int32GetDatum(copy.pid[k]);
		nulls[1] = copy.pid[k] == 0;
		values[2] = TimestampTzGetDatum(copy.started_at[k]);
		nulls[2] = copy.pid[k] == 0;
		values[3] = Int32GetDatum(served[k]);
		values[4] = Int32GetDatum(copy.clients[k]);
		nulls[4] = copy.pid[k] == 0;
		values[5] = CStringGetTextDatum(copy.problem);
		nulls[5] = copy.problem[0] == '\0' || copy.pid[k] != 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
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
			Datum		values[16];
			bool		nulls[16] = {0};

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
			values[15] = TimestampTzGetDatum(s->npartitions ? s->high_watermark_at[p] : 0);
			nulls[15] = (s->npartitions == 0 || s->high_watermark_at[p] == 0);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	PG_RETURN_VOID();
}
