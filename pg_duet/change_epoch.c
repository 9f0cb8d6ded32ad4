/*
 * change_epoch.c — when may a backend trust what it cached about tenants and config?
 *
 * Every per-backend cache of pg_duet's tenant and config tables (tenant.c, config_cache.c) is
 * validated by a token of two numbers:
 *
 *   - the shared epoch, a counter in shared memory that a backend increments right after it
 *     commits a change to duet.tenants, duet.tenant_members or duet.config (XACT_EVENT_COMMIT runs
 *     after the commit is visible to other snapshots, and before COMMIT returns to the client),
 *     so no backend serves a value older than the last committed change once its COMMIT returned;
 *   - the local generation, bumped in this backend when its own transaction changes those tables
 *     (statement trigger), when such a transaction or subtransaction aborts, and when role
 *     membership changes (syscache callbacks on pg_auth_members and pg_authid), so a backend also
 *     sees its own uncommitted writes and never keeps what a rollback took back.
 *
 * A reader takes the token BEFORE it takes the snapshot it reads with: a commit racing the read
 * then at worst makes the next read refetch. Without shared memory (library not preloaded) the
 * caches are disabled and every read goes to the tables.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "change_epoch.h"

typedef struct DuetEpochShared
{
	pg_atomic_uint64 epoch;
} DuetEpochShared;

static DuetEpochShared *epoch_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Bumped whenever this backend must distrust its caches regardless of the shared epoch. */
static uint64 local_generation = 1;

/* This transaction changed tenant or config tables: publish at commit, forget at abort. */
static bool xact_changed = false;
static bool callbacks_registered = false;

/* Our tables, whose relcache invalidations (sent by COMMIT PREPARED too) distrust caches. */
static Oid	watched_relids[8];
static int	n_watched = 0;

static void
epoch_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DuetEpochShared)));
}

static void
epoch_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	epoch_shared = ShmemInitStruct("pg_duet change epoch", sizeof(DuetEpochShared), &found);
	if (!found)
		pg_atomic_init_u64(&epoch_shared->epoch, 1);
	LWLockRelease(AddinShmemInitLock);
}

static void
epoch_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (xact_changed)
			{
				if (epoch_shared)
					pg_atomic_fetch_add_u64(&epoch_shared->epoch, 1);
				local_generation++;
			}
			xact_changed = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (xact_changed)
				local_generation++;
			xact_changed = false;
			break;
		case XACT_EVENT_PREPARE:
			/* The change becomes visible at COMMIT PREPARED, possibly in another backend. */
			if (xact_changed && epoch_shared)
				pg_atomic_fetch_add_u64(&epoch_shared->epoch, 1);
			local_generation++;
			xact_changed = false;
			break;
		default:
			break;
	}
}

static void
epoch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	/* A rolled-back savepoint may have taken back a write this backend already cached. */
	if (event == SUBXACT_EVENT_ABORT_SUB && xact_changed)
		local_generation++;
}

/* Role membership or superuser status changed: membership decisions must be recomputed. */
static void
epoch_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	local_generation++;
}

/*
 * COMMIT PREPARED runs none of our transaction callbacks, but it does send the relcache
 * invalidation the trigger queued for the changed table: distrust caches when it arrives.
 */
static void
epoch_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	if (relid == InvalidOid)
	{
		local_generation++;
		return;
	}
	for (i = 0; i < n_watched; i++)
		if (watched_relids[i] == relid)
		{
			local_generation++;
			return;
		}
}

void
duet_epoch_watch_relation(Oid relid)
{
	int			i;

	for (i = 0; i < n_watched; i++)
		if (watched_relids[i] == relid)
			return;
	if (n_watched < lengthof(watched_relids))
		watched_relids[n_watched++] = relid;
}

void
duet_epoch_init(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = epoch_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = epoch_shmem_startup;
	}
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(epoch_xact_callback, NULL);
	RegisterSubXactCallback(epoch_subxact_callback, NULL);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, epoch_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, epoch_syscache_callback, (Datum) 0);
	CacheRegisterRelcacheCallback(epoch_relcache_callback, (Datum) 0);
	callbacks_registered = true;
}

bool
duet_epoch_token(DuetCacheToken *token)
{
	register_callbacks();
	token->local = local_generation;
	if (epoch_shared == NULL)
	{
		token->shared = 0;
		return false;
	}
	pg_memory_barrier();
	token->shared = pg_atomic_read_u64(&epoch_shared->epoch);
	return true;
}

bool
duet_epoch_token_valid(const DuetCacheToken *token)
{
	DuetCacheToken now;

	if (!duet_epoch_token(&now))
		return false;
	return now.shared == token->shared && now.local == token->local;
}

void
duet_epoch_mark_changed(void)
{
	register_callbacks();
	xact_changed = true;
	local_generation++;
}

PG_FUNCTION_INFO_V1(duet_changed_trigger);

/*
 * duet_changed_trigger() — statement trigger on duet.tenants, duet.tenant_members and
 * duet.config: whatever wrote them (the API, a superuser's UPDATE, a restore), caches follow.
 */
Datum
duet_changed_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("duet_changed_trigger() must be called as a trigger")));
	duet_epoch_mark_changed();
	/* Queued for commit, also by PREPARE TRANSACTION for COMMIT PREPARED; see above. */
	CacheInvalidateRelcache(((TriggerData *) fcinfo->context)->tg_relation);
	duet_epoch_watch_relation(RelationGetRelid(((TriggerData *) fcinfo->context)->tg_relation));
	return PointerGetDatum(NULL);
}
