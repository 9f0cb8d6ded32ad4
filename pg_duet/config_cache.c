/*
 * config_cache.c — reading config: duet_config_get() and the typed getters, from a per-backend
 * cache that is never staler than the last committed change.
 *
 * The effective value of a key for a tenant is the tenant's override, else the global default
 * (tenant NULL). Values are cached per backend by (tenant, key), absent keys included. The whole
 * cache is dropped when change_epoch.c's token moves: another backend committed a change (shared
 * epoch, bumped before its COMMIT returns), or this backend wrote, rolled back, or saw role
 * membership change (local generation). A miss reads through SPI, as the caller (so the table's
 * privileges and row-level security apply), with a snapshot taken after the token.
 *
 * Under REPEATABLE READ or SERIALIZABLE the transaction's snapshot decides what is visible, which
 * may be older than the cache: such reads bypass the cache and use that snapshot. Parallel
 * workers cannot take snapshots of their own and read through too.
 *
 * For monitoring (duet_metrics_server, duet.health) each lookup is counted as a hit, a miss or a
 * bypass (read past the cache under such a snapshot). A backend counts in
 * local variables and adds them to shared atomics every CACHE_COUNT_FLUSH lookups and at the end
 * of each transaction, so a hit costs no shared cache line.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"

#include "change_epoch.h"
#include "duet_config.h"
#include "monitor.h"
#include "pg_duet.h"
#include "tenant.h"

/* A cache larger than this is dropped and refilled: config has few keys, lookups are bounded. */
#define CONFIG_CACHE_MAX_ENTRIES 10000

typedef struct ConfigCacheKey
{
	char		tenant[TENANT_NAME_MAXLEN + 1]; /* "" = no tenant */
	char		key[CONFIG_KEY_MAXLEN + 1];
} ConfigCacheKey;

typedef struct ConfigCacheEntry
{
	ConfigCacheKey id;			/* hash key, must be first */
	Jsonb	   *value;			/* NULL: the key is not set */
} ConfigCacheEntry;

static MemoryContext cache_cxt = NULL;
static HTAB *cache = NULL;
static DuetCacheToken cache_token;
static SPIPlanPtr lookup_plan = NULL;

/* ---- counting lookups ------------------------------------------------------------------- */

#define CACHE_COUNT_FLUSH 256

typedef struct CacheCounters
{
	pg_atomic_uint64 hits;
	pg_atomic_uint64 misses;
	pg_atomic_uint64 bypasses;
} CacheCounters;

static CacheCounters *cache_counters = NULL;
static uint64 local_hits = 0;
static uint64 local_misses = 0;
static uint64 local_bypasses = 0;
static bool count_callbacks = false;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
counters_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CacheCounters)));
}

static void
counters_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	cache_counters = ShmemInitStruct("pg_duet config cache counters", sizeof(CacheCounters), &found);
	if (!found)
	{
		pg_atomic_init_u64(&cache_counters->hits, 0);
		pg_atomic_init_u64(&cache_counters->misses, 0);
		pg_atomic_init_u64(&cache_counters->bypasses, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* From duet_config_init (_PG_init): the shared counters exist only when preloaded. */
void
duet_config_cache_shmem_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = counters_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = counters_shmem_startup;
}

static void
counters_flush(void)
{
	if (cache_counters == NULL)
		return;
	if (local_hits)
		pg_atomic_fetch_add_u64(&cache_counters->hits, local_hits);
	if (local_misses)
		pg_atomic_fetch_add_u64(&cache_counters->misses, local_misses);
	if (local_bypasses)
		pg_atomic_fetch_add_u64(&cache_counters->bypasses, local_bypasses);
	local_hits = local_misses = local_bypasses = 0;
}

static void
counters_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		counters_flush();
}

static void
counters_exit(int code, Datum arg)
{
	counters_flush();
}

/* Counts one lookup: *counter is local_hits, local_misses or local_bypasses. */
static inline void
count_lookup(uint64 *counter)
{
	if (!count_callbacks)
	{
		RegisterXactCallback(counters_xact_callback, NULL);
		before_shmem_exit(counters_exit, (Datum) 0);
		count_callbacks = true;
	}
	(*counter)++;
	if (local_hits + local_misses + local_bypasses >= CACHE_COUNT_FLUSH)
		counters_flush();
}

void
duet_config_cache_counts(uint64 *hits, uint64 *misses, uint64 *bypasses)
{
	counters_flush();
	*hits = cache_counters ? pg_atomic_read_u64(&cache_counters->hits) : 0;
	*misses = cache_counters ? pg_atomic_read_u64(&cache_counters->misses) : 0;
	*bypasses = cache_counters ? pg_atomic_read_u64(&cache_counters->bypasses) : 0;
}

static void
cache_reset(void)
{
	HASHCTL		ctl;

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext, "pg_duet config cache",
										  ALLOCSET_DEFAULT_SIZES);
	cache = NULL;
	MemoryContextReset(cache_cxt);
	ctl.keysize = sizeof(ConfigCacheKey);
	ctl.entrysize = sizeof(ConfigCacheEntry);
	ctl.hcxt = cache_cxt;
	cache = hash_create("pg_duet config cache", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

bool
duet_config_key_valid(const char *key)
{
	size_t		len = strlen(key);
	const char *p;

	if (len == 0 || len > CONFIG_KEY_MAXLEN || !(key[0] >= 'a' && key[0] <= 'z'))
		return false;
	for (p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			return false;
	return true;
}

static void
check_key(const char *key)
{
	if (!duet_config_key_valid(key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid config key \"%s\"", key),
				 errdetail("A config key has 1 to 128 lower-case letters, digits, \"_\", \".\" and \"-\", starting with a letter.")));
}

/*
 * The effective value from the table, copied into cxt; NULL when not set. snapshot may be
 * InvalidSnapshot: the active (transaction's) snapshot.
 */
static Jsonb *
fetch_value(const char *tenant, const char *key, Snapshot snapshot, MemoryContext cxt)
{
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	Jsonb	   *result = NULL;
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (lookup_plan == NULL)
	{
		/* The tenant's override sorts before the default (NULL sorts last). */
		duet_spi_plan(&lookup_plan, "SELECT value FROM duet.config "
					  "WHERE key OPERATOR(pg_catalog.=) $1 "
					  "AND (tenant OPERATOR(pg_catalog.=) $2 OR tenant IS NULL) "
					  "ORDER BY tenant NULLS LAST LIMIT 1", 2, (Oid[]) {TEXTOID, TEXTOID});
		/* COMMIT PREPARED of a config change reaches us as a relcache invalidation of it. */
		duet_epoch_watch_relation(get_relname_relid("config", get_namespace_oid("duet", false)));
	}
	values[0] = CStringGetTextDatum(key);
	if (tenant)
		values[1] = CStringGetTextDatum(tenant);
	else
	{
		values[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	ret = SPI_execute_snapshot(lookup_plan, values, nulls, snapshot, InvalidSnapshot, true, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "config lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			result = DatumGetJsonbPCopy(d);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	return result;
}

Jsonb *
duet_config_lookup(const char *key)
{
	const char *t;
	ConfigCacheKey id;
	ConfigCacheEntry *entry;
	bool		found;
	Snapshot	snapshot;
	Jsonb	   *value;

	check_key(key);
	t = duet_current_tenant_name();

	if (IsolationUsesXactSnapshot() || IsInParallelMode())
	{
		if (!IsInParallelMode())
			count_lookup(&local_bypasses);
		return fetch_value(t, key, InvalidSnapshot, CurrentMemoryContext);
	}

	if (cache == NULL || !duet_epoch_token_valid(&cache_token) ||
		hash_get_num_entries(cache) >= CONFIG_CACHE_MAX_ENTRIES)
	{
		/* The token is taken before the snapshot the misses read with. */
		if (!duet_epoch_token(&cache_token))
		{
			Jsonb	   *v;

			/* No shared memory (not preloaded): no cache, every read goes to the table. */
			snapshot = RegisterSnapshot(GetLatestSnapshot());
			v = fetch_value(t, key, snapshot, CurrentMemoryContext);
			UnregisterSnapshot(snapshot);
			return v;
		}
		cache_reset();
	}

	memset(&id, 0, sizeof(id));
	if (t)
		strlcpy(id.tenant, t, sizeof(id.tenant));
	strlcpy(id.key, key, sizeof(id.key));

	entry = hash_search(cache, &id, HASH_FIND, NULL);
	count_lookup(entry ? &local_hits : &local_misses);
	if (entry == NULL)
	{
		/* A fresh snapshot: commits that completed before this call are visible. */
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		value = fetch_value(t, key, snapshot, cache_cxt);
		UnregisterSnapshot(snapshot);
		/*
		 * Were the caches invalidated meanwhile (an invalidation message processed during the
		 * query), the value is still right for this call but must not be kept.
		 */
		if (cache == NULL || !duet_epoch_token_valid(&cache_token))
		{
			Jsonb	   *copy = NULL;

			if (value)
			{
				copy = palloc(VARSIZE(value));
				memcpy(copy, value, VARSIZE(value));
			}
			cache_reset();
			cache_token.local = 0;	/* never matches: the next call takes a new token */
			return copy;
		}
		entry = hash_search(cache, &id, HASH_ENTER, &found);
		entry->value = value;
	}
	if (entry->value == NULL)
		return NULL;
	/* The caller gets its own copy: the cache may be dropped while the value is in use. */
	value = palloc(VARSIZE(entry->value));
	memcpy(value, entry->value, VARSIZE(entry->value));
	return value;
}

/* ---------------------------------------------------------------------------------------------
 * SQL getters
 * --------------------------------------------------------------------------------------------- */

static const char *
jsonb_kind(Jsonb *jb, JsonbValue *scalar)
{
	if (!JB_ROOT_IS_SCALAR(jb))
		return JB_ROOT_IS_OBJECT(jb) ? "an object" : "an array";
	(void) JsonbExtractScalar(&jb->root, scalar);
	switch (scalar->type)
	{
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		default:
			return "null";
	}
}

static void
type_mismatch(const char *key, const char *want, const char *have)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("config key \"%s\" holds %s, not %s", key, have, want),
			 errhint("duet_config_get('%s') returns the value as jsonb.", key)));
}

/*
 * Shared by the getters: the value of key, or NULL when it is unset (the caller then returns its
 * fallback argument). A JSON null value is reported as *is_json_null.
 */
static Jsonb *
getter_value(FunctionCallInfo fcinfo, char **key, JsonbValue *scalar, bool *is_json_null)
{
	Jsonb	   *v;

	*is_json_null = false;
	if (PG_ARGISNULL(0))
		return NULL;
	*key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	v = duet_config_lookup(*key);
	if (v && JB_ROOT_IS_SCALAR(v))
	{
		(void) JsonbExtractScalar(&v->root, scalar);
		*is_json_null = scalar->type == jbvNull;
	}
	return v;
}

#define RETURN_FALLBACK() \
	do { if (PG_NARGS() > 1 && !PG_ARGISNULL(1)) PG_RETURN_DATUM(PG_GETARG_DATUM(1)); PG_RETURN_NULL(); } while (0)

PG_FUNCTION_INFO_V1(duet_config_get);

/* duet_config_get(key text, fallback jsonb DEFAULT NULL) → jsonb: tenant override, else default. */
Datum
duet_config_get(PG_FUNCTION_ARGS)
{
	char	   *key = NULL;
	JsonbValue	scalar;
	bool		is_null;
	Jsonb	   *v = getter_value(fcinfo, &key, &scalar, &is_null);

	if (v == NULL)
		RETURN_FALLBACK();
	PG_RETURN_JSONB_P(v);
}

PG_FUNCTION_INFO_V1(duet_config_get_text);

Datum
duet_config_get_text(PG_FUNCTION_ARGS)
{
	char	   *key = NULL;
	JsonbValue	scalar;
	bool		is_null;
	Jsonb	   *v = getter_value(fcinfo, &key, &scalar, &is_null);

	if (v == NULL)
		RETURN_FALLBACK();
	if (is_null)
		PG_RETURN_NULL();
	if (!JB_ROOT_IS_SCALAR(v) || scalar.type != jbvString)
		type_mismatch(key, "a string", jsonb_kind(v, &scalar));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(scalar.val.string.val, scalar.val.string.len));
}

static Numeric
numeric_value(const char *key, Jsonb *v, JsonbValue *scalar, const char *want)
{
	if (!JB_ROOT_IS_SCALAR(v) || scalar->type != jbvNumeric)
		type_mismatch(key, want, jsonb_kind(v, scalar));
	return scalar->val.numeric;
}

PG_FUNCTION_INFO_V1(duet_config_get_int);

Datum
duet_config_get_int(PG_FUNCTION_ARGS)
{
	char	   *key = NULL;
	JsonbValue	scalar;
	bool		is_null;
	Jsonb	   *v = getter_value(fcinfo, &key, &scalar, &is_null);
	Numeric		num;
	Numeric		rounded;

	if (v == NULL)
		RETURN_FALLBACK();
	if (is_null)
		PG_RETURN_NULL();
	num = numeric_value(key, v, &scalar, "an integer");
	rounded = DatumGetNumeric(DirectFunctionCall2(numeric_round, NumericGetDatum(num), Int32GetDatum(0)));
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(num), NumericGetDatum(rounded))) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("config key \"%s\" holds %s, not an integer", key, numeric_normalize(num)),
				 errhint("Use duet_config_get_numeric('%s').", key)));
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(num),
										  DirectFunctionCall1(int4_numeric, Int32GetDatum(PG_INT32_MAX)))) > 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(num),
										  DirectFunctionCall1(int4_numeric, Int32GetDatum(PG_INT32_MIN)))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("config key \"%s\" holds %s, out of range for type integer", key, numeric_normalize(num)),
				 errhint("Use duet_config_get_numeric('%s').", key)));
	PG_RETURN_DATUM(DirectFunctionCall1(numeric_int4, NumericGetDatum(num)));
}

PG_FUNCTION_INFO_V1(duet_config_get_numeric);

Datum
duet_config_get_numeric(PG_FUNCTION_ARGS)
{
	char	   *key = NULL;
	JsonbValue	scalar;
	bool		is_null;
	Jsonb	   *v = getter_value(fcinfo, &key, &scalar, &is_null);

	if (v == NULL)
		RETURN_FALLBACK();
	if (is_null)
		PG_RETURN_NULL();
	PG_RETURN_NUMERIC(numeric_value(key, v, &scalar, "a number"));
}

PG_FUNCTION_INFO_V1(duet_config_get_float8);

Datum
duet_config_get_float8(PG_FUNCTION_ARGS)
{
	char	   *key = NULL;
	JsonbValue	scalar;
	bool		is_null;
	Jsonb	   *v = getter_value(fcinfo, &key, &scalar, &is_null);

	if (v == NULL)
		RETURN_FALLBACK();
	if (is_null)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(numeric_float8,
										NumericGetDatum(numeric_value(key, v, &scalar, "a number"))));
}

PG_FUNCTION_INFO_V1(duet_config_get_bool);

Datum
duet_config_get_bool(PG_FUNCTION_ARGS)
{
	char	   *key = NULL;
	JsonbValue	scalar;
	bool		is_null;
	Jsonb	   *v = getter_value(fcinfo, &key, &scalar, &is_null);

	if (v == NULL)
		RETURN_FALLBACK();
	if (is_null)
		PG_RETURN_NULL();
	if (!JB_ROOT_IS_SCALAR(v) || scalar.type != jbvBool)
		type_mismatch(key, "a boolean", jsonb_kind(v, &scalar));
	PG_RETURN_BOOL(scalar.val.boolean);
}
