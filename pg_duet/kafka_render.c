/*
 * kafka_render.c — one Kafka message as one line of COPY input (text format for json/jsonb/text,
 * csv for csv), in named steps:
 *
 *   1. check_message      what any message must be: not a tombstone (unless upsert mode deletes
 *                         its key), UTF-8 value and key
 *   2. parse_json_fields  json: the top-level keys' values, by PostgreSQL's JSON parser
 *   3. render_csv_fields  csv: the message's own fields, split by COPY's rules and quoted again
 *   4. column_value       each remaining column's value: a json field, the whole value, or
 *                         metadata (topic, partition, offset, timestamp, key, headers)
 *   5. append_value       the value escaped (text) or quoted (csv), or the NULL marker; or, for
 *                         kafka_direct.c, the value as it is, NUL-terminated (put_value)
 *
 * Every message is framed on its own, so nothing a message holds (a line "\.", an open quote, a
 * line break) reaches past its own line of the COPY stream. A message that fails a step is
 * returned as its dead-letter error and leaves the buffer as it was.
 */
#include "postgres.h"

#include <ctype.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "kafka_ingest_int.h"

/* ---- step 1: what every message must be ---- */

static const char *
check_message(DuetKafkaTarget *t, Layout *l, rd_kafka_message_t *m, char **detail)
{
	/*
	 * A tombstone (a key with no value) is not an empty message: it says "delete this key". In
	 * upsert mode with key columns from the key it does; otherwise it is a dead letter.
	 */
	if (m->payload == NULL && !l->tombstone_ok)
	{
		*detail = pstrdup(t->nkeys == 0 ?
						  "A message with no value deletes its key in a compacted topic; this consumer only inserts rows." :
						  "A tombstone deletes its key's row only when the key columns come from the message key (key_source => 'key').");
		return "message is a tombstone (null value)";
	}
	if (m->payload && !pg_verifymbstr((char *) m->payload, (int) m->len, true))
		return "message is not valid UTF-8";
	if (m->key && !pg_verifymbstr(m->key, m->key_len, true))
		return "message key is not valid UTF-8";
	return NULL;
}

/* ---- step 2: json fields ---- */

/* json format: top-level key values of one message, gathered by PostgreSQL's JSON parser. */
typedef struct JsonFields
{
	JsonLexContext *lex;
	Layout	   *layout;
	ColKind		kind;			/* the columns gathered: COL_FIELD (value) or COL_KEYFIELD (key) */
	FieldValue *vals;			/* per column */
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

/*
 * The name of the field whose value starts at the current token. With escapes de-coded (the
 * message holds a backslash) the parser passes it as fname; without, it is the raw lexeme before
 * the ':' — which, in a message without any backslash, cannot hold a quote.
 */
static bool
jf_field_name(JsonFields *jf, const char *fname, const char **name, int *len)
{
	const char *p;
	const char *end;

	if (fname)
	{
		*name = fname;
		*len = strlen(fname);
		return true;
	}
	p = jf->lex->prev_token_terminator - 1;	/* the ':' */
	while (p > jf->lex->input && isspace((unsigned char) p[-1]))
		p--;
	end = p - 1;				/* the closing quote */
	if (end <= jf->lex->input || *end != '"')
		return false;
	p = end - 1;
	while (p >= jf->lex->input && *p != '"')
		p--;
	*name = p + 1;
	*len = end - (p + 1);
	return true;
}

static void
jf_field_start(void *state, char *fname, bool isnull)
{
	JsonFields *jf = state;
	const char *name;
	int			len;

	if (jf->depth != 1)
		return;
	jf->cur = -1;
	if (!jf_field_name(jf, fname, &name, &len))
		return;
	jf->cur = duet_kafka_column_of(jf->layout, jf->kind, name, len, 0);
	if (jf->cur >= 0)
	{
		jf->start = jf->lex->token_start;
		jf->got_scalar = false;
		jf->vals[jf->cur].v = NULL;
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
	{
		jf->vals[jf->cur].v = jf->start;
		jf->vals[jf->cur].len = jf->lex->prev_token_terminator - jf->start;
	}
	jf->cur = -1;
}

static void
jf_scalar(void *state, char *token, JsonTokenType tokentype)
{
	JsonFields *jf = state;

	if (jf->depth != 1 || jf->cur < 0 || jf->got_scalar)
		return;
	jf->got_scalar = true;
	if (tokentype == JSON_TOKEN_NULL)
		jf->vals[jf->cur].v = NULL;
	else if (tokentype == JSON_TOKEN_STRING && token == NULL)
	{
		/* Not de-escaped (there is nothing to de-escape): the lexeme between its quotes. */
		jf->vals[jf->cur].v = jf->start + 1;
		jf->vals[jf->cur].len = jf->lex->prev_token_terminator - jf->start - 2;
	}
	else
	{
		jf->vals[jf->cur].v = token;
		jf->vals[jf->cur].len = strlen(token);
	}
}

/*
 * json: parses the message and gathers the values of the layout's keys into *vals (one per column,
 * NULL for SQL NULL or an absent key). The message must be valid JSON and an object.
 *
 * A flat object without a backslash is read by kafka_json_flat.c in one pass; anything else by
 * PostgreSQL's parser. Its lexer copies every string character by character when it de-escapes;
 * a message without a backslash has nothing to de-escape, so it is lexed without (its strings
 * are their lexemes).
 */
static const char *
parse_json_fields(Layout *l, ColKind kind, char *payload, int len, FieldValue **vals, char **detail)
{
	JsonSemAction sem = {0};
	JsonFields	jf = {0};
	JsonParseErrorType err;
	int			i = 0;
	bool		escapes = memchr(payload, '\\', len) != NULL;

	jf.vals = *vals = palloc0(sizeof(FieldValue) * l->ncols);
	if (!escapes && duet_kafka_json_flat(l, kind, payload, len, jf.vals))
		return NULL;
	memset(jf.vals, 0, sizeof(FieldValue) * l->ncols);
	jf.lex = makeJsonLexContextCstringLen(payload, len, GetDatabaseEncoding(), escapes);
	jf.layout = l;
	jf.kind = kind;
	jf.cur = -1;
	sem.semstate = &jf;
	sem.object_start = jf_object_start;
	sem.object_end = jf_object_end;
	sem.array_start = jf_object_start;
	sem.array_end = jf_object_end;
	sem.object_field_start = jf_field_start;
	sem.object_field_end = jf_field_end;
	sem.scalar = jf_scalar;
	err = pg_parse_json(jf.lex, &sem);
	if (err != JSON_SUCCESS)
	{
		*detail = json_errdetail(err, jf.lex);
		return "message is not valid JSON";
	}
	while (i < len && isspace((unsigned char) payload[i]))
		i++;
	if (i >= len || payload[i] != '{')
		return "message is not a JSON object";
	return NULL;
}

/*
 * Upsert with key_source 'key': the key columns' values from the message key: the whole key for
 * a single key column when the key is not a JSON object, else the key's fields.
 */
static const char *
parse_key_fields(Layout *l, rd_kafka_message_t *m, FieldValue **keyvals, char **detail)
{
	const char *k = m->key;
	size_t		i = 0;

	if (k == NULL)
	{
		*detail = pstrdup("In upsert mode with key_source => 'key' the key columns come from the message key.");
		return "message has no key";
	}
	while (i < m->key_len && isspace((unsigned char) k[i]))
		i++;
	if (l->nkeyfields == 1 && (i >= m->key_len || k[i] != '{'))
	{
		*keyvals = palloc0(sizeof(FieldValue) * l->ncols);
		for (int c = 0; c < l->ncols; c++)
			if (l->cols[c].kind == COL_KEYFIELD)
				(*keyvals)[c] = (FieldValue) {k, (int) m->key_len};
		return NULL;
	}
	if (parse_json_fields(l, COL_KEYFIELD, (char *) k, (int) m->key_len, keyvals, detail) != NULL)
		return "message key is not a JSON object";
	for (int c = 0; c < l->ncols; c++)
		if (l->cols[c].kind == COL_KEYFIELD && (*keyvals)[c].v == NULL)
		{
			*detail = psprintf("The key column \"%s\" is the key's field of that name.", l->cols[c].attname);
			return psprintf("message key has no field \"%s\"", l->cols[c].attname);
		}
	return NULL;
}

/* ---- step 3: csv fields ---- */

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

/* ---- step 4: each column's value ---- */

/* _timestamp: the message's timestamp as timestamptz text, or NULL when it has none. */
const char	duet_kafka_replayed_marker = 'R';

static const char *headers_json(rd_kafka_message_t *m, const char **v, int *vlen);

static const char *
timestamp_text(rd_kafka_message_t *m)
{
	rd_kafka_timestamp_type_t tstype = RD_KAFKA_TIMESTAMP_CREATE_TIME;
	int64		ms;
	TimestampTz ts;

	ms = DUET_KAFKA_IS_REPLAYED(m) ? ((DuetKafkaReplayed *) m)->timestamp_ms :
		rd_kafka_message_timestamp(m, &tstype);
	if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ms < 0)
		return NULL;
	ts = time_t_to_timestamptz((pg_time_t) (ms / 1000)) + (ms % 1000) * 1000;
	return timestamptz_to_str(ts);
}

/*
 * _headers: the message's headers as a JSON object ({"name": "value"}, a header without a value
 * null), *v NULL when it has none; an error when a name or value is not UTF-8.
 */
const char *
duet_kafka_headers_json(rd_kafka_message_t *m, char **json)
{
	const char *v = NULL;
	int			vlen;
	const char *err = headers_json(m, &v, &vlen);

	*json = (char *) v;
	return err;
}

static const char *
headers_json(rd_kafka_message_t *m, const char **v, int *vlen)
{
	rd_kafka_headers_t *hdrs = NULL;
	StringInfoData js;
	const char *hname;
	const void *hval;
	size_t		hlen;

	if (DUET_KAFKA_IS_REPLAYED(m))
	{
		DuetKafkaReplayed *r = (DuetKafkaReplayed *) m;

		if (r->headers_invalid)
			return "message header is not valid UTF-8";
		*v = r->headers;
		*vlen = -1;
		return NULL;
	}
	if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || hdrs == NULL)
		return NULL;
	initStringInfo(&js);
	appendStringInfoChar(&js, '{');
	for (size_t h = 0; rd_kafka_header_get_all(hdrs, h, &hname, &hval, &hlen) == RD_KAFKA_RESP_ERR_NO_ERROR; h++)
	{
		if (!pg_verifymbstr(hname, strlen(hname), true) ||
			(hval && !pg_verifymbstr(hval, hlen, true)))
			return "message header is not valid UTF-8";
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
	*v = js.data;
	*vlen = js.len;
	return NULL;
}

/*
 * The value of column c for message m: *v (NULL for SQL NULL) and *vlen (-1: NUL-terminated).
 * field is the column's json field (step 2), num scratch space for numbers. Returns an error for
 * a message that cannot fill the column.
 */
static const char *
column_value(DuetKafkaTarget *t, const Col *c, rd_kafka_message_t *m, const FieldValue *field,
			 char *num, size_t numsize, const char **v, int *vlen)
{
	*v = NULL;
	*vlen = -1;
	switch (c->kind)
	{
		case COL_FIELD:
		case COL_KEYFIELD:
			*v = field->v;
			*vlen = field->len;
			break;
		case COL_VALUE:
			*v = (char *) m->payload;
			*vlen = (int) m->len;
			break;
		case COL_TOPIC:
			*v = t->topic;
			break;
		case COL_PARTITION:
			snprintf(num, numsize, "%d", (int) m->partition);
			*v = num;
			break;
		case COL_OFFSET:
			snprintf(num, numsize, INT64_FORMAT, (int64) m->offset);
			*v = num;
			break;
		case COL_TIMESTAMP:
			*v = timestamp_text(m);
			break;
		case COL_KEY:
			*v = m->key;
			*vlen = m->key ? (int) m->key_len : 0;
			break;
		case COL_HEADERS:
			return headers_json(m, v, vlen);
		case COL_SEQ:
		case COL_DELETE:
			break;				/* duet_kafka_render_message writes them */
	}
	return NULL;
}

/* ---- step 5: one value, framed ---- */

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

/* Appends one column's value: escaped for text, quoted for csv; v NULL is SQL NULL. */
static void
append_value(StringInfo buf, bool csv, const char *v, int vlen)
{
	if (v == NULL)
	{
		if (!csv)
			appendStringInfoString(buf, "\\N");
		return;
	}
	if (vlen < 0)
		vlen = strlen(v);
	if (csv)
		append_csv_quoted(buf, v, vlen);
	else
		append_text_escaped(buf, v, vlen);
}

/*
 * One column's value in the batch: as COPY input (append_value), or, with pos, as it is and
 * NUL-terminated, *pos its place in buf (-1 for NULL).
 */
static void
put_value(StringInfo buf, bool csv, int *pos, const char *v, int vlen)
{
	if (pos == NULL)
	{
		append_value(buf, csv, v, vlen);
		return;
	}
	if (v == NULL)
	{
		*pos = -1;
		return;
	}
	if (vlen < 0)
		vlen = strlen(v);
	*pos = buf->len;
	appendBinaryStringInfo(buf, v, vlen);
	appendStringInfoChar(buf, '\0');
}

/*
 * The start of the COPY text line of a row in values form, at least maxlen bytes of it where the
 * line is longer (kafka_direct.c words its errors with it; a value may be huge).
 */
void
duet_kafka_render_copy_line(StringInfo buf, const Layout *l, const char *data, const int *pos,
							int maxlen)
{
	for (int i = 0; i < l->ncols && buf->len < maxlen; i++)
	{
		const char *v = pos[i] < 0 ? NULL : data + pos[i];

		if (i > 0)
			appendStringInfoChar(buf, '\t');
		append_value(buf, false, v, v ? (int) strnlen(v, maxlen) : 0);
	}
}

/* ---- the steps together ---- */

const char *
duet_kafka_render_message(DuetKafkaTarget *t, Layout *l, rd_kafka_message_t *m, int seq,
						  StringInfo buf, int *pos, char **detail)
{
	char	   *payload = (char *) m->payload;
	int			len = (int) m->len;
	bool		csv = (t->format == DUET_FORMAT_CSV);
	bool		tombstone = (payload == NULL);
	FieldValue *vals = NULL;
	FieldValue *keyvals = NULL;
	const FieldValue none = {NULL, 0};
	int			start_len = buf->len;
	int			first = 0;
	const char *err;

	if ((err = check_message(t, l, m, detail)) != NULL)
		return err;
	if (l->nkeyfields > 0 && (err = parse_key_fields(l, m, &keyvals, detail)) != NULL)
		return err;
	if (t->format == DUET_FORMAT_JSON && !tombstone &&
		(err = parse_json_fields(l, COL_FIELD, payload, len, &vals, detail)) != NULL)
		return err;
	if (csv)
	{
		/* The message's own fields (a tombstone's all NULL), then metadata fields. */
		if (tombstone)
			for (int i = 1; i < l->ncsv; i++)
				appendStringInfoChar(buf, ',');
		else if ((err = render_csv_fields(payload, len, l->ncsv, buf, detail)) != NULL)
			return err;
		first = l->ncsv;
	}
	for (int i = first; i < l->ncols; i++)
	{
		char		num[64];
		const char *v;
		int			vlen;
		ColKind		kind = l->cols[i].kind;
		int		   *at = pos ? &pos[i] : NULL;

		if (i > 0 && pos == NULL)
			appendStringInfoChar(buf, csv ? ',' : '\t');
		if (kind == COL_SEQ)
		{
			snprintf(num, sizeof(num), "%d", seq);
			put_value(buf, csv, at, num, -1);
			continue;
		}
		if (kind == COL_DELETE)
		{
			put_value(buf, csv, at, tombstone ? "t" : "f", 1);
			continue;
		}
		if (tombstone && (kind == COL_FIELD || kind == COL_VALUE))
		{
			put_value(buf, csv, at, NULL, 0);
			continue;
		}
		err = column_value(t, &l->cols[i], m, kind == COL_KEYFIELD ? &keyvals[i] : vals ? &vals[i] : &none,
						   num, sizeof(num), &v, &vlen);
		if (err != NULL)
		{
			buf->len = start_len;
			buf->data[buf->len] = '\0';
			return err;
		}
		put_value(buf, csv, at, v, vlen);
	}
	if (pos == NULL)
		appendStringInfoChar(buf, '\n');
	return NULL;
}
