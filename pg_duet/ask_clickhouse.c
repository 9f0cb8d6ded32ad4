/*
 * ask_clickhouse.c — ClickHouse servers as duet_ask targets, over their HTTP interface (libcurl).
 *
 * duet.clickhouse_servers and duet.clickhouse_server_passwords have no grants: a server is read
 * here as the bootstrap superuser (duet_run_privileged) and its password stays in this backend's
 * memory for the request (HTTP basic authentication; never in an error, the log or a table). A
 * tenant may ask about a server only when the config key ask.clickhouse.access (tenant value, else
 * default) names it, with the databases (and optionally tables) it may see.
 *
 * Schema: system.columns (with comments) and system.databases, read with readonly=1, cached in
 * this backend per server for duet.ask_clickhouse_schema_ttl, then restricted to the tenant's
 * databases and tables; the fingerprint (md5 of what the tenant sees) keys the answer cache.
 *
 * Guard (duet_ch_guard_check): the tokenizer of ask_ch_guard.c, then the server's own analyzer:
 * DESCRIBE TABLE (<sql>) with readonly=1, which parses and analyzes one SELECT and never reads a
 * row; its result columns and types are what duet_ask_run maps the rows with.
 *
 * Run (duet_ch_run): <sql> FORMAT JSONEachRow with readonly=1, max_execution_time (from
 * duet.ask_run_timeout), max_result_rows = the row cap with result_overflow_mode=break,
 * max_memory_usage and max_rows_to_read of the server row; the rows are converted as they stream
 * in (UInt64/Int64 beyond 2^53 as text, Nullable as null, DateTime in its time zone as an ISO
 * timestamp with offset, arrays as arrays) and the transfer stops at the row cap.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "access/htup_details.h"
#include "miscadmin.h"
/* fmgrprotos.h declares SQL functions named like jansson's json_object and json_typeof. */
#define json_object pg_json_object
#define json_typeof pg_json_typeof
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#undef json_object
#undef json_typeof
#include <jansson.h>

#include "ask.h"
#include "duet_config.h"
#include "privileged.h"
#include "tenant.h"

#define CH_ERROR_SNIPPET 600
#define CH_MAX_SCHEMA_TABLES 200

static int	duet_ask_ch_schema_ttl_s = 300;

struct ChServer
{
	char	   *name;
	char	   *url;
	char	   *database;
	char	   *user;
	char	   *password;
	int			timeout_ms;
	int64		max_memory_usage;
	int64		max_rows_to_read;
	List	   *allowed_dbs;	/* char *, from ask.clickhouse.access */
	List	   *allowed_tables;	/* "db.table", NIL: every table of allowed_dbs */
};

/* One server's schema as read, kept per backend. */
typedef struct ChSchema
{
	char		server[NAMEDATALEN];
	TimestampTz loaded_at;
	char	   *timezone;
	List	   *databases;		/* every database of the server */
	List	   *columns;		/* ChColumn * in server order */
} ChSchema;

typedef struct ChColumn
{
	char	   *db;
	char	   *table;
	char	   *name;
	char	   *type;
	char	   *comment;
} ChColumn;

static List *schemas = NIL;		/* ChSchema *, TopMemoryContext */
static bool last_schema_cached = false;

void
duet_ch_init(void)
{
	DefineCustomIntVariable("duet.ask_clickhouse_schema_ttl",
							"How long a backend reuses the schema it read from a ClickHouse server.",
							"0 reads it for every ask.", &duet_ask_ch_schema_ttl_s, 300, 0, 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
}

/* ---- the server and the tenant's access --------------------------------------------- */

typedef struct LoadArgs
{
	const char *name;
	ChServer   *server;
	MemoryContext cxt;
} LoadArgs;

static void
load_su(void *arg)
{
	LoadArgs   *la = (LoadArgs *) arg;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(la->name)};
	int			rc;

	SPI_connect();
	rc = SPI_execute_with_args("SELECT s.url, s.database, s.user_name, p.password, s.timeout_ms,"
							   "       s.max_memory_usage, s.max_rows_to_read"
							   "  FROM duet.clickhouse_servers s"
							   "  LEFT JOIN duet.clickhouse_server_passwords p ON p.server OPERATOR(pg_catalog.=) s.name"
							   " WHERE s.name OPERATOR(pg_catalog.=) $1 AND s.enabled",
							   1, types, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.clickhouse_servers: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(la->cxt);
		ChServer   *s = palloc0(sizeof(ChServer));
		char	   *pw = SPI_getvalue(tup, desc, 4);

		s->name = pstrdup(la->name);
		s->url = pstrdup(SPI_getvalue(tup, desc, 1));
		s->database = pstrdup(SPI_getvalue(tup, desc, 2));
		s->user = pstrdup(SPI_getvalue(tup, desc, 3));
		s->password = pw ? pstrdup(pw) : NULL;
		s->timeout_ms = atoi(SPI_getvalue(tup, desc, 5));
		s->max_memory_usage = strtoll(SPI_getvalue(tup, desc, 6), NULL, 10);
		s->max_rows_to_read = strtoll(SPI_getvalue(tup, desc, 7), NULL, 10);
		la->server = s;
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

static List *
string_array(json_t *arr)
{
	List	   *out = NIL;
	size_t		i;
	json_t	   *v;

	json_array_foreach(arr, i, v)
		if (json_is_string(v))
		out = lappend(out, pstrdup(json_string_value(v)));
	return out;
}

ChServer *
duet_ch_server_for_tenant(const char *target, const char *tenant)
{
	LoadArgs	la = {target, NULL, CurrentMemoryContext};
	Jsonb	   *access = duet_config_lookup("ask.clickhouse.access");
	json_t	   *root = NULL;
	json_t	   *entry;

	if (access)
	{
		char	   *text = JsonbToCString(NULL, &access->root, VARSIZE(access));

		root = json_loads(text, 0, NULL);
	}
	entry = json_is_object(root) ? json_object_get(root, target) : NULL;
	if (!json_is_object(entry))
	{
		json_decref(root);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s may not ask about ClickHouse server \"%s\"",
						tenant ? psprintf("tenant \"%s\"", tenant) : "this role", target),
				 errhint("An administrator grants it with the config key ask.clickhouse.access.")));
	}
	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, load_su, &la);
	if (la.server == NULL)
	{
		json_decref(root);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("ClickHouse server \"%s\" does not exist or is disabled", target)));
	}
	la.server->allowed_dbs = string_array(json_object_get(entry, "databases"));
	la.server->allowed_tables = string_array(json_object_get(entry, "tables"));
	json_decref(root);
	return la.server;
}

/* ---- HTTP --------------------------------------------------------------------------- */

static void
append_param(StringInfo url, const char *name, const char *value)
{
	char	   *esc = palloc(strlen(value) * 3 + 1);
	char	   *o = esc;

	for (const char *p = value; *p; p++)
	{
		if (isalnum((unsigned char) *p) || strchr("-_.~", *p))
			*o++ = *p;
		else
			o += sprintf(o, "%%%02X", (unsigned char) *p);
	}
	*o = '\0';
	appendStringInfo(url, "%c%s=%s", strchr(url->data, '?') ? '&' : '?', name, esc);
}

static List *
auth_headers(const ChServer *s)
{
	char	   *cred = psprintf("%s:%s", s->user, s->password ? s->password : "");
	int			len = pg_b64_enc_len(strlen(cred));
	char	   *b64 = palloc(len + 1);
	int			n = pg_b64_encode(cred, strlen(cred), b64, len);

	b64[Max(n, 0)] = '\0';
	return list_make2(psprintf("Authorization: Basic %s", b64), pstrdup("Expect:"));
}

/* The server's error text, fit for the user and the model (no password: it is never sent back). */
static char *
ch_error_text(const HttpResponse *resp)
{
	char	   *t = pnstrdup(resp->body.data, Min(resp->body.len, CH_ERROR_SNIPPET));
	char	   *cut = strstr(t, ", e.what() = ");
	int			len;

	if (cut)
		*cut = '\0';
	len = strlen(t);
	while (len > 0 && isspace((unsigned char) t[len - 1]))
		t[--len] = '\0';
	if (pg_strncasecmp(t, "Code: ", 6) == 0)
		return t;
	return psprintf("HTTP %ld: %s", resp->status, t);
}

/* Sends one query with readonly=1 and the given extra settings; body in *resp. */
static HttpOutcome
ch_post(const ChServer *s, const char *database, const char *sql, List *settings, int timeout_ms,
		HttpResponse *resp, HttpDrain drain, void *arg)
{
	StringInfoData url;
	ListCell   *lc;
	size_t		blen = strlen(s->url);

	initStringInfo(&url);
	while (blen > 0 && s->url[blen - 1] == '/')
		blen--;
	appendBinaryStringInfo(&url, s->url, blen);
	appendStringInfoChar(&url, '/');
	append_param(&url, "database", database);
	for (lc = list_head(settings); lc; lc = lnext(settings, lc))
	{
		const char *k = lfirst(lc);

		lc = lnext(settings, lc);
		append_param(&url, k, (const char *) lfirst(lc));
	}
	/* Last, so nothing before it can be relaxed after it. */
	append_param(&url, "readonly", "1");
	return duet_http_post_stream(url.data, auth_headers(s), sql, timeout_ms, resp, drain, arg);
}

/* A query whose whole answer is wanted (the schema, DESCRIBE); raises on transport failure. */
static bool
ch_query(const ChServer *s, const char *sql, HttpResponse *resp, char **error)
{
	HttpOutcome o = ch_post(s, s->database, sql,
							list_make4("max_execution_time", psprintf("%d", Max(s->timeout_ms / 1000, 1)),
									   "max_result_rows", "100000"),
							s->timeout_ms, resp, NULL, NULL);

	*error = NULL;
	if (o != HTTP_OK)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not reach ClickHouse server \"%s\"", s->name),
				 errdetail("%s", resp->error)));
	if (resp->status != 200)
	{
		*error = ch_error_text(resp);
		return false;
	}
	return true;
}

/* ---- schema ------------------------------------------------------------------------- */

/* TabSeparated unescaping of one field, in place. */
static char *
tsv_field(char **line)
{
	char	   *start = *line;
	char	   *o = start;
	char	   *p = start;

	while (*p && *p != '\t')
	{
		if (*p == '\\' && p[1])
		{
			p++;
			switch (*p)
			{
				case 't':
					*o++ = '\t';
					break;
				case 'n':
					*o++ = '\n';
					break;
				case 'r':
					*o++ = '\r';
					break;
				case '0':
					*o++ = '\0';
					break;
				default:
					*o++ = *p;
			}
			p++;
		}
		else
			*o++ = *p++;
	}
	*line = *p ? p + 1 : p;
	*o = '\0';
	return start;
}

static ChSchema *
schema_load(const ChServer *s)
{
	HttpResponse resp;
	char	   *error;
	ChSchema   *cs;
	MemoryContext old;
	char	   *line;

	/* ClickHouse SQL (not SPI): the schema tables only, one request. */
	if (!ch_query(s, "select 'd', name, '', '', '' from system.databases"
				  " union all select 'z', timezone(), '', '', ''"
				  " union all select 'c', database, table, name, concat(type, '\\t', comment) from system.columns"
				  " format TabSeparated", &resp, &error))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the schema of ClickHouse server \"%s\"", s->name),
				 errdetail("%s", error)));
	old = MemoryContextSwitchTo(TopMemoryContext);
	cs = palloc0(sizeof(ChSchema));
	strlcpy(cs->server, s->name, NAMEDATALEN);
	cs->timezone = pstrdup("UTC");
	line = resp.body.data;
	while (line && *line)
	{
		char	   *nl = strchr(line, '\n');
		char	   *kind,
				   *a,
				   *b,
				   *c,
				   *d;

		if (nl)
			*nl = '\0';
		kind = tsv_field(&line);
		a = tsv_field(&line);
		b = tsv_field(&line);
		c = tsv_field(&line);
		d = tsv_field(&line);
		if (kind[0] == 'd')
			cs->databases = lappend(cs->databases, pstrdup(a));
		else if (kind[0] == 'z')
			cs->timezone = pstrdup(a);
		else if (kind[0] == 'c')
		{
			ChColumn   *col = palloc0(sizeof(ChColumn));
			char	   *tab = strchr(d, '\t');

			if (tab)
				*tab++ = '\0';
			col->db = pstrdup(a);
			col->table = pstrdup(b);
			col->name = pstrdup(c);
			col->type = pstrdup(d);
			col->comment = pstrdup(tab ? tab : "");
			cs->columns = lappend(cs->columns, col);
		}
		line = nl ? nl + 1 : NULL;
	}
	cs->loaded_at = GetCurrentTimestamp();
	MemoryContextSwitchTo(old);
	return cs;
}

static ChSchema *
schema_get(const ChServer *s)
{
	ListCell   *lc;
	ChSchema   *cs;

	foreach(lc, schemas)
	{
		cs = lfirst(lc);
		if (strcmp(cs->server, s->name) == 0)
		{
			if (duet_ask_ch_schema_ttl_s > 0 &&
				!TimestampDifferenceExceeds(cs->loaded_at, GetCurrentTimestamp(),
											duet_ask_ch_schema_ttl_s * 1000))
			{
				last_schema_cached = true;
				return cs;
			}
			schemas = foreach_delete_current(schemas, lc);
			break;
		}
	}
	cs = schema_load(s);
	last_schema_cached = false;
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		schemas = lappend(schemas, cs);
		MemoryContextSwitchTo(old);
	}
	return cs;
}

static bool
name_in(List *names, const char *w)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), w) == 0)
			return true;
	return false;
}

static bool
column_visible(const ChServer *s, const ChColumn *c)
{
	if (!name_in(s->allowed_dbs, c->db))
		return false;
	return s->allowed_tables == NIL || name_in(s->allowed_tables, psprintf("%s.%s", c->db, c->table));
}

AskContext *
duet_ch_context_build(ChServer *s, const char *question)
{
	ChSchema   *cs = schema_get(s);
	AskContext *ctx = palloc0(sizeof(AskContext));
	StringInfoData out;
	ListCell   *lc;
	const char *db = NULL,
			   *table = NULL;
	char		hex[33];
	const char *errstr = NULL;

	initStringInfo(&out);
	appendStringInfo(&out, "-- ClickHouse server \"%s\", time zone %s\n", s->name, cs->timezone);
	foreach(lc, cs->columns)
	{
		ChColumn   *c = lfirst(lc);

		if (!column_visible(s, c))
			continue;
		if (db == NULL || strcmp(db, c->db) != 0 || strcmp(table, c->table) != 0)
		{
			if (db)
				appendStringInfoString(&out, ")\n");
			if (ctx->tables_visible >= CH_MAX_SCHEMA_TABLES)
			{
				db = NULL;
				break;
			}
			appendStringInfo(&out, "table %s.%s (\n", c->db, c->table);
			db = c->db;
			table = c->table;
			ctx->tables_visible++;
		}
		appendStringInfo(&out, "  %s %s%s%s\n", c->name, c->type, c->comment[0] ? " -- " : "", c->comment);
	}
	if (db)
		appendStringInfoString(&out, ")\n");
	ctx->tables_sent = ctx->tables_visible;
	ctx->schema_text = out.data;
	if (!pg_md5_hash(out.data, out.len, hex, &errstr))
		elog(ERROR, "could not compute the schema fingerprint: %s", errstr ? errstr : "?");
	ctx->fingerprint = psprintf("ch:%s:%s", s->name, hex);
	return ctx;
}

const char *
duet_ch_system_prompt(void)
{
	return "You translate a question about a ClickHouse (version 18.16) analytics database into exactly one "
		"read-only ClickHouse SQL query.\n"
		"Rules:\n"
		"- Answer with the SQL only: no explanation, no markdown, no trailing semicolon, no FORMAT or "
		"SETTINGS clause.\n"
		"- One SELECT statement in ClickHouse's dialect (toDate, toStartOfMonth, sumIf, countIf, "
		"uniq, arrayJoin, ...); never modify data, never use table functions (url, file, remote, ...) "
		"or system tables.\n"
		"- Use only the tables and columns listed below, qualified with their database as shown.\n"
		"- No CROSS JOIN and no comma between tables: join with JOIN ... USING/ON.\n"
		"- If the question cannot be answered from this schema, answer: SELECT 'cannot answer' AS error\n";
}

/* ---- guard -------------------------------------------------------------------------- */

typedef struct ChCol
{
	char	   *name;
	char	   *type;
} ChCol;

char *
duet_ch_guard_check(ChServer *s, const char *sql, List **columns)
{
	ChSchema   *cs = schema_get(s);
	char	   *reason;
	HttpResponse resp;
	char	   *error;
	char	   *line;

	reason = duet_ch_token_check(sql, s->allowed_dbs, cs->databases, s->allowed_tables, s->database);
	if (reason)
		return reason;
	/* The server's parser and analyzer: DESCRIBE of the query as a subquery reads no rows. */
	if (!ch_query(s, psprintf("DESCRIBE TABLE (%s) FORMAT TabSeparated", sql), &resp, &error))
		return psprintf("ClickHouse: %s", error);
	if (columns)
	{
		*columns = NIL;
		line = resp.body.data;
		while (line && *line)
		{
			char	   *nl = strchr(line, '\n');
			ChCol	   *c = palloc(sizeof(ChCol));

			if (nl)
				*nl = '\0';
			c->name = pstrdup(tsv_field(&line));
			c->type = pstrdup(tsv_field(&line));
			*columns = lappend(*columns, c);
			line = nl ? nl + 1 : NULL;
		}
	}
	return NULL;
}

/* ---- run ---------------------------------------------------------------------------- */

typedef struct RunState
{
	const char *timezone;
	List	   *columns;		/* ChCol * */
	int			max_rows;
	int			rows;
	Tuplestorestate *store;
	TupleDesc	store_desc;
	MemoryContext store_cxt;
} RunState;

/* "Nullable(X)" → X, "LowCardinality(X)" → X. */
static const char *
base_type(const char *t, char **tz)
{
	*tz = NULL;
	for (;;)
	{
		if (strncmp(t, "Nullable(", 9) == 0)
			t += 9;
		else if (strncmp(t, "LowCardinality(", 15) == 0)
			t += 15;
		else
			break;
	}
	if (strncmp(t, "DateTime('", 10) == 0)
	{
		const char *end = strchr(t + 10, '\'');

		*tz = end ? pnstrdup(t + 10, end - (t + 10)) : NULL;
	}
	return t;
}

static void push_value(JsonbParseState **st, json_t *v, const char *type, RunState *rs, bool is_elem);

static void
push_scalar(JsonbParseState **st, JsonbValue *jv, bool is_elem)
{
	pushJsonbValue(st, is_elem ? WJB_ELEM : WJB_VALUE, jv);
}

static void
push_numeric_text(JsonbParseState **st, const char *text, bool is_elem)
{
	JsonbValue	jv;

	jv.type = jbvNumeric;
	jv.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
														 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	push_scalar(st, &jv, is_elem);
}

static void
push_string(JsonbParseState **st, const char *s, bool is_elem)
{
	JsonbValue	jv;

	jv.type = jbvString;
	jv.val.string.val = (char *) s;
	jv.val.string.len = strlen(s);
	push_scalar(st, &jv, is_elem);
}

static void
push_value(JsonbParseState **st, json_t *v, const char *type, RunState *rs, bool is_elem)
{
	char	   *tz;
	const char *t = base_type(type, &tz);
	JsonbValue	jv;

	if (json_is_null(v))
	{
		jv.type = jbvNull;
		push_scalar(st, &jv, is_elem);
	}
	else if (json_is_array(v))
	{
		const char *elem = "String";
		size_t		i;
		json_t	   *e;

		if (strncmp(t, "Array(", 6) == 0)
		{
			char	   *inner = pstrdup(t + 6);

			inner[strlen(inner) - 1] = '\0';
			elem = inner;
		}
		pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
		json_array_foreach(v, i, e)
			push_value(st, e, elem, rs, true);
		pushJsonbValue(st, WJB_END_ARRAY, NULL);
	}
	else if (json_is_string(v) && strncmp(t, "DateTime", 8) == 0)
	{
		/* Wall-clock text in the column's (else the server's) zone → an instant with offset. */
		Datum		ts = DirectFunctionCall3(timestamp_in, CStringGetDatum(json_string_value(v)),
											 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		Datum		tstz = DirectFunctionCall2(timestamp_zone, CStringGetTextDatum(tz ? tz : rs->timezone), ts);
		char		buf[MAXDATELEN + 1];

		push_string(st, pstrdup(JsonEncodeDateTime(buf, tstz, TIMESTAMPTZOID, NULL)), is_elem);
	}
	else if (json_is_string(v) &&
			 (strncmp(t, "UInt64", 6) == 0 || strncmp(t, "Int64", 5) == 0 ||
			  strncmp(t, "Decimal", 7) == 0 || strncmp(t, "UInt128", 7) == 0 || strncmp(t, "Int128", 6) == 0))
	{
		const char *s = json_string_value(v);
		char	   *end;
		double		d = strtod(s, &end);

		/* Exact in a JSON number (a double) up to 2^53; beyond, text keeps every digit. */
		if (*end == '\0' && (strncmp(t, "Decimal", 7) == 0 || fabs(d) <= 9007199254740992.0))
			push_numeric_text(st, s, is_elem);
		else
			push_string(st, s, is_elem);
	}
	else if (json_is_integer(v))
		push_numeric_text(st, psprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v)), is_elem);
	else if (json_is_real(v))
	{
		double		d = json_real_value(v);

		if (isfinite(d))
			push_numeric_text(st, float8out_internal(d), is_elem);
		else
			push_string(st, isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf"), is_elem);
	}
	else if (json_is_boolean(v))
	{
		jv.type = jbvBool;
		jv.val.boolean = json_is_true(v);
		push_scalar(st, &jv, is_elem);
	}
	else if (json_is_string(v))
		push_string(st, json_string_value(v), is_elem);
	else
	{
		char	   *dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		push_string(st, dumped ? dumped : "", is_elem);
		free(dumped);
	}
}

static void
put_row(RunState *rs, const char *line, size_t len)
{
	json_error_t jerr;
	json_t	   *obj = json_loadb(line, len, 0, &jerr);
	JsonbParseState *st = NULL;
	JsonbValue *res;
	ListCell   *lc;
	Datum		value;
	bool		isnull = false;
	MemoryContext old;

	if (!json_is_object(obj))
	{
		json_decref(obj);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("ClickHouse sent a row that is not a JSON object"),
				 errdetail("%s", jerr.text)));
	}
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	foreach(lc, rs->columns)
	{
		ChCol	   *c = lfirst(lc);
		json_t	   *v = json_object_get(obj, c->name);
		JsonbValue	k;

		k.type = jbvString;
		k.val.string.val = c->name;
		k.val.string.len = strlen(c->name);
		pushJsonbValue(&st, WJB_KEY, &k);
		if (v == NULL)
		{
			JsonbValue	n = {.type = jbvNull};

			pushJsonbValue(&st, WJB_VALUE, &n);
		}
		else
			push_value(&st, v, c->type, rs, false);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	/* The parse state points into obj's strings: free it only once the jsonb is built. */
	value = JsonbPGetDatum(JsonbValueToJsonb(res));
	json_decref(obj);
	old = MemoryContextSwitchTo(rs->store_cxt);
	tuplestore_putvalues(rs->store, rs->store_desc, &value, &isnull);
	MemoryContextSwitchTo(old);
	rs->rows++;
}

/* Consumes the complete lines of the body; false at the row cap (ends the transfer). */
static bool
drain_rows(HttpResponse *resp, void *arg)
{
	RunState   *rs = (RunState *) arg;
	int			start = 0;

	if (resp->status != 200)
		return true;			/* an error text: kept whole for the message */
	for (;;)
	{
		char	   *nl = memchr(resp->body.data + start, '\n', resp->body.len - start);

		if (nl == NULL || rs->rows >= rs->max_rows)
			break;
		if (nl > resp->body.data + start)
			put_row(rs, resp->body.data + start, nl - (resp->body.data + start));
		start = nl - resp->body.data + 1;
	}
	if (start > 0)
	{
		memmove(resp->body.data, resp->body.data + start, resp->body.len - start);
		resp->body.len -= start;
		resp->body.data[resp->body.len] = '\0';
	}
	return rs->rows < rs->max_rows;
}

void
duet_ch_run(ChServer *s, const char *sql, int max_rows, void *store, void *store_desc,
			MemoryContext store_cxt)
{
	RunState	rs = {0};
	char	   *reason;
	HttpResponse resp;
	HttpOutcome o;
	List	   *settings;
	int			timeout_s = Max((duet_ask_run_timeout_ms + 999) / 1000, 1);

	rs.columns = NIL;
	/* Guard again right before the run: the schema or the tenant's access may have changed. */
	reason = duet_ch_guard_check(s, sql, &rs.columns);
	if (reason)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the generated SQL is not allowed to run"),
				 errdetail("%s", reason)));
	rs.timezone = schema_get(s)->timezone;
	rs.max_rows = max_rows;
	rs.store = store;
	rs.store_desc = store_desc;
	rs.store_cxt = store_cxt;
	settings = list_make4("max_execution_time", psprintf("%d", timeout_s),
						  "timeout_overflow_mode", "throw");
	settings = lappend(settings, "max_result_rows");
	settings = lappend(settings, psprintf("%d", max_rows));
	settings = lappend(settings, "result_overflow_mode");
	settings = lappend(settings, "break");
	settings = lappend(settings, "max_memory_usage");
	settings = lappend(settings, psprintf(INT64_FORMAT, s->max_memory_usage));
	settings = lappend(settings, "max_rows_to_read");
	settings = lappend(settings, psprintf(INT64_FORMAT, s->max_rows_to_read));
	settings = lappend(settings, "read_overflow_mode");
	settings = lappend(settings, "throw");
	settings = lappend(settings, "output_format_json_quote_64bit_integers");
	settings = lappend(settings, "1");
	o = ch_post(s, s->database, psprintf("%s\nFORMAT JSONEachRow", sql), settings,
				duet_ask_run_timeout_ms, &resp, drain_rows, &rs);
	if (o == HTTP_TIMED_OUT)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("the ClickHouse query did not finish within duet.ask_run_timeout")));
	if (o != HTTP_OK)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not run the query on ClickHouse server \"%s\"", s->name),
				 errdetail("%s", resp.error)));
	if (resp.status != 200)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("ClickHouse server \"%s\" refused the query", s->name),
				 errdetail("%s", ch_error_text(&resp))));
	/* A last row without its newline. */
	if (resp.body.len > 0 && rs.rows < rs.max_rows)
		put_row(&rs, resp.body.data, resp.body.len);
}

/* ---- SQL ---------------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(duet_ask_clickhouse_guard);

/* duet_ask_clickhouse_guard(target, sql) → NULL or the reason the ClickHouse guard refuses sql. */
Datum
duet_ask_clickhouse_guard(PG_FUNCTION_ARGS)
{
	char	   *target = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *sql = duet_guard_extract_sql(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	ChServer   *s = duet_ch_server_for_tenant(target, duet_current_tenant_name());
	char	   *reason = duet_ch_guard_check(s, sql, NULL);

	if (reason == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reason));
}

PG_FUNCTION_INFO_V1(duet_ask_clickhouse_schema);

/* duet_ask_clickhouse_schema(target) → (fingerprint, tables, cached, schema) as the model sees it. */
Datum
duet_ask_clickhouse_schema(PG_FUNCTION_ARGS)
{
	char	   *target = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ChServer   *s = duet_ch_server_for_tenant(target, duet_current_tenant_name());
	AskContext *ctx = duet_ch_context_build(s, "");
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = CStringGetTextDatum(ctx->fingerprint);
	values[1] = Int32GetDatum(ctx->tables_visible);
	values[2] = BoolGetDatum(last_schema_cached);
	values[3] = CStringGetTextDatum(ctx->schema_text);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
