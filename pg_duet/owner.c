/*
 * owner.c — acting as the extension's owner.
 *
 * Tenant tables (config, rules, …) are writable only by the owner of schema duet. SQL entry
 * points authorize the caller themselves (role, verified tenant), then run the change through an
 * internal function as the owner, the way a SECURITY DEFINER function would; transaction abort
 * restores the user if anything fails.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/syscache.h"

#include "pg_duet.h"

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

/*
 * Runs a one-row query as the extension owner and returns its first column when that is a
 * non-null bigint, else 0. Errors are re-raised without the internal functions' context lines:
 * the caller called the public function, not them.
 */
int64
duet_run_as_owner(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	Oid			save_userid;
	int			save_sec;
	MemoryContext cxt = CurrentMemoryContext;
	volatile int64 result = 0;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(duet_extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		int			ret;
		bool		isnull;
		Datum		d;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "internal call \"%s\" failed: %s", sql, SPI_result_code_string(ret));
		if (SPI_tuptable->tupdesc->attrs[0].atttypid == INT8OID)
		{
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
				result = DatumGetInt64(d);
		}
		SPI_finish();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		SetUserIdAndSecContext(save_userid, save_sec);
		edata->context = NULL;
		ReThrowError(edata);
	}
	PG_END_TRY();
	SetUserIdAndSecContext(save_userid, save_sec);
	return result;
}
