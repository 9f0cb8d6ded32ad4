/*
 * privileged.c — the one privileged-execution path (see privileged.h and SECURITY.md).
 *
 * A section that runs as another role inherits the session's search_path, and with it whatever the
 * caller put first on it: a schema it owns, or pg_temp, which is searched first for types and
 * relations unless listed. A type, cast, operator or function resolved there would run the
 * caller's code with the new role's rights. So, like PostgreSQL 17's RestrictSearchPath() in
 * maintenance commands, each section gets a fixed search_path in a GUC nest level of its own, and
 * SECURITY_RESTRICTED_OPERATION, which refuses what would outlive it (temp objects, LISTEN,
 * cursors WITH HOLD, SET ROLE). When the section returns, every setting made inside is undone.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "pg_duet.h"

void
duet_run_privileged(Oid role, const char *search_path, duet_privileged_fn fn, void *arg)
{
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path ? search_path : DUET_PRIVILEGED_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		/* On error the (sub)transaction abort pops the GUC nest level; the user we restore now. */
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	/* Not isCommit: a plain SET made inside must not outlive the section either. */
	AtEOXact_GUC(false, nestlevel);
}

void
duet_worker_pin_search_path(void)
{
	/* Workers run as the bootstrap superuser; a database or role default must not reach them. */
	SetConfigOption("search_path", DUET_PRIVILEGED_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
}

Oid
duet_extension_owner(void)
{
	Oid			nsp = get_namespace_oid("duet", false);
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

typedef struct OwnerCall
{
	const char *sql;
	int			nargs;
	Oid		   *types;
	Datum	   *values;
	const char *nulls;
	int64		result;
} OwnerCall;

static void
owner_call(void *arg)
{
	OwnerCall  *c = arg;
	int			ret;
	bool		isnull;
	Datum		d;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(c->sql, c->nargs, c->types, c->values, c->nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "internal call \"%s\" failed: %s", c->sql, SPI_result_code_string(ret));
	if (SPI_tuptable->tupdesc->attrs[0].atttypid == INT8OID)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			c->result = DatumGetInt64(d);
	}
	SPI_finish();
}

typedef struct ExistsCall
{
	const char *sql;
	int			nargs;
	Oid		   *types;
	Datum	   *values;
	bool		found;
} ExistsCall;

static void
exists_call(void *arg)
{
	ExistsCall *c = arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(c->sql, c->nargs, c->types, c->values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "internal query \"%s\" failed", c->sql);
	c->found = SPI_processed > 0;
	SPI_finish();
}

bool
duet_privileged_exists(Oid role, const char *sql, int nargs, Oid *types, Datum *values)
{
	ExistsCall	c = {sql, nargs, types, values, false};

	duet_run_privileged(role, NULL, exists_call, &c);
	return c.found;
}

/*
 * Errors are re-raised without the internal functions' context lines: the caller called the
 * public function, not them.
 */
int64
duet_run_as_owner(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	MemoryContext cxt = CurrentMemoryContext;
	OwnerCall	c = {sql, nargs, types, values, nulls, 0};

	PG_TRY();
	{
		/* The tenant tables are writable only by the owner; the caller was authorized already. */
		duet_run_privileged(duet_extension_owner(), NULL, owner_call, &c);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->context = NULL;
		ReThrowError(edata);
	}
	PG_END_TRY();
	return c.result;
}
