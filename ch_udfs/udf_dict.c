/*
 * udf_dict.c — dictionary mode, for ClickHouse 18.16's executable dictionary source (which has no
 * executable UDFs). A complex_key_cache dictionary with keys (formula String, inputs String) pipes
 * the missing keys to us as TabSeparated; we answer each with its keys and a `result` attribute:
 * the formula's value as JSON text (3, "abc", true, null) or error:<class>[@line:col] — the
 * conformance file's notation, so dictGetString(...) can be compared with it directly.
 *
 *     SELECT dictGetString('duet_calc', 'result', tuple('clicks / impressions', '{"clicks":3,"impressions":4}'))
 *
 * The inputs are read as PostgreSQL's jsonb reads them and bound as duet_calc binds jsonb values
 * (udf_jsonb.c): `1E2` is the integer 100, `1e400` NULL, `9223372036854775808` a double; what jsonb
 * refuses (invalid JSON, a number numeric cannot hold) is error:input, an array or object error:type.
 *
 * A key whose formula or inputs are bad gets an error result; only malformed TabSeparated ends
 * the process, because the dictionary would otherwise mismatch keys and rows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "udf.h"
#include "udf_jsonb.h"

static const udf_column dict_keys[2] = {
	{"formula", {UDF_STRING, false}, true},
	{"inputs", {UDF_STRING, false}, true},
};

/* Formats the result (or error) as JSON text into *text. */
static void
result_text(udf_out *text, const duet_value *v)
{
	switch (v->type)
	{
		case DUET_T_NUMBER:
			udf_write_number(text, v->u.num);
			break;
		case DUET_T_INT:
			udf_write_int(text, v->u.i);
			break;
		case DUET_T_STRING:
			udf_write_json_string(text, v->u.str.ptr, v->u.str.len);
			break;
		case DUET_T_DATE:
		case DUET_T_TIMESTAMP:
			udf_write_time(text, v, true);
			break;
		case DUET_T_BOOL:
			if (v->u.boolean)
				udf_out_write(text, "true", 4);
			else
				udf_out_write(text, "false", 5);
			break;
		default:
			udf_out_write(text, "null", 4);
	}
}

static void
error_text(udf_out *text, const duet_error *e)
{
	char		tag[64];

	udf_error_tag(e, tag, sizeof(tag));
	udf_out_write(text, tag, strlen(tag));
}

static void
input_error(udf_out *text)
{
	udf_out_write(text, "error:input", 11);
}

/* Binds the program's variables from the inputs object and evaluates; writes the result text. */
static void
evaluate_key(udf_cache *cache, duet_vm *vm, duet_value **vars, size_t *vars_cap, udf_jsonb *doc,
			 const duet_value *formula, const duet_value *inputs, udf_out *text)
{
	const udf_compiled *uc;
	size_t		n;
	duet_value	result;
	duet_error	derr;

	/* invalid UTF-8 in a key is that key's input error (every format's rule, udf_check_utf8) */
	if (!duet_utf8_valid(formula->u.str.ptr, formula->u.str.len) ||
		!duet_utf8_valid(inputs->u.str.ptr, inputs->u.str.len))
	{
		input_error(text);
		return;
	}
	uc = udf_cache_get(cache, formula->u.str.ptr, formula->u.str.len, NULL, 0, NULL, NULL);
	if (!uc)
	{
		udf_out_write(text, "error:nomem", 11);
		return;
	}
	if (uc->failed)
	{
		error_text(text, &uc->error);
		return;
	}
	/* string values point into doc->root, which the next key's parse releases */
	if (!udf_jsonb_parse(doc, inputs->u.str.ptr, inputs->u.str.len) || !json_is_object(doc->root))
	{
		input_error(text);
		return;
	}
	n = duet_program_nvars(uc->program);
	if (n > *vars_cap)
	{
		duet_value *nv = realloc(*vars, n * sizeof(duet_value));

		if (!nv)
		{
			udf_out_write(text, "error:nomem", 11);
			return;
		}
		*vars = nv;
		*vars_cap = n;
	}
	for (size_t i = 0; i < n; i++)
	{
		json_t	   *j = json_object_get(doc->root, duet_program_var(uc->program, i));

		if (!j)
		{
			udf_out_write(text, "error:unknown_variable", 22);
			return;
		}
		/* an array or an object: a type error, as duet_calc's jsonb binding reports it (42804) */
		if (!udf_jsonb_value(doc, j, &(*vars)[i]))
		{
			udf_out_write(text, "error:type", 10);
			return;
		}
	}
	if (duet_eval(uc->program, *vars, vm, &result, &derr) != DUET_OK)
		error_text(text, &derr);
	else
		result_text(text, &result);
}

bool
udf_run_dictionary(udf_in *in, udf_out *out, udf_row *row, udf_error *err)
{
	udf_cache  *cache = udf_cache_new(1024);
	duet_vm    *vm = duet_vm_new();
	duet_value *vars = NULL;
	size_t		vars_cap = 0;
	udf_out		text;
	udf_jsonb	doc;
	udf_read_status st;
	bool		ok = false;

	udf_jsonb_init(&doc);
	memset(&text, 0, sizeof(text));
	text.fd = UDF_OUT_MEMORY;
	if (!cache || !vm)
	{
		udf_fail(err, "out of memory");
		goto done;
	}
	while ((st = udf_format_tsv.read_row(in, dict_keys, 2, row, err)) == UDF_ROW)
	{
		text.len = 0;
		evaluate_key(cache, vm, &vars, &vars_cap, &doc, &row->vals[0], &row->vals[1], &text);
		if (text.failed)
		{
			udf_fail(err, "row %llu: %s", (unsigned long long) row->number, text.failure);
			goto done;
		}
		udf_write_tsv_string(out, row->vals[0].u.str.ptr, row->vals[0].u.str.len);
		udf_out_byte(out, '\t');
		udf_write_tsv_string(out, row->vals[1].u.str.ptr, row->vals[1].u.str.len);
		udf_out_byte(out, '\t');
		udf_write_tsv_string(out, (const char *) text.buf, text.len);
		udf_out_byte(out, '\n');
		if (!udf_out_row_done(out))
		{
			udf_fail(err, "%s", out->failure);
			goto done;
		}
	}
	if (st == UDF_END)
	{
		ok = udf_out_flush(out);
		if (!ok)
			udf_fail(err, "%s", out->failure);
	}
done:
	udf_jsonb_free(&doc);
	free(text.buf);
	free(vars);
	duet_vm_free(vm);
	udf_cache_free(cache);
	return ok;
}
