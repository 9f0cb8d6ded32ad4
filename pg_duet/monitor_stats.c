/*
 * monitor_stats.c — counters of rule evaluations and asks, in shared memory, for monitoring.
 *
 * Two fixed-size shared hash tables under one LWLock, like pg_stat_statements keeps its entries:
 *
 *   - per (database, rule id): evaluations, evaluations that failed, rows evaluated, last time;
 *     bumped once per evaluation (a statement's transition table for a row rule, a run of a query
 *     rule), never per row, so the lock is taken once per batch;
 *   - per (database, tenant, status): duet_ask calls, HTTP requests, corrections (answers the
 *     guard rejected and sent back to the model), tokens and latency; bumped once per ask.
 *
 * Their sizes are duet.monitor_max_rules and duet.monitor_max_tenants (x 6 statuses).
 *
 * Counters start at zero when the server starts (Prometheus treats a restart as a counter reset)
 * and only grow. A full table counts what it could not keep in `dropped` (duet_metrics_server).
 * The entries of dropped rules are removed when duet_metrics_rules() finds them (every scrape),
 * so a workload that creates and drops rules does not fill the table.
 * Without shared_preload_libraries there are no counters; the functions say so (NULLs, no rows).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "monitor.h"

/* An ask ends in one of these statuses (duet.ask_log's check): entries per tenant. */
#define ASK_STATUSES		6

/* duet.monitor_max_rules, duet.monitor_max_tenants: the tables' sizes (postmaster settings). */
static int	monitor_max_rules = 8192;
static int	monitor_max_tenants = 1024;

#define MONITOR_MAX_RULES	((long) monitor_max_rules)
#define MONITOR_MAX_ASKS	((long) monitor_max_tenants * ASK_STATUSES)

typedef struct RuleStatKey
{
	Oid			dboid;
	int64		rule_id;
} RuleStatKey;

typedef struct RuleStat
{
	RuleStatKey key;			/* hash key, must be first */
	uint64		evaluations;
	uint64		errors;
	uint64		rows;
	TimestampTz last_at;
} RuleStat;

typedef struct AskStatKey
{
	Oid			dboid;
	bool		has_tenant;
	char		tenant[TENANT_NAME_MAXLEN + 1];
	char		status[16];
} AskStatKey;

typedef struct AskStat
{
	AskStatKey	key;			/* hash key, must be first */
	uint64		calls;
	uint64		attempts;
	uint64		corrections;
	uint64		tokens_in;
	uint64		tokens_out;
	double		latency_ms;
	uint64		latency_buckets[MONITOR_LATENCY_BUCKETS];
} AskStat;

/* Buckets for LLM round trips: from a cached answer to a slow model with corrections. */
const double duet_monitor_latency_bounds[MONITOR_LATENCY_BUCKETS] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

typedef struct MonitorShared
{
	LWLock	   *lock;
	pg_atomic_uint64 dropped;
} MonitorShared;

static MonitorShared *monitor = NULL;
static HTAB *rule_stats = NULL;
static HTAB *ask_stats = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
monitor_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(MonitorShared));

	size = add_size(size, hash_estimate_size(MONITOR_MAX_RULES, sizeof(RuleStat)));
	return add_size(size, hash_estimate_size(MONITOR_MAX_ASKS, sizeof(AskStat)));
}

static void
monitor_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(monitor_shmem_size());
	RequestNamedLWLockTranche("pg_duet_monitor", 1);
}

static void
monitor_shmem_startup(void)
{
	bool		found;
	HASHCTL		ctl;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	monitor = ShmemInitStruct("pg_duet monitor", sizeof(MonitorShared), &found);
	if (!found)
	{
		monitor->lock = &(GetNamedLWLockTranche("pg_duet_monitor"))->lock;
		pg_atomic_init_u64(&monitor->dropped, 0);
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(RuleStatKey);
	ctl.entrysize = sizeof(RuleStat);
	rule_stats = ShmemInitHash("pg_duet monitor rules", MONITOR_MAX_RULES, MONITOR_MAX_RULES,
							   &ctl, HASH_ELEM | HASH_BLOBS);
	ctl.keysize = sizeof(AskStatKey);
	ctl.entrysize = sizeof(AskStat);
	ask_stats = ShmemInitHash("pg_duet monitor asks", MONITOR_MAX_ASKS, MONITOR_MAX_ASKS,
							  &ctl, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

void
duet_monitor_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("duet.monitor_max_rules",
							"Rules whose evaluations are counted for monitoring.",
							"Each counted rule takes about 100 bytes of shared memory; evaluations of "
							"rules beyond are counted in duet_metrics_server().counters_dropped.",
							&monitor_max_rules, 8192, 16, 1000000, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.monitor_max_tenants",
							"Tenants whose duet_ask calls are counted for monitoring.",
							"Each counted tenant takes about 1.5 kB of shared memory; asks of tenants "
							"beyond are counted in duet_metrics_server().counters_dropped.",
							&monitor_max_tenants, 1024, 16, 1000000, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = monitor_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = monitor_shmem_startup;
}

/*
 * The entry of key in htab, created (zeroed) when there is room; NULL when the table holds max
 * entries already. Never past max: a shared hash would otherwise take shared memory others need.
 * Caller holds the lock exclusively.
 */
static void *
stat_entry(HTAB *htab, const void *key, long max, Size keysize, Size entrysize)
{
	bool		found;
	char	   *e = hash_search(htab, key, HASH_FIND, NULL);

	if (e)
		return e;
	if (hash_get_num_entries(htab) >= max)
		return NULL;
	e = hash_search(htab, key, HASH_ENTER_NULL, &found);
	if (e && !found)
		memset(e + keysize, 0, entrysize - keysize);
	return e;
}

/*
 * Counts a count that found no room; the first of the server's life says so in the log (once, not
 * for every evaluation: this runs inside inserts and asks, also in error recovery).
 */
static void
count_dropped(const char *what, const char *setting)
{
	if (pg_atomic_fetch_add_u64(&monitor->dropped, 1) == 0)
		ereport(LOG,
				(errmsg("pg_duet monitoring counters are full: %s are no longer all counted", what),
				 errdetail("pg_duet_server_counters_dropped_total counts what was not."),
				 errhint("Raise %s (it needs a server restart).", setting)));
}

bool
duet_monitor_available(void)
{
	return monitor != NULL;
}

uint64
duet_monitor_dropped(void)
{
	return monitor ? pg_atomic_read_u64(&monitor->dropped) : 0;
}

void
duet_monitor_count_rule(int64 rule_id, int64 rows, bool error)
{
	RuleStatKey key;
	RuleStat   *s;

	if (monitor == NULL)
		return;
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.rule_id = rule_id;
	LWLockAcquire(monitor->lock, LW_EXCLUSIVE);
	s = stat_entry(rule_stats, &key, MONITOR_MAX_RULES, sizeof(RuleStatKey), sizeof(RuleStat));
	if (s)
	{
		s->evaluations++;
		s->errors += error ? 1 : 0;
		s->rows += rows > 0 ? rows : 0;
		s->last_at = GetCurrentTimestamp();
	}
	LWLockRelease(monitor->lock);
	if (s == NULL)
		count_dropped("rule evaluations", "duet.monitor_max_rules");
}

void
duet_monitor_count_ask(const char *tenant, const char *status, int attempts, int corrections,
					   int tokens_in, int tokens_out, double latency_ms)
{
	AskStatKey	key;
	AskStat    *s;
	int			b = 0;

	if (monitor == NULL)
		return;
	while (b < MONITOR_LATENCY_BUCKETS && latency_ms / 1000.0 > duet_monitor_latency_bounds[b])
		b++;
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.has_tenant = tenant != NULL;
	if (tenant)
		strlcpy(key.tenant, tenant, sizeof(key.tenant));
	strlcpy(key.status, status ? status : "failed", sizeof(key.status));
	LWLockAcquire(monitor->lock, LW_EXCLUSIVE);
	s = stat_entry(ask_stats, &key, MONITOR_MAX_ASKS, sizeof(AskStatKey), sizeof(AskStat));
	if (s)
	{
		if (b < MONITOR_LATENCY_BUCKETS)
			s->latency_buckets[b]++;	/* beyond the last bound: only in calls (+Inf) */
		s->calls++;
		s->attempts += Max(attempts, 0);
		s->corrections += Max(corrections, 0);
		s->tokens_in += Max(tokens_in, 0);
		s->tokens_out += Max(tokens_out, 0);
		s->latency_ms += latency_ms > 0 ? latency_ms : 0;
	}
	LWLockRelease(monitor->lock);
	if (s == NULL)
		count_dropped("duet_ask calls", "duet.monitor_max_tenants");
}

void
duet_monitor_forget_rules(const int64 *ids, int n, TimestampTz before)
{
	int			i;

	if (monitor == NULL || n == 0)
		return;
	LWLockAcquire(monitor->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		RuleStatKey key;
		RuleStat   *s;

		memset(&key, 0, sizeof(key));
		key.dboid = MyDatabaseId;
		key.rule_id = ids[i];
		s = hash_search(rule_stats, &key, HASH_FIND, NULL);
		if (s && s->last_at < before)
			hash_search(rule_stats, &key, HASH_REMOVE, NULL);
	}
	LWLockRelease(monitor->lock);
}

MonitorRuleCount *
duet_monitor_rule_counts(int *n)
{
	MonitorRuleCount *out;
	HASH_SEQ_STATUS seq;
	RuleStat   *s;
	int			size;

	*n = 0;
	if (monitor == NULL)
		return NULL;
	/*
	 * Allocated before the lock is taken (an error under it would be an error in error recovery
	 * for an ask counting at the same time); entries added meanwhile wait for the next call.
	 */
	LWLockAcquire(monitor->lock, LW_SHARED);
	size = Max(hash_get_num_entries(rule_stats), 1);
	LWLockRelease(monitor->lock);
	out = palloc(sizeof(MonitorRuleCount) * size);
	LWLockAcquire(monitor->lock, LW_SHARED);
	hash_seq_init(&seq, rule_stats);
	while ((s = hash_seq_search(&seq)) != NULL)
	{
		if (s->key.dboid != MyDatabaseId || *n >= size)
			continue;
		out[*n].rule_id = s->key.rule_id;
		out[*n].evaluations = s->evaluations;
		out[*n].errors = s->errors;
		out[*n].rows = s->rows;
		out[*n].last_at = s->last_at;
		(*n)++;
	}
	LWLockRelease(monitor->lock);
	return out;
}

MonitorAskCount *
duet_monitor_ask_counts(int *n)
{
	MonitorAskCount *out;
	HASH_SEQ_STATUS seq;
	AskStat    *s;
	int			size;

	*n = 0;
	if (monitor == NULL)
		return NULL;
	LWLockAcquire(monitor->lock, LW_SHARED);
	size = Max(hash_get_num_entries(ask_stats), 1);
	LWLockRelease(monitor->lock);
	out = palloc(sizeof(MonitorAskCount) * size);
	LWLockAcquire(monitor->lock, LW_SHARED);
	hash_seq_init(&seq, ask_stats);
	while ((s = hash_seq_search(&seq)) != NULL)
	{
		MonitorAskCount *c;

		if (s->key.dboid != MyDatabaseId || *n >= size)
			continue;
		c = &out[(*n)++];
		c->has_tenant = s->key.has_tenant;
		memcpy(c->tenant, s->key.tenant, sizeof(c->tenant));
		memcpy(c->status, s->key.status, sizeof(c->status));
		c->calls = s->calls;
		c->attempts = s->attempts;
		c->corrections = s->corrections;
		c->tokens_in = s->tokens_in;
		c->tokens_out = s->tokens_out;
		c->latency_ms = s->latency_ms;
		memcpy(c->latency_buckets, s->latency_buckets, sizeof(c->latency_buckets));
	}
	LWLockRelease(monitor->lock);
	return out;
}
