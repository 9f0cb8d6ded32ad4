/*
 * ask_provider.c — language-model providers: configuration, wire formats, retries, fallback.
 *
 * duet.llm_providers and duet.llm_provider_keys have no grants: duet_ask() runs as the calling
 * role, so they are read here as the bootstrap superuser (duet_run_privileged) and the key stays in
 * this backend's memory for the request. Key material never reaches an error message, the log or
 * a table: provider error texts are scrubbed of it before they leave this file.
 *
 * Retry table (DESIGN §8): connect failures, timeouts, 408, 409, 429, 5xx (529 included) and a
 * 200 whose body is an error or unusable are retried on the same provider, waiting for
 * retry-after-ms / Retry-After when given (capped by duet.ask_max_retry_wait) or an exponential
 * backoff with jitter; any other status (400, 401, 402, 403, 404…) moves to the next provider.
 */
#include "postgres.h"

#include <jansson.h>

#include "catalog/pg_authid.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/memutils.h"

#include <limits.h>

#include "ask.h"
#include "privileged.h"

#define BACKOFF_BASE_MS		250
#define ERROR_SNIPPET_LEN	300

struct AskProvider
{
	char	   *name;
	bool		anthropic;		/* else OpenAI-compatible */
	char	   *base_url;
	char	   *model;
	int			timeout_ms;
	int			max_retries;
	int			max_tokens;
	char	   *headers_json;	/* extra headers, a JSON object */
	char	   *key;			/* NULL when the endpoint needs none */
	double		price_in;		/* per million input tokens, duet.llm_prices; 0 when unpriced */
	double		price_out;		/* per million output tokens */
};

typedef struct LoadArgs
{
	MemoryContext cxt;
	List	   *providers;
} LoadArgs;

static char *
col_text(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

static void
load_as_superuser(void *arg)
{
	LoadArgs   *la = (LoadArgs *) arg;
	int			rc;
	uint64		i;

	SPI_connect();
	rc = SPI_execute("SELECT p.name, p.kind, p.base_url, p.model, p.timeout_ms, p.max_retries,"
					 "       p.max_tokens, p.headers::pg_catalog.text, p.api_key_env, k.api_key,"
					 "       coalesce(pr.input_per_mtok, 0)::pg_catalog.float8,"
					 "       coalesce(pr.output_per_mtok, 0)::pg_catalog.float8"
					 "  FROM duet.llm_providers p"
					 "  LEFT JOIN duet.llm_provider_keys k ON k.provider OPERATOR(pg_catalog.=) p.name"
					 "  LEFT JOIN duet.llm_prices pr ON pr.provider OPERATOR(pg_catalog.=) p.name"
					 "       AND pr.model OPERATOR(pg_catalog.=) p.model"
					 " WHERE p.enabled ORDER BY p.priority, p.name", true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.llm_providers: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(la->cxt);
		AskProvider *p = palloc0(sizeof(AskProvider));
		char	   *env = SPI_getvalue(tup, desc, 9);
		char	   *stored = SPI_getvalue(tup, desc, 10);

		p->name = col_text(tup, desc, 1, la->cxt);
		p->anthropic = strcmp(SPI_getvalue(tup, desc, 2), "anthropic") == 0;
		p->base_url = col_text(tup, desc, 3, la->cxt);
		p->model = col_text(tup, desc, 4, la->cxt);
		p->timeout_ms = atoi(SPI_getvalue(tup, desc, 5));
		p->max_retries = atoi(SPI_getvalue(tup, desc, 6));
		p->max_tokens = atoi(SPI_getvalue(tup, desc, 7));
		p->headers_json = col_text(tup, desc, 8, la->cxt);
		p->price_in = strtod(SPI_getvalue(tup, desc, 11), NULL);
		p->price_out = strtod(SPI_getvalue(tup, desc, 12), NULL);
		if (stored)
			p->key = pstrdup(stored);
		else if (env)
		{
			/* A named environment variable of the server; unset means no key. */
			const char *v = getenv(env);

			p->key = (v && v[0]) ? pstrdup(v) : NULL;
		}
		la->providers = lappend(la->providers, p);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

List *
duet_providers_load(void)
{
	LoadArgs	la = {CurrentMemoryContext, NIL};

	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, load_as_superuser, &la);
	return la.providers;
}

const char *
duet_provider_model(const AskProvider *p)
{
	return p->model;
}

/* What leaves this file of a provider's text: nothing at all when it carries the key. */
static char *
scrub(const AskProvider *p, const char *text)
{
	if (text == NULL)
		return NULL;
	if (duet_key_leaks(p->key, text))
		return pstrdup("[the provider's text is withheld: it contained the provider's API key in some form]");
	return pstrdup(text);
}

static json_t *
messages_json(const char *system, List *messages, bool anthropic)
{
	json_t	   *arr = json_array();
	ListCell   *lc;

	if (!anthropic)
		json_array_append_new(arr, json_pack("{s:s, s:s}", "role", "system", "content", system));
	foreach(lc, messages)
	{
		AskMessage *m = (AskMessage *) lfirst(lc);

		json_array_append_new(arr, json_pack("{s:s, s:s}", "role", m->role, "content", m->content));
	}
	return arr;
}

/* Builds URL, headers and body for one request. */
static char *
build_request(const AskProvider *p, const char *system, List *messages, List **headers,
			  char **url)
{
	json_t	   *body;
	json_t	   *extra;
	char	   *dumped;
	char	   *result;
	size_t		blen = strlen(p->base_url);

	while (blen > 0 && p->base_url[blen - 1] == '/')
		blen--;
	*url = psprintf("%.*s%s", (int) blen, p->base_url, p->anthropic ? "/messages" : "/chat/completions");
	*headers = list_make1(pstrdup("Content-Type: application/json"));
	*headers = lappend(*headers, pstrdup("Expect:"));	/* no 100-continue round trip */
	if (p->anthropic)
	{
		*headers = lappend(*headers, pstrdup("anthropic-version: 2023-06-01"));
		if (p->key)
			*headers = lappend(*headers, psprintf("x-api-key: %s", p->key));
		body = json_pack("{s:s, s:s, s:o, s:i, s:f}", "model", p->model, "system", system,
						 "messages", messages_json(system, messages, true),
						 "max_tokens", p->max_tokens, "temperature", 0.0);
	}
	else
	{
		if (p->key)
			*headers = lappend(*headers, psprintf("Authorization: Bearer %s", p->key));
		body = json_pack("{s:s, s:o, s:i, s:f}", "model", p->model,
						 "messages", messages_json(system, messages, false),
						 "max_tokens", p->max_tokens, "temperature", 0.0);
	}
	extra = p->headers_json ? json_loads(p->headers_json, 0, NULL) : NULL;
	if (json_is_object(extra))
	{
		const char *k;
		json_t	   *v;

		json_object_foreach(extra, k, v)
			if (json_is_string(v) && strpbrk(k, ":\r\n") == NULL &&
				strpbrk(json_string_value(v), "\r\n") == NULL)
			*headers = lappend(*headers, psprintf("%s: %s", k, json_string_value(v)));
	}
	json_decref(extra);
	if (body == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("could not encode the request to provider \"%s\"", p->name),
				 errdetail("The question, the schema or a message is not valid UTF-8.")));
	dumped = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	result = pstrdup(dumped);
	free(dumped);
	return result;
}

static int
json_int(json_t *obj, const char *key)
{
	json_t	   *v = json_object_get(obj, key);

	return json_is_integer(v) ? (int) json_integer_value(v) : 0;
}

/*
 * Reads the answer of a 200 response. Returns the text, or NULL with *error set: an error
 * object, malformed JSON, no choices, empty content.
 */
static char *
parse_reply(const AskProvider *p, const char *body, AskReply *reply, char **error)
{
	json_error_t jerr;
	json_t	   *root = json_loads(body, 0, &jerr);
	json_t	   *err;
	json_t	   *usage;
	StringInfoData text;

	*error = NULL;
	if (!json_is_object(root))
	{
		*error = psprintf("malformed JSON in response: %s", jerr.text);
		json_decref(root);
		return NULL;
	}
	err = json_object_get(root, "error");
	if (err != NULL && !json_is_null(err))
	{
		json_t	   *msg = json_is_object(err) ? json_object_get(err, "message") : err;

		*error = psprintf("provider returned an error: %.*s", ERROR_SNIPPET_LEN,
						  json_is_string(msg) ? json_string_value(msg) : "(no message)");
		json_decref(root);
		return NULL;
	}
	initStringInfo(&text);
	usage = json_object_get(root, "usage");
	if (p->anthropic)
	{
		json_t	   *content = json_object_get(root, "content");
		size_t		i;
		json_t	   *part;

		json_array_foreach(content, i, part)
		{
			json_t	   *t = json_object_get(part, "text");

			if (json_is_string(t))
				appendStringInfoString(&text, json_string_value(t));
		}
		reply->tokens_in += json_int(usage, "input_tokens");
		reply->tokens_out += json_int(usage, "output_tokens");
	}
	else
	{
		json_t	   *choices = json_object_get(root, "choices");
		json_t	   *content = json_object_get(json_object_get(json_array_get(choices, 0), "message"),
											  "content");

		if (json_is_string(content))
			appendStringInfoString(&text, json_string_value(content));
		reply->tokens_in += json_int(usage, "prompt_tokens");
		reply->tokens_out += json_int(usage, "completion_tokens");
	}
	json_decref(root);
	if (text.len == 0)
	{
		*error = pstrdup("response carries no answer (empty choices or content)");
		return NULL;
	}
	return text.data;
}

static bool
status_retryable(long status)
{
	return status == 408 || status == 409 || status == 429 || status >= 500;
}

/* The wait before retry number `attempt` (1-based). */
static int
retry_wait_ms(const HttpResponse *resp, int attempt)
{
	double		backoff;

	if (resp->retry_after_ms >= 0)
		return Min(resp->retry_after_ms, duet_ask_max_retry_wait_ms);
	/* Exponential with "equal jitter": half fixed, half random, so retries spread out. */
	backoff = Min((double) BACKOFF_BASE_MS * (1 << Min(attempt - 1, 16)),
				  (double) duet_ask_max_retry_wait_ms);
	return (int) (backoff / 2 + pg_prng_double(&pg_global_prng_state) * backoff / 2);
}

/* One provider, with retries. Returns the answer or NULL with reply->error set. */
static char *
ask_one(const AskProvider *p, const char *system, List *messages, AskReply *reply)
{
	List	   *headers;
	char	   *url;
	char	   *body = build_request(p, system, messages, &headers, &url);
	int			attempt;

	/* What a request may cost at most: the prompt (about 4 bytes a token) and max_tokens. */
	int			est_tokens = (int) Min((int64) strlen(body) / 4 + p->max_tokens, INT_MAX / 2);
	double		est_cost = ((double) strlen(body) / 4 * p->price_in + (double) p->max_tokens * p->price_out) / 1e6;

	for (attempt = 0; attempt <= p->max_retries; attempt++)
	{
		HttpResponse resp;
		char	   *answer;
		char	   *error = NULL;
		bool		retry;
		BudgetTicket ticket;
		int			tokens_before = reply->tokens_in + reply->tokens_out;
		int			in_before = reply->tokens_in;
		int			out_before = reply->tokens_out;
		volatile HttpOutcome outcome;

		/* Every request is admitted by the tenant's limits first: retries and corrections too. */
		duet_budget_admit(reply->tenant, est_tokens, est_cost, &ticket);
		reply->http_attempts++;
		PG_TRY();
		{
			outcome = duet_http_post(url, headers, body, p->timeout_ms, &resp);
		}
		PG_CATCH();
		{
			/* Cancelled in flight: the request counts, its reservation is given back. */
			duet_budget_settle(&ticket, 0, 0);
			PG_RE_THROW();
		}
		PG_END_TRY();
		switch (outcome)
		{
			case HTTP_OK:
				if (resp.status == 200)
				{
					answer = parse_reply(p, resp.body.data, reply, &error);
					{
						int			din = reply->tokens_in - in_before;
						int			dout = reply->tokens_out - out_before;
						double		cost = ((double) din * p->price_in + (double) dout * p->price_out) / 1e6;

						reply->cost += cost;
						duet_budget_settle(&ticket, reply->tokens_in + reply->tokens_out - tokens_before, cost);
						ticket.slot = -1;
					}
					if (answer && duet_key_leaks(p->key, answer))
					{
						/* Echoed (or made to echo) its key: never an answer, never retried. */
						error = pstrdup("the reply contained the provider's API key in some form and was discarded");
						answer = NULL;
						retry = false;
						break;
					}
					if (answer)
						return answer;
					retry = true;	/* 200 with an error object or no usable answer */
				}
				else
				{
					error = psprintf("HTTP %ld: %s", resp.status,
									 pnstrdup(resp.body.data, Min(resp.body.len, ERROR_SNIPPET_LEN)));
					retry = status_retryable(resp.status);
				}
				break;
			case HTTP_CONNECT_FAILED:
			case HTTP_TIMED_OUT:
				error = pstrdup(resp.error);
				retry = true;
				break;
			default:
				error = pstrdup(resp.error);
				retry = false;
				break;
		}
		if (ticket.slot >= 0)
			duet_budget_settle(&ticket, 0, 0);
		reply->error = psprintf("provider \"%s\": %s", p->name, scrub(p, error));
		ereport(DEBUG1, (errmsg_internal("duet_ask: %s (attempt %d)", reply->error, attempt + 1)));
		if (!retry || attempt == p->max_retries)
			break;
		duet_http_sleep(retry_wait_ms(&resp, attempt + 1));
		pfree(resp.body.data);
	}
	return NULL;
}

void
duet_provider_complete(List *providers, const char *system, List *messages, AskReply *reply)
{
	ListCell   *lc;

	reply->text = NULL;
	foreach(lc, providers)
	{
		AskProvider *p = (AskProvider *) lfirst(lc);
		char	   *answer = ask_one(p, system, messages, reply);

		if (answer)
		{
			reply->text = answer;
			reply->provider = p->name;
			reply->model = p->model;
			return;
		}
	}
}
