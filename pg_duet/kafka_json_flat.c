/*
 * kafka_json_flat.c — the top-level values of a flat JSON object, in one pass over the message.
 *
 * Most Kafka JSON messages are one object of scalars without escapes. For those, walking the
 * bytes once is several times cheaper than PostgreSQL's JSON parser with callbacks (a fifth of a
 * pool worker's time in a profile of the ingest). The scan accepts only what that parser accepts
 * and gives the same values: a string is its bytes between the quotes, a number or true/false
 * its token, null SQL NULL, a repeated key its last value. Anything else — a nested object or
 * array, a backslash, a control character, a token it does not know, an error of any kind —
 * returns false and the caller parses the message with PostgreSQL's parser, which also words
 * the error. sql/kafka_json.sql checks that both give the same rows and dead letters.
 */
#include "postgres.h"

#include "kafka_ingest_int.h"

#define JSON_WS(c)	((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')
#define DIGIT(c)	((c) >= '0' && (c) <= '9')

static inline const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && JSON_WS(*p))
		p++;
	return p;
}

/* The closing quote of a string whose contents start at p; NULL for a control character or no end. */
static inline const char *
string_end(const char *p, const char *end)
{
	for (; p < end; p++)
	{
		if (*p == '"')
			return p;
		if ((unsigned char) *p < 0x20)
			return NULL;
	}
	return NULL;
}

/* The end of a JSON number starting at p (RFC 8259's grammar), or NULL. */
static const char *
number_end(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && DIGIT(*p))
			p++;
	else
		return NULL;
	if (p < end && *p == '.')
	{
		if (++p >= end || !DIGIT(*p))
			return NULL;
		while (p < end && DIGIT(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !DIGIT(*p))
			return NULL;
		while (p < end && DIGIT(*p))
			p++;
	}
	return p;
}

static inline bool
literal(const char *p, const char *end, const char *word, int len)
{
	return end - p >= len && memcmp(p, word, len) == 0;
}

/*
 * The layout's column of kind for the key [k, k + len), or -1. The search starts at column from:
 * the messages of a topic mostly hold their keys in one order, so the column after the previous
 * key's is usually the one.
 */
int
duet_kafka_column_of(const Layout *l, ColKind kind, const char *k, int len, int from)
{
	for (int n = 0; n < l->ncols; n++)
	{
		int			i = (from + n) % l->ncols;
		const Col  *c = &l->cols[i];

		if (c->kind == kind && c->jsonkeylen == len && memcmp(c->jsonkey, k, len) == 0)
			return i;
	}
	return -1;
}

/*
 * The values of the layout's keys of kind (COL_FIELD or COL_KEYFIELD) in message [p, p + len),
 * which holds no backslash, into vals (zeroed by the caller, one per column), pointing into the
 * message. False when the message is not a flat object this scan takes; vals may then hold some
 * values.
 */
bool
duet_kafka_json_flat(const Layout *l, ColKind kind, const char *p, int len, FieldValue *vals)
{
	const char *end = p + len;
	int			next_col = 0;

	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return false;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
		return skip_ws(p + 1, end) == end;
	for (;;)
	{
		const char *key;
		const char *q;
		const char *val;
		int			vlen;
		int			col;

		if (p >= end || *p != '"' || (q = string_end(p + 1, end)) == NULL)
			return false;
		key = p + 1;
		col = duet_kafka_column_of(l, kind, key, q - key, next_col);
		p = skip_ws(q + 1, end);
		if (p >= end || *p != ':')
			return false;
		p = skip_ws(p + 1, end);
		if (p >= end)
			return false;
		if (*p == '"')
		{
			if ((q = string_end(p + 1, end)) == NULL)
				return false;
			val = p + 1;
			vlen = q - val;
			p = q + 1;
		}
		else if (*p == '-' || DIGIT(*p))
		{
			if ((q = number_end(p, end)) == NULL)
				return false;
			val = p;
			vlen = q - p;
			p = q;
		}
		else if (literal(p, end, "true", 4) || literal(p, end, "null", 4))
		{
			val = (*p == 'n') ? NULL : p;
			vlen = 4;
			p += 4;
		}
		else if (literal(p, end, "false", 5))
		{
			val = p;
			vlen = 5;
			p += 5;
		}
		else
			return false;		/* an object, an array, or not JSON */
		if (col >= 0)
		{
			vals[col].v = val;	/* the last of a repeated key wins */
			vals[col].len = vlen;
			next_col = col + 1;
		}
		p = skip_ws(p, end);
		if (p < end && *p == ',')
		{
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			return skip_ws(p + 1, end) == end;
		return false;			/* also a token running on: 12abc, truex */
	}
}
