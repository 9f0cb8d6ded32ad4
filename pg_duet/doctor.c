/*
 * doctor.c — saying loudly when pg_duet cannot work here: the check that its background workers
 * serve this database, the WARNING that whatever needs them gives when they do not, and the C
 * half of duet_doctor() (pg_duet/sql/70_doctor.sql), which lists every problem it can find: here
 * also whether the LLM providers' endpoints and the Kafka consumers' brokers accept connections.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "catalog/pg_authid_d.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "access/htup_details.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "pg_duet.h"
#include "privileged.h"

const char *
duet_workers_problem(const char **hint)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	const char *db = get_database_name(MyDatabaseId);

	if (!duet_preloaded)
	{
		*hint = "Add pg_duet to shared_preload_libraries in postgresql.conf and restart the server.";
		return "pg_duet is not in shared_preload_libraries, so its background workers do not run";
	}
	copy = pstrdup(duet_databases ? duet_databases : "");
	if (!SplitIdentifierString(copy, ',', &names))
	{
		*hint = "Set duet.databases to a comma-separated list of database names and reload.";
		return "duet.databases is not a valid list of names";
	}
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), db) == 0)
			return NULL;
	*hint = psprintf("Add it: ALTER SYSTEM SET duet.databases = '%s%s%s'; SELECT pg_reload_conf();",
					 duet_databases, duet_databases[0] ? "," : "", db);
	return psprintf("database \"%s\" is not in duet.databases (\"%s\"), so no pg_duet worker serves it",
					db, duet_databases);
}

void
duet_workers_warn(const char *what)
{
	static LocalTransactionId warned_in = InvalidLocalTransactionId;
	const char *hint;
	const char *problem = duet_workers_problem(&hint);

	/* Once per transaction: a loop of publishes must not drown the log. */
	if (problem == NULL || warned_in == MyProc->lxid)
		return;
	warned_in = MyProc->lxid;
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s will not run: %s", what, problem),
			 errhint("%s", hint)));
}

PG_FUNCTION_INFO_V1(duet_workers_status);

/* duet_workers_status() → (problem, hint), both NULL when the workers serve this database. */
Datum
duet_workers_status(PG_FUNCTION_ARGS)
{
	const char *hint = NULL;
	const char *problem = duet_workers_problem(&hint);
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {problem == NULL, problem == NULL};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "duet_workers_status must return a record");
	values[0] = problem ? CStringGetTextDatum(problem) : (Datum) 0;
	values[1] = problem ? CStringGetTextDatum(hint) : (Datum) 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

PG_FUNCTION_INFO_V1(duet_workers_warn_sql);

/* duet.duet_workers_warn(what text): duet_workers_warn for SQL callers (the outbox). */
Datum
duet_workers_warn_sql(PG_FUNCTION_ARGS)
{
	duet_workers_warn(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

/*
 * Reachability: one TCP connection (TLS too for an https provider) to every endpoint, all at once
 * through one libcurl multi handle, so duet_doctor() takes at most DOCTOR_PROBE_TIMEOUT_MS however
 * many there are; past DOCTOR_MAX_PROBES the rest are reported as not checked.
 */
#define DOCTOR_PROBE_TIMEOUT_MS 2000
#define DOCTOR_MAX_PROBES 64

typedef struct Probe
{
	const char *check;			/* "llm endpoints" or "kafka brokers" */
	char	   *owner_name;		/* the provider or the consumer */
	char	   *target;			/* what is shown: host:port or the URL */
	char	   *url;			/* what libcurl connects to */
	char	   *error;			/* NULL: reachable */
	bool		done;
	char		errbuf[CURL_ERROR_SIZE];
} Probe;

typedef struct ProbeLoad
{
	Oid			caller;
	bool		providers;		/* the caller is a superuser: read duet.llm_providers */
	bool		kafka_allowed;	/* the caller may read duet.kafka_status */
	List	   *provider_rows;	/* pairs name, base_url */
	List	   *consumer_rows;	/* pairs name, brokers */
	MemoryContext cxt;
} ProbeLoad;

static void
read_pairs(const char *sql, int nargs, Oid *types, Datum *values, List **out, MemoryContext cxt)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, true, 0);
	uint64		i;

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read the endpoints to check: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		*out = lappend(*out, pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)));
		*out = lappend(*out, pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2)));
		MemoryContextSwitchTo(old);
	}
}

/* As the bootstrap superuser: the provider table is superuser-only, the consumer table too. */
static void
probe_load_su(void *arg)
{
	ProbeLoad  *pl = (ProbeLoad *) arg;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(pl->caller)};

	SPI_connect();
	if (pl->providers)
		read_pairs("SELECT p.name, p.base_url FROM duet.llm_providers p"
				   " WHERE p.enabled ORDER BY p.priority, p.name",
				   0, NULL, NULL, &pl->provider_rows, pl->cxt);
	pl->kafka_allowed =
		DatumGetBool(DirectFunctionCall3(has_table_privilege_id_name,
										 ObjectIdGetDatum(pl->caller),
										 CStringGetTextDatum("duet.kafka_status"),
										 CStringGetTextDatum("SELECT")));
	if (pl->kafka_allowed)
		read_pairs("SELECT c.name, c.brokers FROM duet.kafka_consumers c"
				   " WHERE c.enabled AND pg_catalog.pg_has_role($1, c.owner, 'USAGE') ORDER BY c.name",
				   1, types, values, &pl->consumer_rows, pl->cxt);
	SPI_finish();
}

/* "SASL_SSL://b1:9093, b2" → "b1:9093", "b2:9092" */
static List *
split_brokers(const char *brokers)
{
	List	   *out = NIL;
	char	   *copy = pstrdup(brokers);
	char	   *save = NULL;
	char	   *tok;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		char	   *scheme;
		char	   *end;
		const char *colon;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if ((scheme = strstr(tok, "://")) != NULL)
			tok = scheme + 3;
		if (*tok == '\0')
			continue;
		colon = strrchr(tok, ':');
		if (colon == NULL || (tok[0] == '[' && strchr(colon, ']') != NULL))
			out = lappend(out, psprintf("%s:9092", tok));
		else
			out = lappend(out, pstrdup(tok));
	}
	return out;
}

static Probe *
new_probe(const char *check, const char *owner_name, const char *target, const char *url)
{
	Probe	   *p = palloc0(sizeof(Probe));

	p->check = check;
	p->owner_name = pstrdup(owner_name);
	p->target = pstrdup(target);
	p->url = pstrdup(url);
	return p;
}

/* Connects to every probe at once; each gets error NULL or why it could not connect. */
static void
run_probes(List *probes)
{
	CURLM	   *multi;
	ListCell   *lc;
	List	   *volatile easies = NIL;
	int			running = 0;
	instr_time	start,
				now;

	if (probes == NIL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	PG_TRY();
	{
		foreach(lc, probes)
		{
			Probe	   *p = (Probe *) lfirst(lc);
			CURL	   *easy = curl_easy_init();

			if (easy == NULL)
			{
				p->error = pstrdup("could not initialize libcurl");
				p->done = true;
				continue;
			}
			easies = lappend(easies, easy);
			curl_easy_setopt(easy, CURLOPT_URL, p->url);
			curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
			curl_easy_setopt(easy, CURLOPT_CONNECT_ONLY, 1L);
			curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
			curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) DOCTOR_PROBE_TIMEOUT_MS);
			curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) DOCTOR_PROBE_TIMEOUT_MS);
			curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, p->errbuf);
			curl_easy_setopt(easy, CURLOPT_PRIVATE, p);
			/* A broker is reached directly; a provider the way duet_ask reaches it. */
			if (strcmp(p->check, "kafka brokers") == 0)
				curl_easy_setopt(easy, CURLOPT_PROXY, "");
			curl_multi_add_handle(multi, easy);
		}
		INSTR_TIME_SET_CURRENT(start);
		do
		{
			CURLMsg    *msg;
			int			left;

			CHECK_FOR_INTERRUPTS();
			curl_multi_perform(multi, &running);
			while ((msg = curl_multi_info_read(multi, &left)) != NULL)
			{
				Probe	   *p = NULL;

				if (msg->msg != CURLMSG_DONE)
					continue;
				curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &p);
				p->done = true;
				if (msg->data.result != CURLE_OK)
					p->error = pstrdup(p->errbuf[0] ? p->errbuf : curl_easy_strerror(msg->data.result));
			}
			INSTR_TIME_SET_CURRENT(now);
			INSTR_TIME_SUBTRACT(now, start);
			if (INSTR_TIME_GET_MILLISEC(now) > DOCTOR_PROBE_TIMEOUT_MS + 500)
				break;			/* libcurl's own timeouts failed us: stop anyway */
			if (running > 0)
				curl_multi_poll(multi, NULL, 0, 100, NULL);
		} while (running > 0);
		foreach(lc, probes)
		{
			Probe	   *p = (Probe *) lfirst(lc);

			if (!p->done)
				p->error = psprintf("no connection within %d ms", DOCTOR_PROBE_TIMEOUT_MS);
		}
	}
	PG_FINALLY();
	{
		foreach(lc, easies)
		{
			curl_multi_remove_handle(multi, (CURL *) lfirst(lc));
			curl_easy_cleanup((CURL *) lfirst(lc));
		}
		curl_multi_cleanup(multi);
	}
	PG_END_TRY();
}

typedef struct DoctorRows
{
	Tuplestorestate *store;
	TupleDesc	desc;
} DoctorRows;

static void
put_row(DoctorRows *out, const char *check, const char *status, const char *detail, const char *hint)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, hint == NULL};

	values[0] = CStringGetTextDatum(check);
	values[1] = CStringGetTextDatum(status);
	values[2] = CStringGetTextDatum(detail);
	values[3] = hint ? CStringGetTextDatum(hint) : (Datum) 0;
	tuplestore_putvalues(out->store, out->desc, values, nulls);
}

PG_FUNCTION_INFO_V1(duet_doctor_reachability);

/*
 * duet_doctor_reachability() → (check_name, status, detail, hint): the endpoints of the
 * enabled LLM providers (for a superuser, who alone may read them) and the brokers of the enabled
 * Kafka consumers the caller owns or acts as (for duet_kafka_admin and pg_monitor), each probed
 * with a TCP connection; one row per unreachable endpoint, or one "ok" row per check.
 */
Datum
duet_doctor_reachability(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ProbeLoad	pl = {GetUserId(), superuser(), false, NIL, NIL, CurrentMemoryContext};
	List	   *probes = NIL;
	int			skipped = 0;
	int			nproviders = 0;
	int			nconsumers = 0;
	DoctorRows	out;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	out.store = rsinfo->setResult;
	out.desc = rsinfo->setDesc;

	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, probe_load_su, &pl);

	for (lc = list_head(pl.provider_rows); lc; lc = lnext(pl.provider_rows, lc))
	{
		const char *name = lfirst(lc);
		const char *url = lfirst(lc = lnext(pl.provider_rows, lc));

		nproviders++;
		if (list_length(probes) >= DOCTOR_MAX_PROBES)
			skipped++;
		else
			probes = lappend(probes, new_probe("llm endpoints", name, url, url));
	}
	for (lc = list_head(pl.consumer_rows); lc; lc = lnext(pl.consumer_rows, lc))
	{
		const char *name = lfirst(lc);
		const char *brokers = lfirst(lc = lnext(pl.consumer_rows, lc));
		ListCell   *b;
		List	   *list = split_brokers(brokers);

		nconsumers++;
		foreach(b, list)
		{
			if (list_length(probes) >= DOCTOR_MAX_PROBES)
				skipped++;
			else
				probes = lappend(probes, new_probe("kafka brokers", name, lfirst(b),
												   psprintf("http://%s/", (char *) lfirst(b))));
		}
	}

	run_probes(probes);

	/* LLM endpoints */
	if (!pl.providers)
		put_row(&out, "llm endpoints", "skipped", "reading the LLM providers needs a superuser", NULL);
	else
	{
		int			bad = 0;

		foreach(lc, probes)
		{
			Probe	   *p = (Probe *) lfirst(lc);

			if (strcmp(p->check, "llm endpoints") != 0 || p->error == NULL)
				continue;
			bad++;
			put_row(&out, "llm endpoints", "error",
					psprintf("LLM provider %s at %s is unreachable: %s", p->owner_name, p->target, p->error),
					"Check the provider's base_url in duet.llm_providers, that the endpoint runs and that this server may connect to it (firewall, proxy, DNS); duet_ask falls back to the next provider meanwhile.");
		}
		if (bad == 0)
			put_row(&out, "llm endpoints", "ok",
					nproviders == 0 ? "no LLM provider is enabled"
					: psprintf("the endpoints of the %d enabled LLM providers accept connections", nproviders),
					NULL);
	}

	/* Kafka brokers: a consumer with no broker reachable is an error, with some a warning. */
	if (!pl.kafka_allowed)
		put_row(&out, "kafka brokers", "skipped", "checking the brokers needs duet_kafka_admin or pg_monitor", NULL);
	else
	{
		int			bad = 0;

		foreach(lc, probes)
		{
			Probe	   *p = (Probe *) lfirst(lc);
			bool		some_ok = false;
			ListCell   *o;

			if (strcmp(p->check, "kafka brokers") != 0 || p->error == NULL)
				continue;
			foreach(o, probes)
			{
				Probe	   *q = (Probe *) lfirst(o);

				if (strcmp(q->check, "kafka brokers") == 0 && q->error == NULL &&
					strcmp(q->owner_name, p->owner_name) == 0)
					some_ok = true;
			}
			bad++;
			put_row(&out, "kafka brokers", some_ok ? "warning" : "error",
					psprintf("broker %s of Kafka consumer %s is unreachable: %s", p->target, p->owner_name, p->error),
					"Check the consumer's brokers (duet_kafka_consume), that the broker runs and listens there and that this server may connect to it; the consumer retries on its own.");
		}
		if (bad == 0)
			put_row(&out, "kafka brokers", "ok",
					nconsumers == 0 ? "no enabled Kafka consumer of yours"
					: psprintf("the brokers of the %d enabled Kafka consumers accept connections", nconsumers),
					NULL);
	}
	if (skipped > 0)
		put_row(&out, "reachability", "warning",
				psprintf("%d more endpoints were not checked (duet_doctor checks at most %d)", skipped, DOCTOR_MAX_PROBES),
				NULL);
	return (Datum) 0;
}
