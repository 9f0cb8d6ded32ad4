/*
 * test_conformance.c — runs the test/conformance TSV files through calc (one cmocka test per file).
 *
 * Each case is evaluated three ways, and all must agree with the expected column:
 *   1. compiled without variable types (every variable "any": type errors surface at run time),
 *      evaluated twice on one vm (the second, warm evaluation must not allocate);
 *   2. compiled with the inputs' JSON types declared (type errors at compile time, more folding);
 *   3. for numbers, the duet_format_number text must read back as the same double.
 * The inputs are read as jsonb reads them and bound as duet_calc binds jsonb (ch_udfs/udf_jsonb.c,
 * the dictionary mode's reader): `1E2` is the integer 100, `1e400` NULL, `1.0` a double.
 * Positions in "error:<class>@line:col" are checked against the untyped compilation.
 * The file format is described in test/conformance/README.md.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include "duet_calc.h"
#include "udf_jsonb.h"

#include "alloc_count.h"

#ifndef DUET_CONFORMANCE_DIR
#define DUET_CONFORMANCE_DIR "test/conformance"
#endif

typedef struct outcome
{
	duet_errclass cls;
	int			line,
				col;
	duet_value	val;
	char		text[4096];		/* string result copy */
	char		message[256];
} outcome;

/* Undoes the formula column's escapes: \n \t \\ . */
static void
unescape(const char *in, char *out)
{
	for (; *in; in++)
	{
		if (*in == '\\' && in[1])
		{
			in++;
			*out++ = *in == 'n' ? '\n' : *in == 't' ? '\t' : *in;
		}
		else
			*out++ = *in;
	}
	*out = '\0';
}

/* The input's value as duet_calc binds it; false (and *v NULL) for an array or an object. */
static bool
input_value(const udf_jsonb *doc, const json_t *j, duet_value *v)
{
	if (udf_jsonb_value(doc, j, v))
		return true;
	*v = duet_null();
	return false;
}

static duet_type
var_type_from_json(void *arg, const char *name, size_t len)
{
	const udf_jsonb *doc = arg;
	char		key[256];
	json_t	   *j;
	duet_value	v;

	snprintf(key, sizeof(key), "%.*s", (int) len, name);
	j = json_object_get(doc->root, key);
	if (!j || !input_value(doc, j, &v))
		return DUET_T_ANY;
	return v.type;				/* an integer input: typed as the binders' integer columns are */
}

static bool
bind(const duet_program *p, const udf_jsonb *doc, duet_value *vars, outcome *o)
{
	for (size_t i = 0; i < duet_program_nvars(p); i++)
	{
		json_t	   *v = json_object_get(doc->root, duet_program_var(p, i));

		if (v == NULL)
		{
			o->cls = DUET_ERR_UNKNOWN_VARIABLE;
			snprintf(o->message, sizeof(o->message), "variable %s is not bound", duet_program_var(p, i));
			return false;
		}
		input_value(doc, v, &vars[i]);
	}
	return true;
}

static void
run(const char *formula, udf_jsonb *inputs, bool typed, outcome *o)
{
	duet_compile_options opts = {.var_type = var_type_from_json, .var_type_arg = inputs};
	duet_error	err;
	duet_program *p;
	duet_value	vars[256];
	duet_vm    *vm;

	memset(o, 0, sizeof(*o));
	p = duet_compile(formula, SIZE_MAX, typed ? &opts : NULL, &err);
	if (p == NULL)
	{
		o->cls = err.cls;
		o->line = err.line;
		o->col = err.column;
		snprintf(o->message, sizeof(o->message), "%s", err.message);
		return;
	}
	assert_true(duet_program_nvars(p) <= 256);
	vm = duet_vm_new();
	if (bind(p, inputs, vars, o))
	{
		duet_value	out;

		o->cls = duet_eval(p, vars, vm, &out, &err);
		if (o->cls == DUET_OK)
		{
			size_t		allocs = allocations;
			duet_value	again;

			/* a warm second evaluation gives the same and allocates nothing */
			assert_int_equal(duet_eval(p, vars, vm, &again, &err), DUET_OK);
			assert_int_equal(again.type, out.type);
			assert_int_equal(allocations, allocs);
			if (out.type == DUET_T_DATE || out.type == DUET_T_TIMESTAMP)
			{
				/* a date or timestamp result is compared as its text, as JSON outputs carry it */
				size_t		n = duet_format_time_value(&out, o->text, sizeof(o->text));

				out = duet_string(o->text, n);
			}
			o->val = out;
			if (out.type == DUET_T_STRING && out.u.str.ptr != o->text)
			{
				assert_true(out.u.str.len < sizeof(o->text));
				memcpy(o->text, out.u.str.ptr, out.u.str.len);
				o->val.u.str.ptr = o->text;
			}
		}
		else
		{
			o->line = err.line;
			o->col = err.column;
			snprintf(o->message, sizeof(o->message), "%s", err.message);
		}
	}
	duet_vm_free(vm);
	duet_program_free(p);
}

static void
describe(const outcome *o, char *buf, size_t size)
{
	char		num[32];

	if (o->cls != DUET_OK)
		snprintf(buf, size, "error:%s@%d:%d (%s)", duet_errclass_name(o->cls), o->line, o->col, o->message);
	else if (o->val.type == DUET_T_NUMBER || o->val.type == DUET_T_INT)
	{
		duet_format_value_number(&o->val, num, sizeof(num));
		snprintf(buf, size, "%s%s", num, o->val.type == DUET_T_INT ? " (integer)" : "");
	}
	else if (o->val.type == DUET_T_STRING)
		snprintf(buf, size, "\"%.*s\"", (int) o->val.u.str.len, o->val.u.str.ptr);
	else if (o->val.type == DUET_T_BOOL)
		snprintf(buf, size, "%s", o->val.u.boolean ? "true" : "false");
	else
		snprintf(buf, size, "null");
}

/* "-?[0-9]+": an expected integer, compared digit for digit */
static bool
int_literal(const char *s)
{
	if (*s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Compares an outcome with the expected column; returns NULL when it matches, else a reason. */
static const char *
mismatch(const outcome *o, const char *expected, bool check_pos)
{
	if (strncmp(expected, "error:", 6) == 0)
	{
		char		cls[64];
		int			line = 0,
					col = 0;
		const char *at = strchr(expected, '@');

		snprintf(cls, sizeof(cls), "%.*s", (int) ((at ? (size_t) (at - expected) : strlen(expected)) - 6), expected + 6);
		if (o->cls == DUET_OK || strcmp(cls, duet_errclass_name(o->cls)) != 0)
			return "wrong outcome";
		if (at && check_pos)
		{
			if (sscanf(at + 1, "%d:%d", &line, &col) != 2)
				return "malformed expected position";
			if (line != o->line || col != o->col)
				return "wrong error position";
		}
		return NULL;
	}
	{
		json_error_t jerr;
		json_t	   *e = json_loads(expected, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
		const char *why = NULL;

		if (e == NULL)
			return "malformed expected value";
		if (o->cls != DUET_OK)
			why = "unexpected error";
		else if (json_is_null(e))
			why = o->val.type == DUET_T_NULL ? NULL : "expected null";
		else if (json_is_boolean(e))
			why = (o->val.type == DUET_T_BOOL && o->val.u.boolean == json_is_true(e)) ? NULL : "expected boolean";
		else if (json_is_string(e))
			why = (o->val.type == DUET_T_STRING && o->val.u.str.len == json_string_length(e) &&
				   memcmp(o->val.u.str.ptr, json_string_value(e), o->val.u.str.len) == 0) ? NULL : "expected string";
		else if (json_is_number(e) && o->val.type == DUET_T_INT)
		{
			char		text[32];

			/* an integer result: exactly the expected digits, or the same value as a double */
			duet_format_int(o->val.u.i, text, sizeof(text));
			if (strcmp(text, expected) != 0 &&
				(int_literal(expected) || (double) o->val.u.i != json_number_value(e)))
				why = "expected number";
		}
		else if (json_is_number(e))
		{
			if (o->val.type != DUET_T_NUMBER || o->val.u.num != json_number_value(e))
				why = "expected number";
			else if (int_literal(expected) && fabs(o->val.u.num) > 9007199254740992.0)
				why = "expected an exact integer, got a double";
			else if ((o->val.u.num == 0 && signbit(o->val.u.num)) || !isfinite(o->val.u.num))
				why = "negative zero or non-finite number";
			else
			{
				char		text[32];

				duet_format_number(o->val.u.num, text, sizeof(text));
				if (strtod(text, NULL) != o->val.u.num)
					why = "format_number does not round-trip";
			}
		}
		else
			why = "expected column is not a scalar";
		json_decref(e);
		return why;
	}
}

static void
test_file(void **state)
{
	const char *path = *state;
	FILE	   *f = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		n;
	int			lineno = 0,
				cases = 0,
				failures = 0;
	char	   *formula;

	assert_non_null(f);
	formula = malloc(1 << 20);
	assert_non_null(formula);
	while ((n = getline(&line, &cap, f)) >= 0)
	{
		char	   *tab1,
				   *tab2;
		udf_jsonb	inputs;
		outcome		o;
		const char *why;

		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		tab1 = strchr(line, '\t');
		tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
		if (tab2 == NULL || strchr(tab2 + 1, '\t'))
		{
			print_error("%s:%d: malformed line (need formula<TAB>inputs<TAB>expected)\n", path, lineno);
			failures++;
			continue;
		}
		*tab1 = *tab2 = '\0';
		unescape(line, formula);
		udf_jsonb_init(&inputs);
		if (!udf_jsonb_parse(&inputs, tab1 + 1, strlen(tab1 + 1)) || !json_is_object(inputs.root))
		{
			print_error("%s:%d: inputs are not a JSON object jsonb accepts\n", path, lineno);
			failures++;
			udf_jsonb_free(&inputs);
			continue;
		}
		cases++;
		for (int typed = 0; typed < 2; typed++)
		{
			run(formula, &inputs, typed, &o);
			if ((why = mismatch(&o, tab2 + 1, !typed)) != NULL)
			{
				char		got[600];

				describe(&o, got, sizeof(got));
				print_error("%s:%d: %s%s: %s\n    expected %s\n    got      %s\n", path, lineno, why,
							typed ? " (typed)" : "", line, tab2 + 1, got);
				failures++;
				break;
			}
		}
		udf_jsonb_free(&inputs);
	}
	free(line);
	free(formula);
	fclose(f);
	print_message("%s: %d cases, %d failed\n", path, cases, failures);
	assert_true(cases > 0);
	assert_int_equal(failures, 0);
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

int
main(void)
{
	const char *dir = getenv("DUET_CONFORMANCE_DIR") ? getenv("DUET_CONFORMANCE_DIR") : DUET_CONFORMANCE_DIR;
	DIR		   *d = opendir(dir);
	struct dirent *e;
	char	   *paths[256];
	struct CMUnitTest tests[256];
	int			n = 0,
				rc;

	if (d == NULL)
	{
		fprintf(stderr, "cannot open %s\n", dir);
		return 1;
	}
	while ((e = readdir(d)) != NULL && n < 256)
	{
		size_t		l = strlen(e->d_name);

		if (l > 4 && strcmp(e->d_name + l - 4, ".tsv") == 0)
		{
			paths[n] = malloc(strlen(dir) + l + 2);
			sprintf(paths[n], "%s/%s", dir, e->d_name);
			n++;
		}
	}
	closedir(d);
	qsort(paths, (size_t) n, sizeof(char *), by_name);
	for (int i = 0; i < n; i++)
		tests[i] = (struct CMUnitTest) {strrchr(paths[i], '/') + 1, test_file, NULL, NULL, paths[i]};
	rc = _cmocka_run_group_tests("conformance", tests, (size_t) n, NULL, NULL);
	for (int i = 0; i < n; i++)
		free(paths[i]);
	return rc;
}
