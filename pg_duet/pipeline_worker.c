/*
 * pipeline_worker.c — who runs pipelines, and when.
 *
 * A statement trigger on every pipeline source (duet.duet_pipeline_wake, created and dropped
 * with the pipelines that read the table) notes that the transaction wrote the source; when the
 * transaction commits it sets the latch of the pipeline scheduler, a static worker on the
 * skeleton (worker.c). The scheduler, woken so or every duet.pipeline_interval, starts for each
 * database of duet.databases a short-lived runner that gives every active pipeline one batch
 * (at most batch_size rows, within duet.pipeline_run_timeout) per pass, one transaction per
 * batch, and passes again while a batch was full: a busy tenant's pipeline delays another's by at
 * most one batch per pass.
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "pg_duet.h"
#include "pipeline.h"
#include "worker.h"

PGDLLEXPORT void duet_pipeline_scheduler_main(Datum arg);
PGDLLEXPORT void duet_pipeline_runner_main(Datum arg);

PG_FUNCTION_INFO_V1(duet_pipeline_wake);

/* duet.pipeline_interval: seconds between runs when no commit woke the scheduler; 0: only woken. */
static int	duet_pipeline_interval = 10;

/* duet.pipeline_run_timeout: the time budget of one run (ms); 0: none. */
int			duet_pipeline_run_timeout_ms = 60000;

typedef struct PipelineShared
{
	Latch	   *scheduler;		/* the scheduler's latch while it runs */
	pg_atomic_uint64 wakes;		/* commits that wrote a source, counted: see the scheduler */
} PipelineShared;

static PipelineShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This transaction wrote a pipeline source: wake the scheduler at commit. */
static bool wake_at_commit = false;
static bool callback_registered = false;

static void
pipeline_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PipelineShared)));
}

static void
pipeline_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pg_duet pipelines", sizeof(PipelineShared), &found);
	if (!found)
	{
		shared->scheduler = NULL;
		pg_atomic_init_u64(&shared->wakes, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
duet_pipelines_init(void)
{
	DuetWorkerSpec spec = {
		.function = "duet_pipeline_scheduler_main",
		.name = "pg_duet pipeline scheduler",
		.connect = true,
		.restart_s = 10,
	};

	DefineCustomIntVariable("duet.pipeline_interval",
							"Interval between pipeline runs when no commit on a source woke them.",
							"Commits on a pipeline's source wake its runs at once; this is the "
							"fallback. 0: only commits wake them.",
							&duet_pipeline_interval,
							10, 0, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.pipeline_run_timeout",
							"Time limit for one pipeline run (one batch).",
							"A run taking longer fails and stops its pipeline in state error; "
							"lower the pipeline's batch_size. 0: no limit.",
							&duet_pipeline_run_timeout_ms,
							60000, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pipeline_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pipeline_shmem_startup;
	duet_worker_register(&spec);
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit && shared != NULL)
			{
				Latch	   *latch = shared->scheduler;

				pg_atomic_fetch_add_u64(&shared->wakes, 1);
				if (latch != NULL)
					SetLatch(latch);
			}
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/* duet.duet_pipeline_wake(): AFTER INSERT OR UPDATE ... FOR EACH STATEMENT on a source. */
Datum
duet_pipeline_wake(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("duet_pipeline_wake() must be called as a trigger")));
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
	wake_at_commit = true;
	return PointerGetDatum(NULL);
}

static void
scheduler_detach(int code, Datum arg)
{
	if (shared != NULL && shared->scheduler == MyLatch)
		shared->scheduler = NULL;
}

void
duet_pipeline_scheduler_main(Datum arg)
{
	MemoryContext loopcxt;

	duet_worker_init(DUET_WORKER_DIE);
	duet_worker_connect(NULL, InvalidOid);	/* no database: pg_database only */
	loopcxt = duet_worker_loop_context("duet pipeline scheduler");
	shared->scheduler = MyLatch;
	before_shmem_exit(scheduler_detach, (Datum) 0);

	while (duet_worker_loop(loopcxt, NULL))
	{
		uint64		wakes = pg_atomic_read_u64(&shared->wakes);

		if (duet_databases != NULL)
		{
			char	   *list = pstrdup(duet_databases);
			List	   *names = NIL;
			ListCell   *lc;

			if (!SplitIdentifierString(list, ',', &names))
				ereport(LOG,
						(errmsg("invalid duet.databases \"%s\"; pipeline scheduler waits", duet_databases)));
			else
				foreach(lc, names)
				{
					CHECK_FOR_INTERRUPTS();
					if (duet_worker_database_exists(lfirst(lc), "pg_duet pipeline scheduler"))
						duet_worker_run_in_database("duet_pipeline_runner_main", "pg_duet pipeline runner",
															(const char *) lfirst(lc));
				}
		}
		/*
		 * A commit during the pass: pass again. Its SetLatch cannot say so, since waiting for the
		 * runner (WaitForBackgroundWorkerShutdown) resets the latch; the count does.
		 */
		if (pg_atomic_read_u64(&shared->wakes) != wakes)
			continue;
		duet_worker_wait(duet_pipeline_interval > 0 ? duet_pipeline_interval * 1000L : -1L);
	}
	proc_exit(0);
}

/* The ids of the active pipelines, or NIL when this database has no current pg_duet. */
static List *
active_pipelines(void)
{
	List	   *ids = NIL;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(get_extension_oid("pg_duet", true)) && duet_sql_is_current())
	{
		uint64		i;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute("SELECT id FROM duet.pipelines WHERE state OPERATOR(pg_catalog.=) 'active' ORDER BY id",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not list pipelines");
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			ids = lappend(ids, palloc(sizeof(int64)));
			*(int64 *) llast(ids) = id;
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return ids;
}

/* Runs the pipelines of the database named in bgw_extra until none has a full batch, then exits. */
void
duet_pipeline_runner_main(Datum arg)
{
	char		dbname[BGW_EXTRALEN];
	List	   *ids;
	bool		more = true;

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, sizeof(dbname));
	duet_worker_init(DUET_WORKER_DIE);
	duet_worker_connect(dbname, InvalidOid);

	ids = active_pipelines();
	while (more && ids != NIL)
	{
		ListCell   *lc;

		more = false;
		foreach(lc, ids)
		{
			bool		full = false;

			CHECK_FOR_INTERRUPTS();
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			pgstat_report_activity(STATE_RUNNING, "running a pg_duet pipeline");
			(void) pipeline_run(*(int64 *) lfirst(lc), PIPELINE_INCREMENTAL, NULL, NULL, NULL, true,
								PIPELINE_RECORD, &full, NULL);
			PopActiveSnapshot();
			CommitTransactionCommand();
			/*
			 * Pipelines of every tenant share this session: a session-level advisory lock taken
			 * by one's transform or trigger (its run commits) ends here, before the next runs.
			 */
			LockReleaseSession(USER_LOCKMETHOD);
			more |= full;
		}
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
