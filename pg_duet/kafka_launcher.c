/*
 * kafka_launcher.c — the launcher and the per-database supervisors of the Kafka workers.
 *
 * The launcher is a static background worker without a database: it keeps one supervisor running
 * per database in duet.databases (re-read on SIGHUP). A supervisor connects to its database and
 * polls duet.kafka_consumers: it starts one consumer worker per (enabled consumer, partition
 * group, generation), ends workers whose consumer was stopped, dropped, reset or changed (their
 * generation moves on), restarts workers that exited (after a pause), and runs the outbox publisher
 * when duet.outbox_brokers is set. So SQL changes take effect without a server restart.
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

#include "kafka.h"
#include "pg_duet.h"

#define RESTART_DELAY_MS	5000	/* before restarting a worker or supervisor that exited */
#define MAX_CHILDREN		(DUET_KAFKA_MAX_SLOTS + 1)

volatile sig_atomic_t duet_kafka_got_sigterm = false;
volatile sig_atomic_t duet_kafka_got_sighup = false;

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	duet_kafka_got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
handle_sighup(SIGNAL_ARGS)
{
	int			save_errno = errno;

	duet_kafka_got_sighup = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

void
duet_kafka_worker_signals(void)
{
	pqsignal(SIGTERM, handle_sigterm);
	pqsignal(SIGHUP, handle_sighup);
	BackgroundWorkerUnblockSignals();
}

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
	BackgroundWorker worker = {0};
	BackgroundWorkerHandle *handle;
	MemoryContext oldcxt;
	bool		ok;

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "pg_duet", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, title, BGW_MAXLEN);
	strlcpy(worker.bgw_type, title, BGW_MAXLEN);
	worker.bgw_notify_pid = MyProcPid;
	StaticAssertStmt(sizeof(DuetKafkaWorkerArgs) <= BGW_EXTRALEN, "worker args too large");
	memcpy(worker.bgw_extra, args, sizeof(DuetKafkaWorkerArgs));
	/* The handle outlives this poll's transaction and SPI context. */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(oldcxt);
	if (!ok)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start \"%s\": no background worker slot free", title),
				 errhint("Raise max_worker_processes.")));
		return NULL;
	}
	return handle;
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

/* Marks a child wanted, starting it if it is not running and its restart pause is over. */
static void
child_want(DuetKafkaWorkerArgs *a, const char *function, const char *title)
{
	Child	   *c = child_find(a);

	if (c == NULL)
	{
		for (int i = 0; i < MAX_CHILDREN && c == NULL; i++)
			if (!children[i].used)
				c = &children[i];
		if (c == NULL)
			return;
		memset(c, 0, sizeof(Child));
		c->used = true;
		c->args = *a;
	}
	c->wanted = true;
	if (child_running(c))
		return;
	if (c->stopped_at != 0 &&
		!TimestampDifferenceExceeds(c->stopped_at, GetCurrentTimestamp(), RESTART_DELAY_MS))
		return;
	c->handle = start_worker(function, title, a);
	if (c->handle == NULL)
		c->stopped_at = GetCurrentTimestamp();
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

/* ---- launcher ---- */

void
duet_kafka_register_launcher(void)
{
	BackgroundWorker worker = {0};

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "pg_duet", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "duet_kafka_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pg_duet kafka launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pg_duet kafka launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

void
duet_kafka_launcher_main(Datum arg)
{
	duet_kafka_worker_signals();

	while (!duet_kafka_got_sigterm)
	{
		char	   *rawlist;
		List	   *dbs = NIL;
		ListCell   *lc;

		if (duet_kafka_got_sighup)
		{
			duet_kafka_got_sighup = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		rawlist = pstrdup(duet_databases ? duet_databases : "");
		if (!SplitIdentifierString(rawlist, ',', &dbs))
			ereport(LOG, (errmsg("invalid list syntax in duet.databases: \"%s\"", duet_databases)));
		foreach(lc, dbs)
		{
			DuetKafkaWorkerArgs a = {0};
			char		title[BGW_MAXLEN];

			strlcpy(a.dbname, lfirst(lc), NAMEDATALEN);
			snprintf(title, sizeof(title), "pg_duet kafka supervisor %s", a.dbname);
			child_want(&a, "duet_kafka_supervisor_main", title);
		}
		children_reap_unwanted();
		list_free(dbs);
		pfree(rawlist);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RESTART_DELAY_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	/* The supervisors notice our exit only through their own SIGTERM: send it. */
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].used && children[i].handle)
			TerminateBackgroundWorker(children[i].handle);
	proc_exit(0);
}

/* ---- supervisor ---- */

void
duet_kafka_supervisor_main(Datum arg)
{
	DuetKafkaWorkerArgs self;
	MemoryContext loopcxt;

	memcpy(&self, MyBgworkerEntry->bgw_extra, sizeof(self));
	duet_kafka_worker_signals();
	BackgroundWorkerInitializeConnection(self.dbname, NULL, 0);
	duet_worker_pin_search_path();
	pgstat_report_appname("pg_duet kafka supervisor");
	duet_kafka_terminate_db_workers(MyDatabaseId);
	loopcxt = AllocSetContextCreate(TopMemoryContext, "duet kafka supervisor", ALLOCSET_DEFAULT_SIZES);

	while (!duet_kafka_got_sigterm)
	{
		bool		installed;

		if (duet_kafka_got_sighup)
		{
			duet_kafka_got_sighup = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextSwitchTo(loopcxt);
		MemoryContextReset(loopcxt);
		pgstat_report_activity(STATE_RUNNING, "reading duet.kafka_consumers");
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_connect();
		installed = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_duet'",
								true, 1) == SPI_OK_SELECT && SPI_processed == 1;
		if (installed &&
			SPI_execute("SELECT id, name, generation, parallelism FROM duet.kafka_consumers "
						"WHERE enabled ORDER BY id", true, 0) == SPI_OK_SELECT)
		{
			for (uint64 r = 0; r < SPI_processed; r++)
			{
				HeapTuple	tup = SPI_tuptable->vals[r];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				bool		isnull;
				DuetKafkaWorkerArgs a = {0};
				int			parallelism;
				char	   *name = SPI_getvalue(tup, desc, 2);

				a.dboid = MyDatabaseId;
				strlcpy(a.dbname, self.dbname, NAMEDATALEN);
				a.consumer_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
				a.generation = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
				parallelism = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
				for (int g = 0; g < parallelism; g++)
				{
					char		title[BGW_MAXLEN];

					a.group = g;
					snprintf(title, sizeof(title), "pg_duet kafka consumer %s/%d", name, g);
					child_want(&a, "duet_kafka_consumer_main", title);
				}
			}
		}
		if (installed && duet_outbox_brokers && duet_outbox_brokers[0] != '\0')
		{
			DuetKafkaWorkerArgs a = {0};

			a.dboid = MyDatabaseId;
			a.consumer_id = 0;
			a.group = -1;
			strlcpy(a.dbname, self.dbname, NAMEDATALEN);
			child_want(&a, "duet_kafka_publisher_main", "pg_duet kafka outbox publisher");
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		children_reap_unwanted();
		pgstat_report_stat(true);
		pgstat_report_activity(STATE_IDLE, NULL);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 duet_kafka_poll_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].used && children[i].handle)
			TerminateBackgroundWorker(children[i].handle);
	proc_exit(0);
}
