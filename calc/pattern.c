/*
 * pattern.c — like() and the regular-expression functions regexp_match, regexp_extract and
 * regexp_replace (docs/calc.md, "Patterns").
 *
 * One regex dialect: PCRE2 (8-bit, PCRE2_UTF, \C forbidden), interpreted (no JIT) with a match
 * limit and a backtracking-depth limit, so a catastrophic pattern such as (a+)+$ ends in a
 * DUET_ERR_LIMIT error after a bounded amount of work instead of hanging a backend. Arguments are
 * validated as UTF-8 here, so PCRE2 runs with PCRE2_NO_UTF_CHECK.
 *
 * A constant pattern is compiled once, by the compiler (duet_rx_compile_const), and kept in the
 * program: the function finds it by the constant's address. Any other pattern goes through a
 * small per-vm cache of compiled patterns. The vm's match data is made once and grown only for a
 * pattern with more capture groups than it holds, so evaluations do not allocate.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#include "calc_int.h"

#define RX_MATCH_LIMIT	1000000	/* pcre2_set_match_limit: calls of the internal match() */
#define RX_DEPTH_LIMIT	10000	/* pcre2_set_depth_limit: nested backtracking points */
#define RX_HEAP_LIMIT	8192	/* pcre2_set_heap_limit, KiB of backtracking memory */
#define RX_CACHE		8		/* non-constant patterns kept compiled per vm */
#define RX_OPTIONS		(PCRE2_UTF | PCRE2_NO_UTF_CHECK | PCRE2_NEVER_BACKSLASH_C)

typedef struct rx_entry
{
	char	   *pat;
	size_t		len;
	pcre2_code *code;
} rx_entry;

struct duet_rx_cache
{
	pcre2_match_context *mctx;
	pcre2_match_data *md;
	uint32_t	md_pairs;		/* capture pairs md holds */
	rx_entry	e[RX_CACHE];
	int			next;			/* the entry replaced next (round robin) */
};

bool
duet_rx_pattern_fn(const builtin *fn, bool *is_regex)
{
	*is_regex = fn->fn != duet_fn_like;
	return fn->fn == duet_fn_like || fn->fn == duet_fn_regexp_match ||
		fn->fn == duet_fn_regexp_extract || fn->fn == duet_fn_regexp_replace;
}

void
duet_rx_code_free(void *code)
{
	pcre2_code_free((pcre2_code *) code);
}

void
duet_rx_cache_free(duet_rx_cache *rc)
{
	if (!rc)
		return;
	for (int i = 0; i < RX_CACHE; i++)
	{
		free(rc->e[i].pat);
		pcre2_code_free(rc->e[i].code);
	}
	pcre2_match_data_free(rc->md);
	pcre2_match_context_free(rc->mctx);
	free(rc);
}

/* A LIKE pattern is valid unless it ends in an escape (backslash) with nothing to escape. */
static bool
like_valid(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] == '\\' && ++i == len)
			return false;
	return true;
}

/* Compiles pat; NULL with msg filled. */
static pcre2_code *
rx_compile(const char *pat, size_t len, char *msg, size_t msgsize)
{
	int			code;
	PCRE2_SIZE	off;
	pcre2_code *re;
	PCRE2_UCHAR text[160];

	if (!duet_utf8_valid(pat, len))
	{
		snprintf(msg, msgsize, "regular expression is not valid UTF-8");
		return NULL;
	}
	re = pcre2_compile((PCRE2_SPTR) pat, len, RX_OPTIONS, &code, &off, NULL);
	if (!re)
	{
		if (code == PCRE2_ERROR_NOMEMORY || code == PCRE2_ERROR_HEAPLIMIT)
			snprintf(msg, msgsize, "out of memory");
		else
		{
			pcre2_get_error_message(code, text, sizeof(text));
			snprintf(msg, msgsize, "invalid regular expression at character %zu: %s",
					 duet_utf8_length(pat, off) + 1, (const char *) text);
		}
	}
	return re;
}

bool
duet_rx_compile_const(const char *pat, size_t len, bool is_regex, void **code, char *msg,
					  size_t msgsize)
{
	*code = NULL;
	if (!is_regex)
	{
		if (!like_valid(pat, len))
		{
			snprintf(msg, msgsize, "LIKE pattern must not end with the escape character \\");
			return false;
		}
		return true;
	}
	return (*code = rx_compile(pat, len, msg, msgsize)) != NULL;
}

/* The vm's cache, made on first use (NULL with err on out of memory). */
static duet_rx_cache *
rx_cache(duet_vm *vm, duet_error *err)
{
	duet_rx_cache **slot = duet_vm_rx(vm);

	if (!*slot)
	{
		duet_rx_cache *rc = calloc(1, sizeof(duet_rx_cache));

		if (rc && (rc->mctx = pcre2_match_context_create(NULL)) != NULL)
		{
			pcre2_set_match_limit(rc->mctx, RX_MATCH_LIMIT);
			pcre2_set_depth_limit(rc->mctx, RX_DEPTH_LIMIT);
			pcre2_set_heap_limit(rc->mctx, RX_HEAP_LIMIT);
			*slot = rc;
		}
		else
		{
			free(rc);
			duet_set_runtime_error(err, DUET_ERR_NOMEM, 0, 0, "out of memory");
			return NULL;
		}
	}
	return *slot;
}

/* The compiled pattern for args[1] of fn, with match data large enough for its groups. */
static pcre2_code *
rx_get(duet_vm *vm, const duet_value *pat, const char *fn, duet_rx_cache **rcp, duet_error *err)
{
	const duet_program *p = duet_vm_program(vm);
	duet_rx_cache *rc = rx_cache(vm, err);
	pcre2_code *re = NULL;
	uint32_t	groups;
	char		msg[200];

	if (!rc)
		return NULL;
	*rcp = rc;
	for (int i = 0; p && i < p->nrx && !re; i++)
		if (p->rx[i].ptr == pat->u.str.ptr && p->rx[i].len == pat->u.str.len)
			re = p->rx[i].code;
	for (int i = 0; i < RX_CACHE && !re; i++)
		if (rc->e[i].code && rc->e[i].len == pat->u.str.len &&
			memcmp(rc->e[i].pat, pat->u.str.ptr, pat->u.str.len) == 0)
			re = rc->e[i].code;
	if (!re)
	{
		rx_entry   *e = &rc->e[rc->next];
		char	   *copy = malloc(pat->u.str.len + 1);

		if (!copy)
		{
			duet_set_runtime_error(err, DUET_ERR_NOMEM, 0, 0, "out of memory");
			return NULL;
		}
		if (!(re = rx_compile(pat->u.str.ptr, pat->u.str.len, msg, sizeof(msg))))
		{
			free(copy);
			duet_set_runtime_error(err, strcmp(msg, "out of memory") == 0 ? DUET_ERR_NOMEM :
								   DUET_ERR_SYNTAX, 0, 0, "%s: %s", fn, msg);
			return NULL;
		}
		memcpy(copy, pat->u.str.ptr, pat->u.str.len);
		free(e->pat);
		pcre2_code_free(e->code);
		e->pat = copy;
		e->len = pat->u.str.len;
		e->code = re;
		rc->next = (rc->next + 1) % RX_CACHE;
	}
	pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
	if (!rc->md || rc->md_pairs < groups + 1)
	{
		uint32_t	pairs = groups + 1 > 16 ? groups + 1 : 16;
		pcre2_match_data *md = pcre2_match_data_create(pairs, NULL);

		if (!md)
		{
			duet_set_runtime_error(err, DUET_ERR_NOMEM, 0, 0, "out of memory");
			return NULL;
		}
		pcre2_match_data_free(rc->md);
		rc->md = md;
		rc->md_pairs = pairs;
	}
	return re;
}

/* Checks that the string arguments args[0 .. n-1] are UTF-8 (so PCRE2 need not). */
static duet_errclass
utf8_args(const duet_value *args, int n, const char *fn, duet_error *err)
{
	for (int i = 0; i < n; i++)
		if (!duet_utf8_valid(args[i].u.str.ptr, args[i].u.str.len))
		{
			duet_set_runtime_error(err, DUET_ERR_TYPE, 0, 0,
								   "%s: argument %d is not valid UTF-8", fn, i + 1);
			return DUET_ERR_TYPE;
		}
	return DUET_OK;
}

/* A pcre2_match/pcre2_substitute error code as a duet error. */
static duet_errclass
rx_error(int rc, const char *fn, duet_error *err)
{
	PCRE2_UCHAR text[160];

	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
	{
		duet_set_runtime_error(err, DUET_ERR_LIMIT, 0, 0,
							   "%s: regular expression exceeded its backtracking limit "
							   "(match limit %d, depth limit %d)", fn, RX_MATCH_LIMIT,
							   RX_DEPTH_LIMIT);
		return DUET_ERR_LIMIT;
	}
	if (rc == PCRE2_ERROR_NOMEMORY)
	{
		duet_set_runtime_error(err, DUET_ERR_NOMEM, 0, 0, "out of memory");
		return DUET_ERR_NOMEM;
	}
	pcre2_get_error_message(rc, text, sizeof(text));
	duet_set_runtime_error(err, DUET_ERR_SYNTAX, 0, 0, "%s: %s", fn, (const char *) text);
	return DUET_ERR_SYNTAX;
}

/* Byte length of the code point at s[i] (the strings are valid UTF-8). */
static inline size_t
cp_len(const char *s, size_t i)
{
	unsigned char c = (unsigned char) s[i];

	return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/*
 * s LIKE p: % any sequence, _ one code point, \ escapes the next character. The classic
 * wildcard matcher with one backtracking point (the last %): O(|s| |p|) at worst.
 */
static bool
like_match(const char *s, size_t sl, const char *p, size_t pl)
{
	size_t		si = 0,
				pi = 0,
				star_p = SIZE_MAX,
				star_s = 0;

	while (si < sl)
	{
		if (pi < pl && p[pi] == '%')
		{
			star_p = ++pi;
			star_s = si;
			continue;
		}
		if (pi < pl)
		{
			if (p[pi] == '_')
			{
				si += cp_len(s, si);
				pi++;
				continue;
			}
			else
			{
				size_t		lit = p[pi] == '\\' ? pi + 1 : pi;
				size_t		n = cp_len(p, lit);

				if (si + n <= sl && memcmp(s + si, p + lit, n) == 0)
				{
					si += n;
					pi = lit + n;
					continue;
				}
			}
		}
		if (star_p == SIZE_MAX)
			return false;
		star_s += cp_len(s, star_s);
		si = star_s;
		pi = star_p;
	}
	while (pi < pl && p[pi] == '%')
		pi++;
	return pi == pl;
}

duet_errclass
duet_fn_like(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	const duet_program *p = duet_vm_program(vm);
	bool		known = false;

	(void) argc;
	if (utf8_args(args, 2, "like", err) != DUET_OK)
		return DUET_ERR_TYPE;
	/* a constant pattern was validated by the compiler */
	for (int i = 0; p && i < p->nrx && !known; i++)
		known = p->rx[i].ptr == args[1].u.str.ptr;
	if (!known && !like_valid(args[1].u.str.ptr, args[1].u.str.len))
	{
		duet_set_runtime_error(err, DUET_ERR_SYNTAX, 0, 0,
							   "like: LIKE pattern must not end with the escape character \\");
		return DUET_ERR_SYNTAX;
	}
	*out = duet_bool(like_match(args[0].u.str.ptr, args[0].u.str.len, args[1].u.str.ptr,
								args[1].u.str.len));
	return DUET_OK;
}

/* Runs re on args[0]; > 0 a match, 0 none, < 0 an error (reported). */
static int
rx_run(duet_value *args, duet_vm *vm, const char *fn, pcre2_code **rep, duet_rx_cache **rcp,
	   duet_error *err)
{
	pcre2_code *re;
	int			rc;

	if (utf8_args(args, 2, fn, err) != DUET_OK || !(re = rx_get(vm, &args[1], fn, rcp, err)))
		return -1;
	*rep = re;
	rc = pcre2_match(re, (PCRE2_SPTR) args[0].u.str.ptr, args[0].u.str.len, 0, PCRE2_NO_UTF_CHECK,
					 (*rcp)->md, (*rcp)->mctx);
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc < 0)
	{
		rx_error(rc, fn, err);
		return -1;
	}
	return 1;
}

duet_errclass
duet_fn_regexp_match(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	pcre2_code *re;
	duet_rx_cache *rc;
	int			r = rx_run(args, vm, "regexp_match", &re, &rc, err);

	(void) argc;
	if (r < 0)
		return err->cls;
	*out = duet_bool(r > 0);
	return DUET_OK;
}

/*
 * regexp_extract(s, re[, group]): the text of capture group `group` of the first match; without
 * group, the first capture group, or the whole match when the pattern has none (PostgreSQL's
 * substring(s from re)). NULL when nothing matches, the group did not take part, or group is not
 * one of the pattern's groups (0 is the whole match).
 */
duet_errclass
duet_fn_regexp_extract(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	pcre2_code *re;
	duet_rx_cache *rc;
	int			r = rx_run(args, vm, "regexp_extract", &re, &rc, err);
	uint32_t	groups;
	double		g;
	PCRE2_SIZE *ov;

	if (r < 0)
		return err->cls;
	*out = duet_null();
	if (r == 0)
		return DUET_OK;
	pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
	g = argc > 2 ? duet_num(&args[2]) : groups > 0 ? 1 : 0;
	if (!(g >= 0 && g <= groups) || g != (double) (uint32_t) g)
		return DUET_OK;
	ov = pcre2_get_ovector_pointer(rc->md);
	if (ov[2 * (uint32_t) g] == PCRE2_UNSET)
		return DUET_OK;
	*out = duet_string(args[0].u.str.ptr + ov[2 * (uint32_t) g],
					   ov[2 * (uint32_t) g + 1] - ov[2 * (uint32_t) g]);
	return DUET_OK;
}

/*
 * regexp_replace(s, re, replacement): every non-overlapping match replaced (pcre2_substitute,
 * PCRE2_SUBSTITUTE_GLOBAL); in replacement $1 or ${1} is a group, ${name} a named group, $$ a $.
 */
duet_errclass
duet_fn_regexp_replace(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	static const char fn[] = "regexp_replace";
	pcre2_code *re;
	duet_rx_cache *rc;
	PCRE2_SIZE	cap,
				outlen;
	char	   *buf;
	int			r;

	(void) argc;
	if (utf8_args(args, 3, fn, err) != DUET_OK || !(re = rx_get(vm, &args[1], fn, &rc, err)))
		return err->cls;
	/* a first guess; PCRE2_SUBSTITUTE_OVERFLOW_LENGTH tells the size when it is short */
	cap = args[0].u.str.len + args[2].u.str.len + 64;
	if (cap > duet_vm_program(vm)->max_string)
		cap = duet_vm_program(vm)->max_string;
	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (!(buf = duet_vm_alloc(vm, cap, err)))
			return err->cls;
		outlen = cap;
		r = pcre2_substitute(re, (PCRE2_SPTR) args[0].u.str.ptr, args[0].u.str.len, 0,
							 PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH |
							 PCRE2_NO_UTF_CHECK, rc->md, rc->mctx,
							 (PCRE2_SPTR) args[2].u.str.ptr, args[2].u.str.len,
							 (PCRE2_UCHAR *) buf, &outlen);
		if (r >= 0)
		{
			*out = duet_string(buf, outlen);
			return DUET_OK;
		}
		if (r != PCRE2_ERROR_NOMEMORY || attempt > 0)
			break;
		cap = outlen;			/* the length needed, its terminating zero included */
	}
	return rx_error(r, fn, err);
}
