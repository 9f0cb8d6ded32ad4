/*
 * ask_budget.c — per-tenant rate limits and budgets for language-model requests.
 *
 * Three limits, each a typed config key of the Config Service (the tenant's override, else the
 * global default; absent means unlimited), defined by the install script:
 *
 *   ask.limit.requests_per_minute  requests to providers per UTC minute
 *   ask.limit.tokens_per_day       input + output tokens per UTC day
 *   ask.limit.cost_per_month       cost per UTC month, from duet.llm_prices
 *
 * duet_budget_admit() runs before every provider request (ask_provider.c: each attempt, retries,
 * fallbacks and self-corrections included). The counters are in shared memory, one slot per
 * tenant, under one LWLock, so every backend sees every other's requests at once:
 *
 *   - a request is counted against the minute when it is admitted, so requests per minute are
 *     exact whatever the concurrency;
 *   - tokens and cost are known only when the answer arrives, so an admitted request reserves its
 *     most (prompt length / 4 + max_tokens, priced) until duet_budget_settle() books the actual
 *     figures. A request is admitted while used + reserved + its reservation fits the limit; when
 *     it does not fit only because of requests in flight, it waits for them (cancellable); with
 *     nothing in flight it is admitted while anything is left. So the limit is exceeded by at most
 *     the one request admitted last.
 *
 * Durable: every ask's tokens and cost reach duet.ask_usage (per tenant and UTC day) with its
 * audit row (ask_audit.c). A tenant's slot is loaded from there (and its current minute from
 * duet.ask_log) the first time it is needed after a start, so a restart loses nothing that was
 * written.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "ask.h"
#include "duet_config.h"
#include "pg_duet.h"
#include "tenant.h"

#define TENANT_KEY_LEN	(NAMEDATALEN * 2)
#define USECS_PER_MINUTE_I	INT64CONST(60000000)

static int	duet_ask_budget_tenants = 1024;

typedef struct BudgetSlot
{
	bool		used;
	char		tenant[TENANT_KEY_LEN];	/* "" for asks without a tenant */
	int64		minute;			/* the minute (since 2000) minute_requests counts */
	int32		minute_requests;
	int64		day;			/* the UTC day (since 2000) day_tokens counts */
	int64		day_tokens;
	int32		month;			/* year * 12 + month - 1 of month_cost */
	double		month_cost;
	int32		in_flight;
	int64		reserved_tokens;
	double		reserved_cost;
} BudgetSlot;

typedef struct BudgetShared
{
	LWLock	   *lock;
	ConditionVariable settled;
	int			nslots;
	BudgetSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} BudgetShared;

static BudgetShared *budget = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
budget_size(void)
{
	return add_size(offsetof(BudgetShared, slots), mul_size(sizeof(BudgetSlot), duet_ask_budget_tenants));
}

static void
budget_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(budget_size()));
	RequestNamedLWLockTranche("pg_duet_ask_budget", 1);
}

static void
budget_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	budget = ShmemInitStruct("pg_duet_ask_budget", budget_size(), &found);
	if (!found)
	{
		memset(budget, 0, budget_size());
		budget->lock = &(GetNamedLWLockTranche("pg_duet_ask_budget"))->lock;
		ConditionVariableInit(&budget->settled);
		budget->nslots = duet_ask_budget_tenants;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
duet_budget_shmem_init(void)
{
	/* A PGC_POSTMASTER setting and shared memory exist only when preloaded (else: no queue, no limits). */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("duet.ask_budget_tenants",
							"Tenants whose language-model limits are tracked in shared memory.",
							"One slot per tenant with a limit, kept until the server restarts.",
							&duet_ask_budget_tenants, 1024, 16, 1000000, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = budget_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = budget_shmem_startup;
}

/* ---- limits and windows ------------------------------------------------------------- */

typedef struct Limits
{
	int64		rpm;			/* -1: unlimited */
	int64		tpd;
	double		cpm;
} Limits;

static double
config_number(const char *key)
{
	Jsonb	   *v = duet_config_lookup(key);
	JsonbValue	jv;

	if (v == NULL || !JsonbExtractScalar(&v->root, &jv) || jv.type != jbvNumeric)
		return -1;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(jv.val.numeric)));
}

static void
read_limits(Limits *l)
{
	double		v;

	v = config_number("ask.limit.requests_per_minute");
	l->rpm = v < 0 ? -1 : (int64) v;
	v = config_number("ask.limit.tokens_per_day");
	l->tpd = v < 0 ? -1 : (int64) v;
	l->cpm = config_number("ask.limit.cost_per_month");
}

static int32
month_of(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	return tm.tm_year * 12 + tm.tm_mon - 1;
}

static TimestampTz
month_start(int32 month)
{
	struct pg_tm tm = {0};
	TimestampTz t;

	tm.tm_year = month / 12;
	tm.tm_mon = month % 12 + 1;
	tm.tm_mday = 1;
	if (tm2timestamp(&tm, 0, NULL, &t) != 0)
		elog(ERROR, "timestamp out of range");
	return t;
}

/* Moves the slot's windows to now (caller holds the lock exclusively). */
static void
roll(BudgetSlot *s, TimestampTz now)
{
	int64		minute = now / USECS_PER_MINUTE_I;
	int64		day = now / USECS_PER_DAY;
	int32		month = month_of(now);

	if (s->minute != minute)
	{
		s->minute = minute;
		s->minute_requests = 0;
	}
	if (s->day != day)
	{
		s->day = day;
		s->day_tokens = 0;
	}
	if (s->month != month)
	{
		s->month = month;
		s->month_cost = 0;
	}
}

/* ---- durable starting point --------------------------------------------------------- */

typedef struct LoadArgs
{
	const char *tenant;
	int64		minute_requests;
	int64		day_tokens;
	double		month_cost;
} LoadArgs;

static void
load_su(void *arg)
{
	LoadArgs   *la = (LoadArgs *) arg;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char		nulls[1];
	int			rc;

	values[0] = la->tenant[0] ? CStringGetTextDatum(la->tenant) : (Datum) 0;
	nulls[0] = la->tenant[0] ? ' ' : 'n';
	SPI_connect();
	rc = SPI_execute_with_args("SELECT coalesce(pg_catalog.sum(tokens_in OPERATOR(pg_catalog.+) tokens_out)"
							   "         FILTER (WHERE day OPERATOR(pg_catalog.=)"
							   "                 (pg_catalog.timezone('UTC', pg_catalog.now()))::pg_catalog.date), 0)::pg_catalog.int8,"
							   "       coalesce(pg_catalog.sum(cost), 0)::pg_catalog.float8,"
							   "       (SELECT coalesce(pg_catalog.sum(l.attempts), 0)::pg_catalog.int8 FROM duet.ask_log l"
							   "         WHERE l.tenant IS NOT DISTINCT FROM $1"
							   "           AND l.at OPERATOR(pg_catalog.>=) pg_catalog.date_trunc('minute', pg_catalog.now()))"
							   "  FROM duet.ask_usage"
							   " WHERE tenant IS NOT DISTINCT FROM $1"
							   "   AND day OPERATOR(pg_catalog.>=) (pg_catalog.date_trunc('month',"
							   "       pg_catalog.timezone('UTC', pg_catalog.now())))::pg_catalog.date",
							   1, types, values, nulls, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read duet.ask_usage: %s", SPI_result_code_string(rc));
	la->day_tokens = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1))));
	la->month_cost = strtod(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2), NULL);
	la->minute_requests = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3))));
	SPI_finish();
}

/* The tenant's slot, created (from the durable usage) on first need. */
static int
find_slot(const char *key)
{
	for (int i = 0; i < budget->nslots; i++)
		if (budget->slots[i].used && strcmp(budget->slots[i].tenant, key) == 0)
			return i;
	return -1;
}

static int
get_slot(const char *key, TimestampTz now)
{
	int			slot;
	LoadArgs	la = {key, 0, 0, 0};

	LWLockAcquire(budget->lock, LW_SHARED);
	slot = find_slot(key);
	LWLockRelease(budget->lock);
	if (slot >= 0)
		return slot;

	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, load_su, &la);
	LWLockAcquire(budget->lock, LW_EXCLUSIVE);
	slot = find_slot(key);
	if (slot < 0)
	{
		for (int i = 0; i < budget->nslots && slot < 0; i++)
			if (!budget->slots[i].used)
				slot = i;
		if (slot >= 0)
		{
			BudgetSlot *s = &budget->slots[slot];

			memset(s, 0, sizeof(*s));
			s->used = true;
			strlcpy(s->tenant, key, TENANT_KEY_LEN);
			roll(s, now);
			s->minute_requests = (int32) Min(la.minute_requests, PG_INT32_MAX);
			s->day_tokens = la.day_tokens;
			s->month_cost = la.month_cost;
		}
	}
	LWLockRelease(budget->lock);
	if (slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many tenants with language-model limits"),
				 errdetail("All %d slots of duet.ask_budget_tenants are taken.", budget->nslots),
				 errhint("Raise duet.ask_budget_tenants (needs a restart).")));
	return slot;
}

/* ---- admission ---------------------------------------------------------------------- */

static void
refuse(const char *tenant, const char *what, const char *limit, const char *used, TimestampTz reset,
	   const char *key)
{
	/* The audit row of this ask says why it ended. */
	duet_audit_mark("over_budget");
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("%s of %s exhausted", what, tenant[0] ? psprintf("tenant \"%s\"", tenant) : "asks without a tenant"),
			 errdetail("Limit: %s; used: %s; resets at %s.", limit, used, timestamptz_to_str(reset)),
			 errhint("The limit is the config key \"%s\" (the tenant's value, else the default).", key)));
}

void
duet_budget_admit(const char *tenant, int est_tokens, double est_cost, BudgetTicket *t)
{
	Limits		l;
	const char *key = tenant ? tenant : "";
	int			slot;
	bool		waiting = false;

	t->slot = -1;
	t->est_tokens = est_tokens;
	t->est_cost = est_cost;
	read_limits(&l);
	if (l.rpm < 0 && l.tpd < 0 && l.cpm < 0)
		return;
	if (budget == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("language-model limits need pg_duet in shared_preload_libraries"),
				 errdetail("The limits of all backends are counted in shared memory.")));

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		BudgetSlot *s;
		bool		must_wait = false;

		slot = get_slot(key, now);
		s = &budget->slots[slot];
		LWLockAcquire(budget->lock, LW_EXCLUSIVE);
		roll(s, now);
		if (l.rpm >= 0 && s->minute_requests >= l.rpm)
		{
			char	   *used = psprintf("%d requests", s->minute_requests);

			LWLockRelease(budget->lock);
			refuse(key, "the language-model rate limit", psprintf(INT64_FORMAT " requests per minute", l.rpm),
				   used, (s->minute + 1) * USECS_PER_MINUTE_I, "ask.limit.requests_per_minute");
		}
		if (l.tpd >= 0 && s->day_tokens >= l.tpd)
		{
			char	   *used = psprintf(INT64_FORMAT " tokens", s->day_tokens);

			LWLockRelease(budget->lock);
			refuse(key, "the daily token budget", psprintf(INT64_FORMAT " tokens per day", l.tpd), used,
				   (s->day + 1) * USECS_PER_DAY, "ask.limit.tokens_per_day");
		}
		if (l.cpm >= 0 && s->month_cost >= l.cpm)
		{
			char	   *used = psprintf("%.6f", s->month_cost);

			LWLockRelease(budget->lock);
			refuse(key, "the monthly cost budget", psprintf("%.6f per month", l.cpm), used,
				   month_start(s->month + 1), "ask.limit.cost_per_month");
		}
		/* Something is left; requests in flight may need it: wait for them rather than overshoot. */
		if (s->in_flight > 0 &&
			((l.tpd >= 0 && s->day_tokens + s->reserved_tokens + est_tokens > l.tpd) ||
			 (l.cpm >= 0 && s->month_cost + s->reserved_cost + est_cost > l.cpm)))
			must_wait = true;
		else
		{
			s->minute_requests++;
			s->in_flight++;
			s->reserved_tokens += est_tokens;
			s->reserved_cost += est_cost;
			t->slot = slot;
		}
		LWLockRelease(budget->lock);
		if (!must_wait)
			break;
		if (!waiting)
		{
			ConditionVariablePrepareToSleep(&budget->settled);
			waiting = true;
		}
		(void) ConditionVariableTimedSleep(&budget->settled, 1000, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	if (waiting)
		ConditionVariableCancelSleep();
}

void
duet_budget_settle(const BudgetTicket *t, int tokens, double cost)
{
	BudgetSlot *s;

	if (t->slot < 0 || budget == NULL)
		return;
	s = &budget->slots[t->slot];
	LWLockAcquire(budget->lock, LW_EXCLUSIVE);
	roll(s, GetCurrentTimestamp());
	s->in_flight = Max(s->in_flight - 1, 0);
	s->reserved_tokens = Max(s->reserved_tokens - t->est_tokens, 0);
	s->reserved_cost = Max(s->reserved_cost - t->est_cost, 0);
	s->day_tokens += tokens;
	s->month_cost += cost;
	LWLockRelease(budget->lock);
	ConditionVariableBroadcast(&budget->settled);
}

/* ---- SQL ---------------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(duet_ask_budget);

/*
 * duet_ask_budget() → setof (name, limit, used, in_flight, resets_at): the current tenant's live
 * counters against its limits (limits that are not set are left out).
 */
Datum
duet_ask_budget(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *tenant = duet_current_tenant_name();
	const char *key = tenant ? tenant : "";
	Limits		l;
	TimestampTz now = GetCurrentTimestamp();
	BudgetSlot	copy = {0};
	int			slot;

	InitMaterializedSRF(fcinfo, 0);
	read_limits(&l);
	if (budget == NULL || (l.rpm < 0 && l.tpd < 0 && l.cpm < 0))
		return (Datum) 0;
	slot = get_slot(key, now);
	LWLockAcquire(budget->lock, LW_EXCLUSIVE);
	roll(&budget->slots[slot], now);
	copy = budget->slots[slot];
	LWLockRelease(budget->lock);

	for (int i = 0; i < 3; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		const char *names[3] = {"requests_per_minute", "tokens_per_day", "cost_per_month"};
		double		limit = i == 0 ? (double) l.rpm : i == 1 ? (double) l.tpd : l.cpm;
		double		used = i == 0 ? copy.minute_requests : i == 1 ? (double) copy.day_tokens : copy.month_cost;
		TimestampTz reset = i == 0 ? (copy.minute + 1) * USECS_PER_MINUTE_I :
			i == 1 ? (copy.day + 1) * USECS_PER_DAY : month_start(copy.month + 1);

		if (limit < 0)
			continue;
		values[0] = CStringGetTextDatum(names[i]);
		values[1] = DirectFunctionCall1(float8_numeric, Float8GetDatum(limit));
		values[2] = DirectFunctionCall1(float8_numeric, Float8GetDatum(used));
		values[3] = Int32GetDatum(copy.in_flight);
		values[4] = TimestampTzGetDatum(reset);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
