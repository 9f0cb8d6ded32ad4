/*
 * explain.c — the disassembler: a compiled program as text, one line per instruction, as
 * `luac -l` prints Lua bytecode. Built on the opcode table (opcodes.c).
 *
 *   3 instructions, 2 variables, 0 constants, stack 1, result number
 *   variables: 0 clicks, 1 impressions
 *      0  [1:8]   DIV_VV            0 1        ; clicks / impressions
 *      1  [1:1]   RETURN
 *
 * Columns: instruction index, source position, opcode, its operands (arg, then argc and flags
 * where the opcode uses them), and after ';' the constants, variables, builtins or jump targets
 * they name.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

typedef struct textbuf
{
	char	   *data;
	size_t		len,
				cap;
	bool		failed;
} textbuf;

static void
tb_grow(textbuf *tb, size_t need)
{
	size_t		cap;
	char	   *grown;

	if (tb->failed || tb->len + need + 1 <= tb->cap)
		return;
	cap = tb->cap ? tb->cap : 256;
	while (cap < tb->len + need + 1)
		cap *= 2;
	if (!(grown = realloc(tb->data, cap)))
	{
		tb->failed = true;
		return;
	}
	tb->data = grown;
	tb->cap = cap;
}

static void
tb_add(textbuf *tb, const char *s, size_t n)
{
	tb_grow(tb, n);
	if (tb->failed)
		return;
	memcpy(tb->data + tb->len, s, n);
	tb->len += n;
	tb->data[tb->len] = '\0';
}

static void tb_printf(textbuf *tb, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
tb_printf(textbuf *tb, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
	{
		tb->failed = true;
		return;
	}
	tb_grow(tb, (size_t) n);
	if (tb->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(tb->data + tb->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	tb->len += (size_t) n;
}

/* A constant as the formula would spell it: 1.5, 'it''s', true, null. */
static void
add_value(textbuf *tb, const duet_value *v)
{
	char		num[32];

	switch (v->type)
	{
		case DUET_T_NUMBER:
		case DUET_T_INT:
			tb_add(tb, num, duet_format_value_number(v, num, sizeof(num)));
			break;
		case DUET_T_STRING:
			tb_add(tb, "'", 1);
			for (size_t i = 0; i < v->u.str.len; i++)
			{
				char		c = v->u.str.ptr[i];

				if (c == '\'')
					tb_add(tb, "''", 2);
				else if (c == '\n')
					tb_add(tb, "\\n", 2);	/* one line per instruction */
				else
					tb_add(tb, &c, 1);
			}
			tb_add(tb, "'", 1);
			break;
		case DUET_T_BOOL:
			tb_add(tb, v->u.boolean ? "true" : "false", v->u.boolean ? 4 : 5);
			break;
		default:
			tb_add(tb, "null", 4);
	}
}

/* What operand `val` of kind `kind` names, for the comment column. */
static void
add_operand(textbuf *tb, const duet_program *p, opnd_kind kind, int val)
{
	switch (kind)
	{
		case OPND_CONST:
			if (val >= 0 && val < p->nconsts)
				add_value(tb, &p->consts[val]);
			else
				tb_add(tb, "?", 1);
			break;
		case OPND_VAR:
			if (val >= 0 && (size_t) val < p->nvars)
				tb_printf(tb, "%s", p->vars[val]);
			else
				tb_add(tb, "?", 1);
			break;
		case OPND_TARGET:
			tb_printf(tb, "to %d", val);
			break;
		case OPND_BUILTIN:
			if (val >= 0 && val < duet_nbuiltins)
				tb_printf(tb, "%s", duet_builtins[val].name);
			else
				tb_add(tb, "?", 1);
			break;
		default:
			tb_printf(tb, "%d", val);
	}
}

static const char *
op_symbol(int op)
{
	static const char *const sym[] = {
		[OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/", [OP_EQ] = "=",
		[OP_NE] = "!=", [OP_LT] = "<", [OP_LE] = "<=", [OP_GT] = ">", [OP_GE] = ">=",
	};

	return op >= 0 && op < (int) (sizeof(sym) / sizeof(sym[0])) && sym[op] ? sym[op] : "?";
}

/* The comment of one instruction: what its operands name, as an expression where it is one. */
static void
add_comment(textbuf *tb, const duet_program *p, const instr *in)
{
	const opcode_info *info = &duet_opcodes[in->op];

	if (in->op >= OP_ADD_VV && in->op <= OP_DIV_SC)
	{
		/* x op y with x, y a variable, a constant or the top of the stack */
		const char *sym = op_symbol(OP_ADD + (in->op - OP_ADD_VV) % 4);

		if (in->op >= OP_ADD_SV)
			tb_add(tb, "top", 3);
		else
			add_operand(tb, p, (opnd_kind) info->arg, in->arg);
		tb_printf(tb, " %s ", sym);
		if (in->op >= OP_ADD_SV)
			add_operand(tb, p, (opnd_kind) info->arg, in->arg);
		else
			add_operand(tb, p, (opnd_kind) info->argc, in->argc);
		return;
	}
	switch (in->op)
	{
		case OP_CMP_VC:
			add_operand(tb, p, OPND_VAR, in->arg);
			tb_printf(tb, " %s ", op_symbol(in->flags));
			add_operand(tb, p, OPND_CONST, in->argc);
			return;
		case OP_ISNULL_V:
			add_operand(tb, p, OPND_VAR, in->arg);
			tb_printf(tb, " is %snull", in->flags ? "not " : "");
			return;
		case OP_CLAMP_CC:
			tb_add(tb, "clamp(top, ", 11);
			add_operand(tb, p, OPND_CONST, in->arg);
			tb_add(tb, ", ", 2);
			add_operand(tb, p, OPND_CONST, in->argc);
			tb_add(tb, ")", 1);
			return;
		case OP_ROUND_C:
			tb_printf(tb, "round(top, %d)", in->arg);
			return;
		case OP_CALL:
			add_operand(tb, p, OPND_BUILTIN, in->arg);
			tb_printf(tb, "/%d%s", in->argc, (in->flags & CALL_NUMERIC) ? " numeric" : "");
			return;
		case OP_IN:
			tb_printf(tb, "%s%d item%s", in->flags ? "not in, " : "", in->argc,
					  in->argc == 1 ? "" : "s");
			return;
		case OP_BETWEEN:
			if (in->flags)
				tb_add(tb, "not between", 11);
			return;
		case OP_CONCAT_N:
			tb_printf(tb, "%d values", in->argc);
			if (in->flags & 1)
			{
				tb_add(tb, ", the last ", 11);
				add_operand(tb, p, OPND_VAR, in->arg);
			}
			return;
		default:
			if (info->arg != OPND_NONE)
				add_operand(tb, p, (opnd_kind) info->arg, in->arg);
	}
}

char *
duet_program_explain(const duet_program *p)
{
	textbuf		tb = {0};

	tb_printf(&tb, "%d instruction%s, %zu variable%s, %d constant%s, stack %d, result %s\n",
			  p->ncode, p->ncode == 1 ? "" : "s", p->nvars, p->nvars == 1 ? "" : "s",
			  p->nconsts, p->nconsts == 1 ? "" : "s", p->max_stack, duet_type_name(p->type));
	if (p->nvars > 0)
	{
		tb_add(&tb, "variables:", 10);
		for (size_t i = 0; i < p->nvars; i++)
			tb_printf(&tb, "%s %zu %s", i ? "," : "", i, p->vars[i]);
		tb_add(&tb, "\n", 1);
	}
	if (p->nconsts > 0)
	{
		tb_add(&tb, "constants:", 10);
		for (int i = 0; i < p->nconsts; i++)
		{
			tb_printf(&tb, "%s %d ", i ? "," : "", i);
			add_value(&tb, &p->consts[i]);
		}
		tb_add(&tb, "\n", 1);
	}
	for (int pc = 0; pc < p->ncode; pc++)
	{
		const instr *in = &p->code[pc];
		const opcode_info *info = in->op < OP_NCODES ? &duet_opcodes[in->op] : NULL;
		char		pos[32],
					opnds[48];
		size_t		mark;

		snprintf(pos, sizeof(pos), "[%u:%u]", (unsigned) in->line, (unsigned) in->col);
		if (!info || !info->name)
		{
			tb_printf(&tb, "%4d  %-8s %-17s\n", pc, pos, "?");
			continue;
		}
		opnds[0] = '\0';
		if (info->arg != OPND_NONE && info->argc != OPND_NONE)
			snprintf(opnds, sizeof(opnds), "%d %u", (int) in->arg, (unsigned) in->argc);
		else if (info->arg != OPND_NONE)
			snprintf(opnds, sizeof(opnds), "%d", (int) in->arg);
		else if (info->argc != OPND_NONE)
			snprintf(opnds, sizeof(opnds), "%u", (unsigned) in->argc);
		if (info->flags != FLG_NONE)
			snprintf(opnds + strlen(opnds), sizeof(opnds) - strlen(opnds), "%s%u",
					 opnds[0] ? " " : "", (unsigned) in->flags);
		tb_printf(&tb, "%4d  %-8s %-17s %-10s ; ", pc, pos, info->name, opnds);
		mark = tb.len;
		add_comment(&tb, p, in);
		if (tb.len == mark)
		{
			/* nothing to name: drop the trailing "; " and the padding before it */
			while (tb.len > 0 && (tb.data[tb.len - 1] == ' ' || tb.data[tb.len - 1] == ';'))
				tb.len--;
			if (tb.data)
				tb.data[tb.len] = '\0';
		}
		tb_add(&tb, "\n", 1);
	}
	if (tb.failed)
	{
		free(tb.data);
		return NULL;
	}
	return tb.data;
}
