/*
 * fuzz_calc.c — libFuzzer target for the formula engine: compile + evaluate (make fuzz).
 *
 * Input: the formula, then optionally a NUL byte and bytes that bind the formula's variables
 * (per variable: a type byte, then 8 bytes of a double — NaN, infinities and -0 included — or of a
 * 64-bit integer when the type byte's top bit is set, or a length byte and string bytes, or a
 * boolean byte). The first input byte also selects small limits
 * now and then, so the limit paths are reached.
 *
 * Checked beyond "no crash, no sanitizer report, no leak":
 *   - a numeric result is finite and never -0, and duet_format_number reads back exactly;
 *   - a string result's bytes are all readable (ASan) and stay stable over a second evaluation;
 *   - compiling with the variables' types declared (more folding, compile-time type errors) never
 *     gives a different successful result than the untyped compilation (differential check);
 *   - a program with a numeric tier (calc/fastpath.c) gives the stack VM's result, bit for bit, or
 *     its error with the same message and position.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "duet_calc.h"
#include "calc_int.h"			/* program->fast */

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXV 64

typedef struct bound
{
	duet_value	vals[MAXV];
	size_t		n;
} bound;

static duet_type
bound_type(void *arg, const char *name, size_t len)
{
	/* the i-th distinct name gets the i-th value's type: names are looked up in compile order */
	const duet_value *vals = ((bound *) arg)->vals;
	unsigned	h = 0;

	for (size_t i = 0; i < len; i++)
		h = h * 31 + (unsigned char) name[i];
	return vals[h % MAXV].type == DUET_T_NULL ? DUET_T_ANY : vals[h % MAXV].type;
}

static void
bind_by_hash(const duet_program *p, const bound *b, duet_value *vars)
{
	for (size_t i = 0; i < duet_program_nvars(p) && i < MAXV; i++)
	{
		const char *name = duet_program_var(p, i);
		unsigned	h = 0;

		for (size_t k = 0; name[k]; k++)
			h = h * 31 + (unsigned char) name[k];
		vars[i] = b->vals[h % MAXV];
	}
}

static void
decode_values(const uint8_t *d, size_t n, bound *b)
{
	size_t		o = 0;

	for (size_t i = 0; i < MAXV; i++)
		b->vals[i] = duet_null();
	for (size_t i = 0; i < MAXV && o < n; i++)
	{
		uint8_t		t = d[o++];

		switch (t % 4)
		{
			case 0:
				b->vals[i] = duet_null();
				break;
			case 1:
				{
					double		x = 0;

					if (o + 8 <= n && (t & 0x80))
					{
						int64_t		iv;

						memcpy(&iv, d + o, 8);	/* an exact integer, INT64_MIN and MAX included */
						o += 8;
						b->vals[i] = duet_int(iv);
						break;
					}
					if (o + 8 <= n)
					{
						memcpy(&x, d + o, 8);
						o += 8;
					}
					else if (t & 0x80)
					{
						b->vals[i] = duet_int((int64_t) (t >> 2) - 16);	/* short inputs: small integers */
						break;
					}
					else
						x = (double) (t >> 2) - 16;	/* short inputs: small integers */
					b->vals[i] = duet_number(x);
					break;
				}
			case 2:
				{
					size_t		len = o < n ? d[o++] : 0;

					if (len > n - o)
						len = n - o;
					b->vals[i] = duet_string((const char *) d + o, len);
					o += len;
					break;
				}
			default:
				if ((t & 0x40) && o + 8 <= n)
				{
					/* a date or timestamp; with 0x10 any 64 bits, which the VM must refuse or bound */
					uint64_t	u;
					int64_t		span = (int64_t) DUET_DATE_MAX - DUET_DATE_MIN + 1;

					memcpy(&u, d + o, 8);
					o += 8;
					if (t & 0x10)
						b->vals[i] = (t & 0x20) ? duet_timestamp((int64_t) u) : duet_date((int32_t) u);
					else if (t & 0x20)
						b->vals[i] = duet_timestamp((int64_t) DUET_DATE_MIN * 86400000000 +
													(int64_t) (u % (uint64_t) (span * 86400000000)));
					else
						b->vals[i] = duet_date((int32_t) (DUET_DATE_MIN + (int64_t) (u % (uint64_t) span)));
					break;
				}
				b->vals[i] = duet_bool(t & 4);
				break;
		}
	}
}

static void
check_result(const duet_value *v)
{
	if (v->type == DUET_T_NUMBER)
	{
		char		buf[32];

		if (!isfinite(v->u.num) || (v->u.num == 0 && signbit(v->u.num)))
			abort();
		duet_format_number(v->u.num, buf, sizeof(buf));
		if (strtod(buf, NULL) != v->u.num)
			abort();
	}
	else if (v->type == DUET_T_STRING)
	{
		volatile unsigned sum = 0;

		for (size_t i = 0; i < v->u.str.len; i++)
			sum += (unsigned char) v->u.str.ptr[i];
		(void) sum;
	}
	else if (v->type == DUET_T_DATE || v->type == DUET_T_TIMESTAMP)
	{
		/* in range, and its text reads back as the same value */
		char		buf[40];
		duet_value	back;
		size_t		len = duet_format_time_value(v, buf, sizeof(buf));

		if (!duet_parse_time(buf, len, v->type, &back) || back.u.i != v->u.i)
			abort();
	}
	else if (v->type != DUET_T_NULL && v->type != DUET_T_BOOL && v->type != DUET_T_INT)
		abort();
}

static bool
same_value(const duet_value *a, const duet_value *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case DUET_T_NUMBER:
			return a->u.num == b->u.num;
		case DUET_T_INT:
		case DUET_T_DATE:
		case DUET_T_TIMESTAMP:
			return a->u.i == b->u.i;
		case DUET_T_BOOL:
			return a->u.boolean == b->u.boolean;
		case DUET_T_STRING:
			return a->u.str.len == b->u.str.len && (a->u.str.len == 0 || memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0);
		default:
			return true;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static duet_vm *vm1,
			   *vm2;
	const uint8_t *nul = memchr(data, 0, size);
	size_t		flen = nul ? (size_t) (nul - data) : size;
	duet_limits small = {4096, 24, 16, 256};
	duet_compile_options opts = {0};
	duet_compile_options typed;
	bound		b;
	duet_error	err;
	duet_program *p,
			   *tp;
	duet_value	vars[MAXV],
				out,
				again,
				tout;
	duet_errclass rc;

	if (vm1 == NULL)
	{
		vm1 = duet_vm_new();
		vm2 = duet_vm_new();
		/* now()/today(): one fixed time, so both vms and both evaluations agree */
		duet_vm_set_now(vm1, INT64_C(1796205600000000));
		duet_vm_set_now(vm2, INT64_C(1796205600000000));
	}
	if (size > 0 && data[0] == '~')
		opts.limits = &small;	/* formulas starting with ~ are syntax errors anyway; use data[1..] */
	decode_values(nul ? nul + 1 : data + size, nul ? size - flen - 1 : 0, &b);
	p = duet_compile((const char *) data + (opts.limits ? 1 : 0), flen - (opts.limits ? 1 : 0), &opts, &err);
	if (p == NULL)
	{
		if (err.cls == DUET_OK || strlen(err.message) == 0)
			abort();			/* every failure explains itself */
		return 0;
	}
	if (duet_program_nvars(p) > MAXV)
	{
		duet_program_free(p);
		return 0;
	}
	bind_by_hash(p, &b, vars);
	rc = duet_eval(p, vars, vm1, &out, &err);
	if (p->fast)
	{
		/* the numeric tier against the stack VM: the same bits, or the same error */
		duet_fast  *tier = p->fast;
		duet_value	sv;
		duet_error	serr;
		duet_errclass src;

		p->fast = NULL;
		src = duet_eval(p, vars, vm2, &sv, &serr);
		p->fast = tier;
		if (src != rc || (rc == DUET_OK && (sv.type != out.type ||
											(out.type == DUET_T_NUMBER && memcmp(&sv.u.num, &out.u.num, 8) != 0) ||
											!same_value(&sv, &out))) ||
			(rc != DUET_OK && (strcmp(serr.message, err.message) != 0 || serr.line != err.line ||
							   serr.column != err.column)))
		{
			fprintf(stderr, "numeric tier and stack VM differ for: %.*s\n", (int) flen, (const char *) data);
			abort();
		}
	}
	if (rc == DUET_OK)
	{
		check_result(&out);
		if (duet_eval(p, vars, vm1, &again, &err) != DUET_OK || !same_value(&out, &again))
			abort();			/* evaluation is deterministic */
	}

	typed = opts;
	typed.var_type = bound_type;
	typed.var_type_arg = &b;
	tp = duet_compile((const char *) data + (opts.limits ? 1 : 0), flen - (opts.limits ? 1 : 0), &typed, &err);
	if (tp != NULL)
	{
		duet_value	tvars[MAXV];

		bind_by_hash(tp, &b, tvars);
		if (duet_eval(tp, tvars, vm2, &tout, &err) == DUET_OK)
		{
			check_result(&tout);
			/* both compilations evaluated the same values: the answers must agree */
			if (rc == DUET_OK && duet_eval(p, vars, vm1, &out, &err) == DUET_OK && !same_value(&out, &tout))
			{
				fprintf(stderr, "typed and untyped results differ for: %.*s\n", (int) flen, (const char *) data);
				abort();
			}
		}
		duet_program_free(tp);
	}
	duet_program_free(p);
	return 0;
}
