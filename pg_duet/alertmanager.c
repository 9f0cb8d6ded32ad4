/*
 * alertmanager.c — the Alertmanager sender: pushes firing and resolved alerts to every
 * Alertmanager of duet.alertmanager_urls through its v2 API (POST /api/v2/alerts).
 *
 * One sender per database, started by the per-database supervisor (kafka_launcher.c) while
 * duet.alertmanager_urls is set, on the worker skeleton (worker.c). It sleeps on its latch: a
 * transaction that changes what Alertmanager must be told (duet_alert_observe bumps an alert's
 * notify_version and calls duet_alertmanager_wake()) sets it when it commits; otherwise it wakes
 * when the next resend is due (duet.alertmanager_resend_interval, as Prometheus' resend delay) or
 * a backoff ends. Each round asks the database, per Alertmanager, which alerts are due
 * (duet.duet_alertmanager_due), sends them in batches of AM_BATCH as one JSON array built with
 * jansson, and records in duet.alertmanager_deliveries the notify_version each Alertmanager
 * accepted: a restart of PostgreSQL or of Alertmanager loses nothing, the next round re-sends
 * what was not accepted. Alertmanagers are independent (an HA pair gets every alert twice, as
 * Alertmanager expects), each with its own exponential backoff. Everything is read and written
 * as the extension owner through duet_run_privileged(), in fixed-search_path SQL functions.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/array.h"
/* fmgrprotos.h declares SQL functions named like jansson's json_object and json_typeof. */
#define json_object pg_sql_json_object
#define json_typeof pg_sql_json_typeof
#include "utils/builtins.h"
#undef json_object
#undef json_typeof
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include <jansson.h>

#include "alertmanager.h"
#include "ask.h"
#include "kafka.h"
#include "pg_duet.h"
#include "privileged.h"
#include "worker.h"

#define AM_BATCH			64	/* alerts per POST, Prometheus' default batch size */
#define AM_MAX_SENDERS		64	/* databases with a sender at once */
#define AM_MAX_BACKOFF_MS	60000
#define AM_DETAIL_MAX		300 /* bytes of an error answer kept in the status */

char	   *duet_alertmanager_urls = NULL;
static int	am_resend_s = 60;
static int	am_timeout_ms = 10000;
static char *am_generator_url = NULL;

/* ---- waking the sender of a database at commit ---- */

typedef struct AmShared
{
	slock_t		lock;
	struct
	{
		Oid			dboid;		/* InvalidOid: free */
		int			procno;
	}			senders[AM_MAX_SENDERS];
} AmShared;

static AmShared *am_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_pending = false;
static bool xact_callback_registered = false;

static void
am_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(AmShared)));
}

static void
am_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	am_shared = ShmemInitStruct("pg_duet alertmanager senders", sizeof(AmShared), &found);
	if (!found)
	{
		memset(am_shared, 0, sizeof(AmShared));
		SpinLockInit(&am_shared->lock);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
wake_sender(Oid dboid)
{
	int			procno = -1;

	SpinLockAcquire(&am_shared->lock);
	for (int i = 0; i < AM_MAX_SENDERS; i++)
		if (am_shared->senders[i].dboid == dboid)
			procno = am_shared->senders[i].procno;
	SpinLockRelease(&am_shared->lock);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

static void
am_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			/* After PREPARE the sender finds the change at its next resend at the latest. */
			if (wake_pending && am_shared != NULL)
				wake_sender(MyDatabaseId);
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = false;
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(duet_alertmanager_wake);

/* duet_alertmanager_wake(): this transaction changed what Alertmanager must be told. */
Datum
duet_alertmanager_wake(PG_FUNCTION_ARGS)
{
	if (am_shared == NULL)
		PG_RETURN_VOID();		/* not preloaded: there is no sender to wake */
	if (!xact_callback_registered)
	{
		RegisterXactCallback(am_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
	PG_RETURN_VOID();
}

static void
release_slot(int code, Datum arg)
{
	SpinLockAcquire(&am_shared->lock);
	for (int i = 0; i < AM_MAX_SENDERS; i++)
		if (am_shared->senders[i].dboid == MyDatabaseId &&
			am_shared->senders[i].procno == MyProc->pgprocno)
			am_shared->senders[i].dboid = InvalidOid;
	SpinLockRelease(&am_shared->lock);
}

static void
claim_slot(void)
{
	int			free_slot = -1;

	SpinLockAcquire(&am_shared->lock);
	for (int i = 0; i < AM_MAX_SENDERS; i++)
	{
		if (am_shared->senders[i].dboid == MyDatabaseId)
			free_slot = i;		/* a predecessor's slot: take it over */
		else if (am_shared->senders[i].dboid == InvalidOid && free_slot < 0)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		am_shared->senders[free_slot].dboid = MyDatabaseId;
		am_shared->senders[free_slot].procno = MyProc->pgprocno;
	}
	SpinLockRelease(&am_shared->lock);
	if (free_slot < 0)
		ereport(LOG,
				(errmsg("pg_duet alertmanager sender has no wake-up slot; it sends at each resend interval only"),
				 errhint("More than %d databases run a sender.", AM_MAX_SENDERS)));
	else
		before_shmem_exit(release_slot, (Datum) 0);
}

/* ---- settings ---- */

static bool
check_urls(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval ? *newval : "");
	List	   *items = NIL;
	ListCell   *lc;

	if (!SplitGUCList(copy, ',', &items))
	{
		GUC_check_errdetail("duet.alertmanager_urls is a comma-separated list of URLs.");
		return false;
	}
	foreach(lc, items)
	{
		const char *u = lfirst(lc);

		if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
		{
			GUC_check_errdetail("\"%s\" is not an http:// or https:// URL.", u);
			return false;
		}
	}
	return true;
}

void
duet_alertmanager_init(void)
{
	DefineCustomStringVariable("duet.alertmanager_urls",
							   "Alertmanagers that pg_duet sends alerts to.",
							   "Comma-separated base URLs, e.g. http://am1:9093,http://am2:9093 (an HA "
							   "pair gets every alert). Empty: alerts are not sent to Alertmanager.",
							   &duet_alertmanager_urls,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT | GUC_SUPERUSER_ONLY,
							   check_urls, NULL, NULL);
	DefineCustomIntVariable("duet.alertmanager_resend_interval",
							"Interval at which firing alerts are sent to Alertmanager again.",
							"As Prometheus' resend delay; each alert's endsAt is four intervals ahead.",
							&am_resend_s,
							60, 1, 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.alertmanager_timeout",
							"Time limit for one request to an Alertmanager.",
							NULL,
							&am_timeout_ms,
							10000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("duet.alert_generator_url",
							   "Base of the generatorURL of the alerts sent to Alertmanager.",
							   "tenant=...&rule=... is appended, e.g. a dashboard of the rules. Empty: "
							   "postgresql:///<database>?duet_tenant=...&duet_rule=....",
							   &am_generator_url,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = am_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = am_shmem_startup;
}

bool
duet_alertmanager_configured(void)
{
	return duet_alertmanager_urls != NULL && duet_alertmanager_urls[strspn(duet_alertmanager_urls, " ,")] != '\0';
}

/* ---- the sender ---- */

typedef struct AmTarget
{
	char	   *url;			/* as configured, credentials included */
	char	   *name;			/* without user:password: the key of deliveries and status */
	int			failures;		/* consecutive */
	TimestampTz next_attempt;	/* 0: now */
} AmTarget;

static AmTarget *targets = NULL;
static int	ntargets = 0;
static char *targets_spec = NULL;

/* The URL without a trailing "/" and without user:password in its authority. */
static char *
redact(const char *url)
{
	const char *auth = strstr(url, "://") + 3;
	const char *end = auth + strcspn(auth, "/?#");
	const char *at = memchr(auth, '@', end - auth);
	char	   *name = at ? psprintf("%.*s%s", (int) (auth - url), url, at + 1) : pstrdup(url);
	size_t		len = strlen(name);

	while (len > 0 && name[len - 1] == '/')
		name[--len] = '\0';
	return name;
}

/* Rebuilds the targets when duet.alertmanager_urls changed; keeps backoffs of those that stay. */
static bool
refresh_targets(void)
{
	MemoryContext old;
	List	   *items = NIL;
	ListCell   *lc;
	AmTarget   *next;
	int			n = 0;
	char	   *copy;

	if (targets_spec != NULL && strcmp(targets_spec, duet_alertmanager_urls) == 0)
		return false;
	old = MemoryContextSwitchTo(TopMemoryContext);
	copy = pstrdup(duet_alertmanager_urls);
	(void) SplitGUCList(copy, ',', &items);	/* checked by check_urls */
	next = palloc0(sizeof(AmTarget) * Max(list_length(items), 1));
	foreach(lc, items)
	{
		AmTarget   *t = &next[n++];

		size_t		len;

		t->name = redact(lfirst(lc));
		/* The URL itself keeps its credentials for libcurl; only a trailing "/" goes. */
		t->url = pstrdup(lfirst(lc));
		len = strlen(t->url);
		while (len > 0 && t->url[len - 1] == '/')
			t->url[--len] = '\0';
		for (int i = 0; i < ntargets; i++)
			if (strcmp(targets[i].name, t->name) == 0)
			{
				t->failures = targets[i].failures;
				t->next_attempt = targets[i].next_attempt;
			}
	}
	targets = next;
	ntargets = n;
	targets_spec = pstrdup(duet_alertmanager_urls);
	MemoryContextSwitchTo(old);
	return true;
}

/* Runs fn(arg) in its own transaction as the extension owner (fn connects SPI itself). */
static void
in_owner_transaction(duet_privileged_fn fn, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;	/* the loop's: commit leaves TopMemoryContext current */

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	duet_run_privileged(duet_extension_owner(), NULL, fn, arg);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

typedef struct Batch
{
	AmTarget   *target;
	MemoryContext cxt;			/* where the results go */
	int			n;
	Datum		ids[AM_BATCH];
	Datum		versions[AM_BATCH];
	char	   *body;			/* the JSON array */
	/* outcome, for record_batch */
	const char *error;
	const char *detail;
	bool		rejected;		/* HTTP 4xx: refused as invalid, sending again cannot help */
	TimestampTz next_attempt;
	TimestampTz next_due;		/* from load_next_due; 0: none */
	bool		sql_current;
} Batch;

static json_t *
json_object_from(const char *text)
{
	json_error_t err;
	json_t	   *j = json_loads(text, 0, &err);

	if (j == NULL || !json_is_object(j))
		elog(ERROR, "could not parse an alert's labels or annotations: %s", err.text);
	return j;
}

/* As the owner: the next AM_BATCH due alerts of the target, as Alertmanager's JSON. */
static void
load_batch(void *arg)
{
	Batch	   *b = arg;
	Oid			types[4] = {TEXTOID, FLOAT8OID, INT4OID, TEXTOID};
	Datum		values[4];
	json_t	   *array = json_array();
	char	   *dumped;
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = CStringGetTextDatum(b->target->name);
	values[1] = Float8GetDatum((double) am_resend_s);
	values[2] = Int32GetDatum(AM_BATCH);
	values[3] = CStringGetTextDatum(am_generator_url ? am_generator_url : "");
	ret = SPI_execute_with_args("SELECT alert_id, notify_version, labels, annotations, starts_at, ends_at, generator_url "
								"FROM duet.duet_alertmanager_due($1, pg_catalog.make_interval(secs => $2), $3, $4)",
								4, types, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the alerts due for Alertmanager: %s", SPI_result_code_string(ret));
	b->n = (int) SPI_processed;
	for (int i = 0; i < b->n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		json_t	   *alert;

		b->ids[i] = SPI_getbinval(tup, desc, 1, &isnull);
		b->versions[i] = SPI_getbinval(tup, desc, 2, &isnull);
		/* json_pack, not json_object(): that name is also a PostgreSQL SQL function's symbol. */
		alert = json_pack("{s:o, s:o, s:s, s:s, s:s}",
						  "labels", json_object_from(SPI_getvalue(tup, desc, 3)),
						  "annotations", json_object_from(SPI_getvalue(tup, desc, 4)),
						  "startsAt", SPI_getvalue(tup, desc, 5),
						  "endsAt", SPI_getvalue(tup, desc, 6),
						  "generatorURL", SPI_getvalue(tup, desc, 7));
		if (alert == NULL)
			elog(ERROR, "could not encode alert " INT64_FORMAT " for Alertmanager", DatumGetInt64(b->ids[i]));
		json_array_append_new(array, alert);
	}
	dumped = json_dumps(array, JSON_COMPACT);
	json_decref(array);
	if (dumped == NULL)
		elog(ERROR, "could not encode the alerts for Alertmanager");
	b->body = MemoryContextStrdup(b->cxt, dumped);
	free(dumped);
	SPI_finish();
}

/* As the owner: the outcome of the POST, into the deliveries and the status. */
static void
record_batch(void *arg)
{
	Batch	   *b = arg;
	Oid			types[7] = {TEXTOID, INT8ARRAYOID, INT8ARRAYOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, BOOLOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = CStringGetTextDatum(b->target->name);
	values[1] = PointerGetDatum(construct_array(b->ids, b->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(b->versions, b->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (b->error)
		values[3] = CStringGetTextDatum(b->error);
	else
		nulls[3] = 'n';
	if (b->detail)
		values[4] = CStringGetTextDatum(b->detail);
	else
		nulls[4] = 'n';
	if (b->next_attempt)
		values[5] = TimestampTzGetDatum(b->next_attempt);
	else
		nulls[5] = 'n';
	values[6] = BoolGetDatum(b->rejected);
	ret = SPI_execute_with_args("SELECT duet.duet_alertmanager_record($1, $2, $3, $4, $5, $6, $7)",
								7, types, values, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not record an Alertmanager delivery: %s", SPI_result_code_string(ret));
	SPI_finish();
}

/* As the owner: when the next resend to the target is due. */
static void
load_next_due(void *arg)
{
	Batch	   *b = arg;
	Oid			types[2] = {TEXTOID, FLOAT8OID};
	Datum		values[2];
	bool		isnull;
	Datum		d;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = CStringGetTextDatum(b->target->name);
	values[1] = Float8GetDatum((double) am_resend_s);
	if (SPI_execute_with_args("SELECT duet.duet_alertmanager_next_due($1, pg_catalog.make_interval(secs => $2))",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read when Alertmanager is next due");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	b->next_due = isnull ? 0 : DatumGetTimestampTz(d);
	SPI_finish();
}

/* As the owner: marks the configured Alertmanagers in the status table. */
static void
configure_targets(void *arg)
{
	Datum	   *names = palloc(sizeof(Datum) * Max(ntargets, 1));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < ntargets; i++)
		names[i] = CStringGetTextDatum(targets[i].name);
	if (SPI_execute_with_args("SELECT duet.duet_alertmanager_configure($1)", 1, (Oid[]) {TEXTARRAYOID},
							  (Datum[]) {PointerGetDatum(construct_array(names, ntargets, TEXTOID, -1, false, TYPALIGN_INT))},
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not record the configured Alertmanagers");
	SPI_finish();
}

static void
check_sql(void *arg)
{
	((Batch *) arg)->sql_current = duet_sql_is_current();
}

/* One POST of b->body; sets b->error (and b->detail) when the Alertmanager did not accept it. */
static void
post_batch(Batch *b)
{
	HttpResponse resp;
	HttpOutcome outcome;
	char	   *endpoint = psprintf("%s/api/v2/alerts", b->target->url);

	pgstat_report_activity(STATE_RUNNING, "sending alerts to Alertmanager");
	outcome = duet_http_post(endpoint, list_make1("Content-Type: application/json"), b->body,
							 am_timeout_ms, &resp);
	b->error = NULL;
	b->detail = NULL;
	b->rejected = false;
	if (outcome != HTTP_OK)
		b->error = psprintf("could not reach Alertmanager: %s", resp.error);
	else if (resp.status < 200 || resp.status > 299)
	{
		b->error = psprintf("Alertmanager answered HTTP %ld", resp.status);
		b->detail = pnstrdup(resp.body.data, Min(resp.body.len, AM_DETAIL_MAX));
		/* Alertmanager keeps the valid alerts of a batch it answers 400; 408 and 429 are retried. */
		b->rejected = resp.status >= 400 && resp.status < 500 && resp.status != 408 && resp.status != 429;
	}
}

/* Sends everything due to one Alertmanager; returns when it should be visited next (ms). */
static long
send_to(AmTarget *t, MemoryContext cxt)
{
	Batch	   *b = palloc0(sizeof(Batch));
	long		wait_ms = am_resend_s * 1000L;

	b->target = t;
	b->cxt = cxt;
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		in_owner_transaction(load_batch, b);
		if (b->n == 0)
			break;
		post_batch(b);
		if (b->error && b->rejected)
		{
			ereport(LOG,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("Alertmanager %s refused alerts as invalid: %s", t->name, b->detail),
					 errhint("The valid alerts of the batch were taken; see duet.alertmanager_status.")));
			in_owner_transaction(record_batch, b);
			if (b->n < AM_BATCH)
				break;
			continue;
		}
		if (b->error)
		{
			int			delay = (int) Min((int64) 1000 << Min(t->failures, 16),
										  Min(AM_MAX_BACKOFF_MS, am_resend_s * 1000L));

			if (t->failures == 0)
				ereport(LOG,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("pg_duet could not deliver alerts to Alertmanager %s: %s", t->name, b->error),
						 errhint("Check that Alertmanager runs at duet.alertmanager_urls; the alerts are kept and sent again with backoff.")));
			t->failures++;
			t->next_attempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
			b->next_attempt = t->next_attempt;
			in_owner_transaction(record_batch, b);
			return delay;
		}
		if (t->failures > 0)
			ereport(LOG,
					(errmsg("pg_duet delivers alerts to Alertmanager %s again", t->name)));
		t->failures = 0;
		t->next_attempt = 0;
		b->next_attempt = 0;
		in_owner_transaction(record_batch, b);
		if (b->n < AM_BATCH)
			break;
	}
	in_owner_transaction(load_next_due, b);
	if (b->next_due != 0)
	{
		long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), b->next_due);

		wait_ms = Min(wait_ms, Max(ms, 10));
	}
	return wait_ms;
}

void
duet_alertmanager_main(Datum arg)
{
	DuetKafkaWorkerArgs args;
	MemoryContext loopcxt;
	bool		stale_logged = false;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	/* SIGTERM is die(): what was not recorded as accepted is sent again by the next sender. */
	duet_worker_init(DUET_WORKER_DIE);
	duet_worker_connect(NULL, args.dboid);
	pgstat_report_appname("pg_duet alertmanager sender");
	if (am_shared != NULL)
		claim_slot();
	loopcxt = duet_worker_loop_context("duet alertmanager sender");

	while (duet_worker_loop(loopcxt, NULL))
	{
		Batch		probe = {0};
		long		wait_ms;
		TimestampTz now;

		if (!duet_alertmanager_configured())
			break;				/* the supervisor no longer wants a sender */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		check_sql(&probe);
		CommitTransactionCommand();
		MemoryContextSwitchTo(loopcxt);
		if (!probe.sql_current)
		{
			if (!stale_logged)
				ereport(LOG,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("pg_duet alertmanager sender waits: the extension in database \"%s\" is not version %s",
								get_database_name(MyDatabaseId) ? get_database_name(MyDatabaseId) : "?",
								PG_DUET_VERSION),
						 errhint("Run ALTER EXTENSION pg_duet UPDATE.")));
			stale_logged = true;
			duet_worker_wait(60000L);
			continue;
		}
		stale_logged = false;
		if (refresh_targets())
			in_owner_transaction(configure_targets, NULL);

		wait_ms = am_resend_s * 1000L;
		now = GetCurrentTimestamp();
		for (int i = 0; i < ntargets; i++)
		{
			AmTarget   *t = &targets[i];

			if (t->next_attempt != 0 && now < t->next_attempt)
				wait_ms = Min(wait_ms, Max(TimestampDifferenceMilliseconds(now, t->next_attempt), 10));
			else
				wait_ms = Min(wait_ms, send_to(t, loopcxt));
		}
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
		duet_worker_wait(wait_ms);
	}
	proc_exit(0);
}
