/*
 * ask_context.c — what the model is told: the schema the calling role may read, and examples.
 *
 * The catalog is read as the calling role and filtered with has_table_privilege /
 * has_column_privilege, so the model never learns of a table or column the user could not
 * query. Rendering 500 tables costs milliseconds, so the rendered catalog is kept per backend and
 * dropped by relcache/syscache invalidation (DDL, GRANT/REVOKE, role membership) or a change of
 * role; comments alone do not invalidate (COMMENT ON sends no invalidation) and are picked up at
 * the next DDL or in a new session. The fingerprint (cache key) is a digest of the whole rendered
 * catalog; the prompt carries only the tables that share most words with the question when the
 * schema is larger than duet.ask_max_context_tables.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/lsyscache.h"

#include "catalog/pg_type.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "ask.h"
#include "pg_duet.h"

#define MAX_EXAMPLES_READ	200
#define MAX_EXAMPLES_SENT	5

typedef struct CtxTable
{
	char	   *text;			/* rendered block: name, comment, columns, keys */
	char	   *words;			/* lower-cased words of the block, space separated */
} CtxTable;

/* The per-backend rendering of the catalog the current role may see. */
static MemoryContext catalog_cxt = NULL;
static CtxTable *catalog_tables = NULL;
static int	catalog_ntables = 0;
static char catalog_fingerprint[33];
static Oid	catalog_role = InvalidOid;
static bool catalog_valid = false;
static uint64 catalog_generation = 0;	/* bumped by every invalidation */
static bool callbacks_registered = false;

static void
invalidate_catalog(Datum arg, Oid relid)
{
	catalog_valid = false;
	catalog_generation++;
}

static void
invalidate_catalog_syscache(Datum arg, int cacheid, uint32 hashvalue)
{
	catalog_valid = false;
	catalog_generation++;
}

/* Lower-cased alphanumeric words, a trailing plural "s" dropped, each followed by a space. */
static void
append_words(StringInfo out, const char *text)
{
	const char *s = text;

	while (*s)
	{
		const char *start;
		int			len;

		while (*s && !isalnum((unsigned char) *s))
			s++;
		start = s;
		while (*s && isalnum((unsigned char) *s))
			s++;
		len = s - start;
		if (len > 3 && (start[len - 1] == 's' || start[len - 1] == 'S'))
			len--;
		if (len > 1)
		{
			int			i;

			appendStringInfoChar(out, ' ');
			for (i = 0; i < len; i++)
				appendStringInfoChar(out, pg_tolower((unsigned char) start[i]));
			appendStringInfoChar(out, ' ');
		}
	}
}

static const char *catalog_query =
"SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),"
"       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'"
"                      WHEN 'f' THEN 'foreign table' ELSE 'table' END,"
"       pg_catalog.obj_description(c.oid, 'pg_class'),"
"       (SELECT pg_catalog.string_agg(pg_catalog.format('  %I %s%s%s', a.attname,"
"                   pg_catalog.format_type(a.atttypid, a.atttypmod),"
"                   CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,"
"                   coalesce(' -- ' OPERATOR(pg_catalog.||) pg_catalog.col_description(c.oid, a.attnum), '')),"
"                   E'\\n' ORDER BY a.attnum)"
"          FROM pg_catalog.pg_attribute a"
"         WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0"
"           AND NOT a.attisdropped"
"           AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')),"
"       (SELECT pg_catalog.string_agg('  ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_constraintdef(k.oid), E'\\n'"
"                                     ORDER BY k.contype DESC, k.conname)"
"          FROM pg_catalog.pg_constraint k"
"         WHERE k.conrelid OPERATOR(pg_catalog.=) c.oid AND k.contype IN ('p', 'f', 'u')"
/* A constraint's text names its columns, and a foreign key's the table it references: only
 * when the caller may see all of them (schema, table, every column) is it shown. */
"           AND NOT EXISTS (SELECT FROM pg_catalog.unnest(k.conkey) AS col(n)"
"                            WHERE NOT pg_catalog.has_column_privilege(c.oid, col.n, 'SELECT'))"
"           AND (k.contype OPERATOR(pg_catalog.<>) 'f' OR"
"                (pg_catalog.has_schema_privilege((SELECT r.relnamespace FROM pg_catalog.pg_class r"
"                                                   WHERE r.oid OPERATOR(pg_catalog.=) k.confrelid), 'USAGE')"
"                 AND NOT EXISTS (SELECT FROM pg_catalog.unnest(k.confkey) AS fcol(n)"
"                                  WHERE NOT pg_catalog.has_column_privilege(k.confrelid, fcol.n, 'SELECT')))))"
"  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
"    ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
" WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND NOT c.relispartition"
"   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'duet')"
"   AND n.nspname OPERATOR(pg_catalog.!~) '^pg_(toast|temp_|toast_temp_)'"
"   AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')"
"   AND pg_catalog.has_any_column_privilege(c.oid, 'SELECT')"
" ORDER BY n.nspname, c.relname";

static void
load_catalog(void)
{
	StringInfoData all;
	uint64		i;
	const char *errstr = NULL;
	int			rc;
	uint64		generation;

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(invalidate_catalog, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, invalidate_catalog_syscache, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, invalidate_catalog_syscache, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, invalidate_catalog_syscache, (Datum) 0);
		callbacks_registered = true;
	}
	if (catalog_cxt == NULL)
		catalog_cxt = AllocSetContextCreate(TopMemoryContext, "duet_ask catalog",
											ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(catalog_cxt);
	catalog_tables = NULL;
	catalog_ntables = 0;
	catalog_valid = false;

	/* Valid at the end only if no invalidation arrived while we read. */
	generation = catalog_generation;
	SPI_connect();
	rc = SPI_execute(catalog_query, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read the catalog: %s", SPI_result_code_string(rc));

	catalog_tables = MemoryContextAllocZero(catalog_cxt, sizeof(CtxTable) * Max(SPI_processed, 1));
	initStringInfo(&all);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, desc, 1);
		char	   *kind = SPI_getvalue(tup, desc, 2);
		char	   *comment = SPI_getvalue(tup, desc, 3);
		char	   *columns = SPI_getvalue(tup, desc, 4);
		char	   *keys = SPI_getvalue(tup, desc, 5);
		StringInfoData block;
		StringInfoData words;

		initStringInfo(&block);
		appendStringInfo(&block, "%s %s", kind, name);
		if (comment)
			appendStringInfo(&block, " -- %s", comment);
		appendStringInfo(&block, "\n%s\n", columns ? columns : "  (no readable columns)");
		if (keys)
			appendStringInfo(&block, "%s\n", keys);

		initStringInfo(&words);
		append_words(&words, block.data);

		catalog_tables[catalog_ntables].text = MemoryContextStrdup(catalog_cxt, block.data);
		catalog_tables[catalog_ntables].words = MemoryContextStrdup(catalog_cxt, words.data);
		catalog_ntables++;
		appendStringInfoString(&all, block.data);
	}
	if (!pg_md5_hash(all.data, all.len, catalog_fingerprint, &errstr))
		elog(ERROR, "could not compute the schema fingerprint: %s", errstr);
	SPI_finish();
	catalog_role = GetUserId();
	catalog_valid = (generation == catalog_generation);
}

/* How many of the question's words the table's words contain. */
static int
overlap(const char *question_words, const char *table_words)
{
	const char *s = question_words;
	int			score = 0;

	while ((s = strchr(s, ' ')) != NULL && s[1] != '\0')
	{
		const char *end = strchr(s + 1, ' ');
		char		word[128];
		int			len;

		if (end == NULL)
			break;
		len = end - s + 1;		/* " word " including both spaces */
		if (len < (int) sizeof(word))
		{
			memcpy(word, s, len);
			word[len] = '\0';
			if (strstr(table_words, word))
				score++;
		}
		s = end + 1;
	}
	return score;
}

typedef struct Scored
{
	int			index;
	int			score;
} Scored;

static int
by_score_desc(const void *a, const void *b)
{
	const Scored *x = a,
			   *y = b;

	if (x->score != y->score)
		return y->score - x->score;
	return x->index - y->index;
}

static char *
render_schema(const char *question, int *sent)
{
	StringInfoData out;
	int			limit = duet_ask_max_context_tables;
	int			i;

	initStringInfo(&out);
	if (catalog_ntables <= limit)
	{
		for (i = 0; i < catalog_ntables; i++)
			appendStringInfo(&out, "%s\n", catalog_tables[i].text);
		*sent = catalog_ntables;
	}
	else
	{
		StringInfoData qwords;
		Scored	   *scores = palloc(sizeof(Scored) * catalog_ntables);
		bool	   *chosen = palloc0(sizeof(bool) * catalog_ntables);

		initStringInfo(&qwords);
		append_words(&qwords, question);
		for (i = 0; i < catalog_ntables; i++)
		{
			scores[i].index = i;
			scores[i].score = overlap(qwords.data, catalog_tables[i].words);
		}
		qsort(scores, catalog_ntables, sizeof(Scored), by_score_desc);
		for (i = 0; i < limit; i++)
			chosen[scores[i].index] = true;
		/* Catalog order in the prompt keeps schemas together. */
		for (i = 0; i < catalog_ntables; i++)
			if (chosen[i])
				appendStringInfo(&out, "%s\n", catalog_tables[i].text);
		*sent = limit;
	}
	return out.data;
}

/* The tenant's verified examples most similar to the question (RLS scopes the read). */
static char *
render_examples(const char *question, const char *target)
{
	StringInfoData out;
	StringInfoData qwords;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		args[2] = {Int32GetDatum(MAX_EXAMPLES_READ), target ? CStringGetTextDatum(target) : (Datum) 0};
	Scored	   *scores;
	uint64		i,
				n;
	int			rc;
	MemoryContext caller = CurrentMemoryContext;
	char	   *result;

	initStringInfo(&out);
	initStringInfo(&qwords);
	append_words(&qwords, question);
	SPI_connect();
	/* The examples of the target asked about: PostgreSQL's (target NULL) or a ClickHouse server's. */
	{
		Oid			rel = get_relname_relid("ask_examples", get_namespace_oid("duet", false));
		bool		has_target = OidIsValid(rel) && get_attnum(rel, "target") != InvalidAttrNumber;

		/* A schema not yet updated to 0.2.0 has no target column: its examples are PostgreSQL's. */
		if (!has_target && target)
			rc = SPI_execute("SELECT question, sql FROM duet.ask_examples WHERE false", true, 0);
		else if (!has_target)
			rc = SPI_execute_with_args("SELECT question, sql FROM duet.ask_examples"
									   " ORDER BY created_at DESC LIMIT $1", 1, argtypes, args, NULL, true, 0);
		else
			rc = SPI_execute_with_args("SELECT question, sql FROM duet.ask_examples"
									   " WHERE target IS NOT DISTINCT FROM $2"
									   " ORDER BY created_at DESC LIMIT $1", 2, argtypes, args,
									   target ? NULL : " n", true, 0);
	}
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.ask_examples: %s", SPI_result_code_string(rc));
	n = SPI_processed;
	scores = palloc(sizeof(Scored) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		StringInfoData w;

		initStringInfo(&w);
		append_words(&w, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		scores[i].index = i;
		scores[i].score = overlap(qwords.data, w.data);
	}
	qsort(scores, n, sizeof(Scored), by_score_desc);
	for (i = 0; i < n && i < MAX_EXAMPLES_SENT; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[scores[i].index];

		appendStringInfo(&out, "Question: %s\nSQL: %s\n\n",
						 SPI_getvalue(tup, SPI_tuptable->tupdesc, 1),
						 SPI_getvalue(tup, SPI_tuptable->tupdesc, 2));
	}
	result = MemoryContextStrdup(caller, out.data);
	SPI_finish();
	return result;
}

char *
duet_context_examples(const char *question, const char *target)
{
	return render_examples(question, target);
}

/*
 * The named metrics the caller may use (duet.metrics_catalog, read as the caller: global ones and
 * its tenant's), with how to compute one in SQL; "" when there are none. Read at every ask (a few
 * rows), so a change is in the next prompt; the fingerprint covers it.
 */
static char *
render_metrics(void)
{
	StringInfoData out;
	MemoryContext caller = CurrentMemoryContext;
	char	   *result;

	initStringInfo(&out);
	if (!duet_sql_is_current())
		return out.data;
	SPI_connect();
	/* a global metric the caller does not override also has an inlinable SQL function */
	if (SPI_execute("SELECT c.name, c.description, c.unit, c.return_type, c.arguments, c.argument_types, "
					"       f.function "
					"FROM duet.metrics_catalog c LEFT JOIN duet.metric_functions f "
					"  ON f.name OPERATOR(pg_catalog.=) c.name AND c.source OPERATOR(pg_catalog.=) 'global' "
					"ORDER BY c.name", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.metrics_catalog");
	if (SPI_processed > 0)
		appendStringInfoString(&out, "\nNamed metrics (Duet formulas). Compute one with "
							   "duet_calc_number_args('name(a, b)', <expression for a>, <expression for b>), "
							   "the expressions bound to the formula's variables in order; "
							   "string results: duet_calc_args(...) #>> '{}':\n");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *description = SPI_getvalue(tup, desc, 2);
		char	   *unit = SPI_getvalue(tup, desc, 3);
		bool		isnull;
		Datum	   *names,
				   *types;
		int			n,
					nt;

		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 5, &isnull)), TEXTOID, -1, false,
						  TYPALIGN_INT, &names, NULL, &n);
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 6, &isnull)), TEXTOID, -1, false,
						  TYPALIGN_INT, &types, NULL, &nt);
		appendStringInfo(&out, "metric %s(", SPI_getvalue(tup, desc, 1));
		for (int k = 0; k < n; k++)
			appendStringInfo(&out, "%s%s %s", k ? ", " : "", TextDatumGetCString(names[k]),
							 k < nt ? TextDatumGetCString(types[k]) : "");
		appendStringInfo(&out, ") returns %s%s%s%s%s\n", SPI_getvalue(tup, desc, 4),
						 unit ? ", unit " : "", unit ? unit : "",
						 description ? " -- " : "", description ? description : "");
		if (SPI_getvalue(tup, desc, 7))
			appendStringInfo(&out, "  or natively in SQL: %s\n", SPI_getvalue(tup, desc, 7));
	}
	result = MemoryContextStrdup(caller, out.data);
	SPI_finish();
	return result;
}

AskContext *
duet_context_build(const char *question)
{
	AskContext *ctx = palloc0(sizeof(AskContext));
	char	   *metrics;
	char		digest[33];

	if (!catalog_valid || catalog_role != GetUserId())
		load_catalog();
	ctx->schema_text = render_schema(question, &ctx->tables_sent);
	metrics = render_metrics();
	if (metrics[0] != '\0')
	{
		char	   *both = psprintf("%s%s", catalog_fingerprint, metrics);
		const char *errstr = NULL;

		ctx->schema_text = psprintf("%s%s", ctx->schema_text, metrics);
		if (!pg_md5_hash(both, strlen(both), digest, &errstr))
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		ctx->fingerprint = pstrdup(digest);
	}
	else
		ctx->fingerprint = pstrdup(catalog_fingerprint);
	ctx->tables_visible = catalog_ntables;
	return ctx;
}

const char *
duet_context_system_prompt(void)
{
	return "You translate a question about a PostgreSQL 15 database into exactly one read-only SQL query.\n"
		"Rules:\n"
		"- Answer with the SQL only: no explanation, no markdown, no trailing semicolon.\n"
		"- One SELECT statement (WITH is allowed); never modify data, never call functions that read "
		"files, settings or sequences.\n"
		"- Use only the tables and columns listed below, schema-qualified as shown.\n"
		"- Rows are already limited to the user's tenant; do not filter by tenant unless asked.\n"
		"- If the question cannot be answered from this schema, answer: SELECT 'cannot answer' AS error\n";
}
