/*
 * funcs.c — the builtin functions. Each takes already type-checked arguments; strict functions are
 * not called with a NULL argument (the VM answers NULL). Results outside the finite doubles or
 * arguments outside a function's domain give NULL, never an error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

duet_errclass duet_fn_concat(duet_value *args, int argc, duet_vm *vm, duet_value *out,
							 duet_error *err);

#define UNUSED __attribute__((unused))
#define FN(name) static duet_errclass name(duet_value *args, UNUSED int argc, UNUSED duet_vm *vm, \
										   duet_value *out, UNUSED duet_error *err)
#define NUM(i) (args[(i)].u.num)
#define STR(i) (args[(i)].u.str)

/* ---- numbers ---- */

/* An integer argument such as round's digits: truncated, clamped to a sane range. */
static int
int_arg(double d, int lo, int hi)
{
	d = trunc(d);
	return d < lo ? lo : d > hi ? hi : (int) d;
}

FN(fn_abs) { *out = duet_finite(fabs(NUM(0))); return DUET_OK; }
FN(fn_ceil) { *out = duet_finite(ceil(NUM(0))); return DUET_OK; }
FN(fn_floor) { *out = duet_finite(floor(NUM(0))); return DUET_OK; }
FN(fn_trunc) { *out = duet_finite(trunc(NUM(0))); return DUET_OK; }
FN(fn_sign) { *out = duet_number(NUM(0) > 0 ? 1 : NUM(0) < 0 ? -1 : 0); return DUET_OK; }
FN(fn_exp) { *out = duet_finite(exp(NUM(0))); return DUET_OK; }
FN(fn_pow) { *out = duet_finite(pow(NUM(0), NUM(1))); return DUET_OK; }

FN(fn_round)
{
	*out = duet_finite(duet_round_decimal(NUM(0), argc > 1 ? int_arg(NUM(1), -400, 400) : 0));
	return DUET_OK;
}

FN(fn_sqrt) { *out = NUM(0) < 0 ? duet_null() : duet_finite(sqrt(NUM(0))); return DUET_OK; }
FN(fn_ln) { *out = NUM(0) <= 0 ? duet_null() : duet_finite(log(NUM(0))); return DUET_OK; }
FN(fn_log10) { *out = NUM(0) <= 0 ? duet_null() : duet_finite(log10(NUM(0))); return DUET_OK; }

FN(fn_mod)
{
	*out = NUM(1) == 0 ? duet_null() : duet_finite(fmod(NUM(0), NUM(1)));
	return DUET_OK;
}

/* clamp(x, lo, hi) = least(greatest(x, lo), hi) */
FN(fn_clamp)
{
	double		v = NUM(0) < NUM(1) ? NUM(1) : NUM(0);

	*out = duet_number(v > NUM(2) ? NUM(2) : v);
	return DUET_OK;
}

/* ---- any type ---- */

FN(fn_coalesce)
{
	int			i;

	*out = duet_null();
	for (i = 0; i < argc; i++)
		if (args[i].type != DUET_T_NULL)
		{
			*out = args[i];
			break;
		}
	return DUET_OK;
}

FN(fn_nullif)
{
	*out = args[0];
	if (args[0].type != DUET_T_NULL && args[1].type != DUET_T_NULL &&
		duet_value_cmp(&args[0], &args[1]) == 0)
		*out = duet_null();
	return DUET_OK;
}

/* least/greatest skip NULLs, as PostgreSQL's do. */
static void
extreme(duet_value *args, int argc, duet_value *out, int sign)
{
	int			i;

	*out = duet_null();
	for (i = 0; i < argc; i++)
		if (args[i].type != DUET_T_NULL &&
			(out->type == DUET_T_NULL || duet_value_cmp(&args[i], out) * sign > 0))
			*out = args[i];
}

FN(fn_least) { extreme(args, argc, out, -1); return DUET_OK; }
FN(fn_greatest) { extreme(args, argc, out, 1); return DUET_OK; }

/* ---- strings (UTF-8; case mapping is ASCII-only so both databases agree without locales) ---- */

static duet_errclass
map_case(duet_value *args, duet_vm *vm, duet_value *out, duet_error *err, bool upper)
{
	char	   *s = duet_vm_alloc(vm, STR(0).len, err);
	size_t		i;

	if (!s)
		return err->cls;
	for (i = 0; i < STR(0).len; i++)
	{
		char		c = STR(0).ptr[i];

		if (upper && c >= 'a' && c <= 'z')
			c -= 32;
		else if (!upper && c >= 'A' && c <= 'Z')
			c += 32;
		s[i] = c;
	}
	*out = duet_string(s, STR(0).len);
	return DUET_OK;
}

FN(fn_lower) { return map_case(args, vm, out, err, false); }
FN(fn_upper) { return map_case(args, vm, out, err, true); }
FN(fn_length) { *out = duet_number((double) duet_utf8_length(STR(0).ptr, STR(0).len)); return DUET_OK; }

static const char *
find_bytes(const char *h, size_t hl, const char *n, size_t nl)
{
	size_t		i;

	if (nl == 0)
		return h;
	for (i = 0; i + nl <= hl; i++)
		if (h[i] == n[0] && memcmp(h + i, n, nl) == 0)
			return h + i;
	return NULL;
}

FN(fn_contains)
{
	*out = duet_bool(find_bytes(STR(0).ptr, STR(0).len, STR(1).ptr, STR(1).len) != NULL);
	return DUET_OK;
}

FN(fn_starts_with)
{
	*out = duet_bool(STR(1).len <= STR(0).len && memcmp(STR(0).ptr, STR(1).ptr, STR(1).len) == 0);
	return DUET_OK;
}

FN(fn_ends_with)
{
	*out = duet_bool(STR(1).len <= STR(0).len &&
					 memcmp(STR(0).ptr + STR(0).len - STR(1).len, STR(1).ptr, STR(1).len) == 0);
	return DUET_OK;
}

/* Byte offset of the code point with 0-based index k (clamped to the end). */
static size_t
utf8_offset(const char *s, size_t len, double k)
{
	size_t		i = 0;

	while (k > 0 && i < len)
	{
		i++;
		while (i < len && ((unsigned char) s[i] & 0xC0) == 0x80)
			i++;
		k--;
	}
	return i;
}

/* substr(s, start [, count]) with PostgreSQL's positions: 1-based, start may be ≤ 0. */
FN(fn_substr)
{
	double		start = trunc(NUM(1)),
				end;
	size_t		from,
				to;

	if (argc > 2)
	{
		double		count = trunc(NUM(2));

		if (count < 0)
		{
			*out = duet_null();
			return DUET_OK;
		}
		end = start + count;
	}
	else
		end = INFINITY;
	if (start < 1)
		start = 1;
	if (end <= start)
	{
		*out = duet_string("", 0);
		return DUET_OK;
	}
	from = utf8_offset(STR(0).ptr, STR(0).len, start - 1);
	to = isinf(end) ? STR(0).len : from + utf8_offset(STR(0).ptr + from, STR(0).len - from, end - start);
	*out = duet_string(STR(0).ptr + from, to - from);
	return DUET_OK;
}

FN(fn_replace)
{
	const char *cur = STR(0).ptr,
			   *end = STR(0).ptr + STR(0).len,
			   *hit;
	size_t		n = 0,
				total,
				off = 0;
	char	   *r;

	if (STR(1).len == 0)
	{
		*out = args[0];
		return DUET_OK;
	}
	for (; (hit = find_bytes(cur, end - cur, STR(1).ptr, STR(1).len)); cur = hit + STR(1).len)
		n++;
	total = STR(0).len - n * STR(1).len + n * STR(2).len;
	if (!(r = duet_vm_alloc(vm, total, err)))
		return err->cls;
	for (cur = STR(0).ptr; (hit = find_bytes(cur, end - cur, STR(1).ptr, STR(1).len));
		 cur = hit + STR(1).len)
	{
		memcpy(r + off, cur, hit - cur);
		off += hit - cur;
		memcpy(r + off, STR(2).ptr, STR(2).len);
		off += STR(2).len;
	}
	memcpy(r + off, cur, end - cur);
	*out = duet_string(r, total);
	return DUET_OK;
}

FN(fn_trim)
{
	const char *s = STR(0).ptr;
	size_t		len = STR(0).len;

	while (len > 0 && s[0] == ' ')
		s++, len--;
	while (len > 0 && s[len - 1] == ' ')
		len--;
	*out = duet_string(s, len);
	return DUET_OK;
}

/* Sorted by name for bsearch. params: n number, s string, b bool, a any scalar, x one common type. */
const builtin duet_builtins[] = {
	{"abs", 1, 1, "n", 'n', true, fn_abs},
	{"ceil", 1, 1, "n", 'n', true, fn_ceil},
	{"clamp", 3, 3, "nnn", 'n', true, fn_clamp},
	{"coalesce", 1, -1, "x", 'x', false, fn_coalesce},
	{"concat", 1, -1, "a", 's', false, duet_fn_concat},
	{"contains", 2, 2, "ss", 'b', true, fn_contains},
	{"ends_with", 2, 2, "ss", 'b', true, fn_ends_with},
	{"exp", 1, 1, "n", 'n', true, fn_exp},
	{"floor", 1, 1, "n", 'n', true, fn_floor},
	{"greatest", 1, -1, "x", 'x', false, fn_greatest},
	{"least", 1, -1, "x", 'x', false, fn_least},
	{"length", 1, 1, "s", 'n', true, fn_length},
	{"ln", 1, 1, "n", 'n', true, fn_ln},
	{"log10", 1, 1, "n", 'n', true, fn_log10},
	{"lower", 1, 1, "s", 's', true, fn_lower},
	{"mod", 2, 2, "nn", 'n', true, fn_mod},
	{"nullif", 2, 2, "xx", 'x', false, fn_nullif},
	{"pow", 2, 2, "nn", 'n', true, fn_pow},
	{"replace", 3, 3, "sss", 's', true, fn_replace},
	{"round", 1, 2, "nn", 'n', true, fn_round},
	{"sign", 1, 1, "n", 'n', true, fn_sign},
	{"sqrt", 1, 1, "n", 'n', true, fn_sqrt},
	{"starts_with", 2, 2, "ss", 'b', true, fn_starts_with},
	{"substr", 2, 3, "snn", 's', true, fn_substr},
	{"trim", 1, 1, "s", 's', true, fn_trim},
	{"trunc", 1, 1, "n", 'n', true, fn_trunc},
	{"upper", 1, 1, "s", 's', true, fn_upper},
};
const int	duet_nbuiltins = sizeof(duet_builtins) / sizeof(duet_builtins[0]);

/* Function names are case-insensitive, like SQL's. */
const builtin *
duet_builtin_lookup(const char *name, size_t len)
{
	char		lower[32];
	int			lo = 0,
				hi = duet_nbuiltins - 1;
	size_t		i;

	if (len >= sizeof(lower))
		return NULL;
	for (i = 0; i < len; i++)
		lower[i] = (name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i];
	lower[len] = '\0';
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(lower, duet_builtins[mid].name);

		if (c == 0)
			return &duet_builtins[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}
