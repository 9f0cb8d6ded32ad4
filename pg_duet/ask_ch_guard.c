/*
 * ask_ch_guard.c — the ClickHouse guard's first filter: a tokenizer over the model's SQL.
 *
 * ClickHouse's own analyzer decides in the end (ask_clickhouse.c sends DESCRIBE TABLE (<sql>) with
 * readonly=1: 18.16 has no EXPLAIN AST/SYNTAX, and DESCRIBE of a subquery parses and analyzes it
 * without reading a row; the parenthesis admits one SELECT, nothing else parses there). Before
 * anything reaches the server this filter refuses, on tokens (string literals, quoted identifiers
 * and comments understood, so nothing hides in them and nothing in them is mistaken for code):
 *
 *   - anything but one SELECT / WITH … SELECT (a ';' anywhere, INSERT, ALTER, DROP, CREATE, ATTACH,
 *     DETACH, RENAME, TRUNCATE, OPTIMIZE, KILL, GRANT, SYSTEM …, SET, USE);
 *   - SETTINGS and FORMAT clauses and INTO OUTFILE: the settings and the output are ours;
 *   - table functions: any name followed by '(' after FROM / JOIN, and the ones that reach outside
 *     or generate data (url, file, remote, mysql, s3, hdfs, jdbc, odbc, numbers, …) anywhere;
 *   - system.* but system.tables, system.columns and system.databases;
 *   - a database of the server the tenant is not given (qualified names, and unqualified tables,
 *     which are the server's database); with a table list, any other table;
 *   - cross joins (CROSS JOIN, or a comma between FROM items): the unbounded product.
 */
#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/builtins.h"

#include "ask.h"

typedef enum TokKind
{
	TK_IDENT,					/* bare identifier or keyword */
	TK_QIDENT,					/* "quoted" or `quoted` identifier */
	TK_STRING,
	TK_NUMBER,
	TK_PUNCT,
	TK_END
} TokKind;

typedef struct Tok
{
	TokKind		kind;
	char	   *text;			/* identifiers unquoted; punctuation as is */
} Tok;

static const char *const forbidden_words[] = {
	"insert", "alter", "drop", "create", "attach", "detach", "rename", "truncate", "optimize",
	"kill", "grant", "revoke", "set", "settings", "use", "format", "outfile", "into", "exchange",
	"delete", "update", "check", "watch", "move", "backup", "restore", "undrop", NULL
};

/* Table functions, refused wherever they appear followed by '('. */
static const char *const table_functions[] = {
	"url", "urlcluster", "file", "filecluster", "remote", "remotesecure", "cluster",
	"clusterallreplicas", "mysql", "postgresql", "sqlite", "mongodb", "redis", "s3", "s3cluster",
	"gcs", "cosn", "oss", "hdfs", "hdfscluster", "hive", "iceberg", "deltalake", "hudi", "jdbc",
	"odbc", "input", "executable", "azureblobstorage", "merge", "numbers", "numbers_mt", "zeros",
	"zeros_mt", "generaterandom", "values", "view", "viewifpermitted", "dictionary", "null",
	"loop", "format", "fuzzjson", "meilisearch", NULL
};

static const char *const system_allowed[] = {"tables", "columns", "databases", NULL};

/* Keywords that end a FROM list (a comma after them is not a cross join). */
static const char *const clause_words[] = {
	"where", "prewhere", "group", "order", "limit", "having", "union", "join", "array", "sample",
	"final", "on", "using", "left", "right", "inner", "full", "any", "all", "global", "asof",
	"semi", "anti", "paste", "window", "qualify", "offset", NULL
};

static bool
in_list(const char *const *list, const char *word)
{
	for (; *list; list++)
		if (pg_strcasecmp(*list, word) == 0)
			return true;
	return false;
}

static bool
in_names(List *names, const char *word)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp((const char *) lfirst(lc), word) == 0)
			return true;
	return false;
}

/* Splits sql into tokens; NULL with *error set on an unterminated literal or comment. */
static List *
tokenize(const char *sql, char **error)
{
	List	   *toks = NIL;
	const char *p = sql;

	while (*p)
	{
		Tok		   *t;

		if (isspace((unsigned char) *p))
		{
			p++;
			continue;
		}
		if (p[0] == '-' && p[1] == '-')
		{
			while (*p && *p != '\n')
				p++;
			continue;
		}
		if (p[0] == '#' || (p[0] == '/' && p[1] == '/'))
		{
			/* Not comments everywhere: refused rather than guessed at. */
			*error = pstrdup("\"#\" and \"//\" are not allowed");
			return NULL;
		}
		if (p[0] == '/' && p[1] == '*')
		{
			const char *end = strstr(p + 2, "*/");

			if (end == NULL)
			{
				*error = pstrdup("unterminated comment");
				return NULL;
			}
			p = end + 2;
			continue;
		}
		t = palloc0(sizeof(Tok));
		if (*p == '\'' || *p == '"' || *p == '`')
		{
			char		q = *p++;
			StringInfoData v;

			initStringInfo(&v);
			for (;;)
			{
				if (*p == '\0')
				{
					*error = pstrdup("unterminated quoted text");
					return NULL;
				}
				if (*p == '\\' && p[1])
				{
					appendStringInfoChar(&v, p[1]);
					p += 2;
					continue;
				}
				if (*p == q && p[1] == q)
				{
					appendStringInfoChar(&v, q);
					p += 2;
					continue;
				}
				if (*p == q)
				{
					p++;
					break;
				}
				appendStringInfoChar(&v, *p++);
			}
			t->kind = q == '\'' ? TK_STRING : TK_QIDENT;
			t->text = v.data;
		}
		else if (isalpha((unsigned char) *p) || *p == '_' || IS_HIGHBIT_SET(*p))
		{
			const char *s = p;

			while (isalnum((unsigned char) *p) || *p == '_' || IS_HIGHBIT_SET(*p))
				p++;
			t->kind = TK_IDENT;
			t->text = pnstrdup(s, p - s);
		}
		else if (isdigit((unsigned char) *p))
		{
			const char *s = p;

			while (isalnum((unsigned char) *p) || *p == '.' ||
				   ((*p == '+' || *p == '-') && (p[-1] == 'e' || p[-1] == 'E')))
				p++;
			t->kind = TK_NUMBER;
			t->text = pnstrdup(s, p - s);
		}
		else
		{
			t->kind = TK_PUNCT;
			t->text = pnstrdup(p, 1);
			p++;
		}
		toks = lappend(toks, t);
	}
	{
		Tok		   *end = palloc0(sizeof(Tok));

		end->kind = TK_END;
		end->text = "";
		toks = lappend(toks, end);
	}
	return toks;
}

static bool
is_word(const Tok *t, const char *w)
{
	return t->kind == TK_IDENT && pg_strcasecmp(t->text, w) == 0;
}

static bool
is_punct(const Tok *t, const char *c)
{
	return t->kind == TK_PUNCT && strcmp(t->text, c) == 0;
}

static bool
is_name(const Tok *t)
{
	return t->kind == TK_IDENT || t->kind == TK_QIDENT;
}

#define MAX_DEPTH 64

char *
duet_ch_token_check(const char *sql, List *allowed_dbs, List *known_dbs, List *allowed_tables,
					const char *default_db)
{
	char	   *error = NULL;
	List	   *toks = tokenize(sql, &error);
	int			n;
	int			depth = 0;
	bool		in_from[MAX_DEPTH] = {false};
	bool		expect_table[MAX_DEPTH] = {false};

	if (toks == NULL)
		return error;
	n = list_length(toks) - 1;
	if (n == 0)
		return pstrdup("the query is empty");
	{
		Tok		   *first = list_nth(toks, 0);

		if (!is_word(first, "select") && !is_word(first, "with") && !is_punct(first, "("))
			return psprintf("only SELECT may run, found %s", first->text);
	}
	for (int i = 0; i < n; i++)
	{
		Tok		   *t = list_nth(toks, i);
		Tok		   *next = list_nth(toks, i + 1);
		Tok		   *prev = i > 0 ? list_nth(toks, i - 1) : NULL;

		if (t->kind == TK_PUNCT)
		{
			if (is_punct(t, ";"))
				return pstrdup("only one statement may run (\";\" found)");
			if (is_punct(t, "("))
			{
				if (++depth >= MAX_DEPTH)
					return pstrdup("the query nests too deeply");
				in_from[depth] = expect_table[depth] = false;
			}
			else if (is_punct(t, ")"))
			{
				if (depth > 0)
					depth--;
				expect_table[depth] = false;
			}
			else if (is_punct(t, ",") && in_from[depth])
				return pstrdup("cross joins are not allowed (a comma between FROM items)");
			continue;
		}
		if (t->kind != TK_IDENT && t->kind != TK_QIDENT)
			continue;

		if (t->kind == TK_IDENT)
		{
			/* A keyword only when not part of a qualified name (db.set, t.format are names). */
			bool		qualified = (prev && is_punct(prev, ".")) || is_punct(next, ".");

			if (!qualified && in_list(forbidden_words, t->text))
				return psprintf("%s is not allowed", t->text);
			if (!qualified && is_word(t, "system"))
				return pstrdup("SYSTEM statements are not allowed");
			if (is_word(t, "cross") && is_word(next, "join"))
				return pstrdup("cross joins are not allowed");
			if (is_punct(next, "(") && !qualified && in_list(table_functions, t->text))
				return psprintf("table function %s is not allowed", t->text);
			if (is_word(t, "from") || is_word(t, "join"))
			{
				expect_table[depth] = true;
				in_from[depth] = is_word(t, "from");
				continue;
			}
			if (is_word(t, "in") && is_name(next) && !is_punct(list_nth(toks, i + 2), "("))
			{
				expect_table[depth] = true;
				continue;
			}
			if (in_list(clause_words, t->text))
				in_from[depth] = false;
		}

		/* A name: a table reference where one is expected; else maybe db.table in an expression. */
		{
			bool		dotted = is_punct(next, ".") && is_name(list_nth(toks, i + 2));
			const char *db = dotted ? t->text : NULL;
			const char *table = dotted ? ((Tok *) list_nth(toks, i + 2))->text : t->text;
			Tok		   *after = list_nth(toks, dotted ? i + 3 : i + 1);

			if (expect_table[depth])
			{
				expect_table[depth] = false;
				if (is_punct(after, "("))
					return psprintf("table function %s is not allowed", table);
				if (db == NULL)
					db = default_db;
			}
			else if (!dotted)
				continue;

			if (pg_strcasecmp(db, "system") == 0)
			{
				if (strcmp(db, "system") != 0 || !in_list(system_allowed, table))
					return psprintf("system.%s is not allowed (only system.tables, system.columns and system.databases)", table);
			}
			else if (in_names(known_dbs, db) || in_names(allowed_dbs, db) || db == default_db)
			{
				if (!in_names(allowed_dbs, db))
					return psprintf("database %s is not allowed for this tenant", db);
				if (allowed_tables != NIL &&
					!in_names(allowed_tables, psprintf("%s.%s", db, table)))
					return psprintf("table %s.%s is not allowed for this tenant", db, table);
			}
			if (dotted)
				i += 2;
		}
	}
	return NULL;
}
