/*
 * udf_eval.c — formulas in a UDF process: compile once (per metric, or per distinct formula text
 * in the formula-per-row mode, through a bounded cache), bind the program's variables to argument
 * columns by name, evaluate each row into the function's result type.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "udf.h"

typedef struct cache_entry
{
	uint64_t	hash;
	char	   *src;			/* NULL: empty slot */
	size_t		len;
	udf_compiled compiled;
} cache_entry;

struct udf_cache
{
	cache_entry *slots;
	size_t		nslots;			/* power of two, at least twice max_entries */
	size_t		used;
	size_t		max_entries;
};

static uint64_t
fnv1a(const char *s, size_t n)
{
	uint64_t	h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char) s[i]) * 1099511628211ULL;
	return h;
}

udf_cache *
udf_cache_new(size_t max_entries)
{
	udf_cache  *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->max_entries = max_entries;
	c->nslots = 16;
	while (c->nslots < 2 * max_entries)
		c->nslots *= 2;
	c->slots = calloc(c->nslots, sizeof(cache_entry));
	if (!c->slots)
	{
		free(c);
		return NULL;
	}
	return c;
}

static void
cache_clear(udf_cache *c)
{
	for (size_t i = 0; i < c->nslots; i++)
	{
		cache_entry *e = &c->slots[i];

		if (!e->src)
			continue;
		duet_program_free(e->compiled.program);
		free(e->compiled.binding);
		free(e->src);
		memset(e, 0, sizeof(*e));
	}
	c->used = 0;
}

void
udf_cache_free(udf_cache *c)
{
	if (!c)
		return;
	cache_clear(c);
	free(c->slots);
	free(c);
}

/* Binds program variables to column names; a variable no column provides is an error. */
static bool
bind_columns(udf_compiled *uc, const udf_column *cols, size_t ncols)
{
	size_t		n = duet_program_nvars(uc->program);

	uc->binding = malloc((n ? n : 1) * sizeof(size_t));
	if (!uc->binding)
		return false;
	for (size_t v = 0; v < n; v++)
	{
		const char *name = duet_program_var(uc->program, v);
		size_t		i;

		for (i = 0; i < ncols; i++)
			if (strcmp(cols[i].name, name) == 0)
				break;
		if (i == ncols)
		{
			uc->failed = true;
			memset(&uc->error, 0, sizeof(uc->error));
			uc->error.cls = DUET_ERR_UNKNOWN_VARIABLE;
			snprintf(uc->error.message, sizeof(uc->error.message),
					 "variable \"%s\" is not an argument of the function", name);
			break;
		}
		uc->binding[v] = i;
	}
	return true;
}

const udf_compiled *
udf_cache_get(udf_cache *c, const char *src, size_t len, const udf_column *cols, size_t ncols,
			  udf_var_type_fn var_type, void *var_type_arg)
{
	uint64_t	h = fnv1a(src, len);
	size_t		mask = c->nslots - 1;
	size_t		i = (size_t) h & mask;
	cache_entry *e;
	duet_compile_options opts;

	for (; c->slots[i].src; i = (i + 1) & mask)
	{
		e = &c->slots[i];
		if (e->hash == h && e->len == len && memcmp(e->src, src, len) == 0)
			return &e->compiled;
	}
	/* A miss: when full, start over rather than track recency (formulas repeat heavily). */
	if (c->used >= c->max_entries)
	{
		cache_clear(c);
		i = (size_t) h & mask;
	}
	e = &c->slots[i];
	e->src = malloc(len ? len : 1);
	if (!e->src)
		return NULL;
	memcpy(e->src, src, len);
	e->len = len;
	e->hash = h;
	c->used++;
	memset(&opts, 0, sizeof(opts));
	opts.var_type = var_type;
	opts.var_type_arg = var_type_arg;
	e->compiled.program = duet_compile(src, len, &opts, &e->compiled.error);
	if (!e->compiled.program)
	{
		if (e->compiled.error.cls == DUET_ERR_NOMEM)
		{
			free(e->src);
			memset(e, 0, sizeof(*e));
			c->used--;
			return NULL;
		}
		e->compiled.failed = true;
	}
	else if (cols && !bind_columns(&e->compiled, cols, ncols))
		return NULL;
	return &e->compiled;
}

void
udf_error_tag(const duet_error *e, char *buf, size_t size)
{
	if (e->line > 0)
		snprintf(buf, size, "error:%s@%d:%d", duet_errclass_name(e->cls), e->line, e->column);
	else
		snprintf(buf, size, "error:%s", duet_errclass_name(e->cls));
}

static bool
fail_calc(udf_error *err, const duet_error *e)
{
	char		tag[64];

	udf_error_tag(e, tag, sizeof(tag));
	return udf_fail(err, "%s: %s", tag, e->message);
}

/* Static types of the arguments (the formula column excluded in formula mode). */
static duet_type
arg_type(void *arg, const char *name, size_t len)
{
	udf_eval   *ev = arg;

	for (size_t i = ev->formula_per_row ? 1 : 0; i < ev->nargs; i++)
		if (strlen(ev->args[i].name) == len && memcmp(ev->args[i].name, name, len) == 0)
			return udf_type_duet(ev->args[i].type);
	return DUET_T_ANY;
}

static bool
result_type_ok(const udf_column *res, duet_type t)
{
	switch (t)
	{
		case DUET_T_NUMBER:
		case DUET_T_INT:
			return res->type.base == UDF_FLOAT64 || res->type.base == UDF_FLOAT32 ||
				res->type.base == UDF_UINT8 || res->type.base == UDF_INT64 ||
				res->type.base == UDF_UINT64;
		case DUET_T_BOOL:
			return res->type.base == UDF_BOOL || res->type.base == UDF_UINT8;
		case DUET_T_STRING:
			return res->type.base == UDF_STRING;
		case DUET_T_DATE:
			/* a String result takes a date's or timestamp's text, as JSON outputs carry it */
			return res->type.base == UDF_DATE || res->type.base == UDF_DATETIME ||
				res->type.base == UDF_STRING;
		case DUET_T_TIMESTAMP:
			return res->type.base == UDF_DATETIME || res->type.base == UDF_STRING;
		default:
			return true;
	}
}

static bool
common_init(udf_eval *ev, udf_error *err)
{
	ev->vm = duet_vm_new();
	if (!ev->vm)
		return udf_fail(err, "out of memory");
	return true;
}

/* Compiles a metric's formula against ev's arguments and result; the program in *out. */
static bool
compile_metric(const udf_eval *ev, const char *formula, size_t len, udf_eval *out, udf_error *err)
{
	duet_compile_options opts;
	duet_error	derr;
	udf_compiled uc;
	char		tn[64];

	memset(&opts, 0, sizeof(opts));
	opts.var_type = arg_type;
	opts.var_type_arg = (void *) ev;
	if (ev->metrics)
	{
		opts.metric = udf_metrics_resolve;
		opts.metric_arg = (void *) ev->metrics;
	}
	out->program = duet_compile(formula, len, &opts, &derr);
	if (!out->program)
		return fail_calc(err, &derr);
	memset(&uc, 0, sizeof(uc));
	uc.program = out->program;
	if (!bind_columns(&uc, ev->args, ev->nargs))
		return udf_fail(err, "out of memory");
	out->binding = uc.binding;
	if (uc.failed)
		return fail_calc(err, &uc.error);
	/* the usual metric: its variables are exactly its arguments, in order — no per-row copy */
	out->direct = true;
	for (size_t i = 0; i < duet_program_nvars(out->program); i++)
		if (out->binding[i] != i)
			out->direct = false;
	if (!result_type_ok(&ev->result, duet_program_type(out->program)))
		return udf_fail(err, "error:type: the formula returns %s, the function returns %s",
						duet_type_name(duet_program_type(out->program)),
						udf_type_name(ev->result.type, tn, sizeof(tn)));
	return true;
}

bool
udf_eval_init_metric(udf_eval *ev, const char *formula, size_t len, udf_error *err)
{
	udf_eval	c;
	bool		ok;

	ev->formula_per_row = false;
	if (!common_init(ev, err))
		return false;
	memset(&c, 0, sizeof(c));
	ok = compile_metric(ev, formula, len, &c, err);
	ev->program = c.program;
	ev->binding = c.binding;
	ev->direct = c.direct;
	return ok;
}

bool
udf_eval_replace_metric(udf_eval *ev, const char *formula, size_t len, udf_error *err)
{
	udf_eval	c;

	memcpy(&c, ev, sizeof(c));
	c.program = NULL;
	c.binding = NULL;
	if (!compile_metric(ev, formula, len, &c, err) ||
		duet_program_nvars(c.program) != duet_program_nvars(ev->program) ||
		udf_eval_batchable(&c) != udf_eval_batchable(ev))
	{
		if (c.program && err->message[0] == '\0')
			udf_fail(err, "the new definition binds its arguments differently");
		duet_program_free(c.program);
		free(c.binding);
		return false;
	}
	duet_program_free(ev->program);
	free(ev->binding);
	ev->program = c.program;
	ev->binding = c.binding;
	ev->direct = c.direct;
	return true;
}

bool
udf_eval_init_formula(udf_eval *ev, udf_error *err)
{
	ev->formula_per_row = true;
	if (ev->nargs == 0 || ev->args[0].type.base != UDF_STRING)
		return udf_fail(err, "the first argument must be the formula, of type String");
	if (!common_init(ev, err))
		return false;
	ev->cache = udf_cache_new(1024);
	if (!ev->cache)
		return udf_fail(err, "out of memory");
	return true;
}

void
udf_eval_free(udf_eval *ev)
{
	duet_program_free(ev->program);
	free(ev->binding);
	udf_cache_free(ev->cache);
	duet_vm_free(ev->vm);
	free(ev->vars);
	ev->program = NULL;
	ev->binding = NULL;
	ev->cache = NULL;
	ev->vm = NULL;
	ev->vars = NULL;
}

bool
udf_eval_row(udf_eval *ev, const duet_value *args, duet_value *result, udf_error *err)
{
	const duet_program *p = ev->program;
	const size_t *binding = ev->binding;
	size_t		off = 0;
	size_t		n;
	duet_error	derr;

	if (ev->direct)
	{
		if (duet_eval(p, args, ev->vm, result, &derr) != DUET_OK)
			return fail_calc(err, &derr);
		goto check;
	}
	if (ev->formula_per_row)
	{
		const udf_compiled *uc;

		if (args[0].type == DUET_T_NULL)
		{
			*result = duet_null();
			return true;
		}
		uc = udf_cache_get(ev->cache, args[0].u.str.ptr, args[0].u.str.len,
						   ev->args + 1, ev->nargs - 1, arg_type, ev);
		if (!uc)
			return udf_fail(err, "error:nomem: out of memory compiling a formula");
		if (uc->failed)
			return fail_calc(err, &uc->error);
		p = uc->program;
		binding = uc->binding;
		off = 1;
	}
	n = duet_program_nvars(p);
	if (n > ev->vars_cap)
	{
		duet_value *v = realloc(ev->vars, n * sizeof(duet_value));

		if (!v)
			return udf_fail(err, "error:nomem: out of memory");
		ev->vars = v;
		ev->vars_cap = n;
	}
	for (size_t i = 0; i < n; i++)
		ev->vars[i] = args[binding[i] + off];
	if (duet_eval(p, ev->vars, ev->vm, result, &derr) != DUET_OK)
		return fail_calc(err, &derr);
check:
	return udf_eval_check(ev, result, err);
}

bool
udf_eval_check(const udf_eval *ev, const duet_value *result, udf_error *err)
{
	char		tn[64];

	if (!result_type_ok(&ev->result, result->type))
		return udf_fail(err, "error:type: the formula returned a %s, the function returns %s",
						duet_type_name(result->type), udf_type_name(ev->result.type, tn, sizeof(tn)));
	if (result->type == DUET_T_NUMBER && ev->result.type.base == UDF_UINT8 &&
		!(result->u.num >= 0 && result->u.num <= 255 && result->u.num == floor(result->u.num)))
		return udf_fail(err, "error:type: the formula returned %g, which is not a UInt8", result->u.num);
	/* Date holds 1970-01-01 .. 2149-06-06 (UInt16 days), DateTime 1970 .. 2106 (UInt32 seconds) */
	if ((result->type == DUET_T_DATE || result->type == DUET_T_TIMESTAMP) &&
		(ev->result.type.base == UDF_DATE || ev->result.type.base == UDF_DATETIME))
	{
		int64_t		secs = result->type == DUET_T_DATE ? result->u.i * 86400 :
			(result->u.i - ((result->u.i % 1000000) + 1000000) % 1000000) / 1000000;
		bool		bad = ev->result.type.base == UDF_DATE ? result->u.i < 0 || result->u.i > 65535 :
			secs < 0 || secs > INT64_C(4294967295);
		char		text[40];

		if (bad)
		{
			duet_format_time_value(result, text, sizeof(text));
			return udf_fail(err, "error:range: the formula returned %s, outside ClickHouse's %s", text,
							udf_type_name(ev->result.type, tn, sizeof(tn)));
		}
	}
	if (result->type == DUET_T_INT && ev->result.type.base == UDF_UINT8 &&
		!(result->u.i >= 0 && result->u.i <= 255))
		return udf_fail(err, "error:type: the formula returned %lld, which is not a UInt8",
						(long long) result->u.i);
	if (ev->result.type.base == UDF_INT64 || ev->result.type.base == UDF_UINT64)
		return udf_check_int_result(&ev->result, result, err);
	return true;
}

bool
udf_eval_fail(udf_error *err, const duet_error *e)
{
	return fail_calc(err, e);
}

bool
udf_eval_batchable(const udf_eval *ev)
{
	if (!ev->direct || ev->formula_per_row || !ev->program)
		return false;
	/* string arguments point into the row buffer, which the next row overwrites */
	for (size_t i = 0; i < duet_program_nvars(ev->program); i++)
		if (ev->args[i].type.base == UDF_STRING)
			return false;
	return true;
}
