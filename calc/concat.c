/*
 * concat.c — string concatenation: ||, concat() and concat_ws() (as_text: numbers in their
 * shortest round-trip form), OP_CONCAT_N ((a || b) || c in one allocation, the nested form's
 * errors in order, lower()/upper() operands case-mapped while copying), and the whole-program
 * fast path for formulas that are one CONCAT_N of variables and constants
 * (lower(channel) || '/' || region): no stack, no dispatch, while every operand is a string.
 */
#include <stdint.h>
#include <string.h>

#include "calc_int.h"

/* A number's or a date's text (out of line, so that as_text stays small); buf of 32 bytes */
static __attribute__((noinline)) size_t
scalar_text(const duet_value *v, char *buf, size_t size)
{
	return duet_is_time(v->type) ? duet_format_time_value(v, buf, size) :
		duet_format_value_number(v, buf, size);
}

/* Text of a scalar for || and concat(): numbers in their shortest round-trip form, dates as Duet writes them. */
static bool
as_text(duet_vm *vm, const duet_value *v, duet_value *out, duet_error *err)
{
	char		buf[32];
	size_t		n;
	char	   *s;

	switch (v->type)
	{
		case DUET_T_STRING:
			*out = *v;
			return true;
		case DUET_T_BOOL:
			*out = v->u.boolean ? duet_string("true", 4) : duet_string("false", 5);
			return true;
		default:
			n = scalar_text(v, buf, sizeof(buf));
			if (!(s = duet_vm_alloc(vm, n, err)))
				return false;
			memcpy(s, buf, n);
			*out = duet_string(s, n);
			return true;
	}
}

/* a || b over any scalars (NULL-strict); also used by concat(). */
duet_errclass
duet_concat2(duet_vm *vm, duet_value *a, const duet_value *b, duet_error *err)
{
	duet_value	ta,
				tb;
	char	   *s;

	if (!as_text(vm, a, &ta, err) || !as_text(vm, b, &tb, err))
		return err->cls;
	if (!(s = duet_vm_alloc(vm, ta.u.str.len + tb.u.str.len, err)))
		return err->cls;
	memcpy(s, ta.u.str.ptr, ta.u.str.len);
	memcpy(s + ta.u.str.len, tb.u.str.ptr, tb.u.str.len);
	*a = duet_string(s, ta.u.str.len + tb.u.str.len);
	return DUET_OK;
}

/* A piece of a CONCAT_N: its bytes and how they are copied (0 as they are, 1 lower, 2 upper). */
typedef struct piece
{
	const char *ptr;
	size_t		len;
	int			map;
} piece;

/*
 * The text of a value that is not a string, as as_text makes it but into buf (32 bytes) without
 * allocating; false when it is over the limit (err filled).
 */
static __attribute__((noinline)) bool
piece_other(const duet_vm *vm, const duet_value *v, piece *pc, char *buf, duet_error *err)
{
	pc->map = 0;
	if (v->type == DUET_T_BOOL)
	{
		pc->ptr = v->u.boolean ? "true" : "false";
		pc->len = v->u.boolean ? 4 : 5;
		return true;
	}
	pc->len = scalar_text(v, buf, 32);
	pc->ptr = buf;
	return !duet_vm_over_limit(vm, pc->len, err);	/* as_text allocates it */
}

static inline bool
piece_of(const duet_vm *vm, const duet_value *v, piece *pc, char *buf, duet_error *err)
{
	if ((int) v->type == DUET_T_STRING || (int) v->type == DUET_T_LOWER_PENDING ||
		(int) v->type == DUET_T_UPPER_PENDING)
	{
		pc->ptr = v->u.str.ptr;
		pc->len = v->u.str.len;
		pc->map = (int) v->type == DUET_T_STRING ? 0 : (int) v->type == DUET_T_LOWER_PENDING ? 1 : 2;
		return true;
	}
	return piece_other(vm, v, pc, buf, err);
}

/* n bytes from s to d: short ones (most labels' pieces) without a call */
static inline __attribute__((always_inline)) void
copy_bytes(char *d, const char *s, size_t n)
{
	uint32_t	w0,
				w1;
	uint64_t	q0,
				q1;

	if (n > 16)
		memcpy(d, s, n);
	else if (n >= 8)
	{
		memcpy(&q0, s, 8);
		memcpy(&q1, s + n - 8, 8);
		memcpy(d, &q0, 8);
		memcpy(d + n - 8, &q1, 8);
	}
	else if (n >= 4)
	{
		memcpy(&w0, s, 4);
		memcpy(&w1, s + n - 4, 4);
		memcpy(d, &w0, 4);
		memcpy(d + n - 4, &w1, 4);
	}
	else if (n > 0)
	{
		char		a = s[0],
					b = s[n / 2],
					c = s[n - 1];

		d[0] = a;
		d[n / 2] = b;
		d[n - 1] = c;
	}
}

/*
 * ASCII case mapping of up to 8 bytes at once (SWAR): the bytes in from..from+25 flip their 0x20
 * bit, all others (non-ASCII bytes included) stay.
 */
static inline uint64_t
map_word(uint64_t w, unsigned char from)
{
	const uint64_t ones = 0x0101010101010101u,
				high = 0x8080808080808080u;
	uint64_t	h = w & ~high;	/* each byte's low 7 bits: adding below cannot carry out */
	uint64_t	ge = h + (0x80 - from) * ones,	/* high bit: >= from */
				gt = h + (0x7f - (from + 25)) * ones;	/* high bit: > from + 25 */

	return w ^ (((ge ^ gt) & ~w & high) >> 2);
}

/* n bytes from s to d, ASCII case-mapped (lower(), upper(): ASCII-only, as funcs.c's map_case) */
static inline __attribute__((always_inline)) void
copy_mapped(char *d, const char *s, size_t n, bool upper)
{
	unsigned char from = upper ? 'a' : 'A';
	uint64_t	q0,
				q1;
	uint32_t	w0,
				w1;

	/* overlapping words where n is not a multiple: mapping a byte twice copies it once */
	if (n >= 8)
	{
		size_t		i;

		for (i = 0; i + 8 <= n; i += 8)
		{
			memcpy(&q0, s + i, 8);
			q0 = map_word(q0, from);
			memcpy(d + i, &q0, 8);
		}
		if (i < n)
		{
			memcpy(&q1, s + n - 8, 8);
			q1 = map_word(q1, from);
			memcpy(d + n - 8, &q1, 8);
		}
	}
	else if (n >= 4)
	{
		memcpy(&w0, s, 4);
		memcpy(&w1, s + n - 4, 4);
		w0 = (uint32_t) map_word(w0, from);
		w1 = (uint32_t) map_word(w1, from);
		memcpy(d, &w0, 4);
		memcpy(d + n - 4, &w1, 4);
	}
	else
		for (size_t j = 0; j < n; j++)
			d[j] = (char) map_word((unsigned char) s[j], from);
}

/*
 * (a || b) || c (n = 3) or a || b (n = 2) on args[0 .. n-1], into *out: the nested CONCATs'
 * result and errors — each || NULL-strict in turn, the limit checked where each would check it,
 * an error at that ||'s position (the step joining args[1] is the inner ||, args[2] the outer) — with
 * one allocation and one copy, case-mapping the CASEMAP operands as they are copied. With var
 * (OP_CONCAT_N's flags 1), args[n - 1] is variable var of the program, loaded after the first ||
 * as the nested form's OP_VAR would load it (args has room for it).
 */
duet_errclass
duet_concat_n(duet_vm *vm, duet_value *args, int n, const duet_value *var, const duet_program *p,
		 const instr *in, duet_value *out, duet_error *err)
{
	piece		pc[3];
	char		buf[3][32];
	size_t		total = 0;
	bool		null = args[0].type == DUET_T_NULL;
	char	   *s,
			   *d;
	int			i;

	for (i = 1; i < n; i++)
	{
		if (var && i == n - 1 && !duet_vm_load_var(p, var, in->arg, in, 1, &args[i], err))
			return err->cls;	/* the variable's own error, at its position */
		if (null || args[i].type == DUET_T_NULL)
		{
			null = true;
			continue;
		}
		if ((i == 1 && !piece_of(vm, &args[0], &pc[0], buf[0], err)) ||
			!piece_of(vm, &args[i], &pc[i], buf[i], err))
			goto fail;
		if (i == 1)
			total = pc[0].len;
		if (duet_vm_over_limit(vm, total + pc[i].len, err))
			goto fail;
		total += pc[i].len;
	}
	if (null)
	{
		*out = duet_null();
		return DUET_OK;
	}
	i = n - 1;
	if (!(s = duet_vm_alloc(vm, total, err)))
		goto fail;
	d = s;
	for (int k = 0; k < n; k++)
	{
		if (pc[k].map == 0)
			copy_bytes(d, pc[k].ptr, pc[k].len);
		else
			copy_mapped(d, pc[k].ptr, pc[k].len, pc[k].map == 2);
		d += pc[k].len;
	}
	*out = duet_string(s, total);
	return DUET_OK;
fail:
	/* the outer ||'s position is the instruction's, the inner one's its first operand's */
	err->line = in->line;
	err->column = in->col;
	if (i == 1 && n == 3 && p->opnd)
	{
		err->line = p->opnd[in - p->code].line[0];
		err->column = p->opnd[in - p->code].col[0];
	}
	return err->cls;
}

/* concat(a, …): like ||, but NULL arguments are skipped (as in PostgreSQL). */
duet_errclass duet_fn_concat(duet_value *args, int argc, duet_vm *vm, duet_value *out,
							 duet_error *err);
duet_errclass
duet_fn_concat(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	duet_value	acc = duet_string("", 0);
	int			i;

	for (i = 0; i < argc; i++)
	{
		if (args[i].type == DUET_T_NULL)
			continue;
		if (duet_concat2(vm, &acc, &args[i], err) != DUET_OK)
			return err->cls;
	}
	*out = acc;
	return DUET_OK;
}

/* concat_ws(sep, a, …): the non-NULL arguments as text, separated by sep; a NULL sep gives NULL. */
duet_errclass duet_fn_concat_ws(duet_value *args, int argc, duet_vm *vm, duet_value *out,
								duet_error *err);
duet_errclass
duet_fn_concat_ws(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	duet_value	acc = duet_string("", 0);
	bool		first = true;

	if (args[0].type == DUET_T_NULL)
	{
		*out = duet_null();
		return DUET_OK;
	}
	for (int i = 1; i < argc; i++)
	{
		if (args[i].type == DUET_T_NULL)
			continue;
		if ((!first && duet_concat2(vm, &acc, &args[0], err) != DUET_OK) ||
			duet_concat2(vm, &acc, &args[i], err) != DUET_OK)
			return err->cls;
		first = false;
	}
	*out = acc;
	return DUET_OK;
}

/*
 * Marks p as one CONCAT_N of variables and string constants (a variable possibly through
 * CASEMAP), then RETURN: duet_eval takes duet_eval_concat for it.
 */
void
duet_concat_plan(duet_program *p)
{
	int			pc = 0,
				k = 0;

	p->ncat = 0;
	while (pc < p->ncode && k < 3 && (p->code[pc].op == OP_VAR || p->code[pc].op == OP_CONST))
	{
		const instr *in = &p->code[pc++];

		if (in->op == OP_CONST && p->consts[in->arg].type != DUET_T_STRING)
			return;
		p->cat[k].var = in->op == OP_VAR;
		p->cat[k].idx = in->arg;
		p->cat[k].map = 0;
		if (pc < p->ncode && p->code[pc].op == OP_CASEMAP)
			p->cat[k].map = (uint8_t) (1 + p->code[pc++].flags);
		k++;
	}
	if (pc + 2 != p->ncode || p->code[pc].op != OP_CONCAT_N || p->code[pc + 1].op != OP_RETURN)
		return;
	if (p->code[pc].flags & 1)
	{
		if (k == 3)
			return;
		p->cat[k].var = 1;
		p->cat[k].idx = p->code[pc].arg;
		p->cat[k++].map = 0;
	}
	if (k == p->code[pc].argc)
		p->ncat = k;
}

/*
 * A duet_concat_plan program on one row (variable k at vars[k * kstride]), into the vm's string
 * arena as it is: while every operand is a string and the result is within the limit — when the
 * VM's CONCAT_N would raise nothing and give exactly this — one allocation and the copies; false
 * (nothing done) for anything else (a NULL, a number, an invalid value, the limit), which is
 * the stack VM's to evaluate, from the start.
 */
static inline __attribute__((always_inline)) bool
concat_row(const duet_program *p, const duet_value *vars, size_t kstride, duet_vm *vm,
		   duet_value *out)
{
	const duet_value *v[3];
	size_t		total = 0;
	duet_error	scratch;
	char	   *s,
			   *d;

	for (int k = 0; k < p->ncat; k++)
	{
		v[k] = p->cat[k].var ? &vars[(size_t) p->cat[k].idx * kstride] : &p->consts[p->cat[k].idx];
		if (v[k]->type != DUET_T_STRING || (v[k]->u.str.ptr == NULL && v[k]->u.str.len != 0) ||
			v[k]->u.str.len > p->max_string)
			return false;
		total += v[k]->u.str.len;
	}
	if (total > p->max_string || !(s = duet_vm_alloc(vm, total, &scratch)))
		return false;
	d = s;
	for (int k = 0; k < p->ncat; k++)
	{
		if (p->cat[k].map == 0)
			copy_bytes(d, v[k]->u.str.ptr, v[k]->u.str.len);
		else
			copy_mapped(d, v[k]->u.str.ptr, v[k]->u.str.len, p->cat[k].map == 2);
		d += v[k]->u.str.len;
	}
	*out = duet_string(s, total);
	return true;
}

bool
duet_concat_row(const duet_program *p, const duet_value *vars, size_t kstride, duet_vm *vm,
				duet_value *out)
{
	return concat_row(p, vars, kstride, vm, out);
}

/* duet_eval of a duet_concat_plan program: duet_concat_row, else the stack VM */
duet_errclass
duet_eval_concat(const duet_program *p, const duet_value *vars, duet_vm *vm, duet_value *out,
				 duet_error *err)
{
	duet_vm_start_strings(vm, p);
	if (concat_row(p, vars, 1, vm, out))
	{
		if (err)
			err->cls = DUET_OK;
		return DUET_OK;
	}
	return duet_eval_stack(p, vars, vm, out, err);
}
