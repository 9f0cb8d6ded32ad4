/*
 * kafka_ingest.c — one batch of Kafka messages into the target table, through COPY.
 *
 * Messages are rendered as COPY input (text format for json/jsonb/text, csv for csv) and loaded
 * with BeginCopyFrom/CopyFrom, so the target's defaults, constraints, indexes, row and statement
 * triggers (with transition tables) and partition routing all apply, with COPY's multi-insert speed.
 * Every message is framed on its own: json/jsonb/text values are escaped, and a csv message is
 * split into fields here and written again with every field quoted, so nothing a message holds
 * (a line "\.", an open quote, a line break) reaches past its own line of the COPY stream.
 *
 * No message loses its batch: a message that cannot be rendered (invalid UTF-8, malformed JSON)
 * is set aside before COPY; a row that COPY rejects (type conversion, constraint, trigger) is
 * found from COPY's error context line, set aside, and the rows before it are loaded again —
 * each attempt in a subtransaction. An error that names no line (a statement trigger) is narrowed
 * by bisection. Deferred constraints (DEFERRABLE INITIALLY DEFERRED unique keys, foreign keys,
 * constraint triggers) are made immediate for the COPY: checked at its end, inside its
 * subtransaction, their violations are bisected to the offending messages like any other bad row.
 * Errors that are not about the data (permissions, a dropped table, shutdown) are re-thrown: the
 * batch is retried later rather than sent to the dead letters.
 *
 * Runs inside the caller's transaction; COPY itself runs as the consumer's owner, restricted.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "commands/trigger.h"
#include "common/jsonapi.h"
#include "executor/executor.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/rls.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "privileged.h"

typedef enum ColKind
{
	COL_FIELD,					/* json: the value of a key */
	COL_VALUE,					/* jsonb/text: the whole message */
	COL_TOPIC,
	COL_PARTITION,
	COL_OFFSET,
	COL_TIMESTAMP,
	COL_KEY,
	COL_HEADERS
} ColKind;

typedef struct Col
{
	char	   *attname;
	AttrNumber	attnum;
	ColKind		kind;
	char	   *jsonkey;		/* COL_FIELD */
} Col;

/* The COPY column list of this batch, derived from the target's columns and the format. */
typedef struct Layout
{
	int			ncols;
	Col		   *cols;
	int			ncsv;			/* csv: leading columns filled by the message's own fields */
} Layout;

static const struct
{
	const char *name;
	ColKind		kind;
}			meta_columns[] = {
	{"_topic", COL_TOPIC}, {"_partition", COL_PARTITION}, {"_offset", COL_OFFSET},
	{"_timestamp", COL_TIMESTAMP}, {"_key", COL_KEY}, {"_headers", COL_HEADERS},
};

DuetKafkaFormat
duet_kafka_format_parse(const char *name)
{
	if (strcmp(name, "json") == 0)
		return DUET_FORMAT_JSON;
	if (strcmp(name, "jsonb") == 0)
		return DUET_FORMAT_JSONB;
	if (strcmp(name, "csv") == 0)
		return DUET_FORMAT_CSV;
	if (strcmp(name, "text") == 0)
		return DUET_FORMAT_TEXT;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown Kafka message format \"%s\"", name),
			 errhint("Valid formats are json, jsonb, csv and text.")));
	return DUET_FORMAT_JSON;	/* keep compiler quiet */
}

static int
meta_kind(const char *attname)
{
	for (int i = 0; i < lengthof(meta_columns); i++)
		if (strcmp(attname, meta_columns[i].name) == 0)
			return meta_columns[i].kind;
	return -1;
}

/* column_map ->> key, or NULL. */
static char *
map_get(Jsonb *map, const char *key)
{
	JsonbValue	k,
			   *v;

	if (map == NULL || !JB_ROOT_IS_OBJECT(map))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&map->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* json: the key mapped onto column attname by column_map ({"key": "column"}), or NULL. */
static char *
map_key_for_column(Jsonb *map, const char *attname)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (map == NULL || !JB_ROOT_IS_OBJECT(map))
		return NULL;
	it = JsonbIteratorInit(&map->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type == jbvString &&
				 strlen(attname) == v.val.string.len &&
				 strncmp(attname, v.val.string.val, v.val.string.len) == 0)
			return key;
	}
	return NULL;
}

static bool
is_plain_column(Form_pg_attribute att)
{
	return !att->attisdropped && att->attgenerated == '\0' && att->attnum > 0;
}

static Layout *
build_layout(DuetKafkaTarget *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Layout	   *l = palloc0(sizeof(Layout));
	char	   *value_col = NULL;
	List	   *csv_cols = NIL;

	l->cols = palloc0(sizeof(Col) * (desc->natts + 1));
	if (t->format == DUET_FORMAT_JSONB || t->format == DUET_FORMAT_TEXT)
		value_col = map_get(t->column_map, "value");
	if (t->format == DUET_FORMAT_CSV && t->column_map && JB_ROOT_IS_ARRAY(t->column_map))
	{
		JsonbIterator *it = JsonbIteratorInit(&t->column_map->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			if (tok == WJB_ELEM && v.type == jbvString)
				csv_cols = lappend(csv_cols, pnstrdup(v.val.string.val, v.val.string.len));
	}

	/* Data columns first (csv fields are positional), metadata after. */
	if (csv_cols != NIL)
	{
		ListCell   *lc;

		foreach(lc, csv_cols)
		{
			char	   *name = lfirst(lc);
			AttrNumber	attnum = attnameAttNum(rel, name, false);

			if (attnum <= 0 || !is_plain_column(TupleDescAttr(desc, attnum - 1)))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column_map names column \"%s\", which %s cannot fill", name,
								RelationGetRelationName(rel))));
			l->cols[l->ncols].attname = name;
			l->cols[l->ncols].attnum = attnum;
			l->cols[l->ncols++].kind = COL_FIELD;
		}
		l->ncsv = l->ncols;
	}
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		char	   *attname = pstrdup(NameStr(att->attname));
		bool		has_default = att->atthasdef || att->attidentity != '\0';
		Col		   *c = &l->cols[l->ncols];

		if (!is_plain_column(att) || meta_kind(attname) >= 0)
			continue;
		c->attname = attname;
		c->attnum = att->attnum;
		switch (t->format)
		{
			case DUET_FORMAT_JSON:
				c->jsonkey = map_key_for_column(t->column_map, attname);
				if (c->jsonkey == NULL && !has_default)
					c->jsonkey = attname;
				if (c->jsonkey == NULL)
					continue;
				c->kind = COL_FIELD;
				break;
			case DUET_FORMAT_JSONB:
			case DUET_FORMAT_TEXT:
				if (value_col ? strcmp(value_col, attname) != 0 : (has_default || l->ncols > 0))
					continue;
				c->kind = COL_VALUE;
				break;
			case DUET_FORMAT_CSV:
				if (csv_cols != NIL || has_default)
					continue;
				c->kind = COL_FIELD;
				l->ncsv++;
				break;
		}
		l->ncols++;
	}
	if (value_col && l->ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column_map names value column \"%s\", which %s cannot fill", value_col,
						RelationGetRelationName(rel))));
	if (l->ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("table %s has no column for the message", RelationGetRelationName(rel)),
				 errhint("Add a column without a default, or name one in column_map.")));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			kind = meta_kind(NameStr(att->attname));

		if (!is_plain_column(att) || kind < 0)
			continue;
		l->cols[l->ncols].attname = pstrdup(NameStr(att->attname));
		l->cols[l->ncols].attnum = att->attnum;
		l->cols[l->ncols++].kind = kind;
	}
	return l;
}

/* Checks, as the owner, that the target exists and can be filled; used by duet_kafka_consume. */
void
duet_kafka_target_check(DuetKafkaTarget *t)
{
	Relation	rel = table_open(t->relid, AccessShareLock);

	if ((rel->rd_rel->relkind != RELKIND_RELATION && rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE) ||
		IsSystemRelation(rel))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a user table", RelationGetRelationName(rel)),
				 errdetail("Kafka consumers write into ordinary or partitioned tables outside the system catalogs.")));
	(void) build_layout(t, rel);
	table_close(rel, AccessShareLock);
}

/* ---- rendering messages as COPY input ---- */

static void
append_text_escaped(StringInfo buf, const char *s, int len)
{
	const char *start = s;
	const char *end = s + len;

	enlargeStringInfo(buf, len + 8);
	for (; s < end; s++)
	{
		char		c = *s;
		const char *esc;

		switch (c)
		{
			case '\\':
				esc = "\\\\";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			default:
				continue;
		}
		appendBinaryStringInfo(buf, start, s - start);
		appendStringInfoString(buf, esc);
		start = s + 1;
	}
	appendBinaryStringInfo(buf, start, end - start);
}

static void
append_csv_quoted(StringInfo buf, const char *s, int len)
{
	appendStringInfoChar(buf, '"');
	for (int i = 0; i < len; i++)
	{
		if (s[i] == '"')
			appendStringInfoChar(buf, '"');
		appendStringInfoChar(buf, s[i]);
	}
	appendStringInfoChar(buf, '"');
}

/*
 * csv: splits one message into its fields by COPY's CSV rules (delimiter ',', quote and escape
 * '"'; an unquoted empty field is NULL) and appends them to buf, each non-null field quoted, so
 * the message is exactly one line of the COPY stream whatever it holds. One trailing line break
 * ends the row. Returns an error message (and *detail) for a message that is not one CSV row of
 * nfields fields; buf is then left as it was.
 */
static const char *
render_csv_fields(const char *p, int len, int nfields, StringInfo buf, char **detail)
{
	int			start_len = buf->len;
	int			count = 0;
	int			i = 0;

	if (len > 0 && p[len - 1] == '\n')
		len--;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	for (;;)
	{
		int			field_start = buf->len;
		bool		saw_quote = false;
		bool		in_quote = false;
		int			quote_at = -1;

		if (count > 0)
		{
			appendStringInfoChar(buf, ',');
			field_start = buf->len;
		}
		appendStringInfoChar(buf, '"');
		while (i < len)
		{
			char		ch = p[i];

			if (in_quote)
			{
				if (ch == '"' && i + 1 < len && p[i + 1] == '"')
				{
					appendStringInfoString(buf, "\"\"");
					i += 2;
					continue;
				}
				if (ch == '"')
					in_quote = false;
				else
					appendStringInfoChar(buf, ch);
				i++;
				continue;
			}
			if (ch == ',')
				break;
			if (ch == '"')
			{
				in_quote = saw_quote = true;
				quote_at = i;
				i++;
				continue;
			}
			if (ch == '\n' || ch == '\r')
			{
				buf->len = start_len;
				buf->data[buf->len] = '\0';
				*detail = psprintf("An unquoted line break at byte %d ends the first row. A message is one row; "
								   "quote a field that holds a line break.", i + 1);
				return "message holds more than one CSV row";
			}
			appendStringInfoChar(buf, ch);
			i++;
		}
		if (in_quote)
		{
			buf->len = start_len;
			buf->data[buf->len] = '\0';
			*detail = psprintf("The quoted field of field %d, opened at byte %d, is not closed.",
							   count + 1, quote_at + 1);
			return "message is not valid CSV: unterminated quoted field";
		}
		if (!saw_quote && buf->len == field_start + 1)
			buf->len = field_start;	/* unquoted and empty: NULL */
		else
			appendStringInfoChar(buf, '"');
		buf->data[buf->len] = '\0';
		count++;
		if (i < len)
		{
			i++;				/* the delimiter; a field (maybe empty) follows */
			continue;
		}
		break;
	}
	if (count != nfields)
	{
		buf->len = start_len;
		buf->data[buf->len] = '\0';
		*detail = psprintf("The target takes %d field%s per message.", nfields, nfields == 1 ? "" : "s");
		return psprintf("message has %d CSV field%s, %d expected", count, count == 1 ? "" : "s", nfields);
	}
	return NULL;
}

/* json format: top-level key values of one message, gathered by PostgreSQL's JSON parser. */
typedef struct JsonFields
{
	JsonLexContext *lex;
	Layout	   *layout;
	char	  **vals;			/* per column; NULL = SQL NULL */
	int			depth;
	int			cur;			/* column of the field being parsed, or -1 */
	char	   *start;
	bool		got_scalar;
} JsonFields;

/* Objects and arrays both nest: only depth 1 holds the message's own keys. */
static void
jf_object_start(void *state)
{
	((JsonFields *) state)->depth++;
}

static void
jf_object_end(void *state)
{
	((JsonFields *) state)->depth--;
}

static void
jf_field_start(void *state, char *fname, bool isnull)
{
	JsonFields *jf = state;

	if (jf->depth != 1)
		return;
	jf->cur = -1;
	for (int i = 0; i < jf->layout->ncols; i++)
		if (jf->layout->cols[i].kind == COL_FIELD && strcmp(jf->layout->cols[i].jsonkey, fname) == 0)
		{
			jf->cur = i;
			jf->start = jf->lex->token_start;
			jf->got_scalar = false;
			jf->vals[i] = NULL;
			break;
		}
}

static void
jf_field_end(void *state, char *fname, bool isnull)
{
	JsonFields *jf = state;

	if (jf->depth != 1 || jf->cur < 0)
		return;
	/* A nested object or array goes in as its JSON text (for json/jsonb/text columns). */
	if (!jf->got_scalar && !isnull)
		jf->vals[jf->cur] = pnstrdup(jf->start, jf->lex->prev_token_terminator - jf->start);
	jf->cur = -1;
}

static void
jf_scalar(void *state, char *token, JsonTokenType tokentype)
{
	JsonFields *jf = state;

	if (jf->depth != 1 || jf->cur < 0 || jf->got_scalar)
		return;
	jf->got_scalar = true;
	jf->vals[jf->cur] = (tokentype == JSON_TOKEN_NULL) ? NULL : token;
}

/* Renders one message as a COPY line; returns an error message instead when it cannot. */
static const char *
render_message(DuetKafkaTarget *t, Layout *l, rd_kafka_message_t *m, StringInfo buf,
			   char **detail)
{
	char	   *payload = (char *) m->payload;
	int			len = (int) m->len;
	bool		csv = (t->format == DUET_FORMAT_CSV);
	char	  **vals = NULL;
	int			start_len = buf->len;
	int			first = 0;

	/* A tombstone (a key with no value) is not an empty message: it says "delete this key". */
	if (payload == NULL)
	{
		*detail = pstrdup("A message with no value deletes its key in a compacted topic; this consumer only inserts rows.");
		return "message is a tombstone (null value)";
	}
	if (!pg_verifymbstr(payload, len, true))
		return "message is not valid UTF-8";
	if (m->key && !pg_verifymbstr(m->key, m->key_len, true))
		return "message key is not valid UTF-8";

	if (t->format == DUET_FORMAT_JSON)
	{
		JsonSemAction sem = {0};
		JsonFields	jf = {0};
		JsonParseErrorType err;

		jf.lex = makeJsonLexContextCstringLen(payload, len, GetDatabaseEncoding(), true);
		jf.layout = l;
		jf.vals = vals = palloc0(sizeof(char *) * l->ncols);
		jf.cur = -1;
		if (t->format == DUET_FORMAT_JSON)
		{
			sem.semstate = &jf;
			sem.object_start = jf_object_start;
			sem.object_end = jf_object_end;
			sem.array_start = jf_object_start;
			sem.array_end = jf_object_end;
			sem.object_field_start = jf_field_start;
			sem.object_field_end = jf_field_end;
			sem.scalar = jf_scalar;
		}
		err = pg_parse_json(jf.lex, &sem);
		if (err != JSON_SUCCESS)
		{
			*detail = json_errdetail(err, jf.lex);
			return "message is not valid JSON";
		}
		if (t->format == DUET_FORMAT_JSON)
		{
			int			i = 0;

			while (i < len && isspace((unsigned char) payload[i]))
				i++;
			if (i >= len || payload[i] != '{')
				return "message is not a JSON object";
		}
	}

	if (csv)
	{
		/* The message's own fields, then metadata fields. */
		const char *err = render_csv_fields(payload, len, l->ncsv, buf, detail);

		if (err)
			return err;
		first = l->ncsv;
	}
	for (int i = first; i < l->ncols; i++)
	{
		Col		   *c = &l->cols[i];
		char		num[64];
		const char *v = NULL;
		int			vlen = -1;

		if (i > 0)
			appendStringInfoChar(buf, csv ? ',' : '\t');
		switch (c->kind)
		{
			case COL_FIELD:
				v = vals ? vals[i] : NULL;
				break;
			case COL_VALUE:
				v = payload;
				vlen = len;
				break;
			case COL_TOPIC:
				v = t->topic;
				break;
			case COL_PARTITION:
				snprintf(num, sizeof(num), "%d", (int) m->partition);
				v = num;
				break;
			case COL_OFFSET:
				snprintf(num, sizeof(num), INT64_FORMAT, (int64) m->offset);
				v = num;
				break;
			case COL_TIMESTAMP:
				{
					rd_kafka_timestamp_type_t tstype;
					int64		ms = rd_kafka_message_timestamp(m, &tstype);

					if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ms >= 0)
					{
						TimestampTz ts = time_t_to_timestamptz((pg_time_t) (ms / 1000)) +
							(ms % 1000) * 1000;

						v = timestamptz_to_str(ts);
					}
					break;
				}
			case COL_KEY:
				v = m->key;
				vlen = m->key ? (int) m->key_len : 0;
				break;
			case COL_HEADERS:
				{
					rd_kafka_headers_t *hdrs = NULL;
					StringInfoData js;
					const char *hname;
					const void *hval;
					size_t		hlen;

					if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || hdrs == NULL)
						break;
					initStringInfo(&js);
					appendStringInfoChar(&js, '{');
					for (size_t h = 0; rd_kafka_header_get_all(hdrs, h, &hname, &hval, &hlen) == RD_KAFKA_RESP_ERR_NO_ERROR; h++)
					{
						if (!pg_verifymbstr(hname, strlen(hname), true) ||
							(hval && !pg_verifymbstr(hval, hlen, true)))
						{
							buf->len = start_len;
							buf->data[buf->len] = '\0';
							return "message header is not valid UTF-8";
						}
						if (h > 0)
							appendStringInfoChar(&js, ',');
						escape_json(&js, hname);
						appendStringInfoChar(&js, ':');
						if (hval)
							escape_json(&js, pnstrdup(hval, hlen));
						else
							appendStringInfoString(&js, "null");
					}
					appendStringInfoChar(&js, '}');
					v = js.data;
					vlen = js.len;
					break;
				}
		}
		if (v == NULL)
		{
			if (!csv)
				appendStringInfoString(buf, "\\N");
			continue;
		}
		if (vlen < 0)
			vlen = strlen(v);
		if (csv)
			append_csv_quoted(buf, v, vlen);
		else
			append_text_escaped(buf, v, vlen);
	}
	appendStringInfoChar(buf, '\n');
	return NULL;
}

/* ---- COPY with isolation of bad rows ---- */

/* COPY's data source: a slice of the rendered batch (the callback takes no argument). */
static const char *source_data;
static size_t source_pos;
static size_t source_end;

static int
source_read(void *outbuf, int minread, int maxread)
{
	size_t		n = Min((size_t) maxread, source_end - source_pos);

	memcpy(outbuf, source_data + source_pos, n);
	source_pos += n;
	return (int) n;
}

typedef struct Rendered
{
	StringInfoData data;
	int			n;				/* rendered messages */
	int		   *msgidx;			/* rendered → batch index */
	size_t	   *offset;			/* n + 1 byte offsets */
	int		   *lines;			/* n + 1 cumulative line counts */
} Rendered;

/* Errors about one row's data; anything else is re-thrown so the batch is retried later. */
static bool
is_data_error(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_DATA_EXCEPTION:
		case ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION:
		case ERRCODE_RAISE_EXCEPTION:
		case ERRCODE_WITH_CHECK_OPTION_VIOLATION:
		case ERRCODE_TRIGGERED_ACTION_EXCEPTION:
			return true;
		default:
			return sqlerrcode == ERRCODE_DATATYPE_MISMATCH ||
				sqlerrcode == ERRCODE_BAD_COPY_FILE_FORMAT;
	}
}

/* "COPY t, line N..." in the error context → N (1-based), or 0. */
static uint64
error_line(ErrorData *edata)
{
	const char *p;

	if (edata->context == NULL || (p = strstr(edata->context, "COPY ")) == NULL ||
		(p = strstr(p, ", line ")) == NULL)
		return 0;
	return strtoull(p + 7, NULL, 10);
}

typedef struct CopyRun
{
	DuetKafkaTarget *t;
	Layout	   *l;
	Rendered   *r;
	size_t		from;
	size_t		to;
	uint64		processed;		/* out */
} CopyRun;

/* COPY of rendered bytes [from, to) into the target, as the consumer's owner. */
static void
copy_as_owner(void *arg)
{
	CopyRun    *c = arg;
	Relation	rel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	List	   *attnames = NIL;
	List	   *options = NIL;
	CopyFromState cstate;

	rel = table_open(c->t->relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;
	for (int i = 0; i < c->l->ncols; i++)
	{
		attnames = lappend(attnames, makeString(c->l->cols[i].attname));
		nsitem->p_rte->insertedCols = bms_add_member(nsitem->p_rte->insertedCols,
													 c->l->cols[i].attnum - FirstLowInvalidHeapAttributeNumber);
	}
	ExecCheckRTPerms(pstate->p_rtable, true);
	if (check_enable_rls(c->t->relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("Kafka ingestion into \"%s\" is not supported with row-level security",
						RelationGetRelationName(rel))));
	if (c->t->format == DUET_FORMAT_CSV)
		options = list_make1(makeDefElem("format", (Node *) makeString("csv"), -1));

	/*
	 * SET CONSTRAINTS ALL IMMEDIATE: the checks of deferred constraints (unique, foreign key,
	 * constraint triggers) run at the end of this COPY, as the owner and inside this
	 * subtransaction, where a violation is a bad row like any other. Deferred past the restricted
	 * section they could not run at all ("cannot fire deferred trigger within security-restricted
	 * operation", which would fail the batch again and again), and at commit they could not be
	 * traced to a message.
	 */
	{
		ConstraintsSetStmt *stmt = makeNode(ConstraintsSetStmt);

		stmt->constraints = NIL;
		stmt->deferred = false;
		AfterTriggerSetState(stmt);
	}

	source_data = c->r->data.data;
	source_pos = c->from;
	source_end = c->to;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, source_read, attnames, options);
	c->processed = CopyFrom(cstate);
	EndCopyFrom(cstate);
	table_close(rel, NoLock);
	free_parsestate(pstate);
}

/* COPY rendered bytes [from, to) in a subtransaction; returns the error, or NULL. */
static ErrorData *
run_copy(DuetKafkaTarget *t, Layout *l, Rendered *r, size_t from, size_t to, uint64 *processed)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile err = NULL;
	CopyRun		c = {t, l, r, from, to, 0};

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		/*
		 * The target's defaults, constraints and triggers are the consumer owner's code: they
		 * run as that role, restricted like maintenance commands run as a table's owner.
		 */
		duet_run_privileged(t->owner, DUET_USER_SEARCH_PATH, copy_as_owner, &c);
		*processed = c.processed;

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return err;
}

/*
 * COPY rendered messages [s, e). On a data error returns false with *edata and *failed (the
 * rendered index COPY named, or -1); other errors are re-thrown.
 */
static bool
copy_slice(DuetKafkaTarget *t, Layout *l, Rendered *r, int s, int e, uint64 *processed,
		   ErrorData **edata, int *failed)
{
	ErrorData  *err = run_copy(t, l, r, r->offset[s], r->offset[e], processed);
	uint64		line;

	if (err == NULL)
		return true;
	if (!is_data_error(err->sqlerrcode))
		ReThrowError(err);
	*edata = err;
	*failed = -1;
	line = error_line(err);
	if (line > 0)
	{
		/* Line → the message it belongs to (csv messages may span lines). */
		int			lo = s,
					hi = e - 1;
		uint64		base = r->lines[s];

		while (lo < hi)
		{
			int			mid = (lo + hi) / 2;

			if (r->lines[mid + 1] - base < line)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (r->lines[lo] - base < line && line <= r->lines[lo + 1] - base)
			*failed = lo;
	}
	return false;
}

/*
 * A rejected row's detail: the error's own detail, then its context with COPY's column and value
 * ("COPY events, column cost: \"lots\""). COPY's line number is left out: it counts lines of this
 * batch's COPY input, not messages (the dead letter has the offset).
 */
static char *
copy_error_detail(ErrorData *edata)
{
	StringInfoData s;

	initStringInfo(&s);
	if (edata->detail)
		appendStringInfoString(&s, edata->detail);
	if (edata->context)
	{
		char	   *ctx = pstrdup(edata->context);
		char	   *line = ctx;

		while (line && *line)
		{
			char	   *next = strchr(line, '\n');
			char	   *at;

			if (next)
				*next++ = '\0';
			if (s.len > 0)
				appendStringInfoChar(&s, '\n');
			if (strncmp(line, "COPY ", 5) == 0 && (at = strstr(line, ", line ")) != NULL)
			{
				char	   *rest = at + 7;

				while (isdigit((unsigned char) *rest))
					rest++;
				appendBinaryStringInfo(&s, line, at - line);
				appendStringInfoString(&s, rest);
			}
			else
				appendStringInfoString(&s, line);
			line = next;
		}
	}
	return s.len > 0 ? s.data : NULL;
}

static DuetKafkaDeadLetter *
dead_letter(int msgidx, const char *error, const char *detail)
{
	DuetKafkaDeadLetter *dl = palloc(sizeof(DuetKafkaDeadLetter));

	dl->msgidx = msgidx;
	dl->error = pstrdup(error);
	dl->detail = detail ? pstrdup(detail) : NULL;
	return dl;
}

/*
 * Loads msgs[0..n) into the target; returns the rows loaded and appends the messages set aside to
 * *dead_letters. Must run in a transaction with an active snapshot.
 */
uint64
duet_kafka_ingest(DuetKafkaTarget *t, rd_kafka_message_t **msgs, int n, List **dead_letters)
{
	Relation	rel;
	Layout	   *l;
	Rendered	r;
	uint64		total = 0;
	int			s,
				e;

	rel = table_open(t->relid, AccessShareLock);
	l = build_layout(t, rel);
	table_close(rel, AccessShareLock);

	initStringInfo(&r.data);
	r.n = 0;
	r.msgidx = palloc(sizeof(int) * (n + 1));
	r.offset = palloc(sizeof(size_t) * (n + 1));
	r.lines = palloc(sizeof(int) * (n + 1));
	r.offset[0] = 0;
	r.lines[0] = 0;
	for (int i = 0; i < n; i++)
	{
		char	   *detail = NULL;
		int			before = r.data.len;
		const char *err = render_message(t, l, msgs[i], &r.data, &detail);

		if (err)
		{
			r.data.len = before;
			r.data.data[before] = '\0';
			*dead_letters = lappend(*dead_letters, dead_letter(i, err, detail));
			continue;
		}
		r.msgidx[r.n] = i;
		r.offset[r.n + 1] = r.data.len;
		r.lines[r.n + 1] = r.lines[r.n] + 1;
		if (t->format == DUET_FORMAT_CSV)
			for (int p = before; p < r.data.len - 1; p++)
				if (r.data.data[p] == '\n')
					r.lines[r.n + 1]++;
		r.n++;
	}

	/*
	 * Load [s, e); on a row error at k retry [s, k) then skip k; on an error with no row, halve the
	 * slice. Every message is either loaded once or set aside once.
	 */
	s = 0;
	e = r.n;
	while (s < r.n)
	{
		uint64		processed = 0;
		ErrorData  *edata = NULL;
		int			failed = -1;

		CHECK_FOR_INTERRUPTS();
		if (copy_slice(t, l, &r, s, e, &processed, &edata, &failed))
		{
			total += processed;
			s = e;
			e = r.n;
			continue;
		}
		if (failed < 0 && e - s > 1)
		{
			e = s + (e - s) / 2;
			continue;
		}
		if (failed < 0)
			failed = s;
		if (failed == s)
		{
			*dead_letters = lappend(*dead_letters,
									dead_letter(r.msgidx[s], edata->message, copy_error_detail(edata)));
			s++;
			e = r.n;
		}
		else
			e = failed;
		FreeErrorData(edata);
	}
	return total;
}
