/*
 * doctor.c — saying loudly when pg_duet cannot work here: the check that its background workers
 * serve this database, the WARNING that whatever needs them gives when they do not, and the C
 * half of duet_doctor() (pg_duet/sql/70_doctor.sql), which lists every problem it can find.
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "access/htup_details.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "pg_duet.h"

const char *
duet_workers_problem(const char **hint)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	const char *db = get_database_name(MyDatabaseId);

	if (!duet_preloaded)
	{
		*hint = "Add pg_duet to shared_preload_libraries in postgresql.conf and restart the server.";
		return "pg_duet is not in shared_preload_libraries, so its background workers do not run";
	}
	copy = pstrdup(duet_databases ? duet_databases : "");
	if (!SplitIdentifierString(copy, ',', &names))
	{
		*hint = "Set duet.databases to a comma-separated list of database names and reload.";
		return "duet.databases is not a valid list of names";
	}
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), db) == 0)
			return NULL;
	*hint = psprintf("Add it: ALTER SYSTEM SET duet.databases = '%s%s%s'; SELECT pg_reload_conf();",
					 duet_databases, duet_databases[0] ? "," : "", db);
	return psprintf("database \"%s\" is not in duet.databases (\"%s\"), so no pg_duet worker serves it",
					db, duet_databases);
}

void
duet_workers_warn(const char *what)
{
	static LocalTransactionId warned_in = InvalidLocalTransactionId;
	const char *hint;
	const char *problem = duet_workers_problem(&hint);

	/* Once per transaction: a loop of publishes must not drown the log. */
	if (problem == NULL || warned_in == MyProc->lxid)
		return;
	warned_in = MyProc->lxid;
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s will not run: %s", what, problem),
			 errhint("%s", hint)));
}

PG_FUNCTION_INFO_V1(duet_workers_status);

/* duet_workers_status() → (problem, hint), both NULL when the workers serve this database. */
Datum
duet_workers_status(PG_FUNCTION_ARGS)
{
	const char *hint = NULL;
	const char *problem = duet_workers_problem(&hint);
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {problem == NULL, problem == NULL};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "duet_workers_status must return a record");
	values[0] = problem ? CStringGetTextDatum(problem) : (Datum) 0;
	values[1] = problem ? CStringGetTextDatum(hint) : (Datum) 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

PG_FUNCTION_INFO_V1(duet_workers_warn_sql);

/* duet.duet_workers_warn(what text): duet_workers_warn for SQL callers (the outbox). */
Datum
duet_workers_warn_sql(PG_FUNCTION_ARGS)
{
	duet_workers_warn(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}
