/*
 * kafka_launcher.c — the launcher and the per-database supervisors of the Kafka workers.
 *
 * The launcher is a static background worker without a database: it keeps one supervisor running
 * per database in duet.databases (re-read on SIGHUP). A supervisor connects to its database and
 * reads duet.kafka_consumers whenever a change to it commits (its latch is set at commit,
 * kafka_wake.c; duet.kafka_poll_interval is the fallback): it runs the database's pool of
 * ingestion workers (kafka_pool.c) — duet.kafka_pool_size of them, fewer when there are fewer
 * enabled partition groups — restarts one that exited (after a pause), publishes in shared memory
 * which of them run (the pool workers assign the groups among the running ones) and why one cannot
 * start, and runs the outbox publisher when duet.outbox_brokers is set. The pool workers are woken
 * by the same commits and follow the consumers' changes themselves, so SQL changes take effect
 * without a server restart.
 *
 * Both are built on the worker skeleton (worker.c): SIGTERM is die(), and a before_shmem_exit
 * callback terminates the children however the process ends. A database that does not exist, or
 * lacks the extension, is logged once, not every loop.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "alertmanager.h"
#include "kafka.h"
#include "pg_duet.h"
#include "worker.h"

#define RESTART_DELAY_MS	5000	/* before restarting a worker or supervisor that exited */
#define MAX_CHILDREN		(Max(DUET_KAFKA_MAX_POOL, DUET_KAFKA_MAX_DBS) + 1)

/* A child worker the launcher or a supervisor started. */
typedef struct Child
{
	bool		used;
	DuetKafkaWorkerArgs args;
	BackgroundWorkerHandle *handle;	/* NULL while waiting to restart */
	TimestampTz stopped_at;
	bool		wanted;			/* scratch for reconciliation */
} Child;

static Child children[MAX_CHILDREN];

static BackgroundWorkerHandle *
start_worker(const char *function, const char *title, DuetKafkaWorkerArgs *args)
{
	DuetWorkerSpec spec = {
		.function = function,
		.name = title,
		/* every pool worker has one backend_type; bgw_name tells database and index */
		.type = args->consumer_id == -1 ? "pg_duet kafka pool" : NULL,
		.connect = true,
		.restart_s = BGW_NEVER_RESTART,
		.extra = args,
		.extra_len = sizeof(DuetKafkaWorkerArgs),
	};

	StaticAssertStmt(sizeof(DuetKafkaWorkerArgs) <= BGW_EXTRALEN, "worker args too large");
	return duet_worker_start(&spec, false);
}

/* Our children notice our exit only through their own SIGTERM: send it, however we end. */
static void
children_terminate(int code, Datum arg)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].used && children[i].handle)
			TerminateBackgroundWorker(children[i].handle);
}

static bool
child_running(Child *c)
{
	pid_t		pid;

	if (c->handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(c->handle, &pid) == BGWH_STOPPED)
	{
		pfree(c->handle);
		c->handle = NULL;
		c->stopped_at = GetCurrentTimestamp();
		return false;
	}
	return true;
}

static Child *
child_find(DuetKafkaWorkerArgs *a)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].used && children[i].args.consumer_id == a->consumer_id &&
			children[i].args.group == a->group && children[i].args.generation == a->generation &&
			strcmp(children[i].args.dbname, a->dbname) == 0)
			return &children[i];
	return NULL;
}

typedef enum ChildState
{
	CHILD_RUNNING,				/* running, or just started */
	CHILD_PAUSED,				/* exited; restarted after RESTART_DELAY_MS */
	CHILD_NO_SLOT				/* its start failed: no background worker slot */
} ChildState;

/* Marks a child wanted, starting it if it is not running and its restart pause is over. */
static ChildState
child_want(DuetKafkaWorkerArgs *a, const char *function, const char *title)
{
	Child	   *c = child_find(a);

	if (c == NULL)
	{
		for (int i = 0; i < MAX_CHILDREN && c == NULL; i++)
			if (!children[i].used)
				c = &children[i];
		if (c == NULL)
			return CHILD_NO_SLOT;
		memset(c, 0, sizeof(Child));
		c->used = true;
		c->args = *a;
	}
	c->wanted = true;
	if (child_running(c))
		return CHILD_RUNNING;
	if (c->stopped_at != 0 &&
		!TimestampDifferenceExceeds(c->stopped_at, GetCurrentTimestamp(), RESTART_DELAY_MS))
		return CHILD_PAUSED;
	c->handle = start_worker(function, title, a);
	if (c->handle == NULL)
		c->stopped_at = GetCurrentTimestamp();
	return c->handle ? CHILD_RUNNING : CHILD_NO_SLOT;
}

/* Ends and forgets children not marked wanted since the last call; clears the marks. */
static void
children_reap_unwanted(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
	{
		Child	   *c = &children[i];

		if (!c->used)
			continue;
		if (!c->wanted)
		{
			if (c->handle)
				TerminateBackgroundWorker(c->handle);
			c->used = false;
		}
		c->wanted = false;
	}
}

/*
 * How long a supervisor may sleep: until a change wakes it, or the poll interval, or the end of
 * the restart pause of a child that exited (whose exit set the latch: bgw_notify_pid).
 */
static long
children_wait_ms(long poll_ms)
{
	long		wait_ms = poll_ms;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].used && children[i].handle == NULL && children[i].stopped_at != 0)
		{
			long		left = RESTART_DELAY_MS -
				TimestampDifferenceMilliseconds(children[i].stopped_at, now);

			wait_ms = Min(wait_ms, Max(left, 1));
		}
	return wait_ms;
}

/* ---- launcher ---- */

void
duet_kafka_register_launcher(void)
{
	DuetWorkerSpec spec = {
		.function = "duet_kafka_launcher_main",
		.name = "pg_duet kafka launcher",
		.connect = true,		/* to no database: it reads the shared catalog pg_database */
		.restart_s = 10,
	};

	duet_worker_register(&spec);
}

void
duet_kafka_launcher_main(Datum arg)
{
	MemoryContext loopcxt;
	bool		bad_list_logged = false;

	duet_worker_init(DUET_WORKER_DIE);
	before_shmem_exit(children_terminate, (Datum) 0);
	duet_worker_connect(NULL, InvalidOid);	/* no database: pg_database only */
	loopcxt = duet_worker_loop_context("duet kafka launcher");

	while (duet_worker_loop(loopcxt, NULL))
	{
		char	   *rawlist = pstrdup(duet_databases ? duet_databases : "");
		List	   *dbs = NIL;
		ListCell   *lc;

		if (!SplitIdentifierString(rawlist, ',', &dbs))
		{
			if (!bad_list_logged)
				ereport(LOG,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid list syntax in duet.databases: \"%s\"", duet_databases)));
			bad_list_logged = true;
		}
		else
			bad_list_logged = false;
		foreach(lc, dbs)
		{
			DuetKafkaWorkerArgs a = {0};
			char		title[BGW_MAXLEN];

			if (!duet_worker_database_exists(lfirst(lc), "pg_duet kafka launcher"))
				continue;
			strlcpy(a.dbname, lfirst(lc), NAMEDATALEN);
			snprintf(title, sizeof(title), "pg_duet kafka supervisor %s", a.dbname);
			child_want(&a, "duet_kafka_supervisor_main", title);
		}
		children_reap_unwanted();
		duet_worker_wait(RESTART_DELAY_MS);
	}
	proc_exit(0);
}

/* ---- supervisor ---- */

/* Whether the last start of pool worker k failed for want of a background worker slot. */
static bool pool_no_slot[DUET_KAFKA_MAX_POOL];

/*
 * The pool: as many workers as there are enabled partition groups, at most duet.kafka_pool_size.
 * SPI connected, in the supervisor's transaction.
 */
static void
run_pool(DuetKafkaWorkerArgs *self)
{
	int			size = duet_kafka_pool_size;
	int			groups = 0;
	bool		running[DUET_KAFKA_MAX_POOL] = {0};
	int			no_slot = 0;
	bool		isnull;

	if (SPI_execute("SELECT coalesce(pg_catalog.sum(parallelism), 0)::pg_catalog.int4 FROM duet.kafka_consumers WHERE enabled",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		groups = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	for (int k = 0; k < Min(size, groups); k++)
	{
		DuetKafkaWorkerArgs a = {0};
		char		title[BGW_MAXLEN];
		a.dboid = MyDatabaseId;
		a.consumer_id = -1;
		a.group = k;
		strlcpy(a.dbname, self->dbname, NAMEDATALEN);
		snprintf(title, sizeof(title), "pg_duet kafka pool %s/%d", self->dbname, k);
		switch (child_want(&a, "duet_kafka_pool_main", title))
		{
			case CHILD_RUNNING:
				running[k] = true;
				pool_no_slot[k] = false;
				break;
			case CHILD_NO_SLOT:
				pool_no_slot[k] = true;
				break;
			case CHILD_PAUSED:
				break;
		}
		if (pool_no_slot[k])
			no_slot++;
	}
	duet_kafka_pool_supervise(MyDatabaseId, size, Min(size, groups), running,
							  no_slot == 0 ? NULL :
							  psprintf("no background worker slot for %d of the %d Kafka pool workers "
									   "(max_worker_processes = %d)", no_slot, Min(size, groups),
									   max_worker_processes));
}

void
duet_kafka_supervisor_main(Datum arg)
{
	DuetKafkaWorkerArgs self;
	MemoryContext loopcxt;
	bool		missing_logged_here = false;

	memcpy(&self, MyBgworkerEntry->bgw_extra, sizeof(self));
	duet_worker_init(DUET_WORKER_DIE);
	before_shmem_exit(children_terminate, (Datum) 0);
	duet_worker_connect(self.dbname, InvalidOid);
	pgstat_report_appname("pg_duet kafka supervisor");
	duet_kafka_terminate_db_workers(MyDatabaseId);
	duet_kafka_waiter_register(DUET_WAIT_CONSUMERS);	/* woken when a consumer change commits */
	loopcxt = duet_worker_loop_context("duet kafka supervisor");

	while (duet_worker_loop(loopcxt, NULL))
	{
		bool		installed;

		pgstat_report_activity(STATE_RUNNING, "reading duet.kafka_consumers");
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_connect();
		installed = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_duet'",
								true, 1) == SPI_OK_SELECT && SPI_processed == 1;
		if (!installed && !missing_logged_here)
			ereport(LOG,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("pg_duet kafka supervisor skips database \"%s\": extension pg_duet is not installed there",
							self.dbname),
					 errhint("Run CREATE EXTENSION pg_duet in it, or remove it from duet.databases.")));
		missing_logged_here = !installed;
		if (installed)
			run_pool(&self);
		if (installed && duet_outbox_brokers && duet_outbox_brokers[0] != '\0')
		{
			DuetKafkaWorkerArgs a = {0};

			a.dboid = MyDatabaseId;
			a.consumer_id = 0;
			a.group = -1;
			strlcpy(a.dbname, self.dbname, NAMEDATALEN);
			child_want(&a, "duet_kafka_publisher_main", "pg_duet kafka outbox publisher");
		}
		if (installed && duet_alertmanager_configured())
		{
			DuetKafkaWorkerArgs a = {0};

			a.dboid = MyDatabaseId;
			a.group = -2;		/* the Alertmanager sender (alertmanager.c) */
			strlcpy(a.dbname, self.dbname, NAMEDATALEN);
			child_want(&a, "duet_alertmanager_main", "pg_duet alertmanager sender");
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		children_reap_unwanted();
		pgstat_report_stat(true);
		pgstat_report_activity(STATE_IDLE, NULL);
		duet_worker_wait(children_wait_ms(duet_kafka_poll_ms));
	}
	proc_exit(0);
}
