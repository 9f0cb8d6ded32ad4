/*
 * sqlgen_cases.c — the conformance harness's compiler of formulas to ClickHouse SQL (test/ch_server.py,
 * the ClickHouse SQL conformance of docs/metrics.md): reads one JSON object per line,
 *
 *     {"formula": "x / y", "types": {"x": "Float64", "y": "Float64"}, "doubles": {"x": 1.0, "y": 2}}
 *
 * and writes one per line: {"sql": "<ClickHouse expression>"} or {"refused": "<message>"} or
 * {"error": "<message>"} (the formula does not compile), and with "doubles" also Duet's own result
 * over those inputs, every number a double: {"duet": <value>} or {"duet_error": "<class>"}. A
 * formula's variable is the input of the same name, else of the same name in another case (as
 * Duet binds); the SQL names it `key` (backquoted). Types: Float64, String, Bool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "duet_calc.h"

typedef struct vars
{
	json_t	   *types;
	char		sql[64][300];	/* per variable of the formula: its backquoted input key */
	const char *keys[64];
	int			n;
} vars;

static const char *
input_key(json_t *types, const char *name, size_t len)
{
	const char *key;
	json_t	   *v;

	json_object_foreach(types, key, v)
		if (strlen(key) == len && memcmp(key, name, len) == 0)
		return key;
	json_object_foreach(types, key, v)
		if (strlen(key) == len && strncasecmp(key, name, len) == 0)
		return key;
	return NULL;
}

static duet_type
var_type(void *arg, const char *name, size_t len)
{
	vars	   *v = arg;
	const char *key = input_key(v->types, name, len);
	const char *t = key ? json_string_value(json_object_get(v->types, key)) : NULL;

	if (!t)
		return DUET_T_ANY;
	return strcmp(t, "String") == 0 ? DUET_T_STRING : strcmp(t, "Bool") == 0 ? DUET_T_BOOL : DUET_T_NUMBER;
}

static const char *
var_sql(void *arg, const char *name, size_t len)
{
	vars	   *v = arg;
	const char *key = input_key(v->types, name, len);
	char	   *out;

	if (!key)
		return NULL;
	for (int i = 0; i < v->n; i++)
		if (v->keys[i] == key)
			return v->sql[i];
	if (v->n == 64)
		return NULL;
	v->keys[v->n] = key;
	out = v->sql[v->n++];
	*out++ = '`';
	for (const char *p = key; *p && out < v->sql[v->n - 1] + 290; p++)
	{
		if (*p == '`' || *p == '\\')
			*out++ = '\\';
		*out++ = *p;
	}
	*out++ = '`';
	*out = '\0';
	return v->sql[v->n - 1];
}

/* Duet over the inputs, every number a double */
static void
duet_result(json_t *out, const char *formula, json_t *doubles)
{
	duet_error	err;
	duet_program *p = duet_compile(formula, SIZE_MAX, NULL, &err);
	duet_value	in[64],
				res;
	duet_vm    *vm;

	if (!p)
	{
		json_object_set_new(out, "duet_error", json_string(duet_errclass_name(err.cls)));
		return;
	}
	for (size_t i = 0; i < duet_program_nvars(p) && i < 64; i++)
	{
		const char *name = duet_program_var(p, i);
		const char *key = input_key(doubles, name, strlen(name));
		json_t	   *v = key ? json_object_get(doubles, key) : NULL;

		in[i].type = DUET_T_NULL;
		if (json_is_number(v))
			in[i] = duet_number(json_number_value(v));
		else if (json_is_string(v))
		{
			in[i].type = DUET_T_STRING;
			in[i].u.str.ptr = json_string_value(v);
			in[i].u.str.len = json_string_length(v);
		}
		else if (json_is_boolean(v))
		{
			in[i].type = DUET_T_BOOL;
			in[i].u.boolean = json_is_true(v);
		}
	}
	vm = duet_vm_new();
	if (duet_eval(p, in, vm, &res, &err) != DUET_OK)
		json_object_set_new(out, "duet_error", json_string(duet_errclass_name(err.cls)));
	else if (res.type == DUET_T_NUMBER)
		json_object_set_new(out, "duet", json_real(res.u.num));
	else if (res.type == DUET_T_INT)
		json_object_set_new(out, "duet", json_integer(res.u.i));
	else if (res.type == DUET_T_STRING)
		json_object_set_new(out, "duet", json_stringn(res.u.str.ptr, res.u.str.len));
	else if (res.type == DUET_T_BOOL)
		json_object_set_new(out, "duet", json_boolean(res.u.boolean));
	else
		json_object_set_new(out, "duet", json_null());
	duet_vm_free(vm);
	duet_program_free(p);
}

int
main(void)
{
	char	   *line = NULL;
	size_t		cap = 0;

	while (getline(&line, &cap, stdin) > 0)
	{
		json_error_t jerr;
		json_t	   *in = json_loads(line, 0, &jerr),
				   *out = json_object();
		const char *formula = in ? json_string_value(json_object_get(in, "formula")) : NULL;
		vars		v;
		duet_compile_options opts;
		duet_sql_options so;
		duet_error	err;
		duet_type	type;
		bool		refused;
		char	   *sql,
				   *text;

		if (!formula)
		{
			fprintf(stderr, "sqlgen_cases: bad input line: %s", line);
			return 2;
		}
		memset(&v, 0, sizeof(v));
		v.types = json_object_get(in, "types");
		memset(&opts, 0, sizeof(opts));
		opts.var_type = var_type;
		opts.var_type_arg = &v;
		memset(&so, 0, sizeof(so));
		so.dialect = DUET_SQL_CLICKHOUSE;
		so.var_sql = var_sql;
		so.arg = &v;
		sql = duet_compile_sql(formula, SIZE_MAX, &opts, &so, &type, &refused, &err);
		if (sql)
			json_object_set_new(out, "sql", json_string(sql));
		else
			json_object_set_new(out, refused ? "refused" : "error", json_string(err.message));
		free(sql);
		if (json_object_get(in, "doubles"))
			duet_result(out, formula, json_object_get(in, "doubles"));
		text = json_dumps(out, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(17));
		printf("%s\n", text);
		fflush(stdout);
		free(text);
		json_decref(out);
		json_decref(in);
	}
	free(line);
	return 0;
}
