/*
 * ask.h — duet_ask(): LLM text-to-SQL. Shared between the ask_*.c files, one concern each:
 *
 *   ask.c           SQL entry points, settings, the ask → guard → correct loop
 *   ask_guard.c     the guard: PostgreSQL's parser and analyzer decide what may run
 *   ask_context.c   the schema the calling role may see, few-shot examples, the prompt
 *   ask_http.c      one cancellable HTTP POST through libcurl's multi interface
 *   ask_provider.c  providers (read as superuser), wire formats, retries and fallback
 *   ask_store.c     the answer cache and the audit log rows
 *   ask_audit.c     the audit queue: shared memory, drained by a background worker per database,
 *                   so a row survives the caller's rollback and the end of its session
 *   ask_budget.c    per-tenant rate limits and budgets, checked before every provider request
 *   ask_clickhouse.c  ClickHouse servers as targets: schema over HTTP, running an answer
 *   ask_ch_guard.c  the ClickHouse guard: a tokenizer first, then the server's own analyzer
 */
#ifndef DUET_ASK_H
#define DUET_ASK_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/elog.h"
#include "utils/palloc.h"
#include "nodes/pg_list.h"

/* Settings (ask.c). */
extern bool duet_ask_enabled;
extern int	duet_ask_max_corrections;
extern int	duet_ask_max_rows;
extern int	duet_ask_run_timeout_ms;
extern int	duet_ask_max_context_tables;
extern int	duet_ask_max_retry_wait_ms;
extern int	duet_ask_cache_ttl_s;
extern int	duet_ask_log_retention;	/* minutes */
extern char *duet_ask_extra_allowed_functions;

extern void duet_ask_init(void);

/* ---- ask_guard.c ---------------------------------------------------------------------- */

/*
 * Checks model output: one plain SELECT whose functions are allowed, that analyzes, plans and
 * passes the calling role's privilege checks. Returns NULL when it may run, else a palloc'd
 * reason fit to show the user and the model. Never executes the statement; leaves no state
 * behind (runs in a subtransaction).
 */
extern char *duet_guard_check(const char *sql);

/*
 * ask_guard.c: the guard's rules enforced at every call of a non-built-in function, between
 * duet_guard_enter() and duet_guard_leave() (nestable; the hook is installed by duet_guard_init).
 */
extern void duet_guard_init(void);
extern void duet_guard_enter(void);
extern void duet_guard_leave(void);

/* Strips what models wrap SQL in: code fences, a leading "SQL:", a trailing semicolon. */
extern char *duet_guard_extract_sql(const char *reply);

/* ---- ask_context.c -------------------------------------------------------------------- */

typedef struct AskContext
{
	char	   *schema_text;	/* tables/columns/FKs chosen for this question */
	char	   *fingerprint;	/* hex digest of everything the role may see */
	int			tables_visible;
	int			tables_sent;
} AskContext;

extern AskContext *duet_context_build(const char *question);
/* Few-shot pairs of the current tenant closest to the question, rendered; may be "". */
extern char *duet_context_examples(const char *question, const char *target);
extern const char *duet_context_system_prompt(void);

/* ---- ask_clickhouse.c, ask_ch_guard.c ------------------------------------------------ */

typedef struct ChServer ChServer;	/* a registered server, password included: stays in C */

extern void duet_ch_init(void);

/* The server named target, when the current tenant may ask about it (else an ERROR). */
extern ChServer *duet_ch_server_for_tenant(const char *target, const char *tenant);
/* The schema the tenant may see on the server (cached per server, with a fingerprint). */
extern AskContext *duet_ch_context_build(ChServer *s, const char *question);
extern const char *duet_ch_system_prompt(void);
/*
 * NULL when the server's analyzer accepts sql as one SELECT over what the tenant may read, with no
 * table function and no system table but the schema ones; else the reason. Never executes it.
 */
extern char *duet_ch_guard_check(ChServer *s, const char *sql, List **columns);
/* Runs accepted SQL read-only on the server; rows as jsonb objects into the tuplestore. */
extern void duet_ch_run(ChServer *s, const char *sql, int max_rows, void *store, void *store_desc,
						MemoryContext store_cxt);

/* ask_ch_guard.c: the tokenizer filter alone (NULL when it passes), for the guard and tests. */
extern char *duet_ch_token_check(const char *sql, List *allowed_dbs, List *known_dbs,
								 List *allowed_tables, const char *default_db);

/* ---- ask_http.c ----------------------------------------------------------------------- */

typedef enum HttpOutcome
{
	HTTP_OK,					/* a response arrived; see status */
	HTTP_CONNECT_FAILED,		/* could not connect / DNS / reset: retryable */
	HTTP_TIMED_OUT,				/* the provider's timeout elapsed: retryable */
	HTTP_FAILED					/* anything else (bad URL, TLS, too large): next provider */
} HttpOutcome;

typedef struct HttpResponse
{
	long		status;
	StringInfoData body;
	int			retry_after_ms; /* from retry-after-ms / Retry-After; -1 if absent */
	char		error[256];		/* libcurl's description when not HTTP_OK */
} HttpResponse;

extern HttpOutcome duet_http_post(const char *url, List *headers, const char *body,
								  int timeout_ms, HttpResponse *resp);
typedef bool (*HttpDrain) (HttpResponse *resp, void *arg);
extern HttpOutcome duet_http_post_stream(const char *url, List *headers, const char *body,
										 int timeout_ms, HttpResponse *resp, HttpDrain drain,
										 void *drain_arg);

/* Sleeps on the latch (cancellable); used between retries. */
extern void duet_http_sleep(int ms);

/* ---- ask_provider.c ------------------------------------------------------------------- */

typedef struct AskMessage
{
	const char *role;			/* "user" or "assistant" */
	const char *content;
} AskMessage;

typedef struct AskReply
{
	char	   *text;			/* the model's answer (NULL when every provider failed) */
	char	   *provider;
	char	   *model;
	int			http_attempts;	/* requests sent, over every provider */
	int			tokens_in;
	int			tokens_out;
	double		cost;			/* from the provider's prices, over every request */
	char	   *error;			/* last provider error, key material removed */
	const char *tenant;			/* whose budget the requests are charged to */
} AskReply;

typedef struct AskProvider AskProvider;	/* opaque: holds key material */

/* Enabled providers in priority order, read as superuser; NIL when none is configured. */
extern List *duet_providers_load(void);
extern const char *duet_provider_model(const AskProvider *p);

/* Asks the providers in order with retries; fills *reply (accumulating counters). */
extern void duet_provider_complete(List *providers, const char *system, List *messages,
								   AskReply *reply);

/* ---- ask_store.c ---------------------------------------------------------------------- */

typedef struct AskLogEntry
{
	const char *target;			/* NULL: this PostgreSQL database; else a ClickHouse server */
	const char *role;			/* the asking role (resolved when the ask starts) */
	const char *question;
	const char *sql;
	const char *provider;
	const char *model;
	int			attempts;
	int			corrections;
	int			tokens_in;
	int			tokens_out;
	double		latency_ms;
	double		cost;			/* from duet.llm_prices; 0 when the model has no price */
	const char *status;			/* ok, cached, rejected, failed, over_budget, cancelled */
	const char *error;
} AskLogEntry;

/* One audit row, self-contained (role resolved, time taken): what the queue carries. */
typedef struct AskLogRow
{
	TimestampTz at;
	char	   *tenant;
	char	   *role;
	char	   *target;
	char	   *question;
	char	   *sql;
	char	   *provider;
	char	   *model;
	int			attempts;
	int			corrections;
	int			tokens_in;
	int			tokens_out;
	double		latency_ms;
	double		cost;
	char	   *status;
	char	   *error;
} AskLogRow;

extern AskLogRow *duet_log_make_row(const AskLogEntry *e, const char *tenant, MemoryContext cxt);
/* Inserts the row into duet.ask_log and adds it to duet.ask_usage (SPI connected, superuser). */
extern void duet_log_insert(const AskLogRow *r);
/* Deletes log rows past duet.ask_log_retention_days and expired cache entries (SPI connected). */
extern void duet_log_prune_spi(void);

/* A fresh answer cached for any of the models (the provider chain), first model preferred. */
extern char *duet_cache_lookup(const char *question, const char *fingerprint,
							   const char *tenant, List *models);
extern void duet_cache_store(const char *question, const char *fingerprint,
							 const char *tenant, const char *model, const char *sql);
extern void duet_log_write(const AskLogEntry *e, const char *tenant);
/* For an ask about to end in an ERROR: logged by this backend's next log write that commits. */
extern void duet_log_defer(const AskLogEntry *e, const char *tenant);


/* ---- ask_audit.c ---------------------------------------------------------------------- */

extern int	duet_ask_audit_queue_kb;

extern void duet_audit_shmem_init(void);	/* from duet_ask_init, when preloaded */
/* Queues the row for the audit worker; false when there is no queue or no room (caller falls back). */
extern bool duet_audit_enqueue(const AskLogRow *r);

/*
 * The ask in progress: its entry and provider counters, so an error, a cancel or the end of the
 * session still records it (ask.c tracks it; the exit callback and duet_audit_fail read it).
 */
extern void duet_audit_track(AskLogEntry *e, AskReply *reply, const char *tenant, TimestampTz start);
extern void duet_audit_untrack(void);
/* The outcome of the tracked ask, for an error about to be raised (over_budget). */
extern void duet_audit_mark(const char *status);
/* In PG_CATCH of an ask: records the tracked ask with the error's outcome, then untracks it. */
extern void duet_audit_fail(ErrorData *edata);

/* ---- ask_budget.c --------------------------------------------------------------------- */

extern void duet_budget_shmem_init(void);
/*
 * Before a provider request: raises ERRCODE_CONFIGURATION_LIMIT_EXCEEDED when the tenant's rate
 * limit or budget is spent, else admits the request (counted at once) with its estimated tokens
 * and cost reserved until duet_budget_settle reports the actual ones.
 */
typedef struct BudgetTicket
{
	int			est_tokens;
	double		est_cost;
	int			slot;
} BudgetTicket;

extern void duet_budget_admit(const char *tenant, int est_tokens, double est_cost, BudgetTicket *t);
extern void duet_budget_settle(const BudgetTicket *t, int tokens, double cost);

/* ask_secrets.c: whether text carries the key, as is, split, masked, base64 or hex. */
extern bool duet_key_leaks(const char *key, const char *text);


#endif							/* DUET_ASK_H */
