/*
 * lexer.c — tokens of the Duet formula language with 1-based line:column positions
 * (columns count UTF-8 code points, so a caret lines up under non-ASCII text).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

static const struct
{
	const char *word;
	tok_kind	kind;
}			keywords[] = {
	{"and", T_AND}, {"or", T_OR}, {"not", T_NOT}, {"is", T_IS}, {"null", T_NULL},
	{"true", T_TRUE}, {"false", T_FALSE}, {"between", T_BETWEEN}, {"in", T_IN},
	{"case", T_CASE}, {"when", T_WHEN}, {"then", T_THEN}, {"else", T_ELSE}, {"end", T_END},
};

/* Keywords are case-insensitive (ASCII), independent of the locale. */
static bool
ascii_ieq(const char *word, const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (word[i] != ((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]))
			return false;
	return true;
}

const char *
tok_describe(tok_kind k)
{
	switch (k)
	{
		case T_EOF: return "end of formula";
		case T_NUMBER: return "number";
		case T_STRING: return "string";
		case T_IDENT: case T_QIDENT: return "identifier";
		case T_LPAREN: return "\"(\"";
		case T_RPAREN: return "\")\"";
		case T_COMMA: return "\",\"";
		case T_PLUS: return "\"+\"";
		case T_MINUS: return "\"-\"";
		case T_STAR: return "\"*\"";
		case T_SLASH: return "\"/\"";
		case T_PERCENT: return "\"%\"";
		case T_CARET: return "\"^\"";
		case T_CONCAT: return "\"||\"";
		case T_EQ: return "\"=\"";
		case T_NE: return "\"!=\"";
		case T_LT: return "\"<\"";
		case T_LE: return "\"<=\"";
		case T_GT: return "\">\"";
		case T_GE: return "\">=\"";
		case T_AND: return "\"and\"";
		case T_OR: return "\"or\"";
		case T_NOT: return "\"not\"";
		case T_IS: return "\"is\"";
		case T_NULL: return "\"null\"";
		case T_TRUE: return "\"true\"";
		case T_FALSE: return "\"false\"";
		case T_BETWEEN: return "\"between\"";
		case T_IN: return "\"in\"";
		case T_CASE: return "\"case\"";
		case T_WHEN: return "\"when\"";
		case T_THEN: return "\"then\"";
		case T_ELSE: return "\"else\"";
		case T_END: return "\"end\"";
	}
	return "token";
}

void
lexer_init(lexer *lx, const char *src, size_t len, duet_error *err)
{
	memset(lx, 0, sizeof(*lx));
	lx->src = src;
	lx->len = len;
	lx->line = 1;
	lx->col = 1;
	lx->err = err;
}

/* Length of the UTF-8 sequence starting at s[i], or 0 when it is not valid UTF-8. */
size_t
duet_utf8_seq(const char *s, size_t len, size_t i)
{
	unsigned char c = (unsigned char) s[i];
	size_t		n,
				k;
	uint32_t	cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (i + n > len)
		return 0;
	for (k = 1; k < n; k++)
	{
		unsigned char cc = (unsigned char) s[i + k];

		if ((cc & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (cc & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		(cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

/* Advance one code point, keeping line and column. */
static void
advance(lexer *lx)
{
	size_t		n = duet_utf8_seq(lx->src, lx->len, lx->pos);

	if (lx->src[lx->pos] == '\n')
	{
		lx->line++;
		lx->col = 1;
	}
	else
		lx->col++;
	lx->pos += n ? n : 1;
}

static bool
lex_error(lexer *lx, int line, int col, const char *expected, const char *msg)
{
	duet_set_error(lx->err, DUET_ERR_SYNTAX, lx->src, lx->len, line, col, expected, "%s", msg);
	return false;
}

/* A quoted string or identifier; the doubled quote escapes it. Content must be valid UTF-8. */
static bool
lex_quoted(lexer *lx, char q, token *t)
{
	advance(lx);
	for (;;)
	{
		if (lx->pos >= lx->len)
			return lex_error(lx, t->line, t->col, q == '\'' ? "\"'\"" : "'\"'",
							 q == '\'' ? "unterminated string" : "unterminated quoted identifier");
		if (lx->src[lx->pos] == q)
		{
			if (lx->pos + 1 < lx->len && lx->src[lx->pos + 1] == q)
			{
				advance(lx);
				advance(lx);
				continue;
			}
			advance(lx);
			break;
		}
		if (duet_utf8_seq(lx->src, lx->len, lx->pos) == 0)
			return lex_error(lx, lx->line, lx->col, "", "invalid UTF-8 in formula");
		advance(lx);
	}
	t->len = lx->src + lx->pos - t->start;
	if (q == '"' && t->len == 2)
		return lex_error(lx, t->line, t->col, "identifier", "zero-length quoted identifier");
	return true;
}

static bool
lex_number(lexer *lx, token *t)
{
	size_t		n;

	while (lx->pos < lx->len && isdigit((unsigned char) lx->src[lx->pos]))
		advance(lx);
	if (lx->pos < lx->len && lx->src[lx->pos] == '.')
	{
		advance(lx);
		while (lx->pos < lx->len && isdigit((unsigned char) lx->src[lx->pos]))
			advance(lx);
	}
	if (lx->pos < lx->len && (lx->src[lx->pos] == 'e' || lx->src[lx->pos] == 'E'))
	{
		size_t		save = lx->pos;
		int			savecol = lx->col;

		advance(lx);
		if (lx->pos < lx->len && (lx->src[lx->pos] == '+' || lx->src[lx->pos] == '-'))
			advance(lx);
		if (lx->pos >= lx->len || !isdigit((unsigned char) lx->src[lx->pos]))
		{
			lx->pos = save;
			lx->col = savecol;
			return lex_error(lx, t->line, t->col, "digits", "malformed number");
		}
		while (lx->pos < lx->len && isdigit((unsigned char) lx->src[lx->pos]))
			advance(lx);
	}
	n = lx->src + lx->pos - t->start;
	if (n == 1 && t->start[0] == '.')
		return lex_error(lx, t->line, t->col, "digits", "malformed number");
	if (n >= 128)
		return lex_error(lx, t->line, t->col, "", "number literal too long");
	if (lx->pos < lx->len && (isalpha((unsigned char) lx->src[lx->pos]) || lx->src[lx->pos] == '_'))
		return lex_error(lx, lx->line, lx->col, "operator", "trailing junk after number");
	duet_parse_number(t->start, n, &t->num);
	if (!isfinite(t->num))
		return lex_error(lx, t->line, t->col, "", "number out of range");
	t->len = n;
	/* digits only, up to 2^63 - 1: an exact integer (docs/calc.md, "Integers"); else a double */
	t->is_int = true;
	t->i = 0;
	for (size_t k = 0; k < n && t->is_int; k++)
	{
		int			d = t->start[k] - '0';

		if (d < 0 || d > 9 || t->i > (INT64_MAX - d) / 10)
			t->is_int = false;
		else
			t->i = t->i * 10 + d;
	}
	return true;
}

bool
lexer_next(lexer *lx)
{
	token	   *t = &lx->cur;
	char		c;

	/* skip white space */
	while (lx->pos < lx->len && strchr(" \t\r\n\f\v", lx->src[lx->pos]) && lx->src[lx->pos])
		advance(lx);
	memset(t, 0, sizeof(*t));
	t->start = lx->src + lx->pos;
	t->line = lx->line;
	t->col = lx->col;
	if (lx->pos >= lx->len)
	{
		t->kind = T_EOF;
		return true;
	}
	c = lx->src[lx->pos];
	if (isdigit((unsigned char) c) || (c == '.' && lx->pos + 1 < lx->len &&
									   isdigit((unsigned char) lx->src[lx->pos + 1])))
	{
		t->kind = T_NUMBER;
		return lex_number(lx, t);
	}
	if (isalpha((unsigned char) c) || c == '_')
	{
		size_t		i;

		while (lx->pos < lx->len && (isalnum((unsigned char) lx->src[lx->pos]) ||
									 lx->src[lx->pos] == '_'))
			advance(lx);
		t->len = lx->src + lx->pos - t->start;
		t->kind = T_IDENT;
		for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
			if (strlen(keywords[i].word) == t->len &&
				ascii_ieq(keywords[i].word, t->start, t->len))
				t->kind = keywords[i].kind;
		return true;
	}
	if (c == '\'')
	{
		t->kind = T_STRING;
		return lex_quoted(lx, '\'', t);
	}
	if (c == '"')
	{
		t->kind = T_QIDENT;
		return lex_quoted(lx, '"', t);
	}

	/* operators */
	{
		char		d = lx->pos + 1 < lx->len ? lx->src[lx->pos + 1] : '\0';
		int			width = 1;

		switch (c)
		{
			case '(': t->kind = T_LPAREN; break;
			case ')': t->kind = T_RPAREN; break;
			case ',': t->kind = T_COMMA; break;
			case '+': t->kind = T_PLUS; break;
			case '-': t->kind = T_MINUS; break;
			case '*': t->kind = T_STAR; break;
			case '/': t->kind = T_SLASH; break;
			case '%': t->kind = T_PERCENT; break;
			case '^': t->kind = T_CARET; break;
			case '=': t->kind = T_EQ; break;
			case '|':
				if (d != '|')
					return lex_error(lx, t->line, t->col, "\"||\"", "unexpected character \"|\"");
				t->kind = T_CONCAT, width = 2;
				break;
			case '!':
				if (d != '=')
					return lex_error(lx, t->line, t->col, "\"!=\"", "unexpected character \"!\"");
				t->kind = T_NE, width = 2;
				break;
			case '<':
				if (d == '=')
					t->kind = T_LE, width = 2;
				else if (d == '>')
					t->kind = T_NE, width = 2;
				else
					t->kind = T_LT;
				break;
			case '>':
				if (d == '=')
					t->kind = T_GE, width = 2;
				else
					t->kind = T_GT;
				break;
			default:
				{
					char		msg[64];

					if ((unsigned char) c >= 0x80 && duet_utf8_seq(lx->src, lx->len, lx->pos) == 0)
						return lex_error(lx, t->line, t->col, "", "invalid UTF-8 in formula");
					if ((unsigned char) c < 0x20 || (unsigned char) c >= 0x7f)
						snprintf(msg, sizeof(msg), "unexpected character");
					else
						snprintf(msg, sizeof(msg), "unexpected character \"%c\"", c);
					return lex_error(lx, t->line, t->col, "", msg);
				}
		}
		while (width-- > 0)
			advance(lx);
		t->len = lx->src + lx->pos - t->start;
	}
	return true;
}
