/*
 * ask_store.c — the answer cache and the audit log, both private tables of the extension.
 *
 * The calling role has no write privilege on either (a user who could write the cache could make
 * a colleague's question return their SQL), so they are written here as the bootstrap superuser
 * through duet_run_privileged (fixed search_path, security-restricted). The log is readable through
 * row-level security (own tenant) and the duet.ask_stats view.
 *
 * Nothing is written in a read-only transaction or on a standby: asking still works there.
 * Retention: every PRUNE_EVERY writes a backend deletes log rows older than
 * duet.ask_log_retention_days and cache entries older than duet.ask_cache_ttl.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ask.h"
#include "monitor.h"
#include "privileged.h"

#define PRUNE_EVERY 64

static int	writes_since_prune = PRUNE_EVERY;	/* prune on a backend's first write */

static bool
can_write(void)
{
	return !XactReadOnly && !RecoveryInProgress();
}

/* ---- cache -------------------------------------------------------------------------- */

typedef struct CacheArgs
{
	const char *question;
	const char *fingerprint;
	const char *tenant;
	const char *model;			/* store: the model that answered */
	Datum		models;			/* lookup: text[] of the provider chain's models, in order */
	const char *sql;
	MemoryContext cxt;
	char	   *found;
} CacheArgs;

#define CACHE_KEY_SQL(model) \
	"pg_catalog.md5(pg_catalog.concat_ws(pg_catalog.chr(31), coalesce($1, pg_catalog.chr(30)), $2, $3, " \
	model "))"

static void
cache_lookup_su(void *arg)
{
	CacheArgs  *ca = (CacheArgs *) arg;
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, INT4OID};
	Datum		values[5];
	char		nulls[5] = "     ";
	int			rc;

	values[0] = ca->tenant ? CStringGetTextDatum(ca->tenant) : (Datum) 0;
	nulls[0] = ca->tenant ? ' ' : 'n';
	values[1] = CStringGetTextDatum(ca->question);
	values[2] = CStringGetTextDatum(ca->fingerprint);
	values[3] = ca->models;
	values[4] = Int32GetDatum(duet_ask_cache_ttl_s);
	SPI_connect();
	/* An answer from any model of the chain will do; the first provider's is preferred. */
	rc = SPI_execute_with_args("SELECT c.sql FROM pg_catalog.unnest($4) WITH ORDINALITY AS m(model, pos)"
							   "  JOIN duet.ask_cache c ON c.cache_key OPERATOR(pg_catalog.=) " CACHE_KEY_SQL("m.model")
							   " WHERE c.created_at OPERATOR(pg_catalog.>)"
							   "       (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $5))"
							   " ORDER BY m.pos LIMIT 1",
							   5, types, values, nulls, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.ask_cache: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		ca->found = v ? MemoryContextStrdup(ca->cxt, v) : NULL;
	}
	SPI_finish();
}

char *
duet_cache_lookup(const char *question, const char *fingerprint, const char *tenant,
				  List *models)
{
	CacheArgs	ca = {question, fingerprint, tenant, NULL, (Datum) 0, NULL, CurrentMemoryContext, NULL};
	Datum	   *elems;
	ListCell   *lc;
	int			i = 0;

	if (duet_ask_cache_ttl_s <= 0 || models == NIL)
		return NULL;
	elems = palloc(sizeof(Datum) * list_length(models));
	foreach(lc, models)
		elems[i++] = CStringGetTextDatum((const char *) lfirst(lc));
	ca.models = PointerGetDatum(construct_array(elems, i, TEXTOID, -1, false, TYPALIGN_INT));
	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, cache_lookup_su, &ca);
	return ca.found;
}

static void
prune_su(void)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(duet_ask_log_retention), Int32GetDatum(duet_ask_cache_ttl_s)};

	SPI_execute_with_args("DELETE FROM duet.ask_log WHERE at OPERATOR(pg_catalog.<) "
						  "(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(mins => $1))",
						  1, types, values, NULL, false, 0);
	SPI_execute_with_args("DELETE FROM duet.ask_cache WHERE created_at OPERATOR(pg_catalog.<) "
						  "(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
						  1, types + 1, values + 1, NULL, false, 0);
}

static void
prune_now_su(void *arg)
{
	SPI_connect();
	prune_su();
	SPI_finish();
}

static void
maybe_prune_su(void)
{
	if (++writes_since_prune < PRUNE_EVERY)
		return;
	writes_since_prune = 0;
	prune_su();
}

static void
cache_store_su(void *arg)
{
	CacheArgs  *ca = (CacheArgs *) arg;
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = "     ";
	int			rc;

	values[0] = ca->tenant ? CStringGetTextDatum(ca->tenant) : (Datum) 0;
	nulls[0] = ca->tenant ? ' ' : 'n';
	values[1] = CStringGetTextDatum(ca->question);
	values[2] = CStringGetTextDatum(ca->fingerprint);
	values[3] = CStringGetTextDatum(ca->model);
	values[4] = CStringGetTextDatum(ca->sql);
	SPI_connect();
	rc = SPI_execute_with_args("INSERT INTO duet.ask_cache AS c"
							   "       (cache_key, tenant, question, fingerprint, model, sql)"
							   " VALUES (" CACHE_KEY_SQL("$4") ", $1, $2, $3, $4, $5)"
							   " ON CONFLICT (cache_key) DO UPDATE"
							   "   SET sql = excluded.sql, created_at = pg_catalog.now()",
							   5, types, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not write duet.ask_cache: %s", SPI_result_code_string(rc));
	maybe_prune_su();
	SPI_finish();
}

void
duet_cache_store(const char *question, const char *fingerprint, const char *tenant,
				 const char *model, const char *sql)
{
	CacheArgs	ca = {question, fingerprint, tenant, model, (Datum) 0, sql, CurrentMemoryContext, NULL};

	if (duet_ask_cache_ttl_s <= 0 || !can_write())
		return;
	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, cache_store_su, &ca);
}

/* ---- log ---------------------------------------------------------------------------- */

/*
 * Rows go to the audit queue (ask_audit.c), written by the database's audit worker in its own
 * transaction. Without a queue (not preloaded, or the queue full) they are written here in the
 * caller's transaction; then a failed or rejected ask, which ends in an ERROR, would roll its row
 * back, so those rows are kept in this backend (TopMemoryContext, at most MAX_DEFERRED) and written,
 * with their original time, by the backend's next log write; they are dropped from memory only
 * when that write commits.
 */
#define MAX_DEFERRED 100

static List *deferred = NIL;	/* AskLogRow *, in TopMemoryContext */
static bool deferred_written = false;	/* inserted by the current transaction */
static SubTransactionId deferred_subid = InvalidSubTransactionId;
static bool xact_callbacks_registered = false;

static char *
copy_in(MemoryContext cxt, const char *s)
{
	return s ? MemoryContextStrdup(cxt, s) : NULL;
}

/* A log row of e in cxt: every string copied, so that it outlives the ask. */
static AskLogRow *
log_row(const AskLogEntry *e, const char *tenant, const char *role, MemoryContext cxt)
{
	AskLogRow  *r = MemoryContextAllocZero(cxt, sizeof(AskLogRow));

	r->at = GetCurrentTimestamp();
	r->tenant = copy_in(cxt, tenant);
	r->role = copy_in(cxt, role);
	r->target = copy_in(cxt, e->target);
	r->question = copy_in(cxt, e->question);
	r->sql = copy_in(cxt, e->sql);
	r->provider = copy_in(cxt, e->provider);
	r->model = copy_in(cxt, e->model);
	r->attempts = e->attempts;
	r->corrections = e->corrections;
	r->tokens_in = e->tokens_in;
	r->tokens_out = e->tokens_out;
	r->latency_ms = e->latency_ms;
	r->cost = e->cost;
	r->status = copy_in(cxt, e->status);
	r->error = copy_in(cxt, e->error);
	return r;
}

AskLogRow *
duet_log_make_row(const AskLogEntry *e, const char *tenant, MemoryContext cxt)
{
	return log_row(e, tenant, GetUserNameFromId(GetUserId(), false), cxt);
}

static void
free_row(AskLogRow *r)
{
	char	   *fields[] = {r->tenant, r->role, r->target, r->question, r->sql, r->provider,
	r->model, r->status, r->error};
	int			i;

	for (i = 0; i < lengthof(fields); i++)
		if (fields[i])
			pfree(fields[i]);
	pfree(r);
}

static void
free_deferred(void)
{
	ListCell   *lc;

	foreach(lc, deferred)
		free_row((AskLogRow *) lfirst(lc));
	list_free(deferred);
	deferred = NIL;
}

static void
on_xact(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && deferred_written)
		free_deferred();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		deferred_written = false;
}

static void
on_subxact(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	/* Rolling back the subtransaction that wrote them (or an ancestor) un-writes them. */
	if (event == SUBXACT_EVENT_ABORT_SUB && deferred_written && deferred_subid >= mySubid)
		deferred_written = false;
}

static Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

void
duet_log_insert(const AskLogRow *r)
{
	Oid			types[16] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INT4OID, INT4OID, INT4OID, INT4OID, FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, FLOAT8OID};
	Datum		values[16];
	char		nulls[17] = "                ";
	int			rc;

	values[0] = TimestampTzGetDatum(r->at);
	values[1] = text_or_null(r->tenant, &nulls[1]);
	values[2] = text_or_null(r->role, &nulls[2]);
	values[3] = text_or_null(r->question, &nulls[3]);
	values[4] = text_or_null(r->sql, &nulls[4]);
	values[5] = text_or_null(r->provider, &nulls[5]);
	values[6] = text_or_null(r->model, &nulls[6]);
	values[7] = Int32GetDatum(r->attempts);
	values[8] = Int32GetDatum(r->corrections);
	values[9] = Int32GetDatum(r->tokens_in);
	values[10] = Int32GetDatum(r->tokens_out);
	values[11] = Float8GetDatum(r->latency_ms);
	values[12] = text_or_null(r->status, &nulls[12]);
	values[13] = text_or_null(r->error, &nulls[13]);
	values[14] = text_or_null(r->target, &nulls[14]);
	values[15] = Float8GetDatum(r->cost);
	rc = SPI_execute_with_args("INSERT INTO duet.ask_log (at, tenant, role, question, sql, provider, model,"
							   " attempts, corrections, tokens_in, tokens_out, latency_ms, status, error,"
							   " target, cost)"
							   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
							   " $16::pg_catalog.numeric)",
							   16, types, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not write duet.ask_log: %s", SPI_result_code_string(rc));
	if (r->attempts == 0 && r->tokens_in == 0 && r->tokens_out == 0)
		return;
	/* The durable usage the budgets start from after a restart (ask_budget.c), per UTC day. */
	rc = SPI_execute_with_args("INSERT INTO duet.ask_usage AS u (tenant, day, requests, tokens_in, tokens_out, cost)"
							   " VALUES ($2, (pg_catalog.timezone('UTC', $1))::pg_catalog.date, $8, $10, $11,"
							   "         $16::pg_catalog.numeric)"
							   " ON CONFLICT (tenant, day) DO UPDATE"
							   "   SET requests = (u.requests OPERATOR(pg_catalog.+) excluded.requests),"
							   "       tokens_in = (u.tokens_in OPERATOR(pg_catalog.+) excluded.tokens_in),"
							   "       tokens_out = (u.tokens_out OPERATOR(pg_catalog.+) excluded.tokens_out),"
							   "       cost = (u.cost OPERATOR(pg_catalog.+) excluded.cost)",
							   16, types, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not write duet.ask_usage: %s", SPI_result_code_string(rc));
}

void
duet_log_prune_spi(void)
{
	maybe_prune_su();
}

static void
log_write_su(void *arg)
{
	ListCell   *lc;

	SPI_connect();
	if (!deferred_written)
	{
		foreach(lc, deferred)
			duet_log_insert((AskLogRow *) lfirst(lc));
		if (deferred != NIL)
		{
			deferred_written = true;
			deferred_subid = GetCurrentSubTransactionId();
		}
	}
	duet_log_insert((const AskLogRow *) arg);
	maybe_prune_su();
	SPI_finish();
}

void
duet_log_write(const AskLogEntry *e, const char *tenant)
{
	AskLogRow  *row = duet_log_make_row(e, tenant, CurrentMemoryContext);

	/* Every ask that returns is counted here, every ask that raises in record_tracked(). */
	duet_monitor_count_ask(tenant, e->status, e->attempts, e->corrections, e->tokens_in,
						   e->tokens_out, e->latency_ms);
	if (duet_audit_enqueue(row))
	{
		/* Rows kept from before the queue had room go the same way, oldest first. */
		while (deferred != NIL && !deferred_written && duet_audit_enqueue(linitial(deferred)))
		{
			free_row((AskLogRow *) linitial(deferred));
			deferred = list_delete_first(deferred);
		}
		return;
	}
	if (!can_write())
		return;
	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, log_write_su, row);
}

void
duet_log_defer(const AskLogEntry *e, const char *tenant)
{
	if (!xact_callbacks_registered)
	{
		RegisterXactCallback(on_xact, NULL);
		RegisterSubXactCallback(on_subxact, NULL);
		xact_callbacks_registered = true;
	}
	if (list_length(deferred) >= MAX_DEFERRED)
	{
		free_row((AskLogRow *) linitial(deferred));
		deferred = list_delete_first(deferred);
	}
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		/* No catalog access: this may run in error recovery (the role was resolved earlier). */
		AskLogRow  *r = log_row(e, tenant, e->role ? e->role : "?", TopMemoryContext);

		deferred = lappend(deferred, r);
		MemoryContextSwitchTo(old);
	}
	ereport(LOG,
			(errmsg("duet_ask %s for role \"%s\"", e->status, e->role ? e->role : "?"),
			 errdetail_internal("%s", e->error ? e->error : "")));
}

PG_FUNCTION_INFO_V1(duet_ask_prune);

/* duet_ask_prune() → void: applies the retention settings now (admin). */
Datum
duet_ask_prune(PG_FUNCTION_ARGS)
{
	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, prune_now_su, NULL);
	PG_RETURN_VOID();
}
