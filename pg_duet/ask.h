/*
 * ask.h — duet_ask(): LLM text-to-SQL. Shared between the ask_*.c files, one concern each:
 *
 *   ask.c           SQL entry points, settings, the ask → guard → correct loop
 *   ask_guard.c     the guard: PostgreSQL's parser and analyzer decide what may run
 *   ask_context.c   the schema the calling role may see, few-shot examples, the prompt
 *   ask_http.c      one cancellable HTTP POST through libcurl's multi interface
 *   ask_provider.c  providers (read as superuser), wire formats, retries and fallback
 *   ask_store.c     the answer cache and the audit log
 */
#ifndef DUET_ASK_H
#define DUET_ASK_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* Settings (ask.c). */
extern bool duet_ask_enabled;
extern int	duet_ask_max_corrections;
extern int	duet_ask_max_rows;
extern int	duet_ask_run_timeout_ms;
extern int	duet_ask_max_context_tables;
extern int	duet_ask_max_retry_wait_ms;
extern int	duet_ask_cache_ttl_s;
extern int	duet_ask_log_retention_days;
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
extern char *duet_context_examples(const char *question);
extern const char *duet_context_system_prompt(void);

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
	char	   *error;			/* last provider error, key material removed */
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
	const char *question;
	const char *sql;
	const char *provider;
	const char *model;
	int			attempts;
	int			corrections;
	int			tokens_in;
	int			tokens_out;
	double		latency_ms;
	const char *status;			/* ok, cached, rejected, failed */
	const char *error;
} AskLogEntry;

/* A fresh answer cached for any of the models (the provider chain), first model preferred. */
extern char *duet_cache_lookup(const char *question, const char *fingerprint,
							   const char *tenant, List *models);
extern void duet_cache_store(const char *question, const char *fingerprint,
							 const char *tenant, const char *model, const char *sql);
extern void duet_log_write(const AskLogEntry *e, const char *tenant);
/* For an ask about to end in an ERROR: logged by this backend's next log write that commits. */
extern void duet_log_defer(const AskLogEntry *e, const char *tenant);


/* ask_secrets.c: whether text carries the key, as is, split, masked, base64 or hex. */
extern bool duet_key_leaks(const char *key, const char *text);

/* ask.c: statement_timeout's timer set to duet.ask_run_timeout from now, unless it ends sooner. */
extern bool duet_ask_timeout_arm(TimestampTz *previous);
extern void duet_ask_timeout_disarm(TimestampTz previous);

#endif							/* DUET_ASK_H */
