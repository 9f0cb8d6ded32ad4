/*
 * config_write.c — writing config: the SQL entry points that change duet.config.
 *
 * The tables are read-only to everyone but the extension's owner. A write is authorized here, as
 * the calling role: the tenant is the caller's verified duet_current_tenant(), and the actor
 * recorded in history is the caller (current_user, which a SECURITY DEFINER function could not
 * see). The change itself — row lock, version, validation, history, NOTIFY — is done by the
 * internal functions duet.duet_config_apply() and duet.duet_config_define_apply() (20_config.sql),
 * which only the owner may run; we switch to the owner for that call, the way a SECURITY DEFINER
 * function does (transaction abort restores the user).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/syscache.h"

#include "duet_config.h"
#include "pg_duet.h"
#include "tenant.h"

static char *
key_arg(FunctionCallInfo fcinfo)
{
	char	   *key;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("config key must not be NULL")));
	key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!duet_config_key_valid(key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid config key \"%s\"", key),
				 errdetail("A config key has 1 to 128 lower-case letters, digits, \"_\", \".\" and \"-\", starting with a letter.")));
	return key;
}

/* A tenant change needs the caller's verified tenant (tenant.c). */
#define TENANT_HINT "Global defaults are changed with duet_config_set_default()."

static Datum
value_arg(FunctionCallInfo fcinfo, int argno, const char *unset_fn)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("config value must not be NULL"),
				 errhint("To remove a value use %s(key); to store JSON null pass 'null'::jsonb.", unset_fn)));
	return PG_GETARG_DATUM(argno);
}

static int64
apply(const char *op, const char *tenant, const char *key, Datum value, bool has_value, int64 version)
{
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, INT8OID, TEXTOID};
	Datum		values[6];
	char		nulls[7] = "      ";

	values[0] = CStringGetTextDatum(op);
	values[1] = tenant ? CStringGetTextDatum(tenant) : (Datum) 0;
	nulls[1] = tenant ? ' ' : 'n';
	values[2] = CStringGetTextDatum(key);
	values[3] = value;
	nulls[3] = has_value ? ' ' : 'n';
	values[4] = Int64GetDatum(version);
	nulls[4] = version > 0 ? ' ' : 'n';
	values[5] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	return duet_run_as_owner("SELECT duet.duet_config_apply($1, $2, $3, $4, $5, $6)", 6, types, values, nulls);
}

static int64
version_arg(FunctionCallInfo fcinfo, int argno)
{
	int64		v;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("version must not be NULL")));
	v = PG_GETARG_INT64(argno);
	if (v <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version must be positive, not " INT64_FORMAT, v),
				 errhint("See duet_config_history(key) for the versions of a key.")));
	return v;
}

PG_FUNCTION_INFO_V1(duet_config_set);

/* duet_config_set(key text, value jsonb) → bigint: the current tenant's override; new version. */
Datum
duet_config_set(PG_FUNCTION_ARGS)
{
	char	   *key = key_arg(fcinfo);
	Datum		value = value_arg(fcinfo, 1, "duet_config_unset");

	PG_RETURN_INT64(apply("set", duet_require_tenant("duet_config_set", TENANT_HINT), key, value, true, 0));
}

PG_FUNCTION_INFO_V1(duet_config_unset);

/* duet_config_unset(key text) → bigint: removes the tenant's override (the default applies). */
Datum
duet_config_unset(PG_FUNCTION_ARGS)
{
	char	   *key = key_arg(fcinfo);

	PG_RETURN_INT64(apply("unset", duet_require_tenant("duet_config_unset", TENANT_HINT), key, (Datum) 0, false, 0));
}

PG_FUNCTION_INFO_V1(duet_config_rollback);

/* duet_config_rollback(key text, version bigint) → bigint: the tenant's value as of that version. */
Datum
duet_config_rollback(PG_FUNCTION_ARGS)
{
	char	   *key = key_arg(fcinfo);
	int64		version = version_arg(fcinfo, 1);

	PG_RETURN_INT64(apply("rollback", duet_require_tenant("duet_config_rollback", TENANT_HINT), key, (Datum) 0, false, version));
}

PG_FUNCTION_INFO_V1(duet_config_set_default);

/* duet_config_set_default(key text, value jsonb) → bigint: the global default (admin). */
Datum
duet_config_set_default(PG_FUNCTION_ARGS)
{
	char	   *key = key_arg(fcinfo);
	Datum		value = value_arg(fcinfo, 1, "duet_config_unset_default");

	PG_RETURN_INT64(apply("set", NULL, key, value, true, 0));
}

PG_FUNCTION_INFO_V1(duet_config_unset_default);

Datum
duet_config_unset_default(PG_FUNCTION_ARGS)
{
	char	   *key = key_arg(fcinfo);

	PG_RETURN_INT64(apply("unset", NULL, key, (Datum) 0, false, 0));
}

PG_FUNCTION_INFO_V1(duet_config_rollback_default);

Datum
duet_config_rollback_default(PG_FUNCTION_ARGS)
{
	char	   *key = key_arg(fcinfo);
	int64		version = version_arg(fcinfo, 1);

	PG_RETURN_INT64(apply("rollback", NULL, key, (Datum) 0, false, version));
}

PG_FUNCTION_INFO_V1(duet_config_define);

/* duet_config_define(key text, schema jsonb, description text) → void (admin). */
Datum
duet_config_define(PG_FUNCTION_ARGS)
{
	char	   *key = key_arg(fcinfo);
	Oid			types[4] = {TEXTOID, JSONBOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[5] = "    ";

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("config definition schema must not be NULL"),
				 errhint("Use '{}' for a key without constraints, or duet_config_undefine(key).")));
	values[0] = CStringGetTextDatum(key);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	(void) duet_run_as_owner("SELECT duet.duet_config_define_apply($1, $2, $3, $4)", 4, types, values, nulls);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(duet_config_undefine);

/* duet_config_undefine(key text) → void: drops the key's definition (admin). */
Datum
duet_config_undefine(PG_FUNCTION_ARGS)
{
	char	   *key = key_arg(fcinfo);
	Oid			types[4] = {TEXTOID, JSONBOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[5] = " nn ";

	values[0] = CStringGetTextDatum(key);
	values[1] = values[2] = (Datum) 0;
	values[3] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	(void) duet_run_as_owner("SELECT duet.duet_config_define_apply($1, $2, $3, $4)", 4, types, values, nulls);
	PG_RETURN_VOID();
}

/*
 * Advisory locks taken from SQL have 1 or 2 in the tag's fourth field; this space is ours, so no
 * session (any role may take advisory locks) can hold a (tenant, key)'s lock and stall its writes.
 */
#define CONFIG_WRITE_LOCK_SPACE 0x6463	/* "dc" */

PG_FUNCTION_INFO_V1(duet_config_lock);

/*
 * duet.duet_config_lock(tenant, key) → void: the lock one writer of (tenant, key) holds until its
 * transaction ends (duet.duet_config_apply): no lost update, versions strictly increase.
 */
Datum
duet_config_lock(PG_FUNCTION_ARGS)
{
	LOCKTAG		tag;
	uint32		h[2] = {0, 0};	/* NULL: the default (tenant), no key (the apply then refuses) */

	for (int i = 0; i < 2; i++)
		if (!PG_ARGISNULL(i))
		{
			text	   *t = PG_GETARG_TEXT_PP(i);

			h[i] = DatumGetUInt32(hash_any((const unsigned char *) VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t))) | 1;
		}
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, h[0], h[1], CONFIG_WRITE_LOCK_SPACE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	PG_RETURN_VOID();
}
