/*
 * rules_worker.c — the rule scheduler: evaluates query rules every duet.rules_interval.
 *
 * A static background worker (registered when pg_duet is preloaded) wakes every interval and, for
 * each database in duet.databases, starts a short-lived worker connected to that database that
 * runs duet_rules_evaluate() in one transaction and exits. One database's failure (no extension,
 * a crash) never stops the others. pg_cron can call duet_rules_evaluate() instead: set
 * duet.rules_interval = 0 to turn the scheduler off.
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "pg_duet.h"
#include "rules.h"
#include "worker.h"

PGDLLEXPORT void duet_rules_scheduler_main(Datum arg);
PGDLLEXPORT void duet_rules_evaluator_main(Datum arg);

/* duet.rules_interval: seconds between evaluations of query rules; 0 turns the scheduler off. */
static int	duet_rules_interval = 60;

/* duet.rules_max_rows: the most rows a rule query may return (rules_query.c). */
int			duet_rules_max_rows = 100000;

/* duet.rules_query_timeout: one query rule's time limit (ms), so no rule stalls the others. */
int			duet_rules_query_timeout_ms = 30000;

/* duet.rules_history_retention: minutes of alert history the scheduler keeps; 0 keeps all. */
static int	duet_rules_history_retention = 90 * DUET_MINS_PER_DAY;

void
duet_rules_init(void)
{
	DuetWorkerSpec spec = {
		.function = "duet_rules_scheduler_main",
		.name = "pg_duet rule scheduler",
		.connect = true,
		.restart_s = 10,
	};

	rules_query_init();
	DefineCustomIntVariable("duet.rules_interval",
							"Interval between evaluations of query rules by the rule scheduler.",
							"0 turns the scheduler off (call duet_rules_evaluate() from pg_cron instead).",
							&duet_rules_interval,
							60, 0, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("duet.rules_max_rows",
							"Maximum number of rows a query rule may return.",
							"A query returning more is an evaluation error (the rule's Error state).",
							&duet_rules_max_rows,
							100000, 1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.rules_query_timeout",
							"Time limit for one query rule's query.",
							"A query running longer is that rule's evaluation error (its Error "
							"state); the other rules still run.",
							&duet_rules_query_timeout_ms,
							30000, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.rules_history_retention",
							"How long the rule scheduler keeps alert history (duet.alert_transitions).",
							"In minutes, at least one day ('90d'); 0 keeps everything. Pruning runs "
							"after each scheduled evaluation.",
							&duet_rules_history_retention,
							90 * DUET_MINS_PER_DAY, 0, 36500 * DUET_MINS_PER_DAY,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							duet_check_retention, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	duet_worker_register(&spec);
}

void
duet_rules_scheduler_main(Datum arg)
{
	MemoryContext loopcxt;

	/*
	 * SIGTERM is die(): it ends the scheduler at the next CHECK_FOR_INTERRUPTS, also while it
	 * waits for an evaluation (WaitForBackgroundWorkerShutdown serves interrupts); the evaluation
	 * itself gets its own SIGTERM from the postmaster and rolls back.
	 */
	duet_worker_init(DUET_WORKER_DIE);
	duet_worker_connect(NULL, InvalidOid);	/* no database: pg_database only */
	loopcxt = duet_worker_loop_context("duet rule scheduler");

	while (duet_worker_loop(loopcxt, NULL))
	{
		long		wait_ms;

		if (duet_rules_interval > 0 && duet_databases != NULL)
		{
			char	   *list = pstrdup(duet_databases);
			List	   *names = NIL;
			ListCell   *lc;

			if (!SplitIdentifierString(list, ',', &names))
				ereport(LOG,
						(errmsg("invalid duet.databases \"%s\"; rule scheduler waits", duet_databases)));
			else
				foreach(lc, names)
				{
					CHECK_FOR_INTERRUPTS();
					if (duet_worker_database_exists(lfirst(lc), "pg_duet rule scheduler"))
						duet_worker_run_in_database("duet_rules_evaluator_main", "pg_duet rule evaluation",
															(const char *) lfirst(lc));
				}
		}
		wait_ms = (duet_rules_interval > 0 ? duet_rules_interval : 60) * 1000L;
		duet_worker_wait(wait_ms);
	}
	proc_exit(0);
}

/* One evaluation in the database named in bgw_extra, then exit. */
void
duet_rules_evaluator_main(Datum arg)
{
	char		dbname[BGW_EXTRALEN];
	int			ret;

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, sizeof(dbname));
	duet_worker_init(DUET_WORKER_DIE);
	duet_worker_connect(dbname, InvalidOid);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "evaluating pg_duet query rules");

	ret = SPI_execute("SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e "
					  "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
					  "WHERE e.extname OPERATOR(pg_catalog.=) 'pg_duet'",
					  true, 1);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		ret = SPI_execute(psprintf("SELECT %s.duet_rules_evaluate(pg_catalog.now())", schema), false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "rule evaluation failed: %s", SPI_result_code_string(ret));
		if (duet_rules_history_retention > 0)
		{
			ret = SPI_execute(psprintf("DELETE FROM duet.alert_transitions WHERE at OPERATOR(pg_catalog.<) "
									   "(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(mins => %d))",
									   duet_rules_history_retention), false, 0);
			if (ret != SPI_OK_DELETE)
				elog(ERROR, "alert history pruning failed: %s", SPI_result_code_string(ret));
		}
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
