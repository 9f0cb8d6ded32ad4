/*
 * kafka_launcher.c — the launcher and the per-database supervisors of the Kafka workers.
 *
 * The launcher is a static background worker without a database: it keeps one supervisor running
 * per database in duet.databases (re-read on SIGHUP). A supervisor connects to its database and
 * polls duet.kafka_consumers: it starts one consumer worker per (enabled consumer, partition
 * group, generation), ends workers whose consumer was stopped, dropped, reset or changed (their
 * generation moves on), restarts workers that exited (after a pause), and runs the outbox publisher
 * when duet.outbox_brokers is set. So SQL changes take effect without a server restart.
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
#define MAX_CHILDREN		(DUET_KAFKA_MAX_SLOTS + 1)

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
		duet_worker_wait(duet_kafka_poll_ms);
	}
	proc_exit(0);
}
