/*
 * worker.c — the background-worker skeleton (see worker.h).
 *
 * SIGTERM is PostgreSQL's die() unless the worker asks to drain (the ask audit writer, which
 * must not drop queued rows): the next CHECK_FOR_INTERRUPTS then ends the worker with FATAL,
 * which aborts its open transaction, so a batch is either committed whole or not at all, and a
 * fast shutdown never waits for a batch to finish.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "storage/procsignal.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "privileged.h"
#include "worker.h"

static DuetWorkerStop stop_mode = DUET_WORKER_DIE;

static void
fill(BackgroundWorker *w, const DuetWorkerSpec *spec)
{
	memset(w, 0, sizeof(*w));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS |
		(spec->connect ? BGWORKER_BACKEND_DATABASE_CONNECTION : 0);
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	w->bgw_restart_time = spec->restart_s;
	strlcpy(w->bgw_library_name, "pg_duet", BGW_MAXLEN);
	strlcpy(w->bgw_function_name, spec->function, BGW_MAXLEN);
	strlcpy(w->bgw_name, spec->name, BGW_MAXLEN);
	strlcpy(w->bgw_type, spec->type ? spec->type : spec->name, BGW_MAXLEN);
	w->bgw_main_arg = spec->main_arg;
	Assert(spec->extra_len <= BGW_EXTRALEN);
	if (spec->extra_len > 0)
		memcpy(w->bgw_extra, spec->extra, Min(spec->extra_len, BGW_EXTRALEN));
}

void
duet_worker_register(const DuetWorkerSpec *spec)
{
	BackgroundWorker w;

	fill(&w, spec);
	RegisterBackgroundWorker(&w);
}

BackgroundWorkerHandle *
duet_worker_start(const DuetWorkerSpec *spec, bool quiet)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle = NULL;
	MemoryContext oldcxt;
	bool		ok;

	fill(&w, spec);
	w.bgw_notify_pid = MyProcPid;
	/* The handle outlives the caller's transaction and loop context. */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&w, &handle);
	MemoryContextSwitchTo(oldcxt);
	if (!ok)
	{
		ereport(quiet ? LOG : WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start \"%s\": no background worker slot free", spec->name),
				 errhint("Raise max_worker_processes.")));
		return NULL;
	}
	return handle;
}

void
duet_worker_run_in_database(const char *function, const char *type, const char *dbname)
{
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	char		name[BGW_MAXLEN];
	DuetWorkerSpec spec = {
		.function = function,
		.name = name,
		.type = type,
		.connect = true,
		.restart_s = BGW_NEVER_RESTART,
		.extra = dbname,
		.extra_len = Min(strlen(dbname) + 1, BGW_EXTRALEN),
	};

	snprintf(name, sizeof(name), "%s in %s", type, dbname);
	handle = duet_worker_start(&spec, true);
	if (handle == NULL)
		return;
	if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_STARTED)
		(void) WaitForBackgroundWorkerShutdown(handle);
	pfree(handle);
}

void
duet_worker_init(DuetWorkerStop stop)
{
	stop_mode = stop;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, stop == DUET_WORKER_DRAIN ? SignalHandlerForShutdownRequest : die);
	pqsignal(SIGUSR1, procsignal_sigusr1_handler);
	BackgroundWorkerUnblockSignals();
}

void
duet_worker_connect(const char *dbname, Oid dboid)
{
	if (dbname != NULL)
		BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	else
		BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	duet_worker_pin_search_path();
	pgstat_report_appname(MyBgworkerEntry->bgw_type);
}

/* Names already logged as missing, in TopMemoryContext. */
static List *missing_logged = NIL;

bool
duet_worker_database_exists(const char *dbname, const char *who)
{
	bool		exists = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	ListCell   *found = NULL;
	ListCell   *lc;

	/*
	 * A plain scan of pg_database, whose descriptor is nailed: an index scan would need the
	 * relcache of its index, which a process without a database can build only from the shared
	 * init file, absent right after initdb.
	 */
	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!exists && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		exists = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), dbname) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	foreach(lc, missing_logged)
		if (strcmp(lfirst(lc), dbname) == 0)
			found = lc;
	if (exists && found != NULL)
		missing_logged = list_delete_ptr(missing_logged, lfirst(found));
	else if (!exists && found == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

		missing_logged = lappend(missing_logged, pstrdup(dbname));
		MemoryContextSwitchTo(oldcxt);
		ereport(LOG,
				(errcode(ERRCODE_UNDEFINED_DATABASE),
				 errmsg("%s skips database \"%s\" in duet.databases: it does not exist", who, dbname),
				 errhint("Create the database, or remove it from duet.databases.")));
	}
	return exists;
}

MemoryContext
duet_worker_loop_context(const char *name)
{
	/* name is a string literal of the caller, so it outlives the context */
	return AllocSetContextCreateInternal(TopMemoryContext, name, ALLOCSET_DEFAULT_SIZES);
}

bool
duet_worker_loop(MemoryContext cxt, bool *reloaded)
{
	CHECK_FOR_INTERRUPTS();
	if (reloaded)
		*reloaded = false;
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		if (reloaded)
			*reloaded = true;
	}
	if (cxt != NULL)
	{
		MemoryContextSwitchTo(cxt);
		MemoryContextReset(cxt);
	}
	return !duet_worker_stopping();
}

void
duet_worker_wait(long timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

bool
duet_worker_stopping(void)
{
	return stop_mode == DUET_WORKER_DRAIN && ShutdownRequestPending;
}
