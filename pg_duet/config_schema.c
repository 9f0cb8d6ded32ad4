/*
 * config_schema.c — definitions of config keys: a JSON-Schema-style subset, checked in C.
 *
 * duet_config_define(key, schema, description) stores a schema; every write of that key is
 * validated against it. Keywords (JSON Schema draft 2020-12 meanings):
 *
 *   type                 "string" | "number" | "integer" | "boolean" | "object" | "array" | "null",
 *                        or an array of those
 *   enum                 array of allowed values (compared as jsonb)
 *   minimum, maximum, exclusiveMinimum, exclusiveMaximum     numbers
 *   minLength, maxLength, pattern (POSIX ARE, unanchored)    strings
 *   required, properties, additionalProperties (bool|schema) objects
 *   items, minItems, maxItems                                arrays
 *   title, description, default, examples, $comment          annotations, not checked
 *
 * Any other keyword is rejected when the schema is defined, so a typo such as "maximun" is an
 * error instead of a constraint silently not enforced. A violation names the key, the keyword and
 * the JSON path of the offending value (ERRCODE_CHECK_VIOLATION).
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "duet_config.h"

/* Nesting of schemas and values checked; deeper documents are refused, never recursed into. */
#define SCHEMA_MAX_DEPTH 32

typedef struct ValidateState
{
	const char *key;			/* config key, for messages; may be NULL */
	StringInfoData path;		/* JSON path of the value being checked */
} ValidateState;

static const char *const known_keywords[] = {
	"type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
	"minLength", "maxLength", "pattern", "required", "properties", "additionalProperties",
	"items", "minItems", "maxItems", "title", "description", "default", "examples", "$comment",
	NULL
};

static const char *
json_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "object" : "array";
		case jbvObject:
			return "object";
		case jbvArray:
			return "array";
		default:
			return "unknown";
	}
}

static bool
numeric_is_integral(Numeric num)
{
	Numeric		floor = DatumGetNumeric(DirectFunctionCall1(numeric_floor, NumericGetDatum(num)));

	return !numeric_is_nan(num) &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(num),
										  NumericGetDatum(floor))) == 0;
}

static int
numeric_compare(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a), NumericGetDatum(b)));
}

static char *
jsonb_value_text(JsonbValue *v)
{
	Jsonb	   *jb = JsonbValueToJsonb(v);
	char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

	/* Long values are cut in messages; the path says where they are. */
	if (strlen(s) > 60)
		strcpy(s + 57, "...");
	return s;
}

/* The root of a jsonb as a JsonbValue: scalars extracted, containers as jbvBinary. */
static void
jsonb_root_value(Jsonb *jb, JsonbValue *out)
{
	if (JB_ROOT_IS_SCALAR(jb))
		(void) JsonbExtractScalar(&jb->root, out);
	else
	{
		out->type = jbvBinary;
		out->val.binary.data = &jb->root;
		out->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

static JsonbValue *
schema_get(JsonbContainer *schema, const char *keyword)
{
	return getKeyJsonValueFromContainer(schema, keyword, strlen(keyword), NULL);
}

static void violation(ValidateState *st, const char *keyword, const char *fmt,...)
			pg_attribute_printf(3, 4) pg_attribute_noreturn();
static void bad_schema(const char *path, const char *keyword, const char *why) pg_attribute_noreturn();

static void
violation(ValidateState *st, const char *keyword, const char *fmt,...)
{
	StringInfoData detail;
	va_list		args;

	initStringInfo(&detail);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&detail, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&detail, needed);
	}
	if (st->key)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("value for config key \"%s\" violates \"%s\"", st->key, keyword),
				 errdetail("At %s: %s", st->path.data, detail.data),
				 errhint("See the definition with: SELECT schema FROM duet.config_definitions WHERE key = '%s'.",
						 st->key)));
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("value violates \"%s\"", keyword),
			 errdetail("At %s: %s", st->path.data, detail.data)));
}

static bool
type_matches(const char *want, JsonbValue *v)
{
	const char *have = json_type_name(v);

	if (strcmp(want, have) == 0)
		return true;
	return strcmp(want, "integer") == 0 && v->type == jbvNumeric &&
		numeric_is_integral(v->val.numeric);
}

static void validate_value(ValidateState *st, JsonbContainer *schema, JsonbValue *value, int depth);

static void
check_type(ValidateState *st, JsonbValue *type, JsonbValue *value)
{
	if (type->type == jbvString)
	{
		char	   *want = pnstrdup(type->val.string.val, type->val.string.len);

		if (!type_matches(want, value))
			violation(st, "type", "expected %s, found %s.", want, json_type_name(value));
		return;
	}
	else
	{
		JsonbIterator *it = JsonbIteratorInit(type->val.binary.data);
		JsonbValue	elem;
		JsonbIteratorToken tok;
		StringInfoData wanted;

		initStringInfo(&wanted);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			char	   *want;

			if (tok != WJB_ELEM)
				continue;
			want = pnstrdup(elem.val.string.val, elem.val.string.len);
			if (type_matches(want, value))
				return;
			appendStringInfo(&wanted, "%s%s", wanted.len ? " or " : "", want);
		}
		violation(st, "type", "expected %s, found %s.", wanted.data, json_type_name(value));
	}
}

static void
check_enum(ValidateState *st, JsonbValue *allowed, JsonbValue *value)
{
	Jsonb	   *v = JsonbValueToJsonb(value);
	JsonbIterator *it = JsonbIteratorInit(allowed->val.binary.data);
	JsonbValue	elem;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok == WJB_ELEM && compareJsonbContainers(&JsonbValueToJsonb(&elem)->root, &v->root) == 0)
			return;
	}
	violation(st, "enum", "%s is not one of %s.", jsonb_value_text(value), jsonb_value_text(allowed));
}

static void
check_number(ValidateState *st, JsonbContainer *schema, Numeric num)
{
	JsonbValue *bound;

	if ((bound = schema_get(schema, "minimum")) && numeric_compare(num, bound->val.numeric) < 0)
		violation(st, "minimum", "%s is less than the minimum %s.",
				  numeric_normalize(num), numeric_normalize(bound->val.numeric));
	if ((bound = schema_get(schema, "maximum")) && numeric_compare(num, bound->val.numeric) > 0)
		violation(st, "maximum", "%s is greater than the maximum %s.",
				  numeric_normalize(num), numeric_normalize(bound->val.numeric));
	if ((bound = schema_get(schema, "exclusiveMinimum")) && numeric_compare(num, bound->val.numeric) <= 0)
		violation(st, "exclusiveMinimum", "%s is not greater than %s.",
				  numeric_normalize(num), numeric_normalize(bound->val.numeric));
	if ((bound = schema_get(schema, "exclusiveMaximum")) && numeric_compare(num, bound->val.numeric) >= 0)
		violation(st, "exclusiveMaximum", "%s is not less than %s.",
				  numeric_normalize(num), numeric_normalize(bound->val.numeric));
}

static int64
bound_int(JsonbValue *v)
{
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
}

static void
check_string(ValidateState *st, JsonbContainer *schema, JsonbValue *value)
{
	JsonbValue *kw;
	int			nchars = pg_mbstrlen_with_len(value->val.string.val, value->val.string.len);

	if ((kw = schema_get(schema, "minLength")) && nchars < bound_int(kw))
		violation(st, "minLength", "string of %d characters is shorter than %lld.",
				  nchars, (long long) bound_int(kw));
	if ((kw = schema_get(schema, "maxLength")) && nchars > bound_int(kw))
		violation(st, "maxLength", "string of %d characters is longer than %lld.",
				  nchars, (long long) bound_int(kw));
	if ((kw = schema_get(schema, "pattern")))
	{
		text	   *re = cstring_to_text_with_len(kw->val.string.val, kw->val.string.len);

		if (!RE_compile_and_execute(re, value->val.string.val, value->val.string.len,
									REG_ADVANCED, C_COLLATION_OID, 0, NULL))
			violation(st, "pattern", "%s does not match the pattern %s.",
					  jsonb_value_text(value), jsonb_value_text(kw));
	}
}

static void
check_object(ValidateState *st, JsonbContainer *schema, JsonbContainer *obj, int depth)
{
	JsonbValue *kw;
	JsonbValue *props = schema_get(schema, "properties");
	JsonbValue *additional = schema_get(schema, "additionalProperties");
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	int			pathlen = st->path.len;

	if ((kw = schema_get(schema, "required")))
	{
		it = JsonbIteratorInit(kw->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
			if (tok == WJB_ELEM &&
				!getKeyJsonValueFromContainer(obj, k.val.string.val, k.val.string.len, NULL))
				violation(st, "required", "required key \"%.*s\" is missing.",
						  k.val.string.len, k.val.string.val);
	}
	if (props == NULL && additional == NULL)
		return;

	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue *sub;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		sub = props ? getKeyJsonValueFromContainer(props->val.binary.data, k.val.string.val,
												   k.val.string.len, NULL) : NULL;
		appendStringInfo(&st->path, ".%.*s", k.val.string.len, k.val.string.val);
		if (sub != NULL)
			validate_value(st, sub->val.binary.data, &v, depth + 1);
		else if (additional != NULL && additional->type == jbvBool && !additional->val.boolean)
			violation(st, "additionalProperties", "key \"%.*s\" is not allowed.",
					  k.val.string.len, k.val.string.val);
		else if (additional != NULL && additional->type == jbvBinary)
			validate_value(st, additional->val.binary.data, &v, depth + 1);
		st->path.len = pathlen;
		st->path.data[pathlen] = '\0';
	}
}

static void
check_array(ValidateState *st, JsonbContainer *schema, JsonbContainer *arr, int depth)
{
	JsonbValue *kw;
	int			n = JsonContainerSize(arr);
	int			pathlen = st->path.len;

	if ((kw = schema_get(schema, "minItems")) && n < bound_int(kw))
		violation(st, "minItems", "array of %d items has fewer than %lld.", n, (long long) bound_int(kw));
	if ((kw = schema_get(schema, "maxItems")) && n > bound_int(kw))
		violation(st, "maxItems", "array of %d items has more than %lld.", n, (long long) bound_int(kw));
	if ((kw = schema_get(schema, "items")))
	{
		JsonbIterator *it = JsonbIteratorInit(arr);
		JsonbValue	elem;
		JsonbIteratorToken tok;
		int			i = 0;

		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			appendStringInfo(&st->path, "[%d]", i++);
			validate_value(st, kw->val.binary.data, &elem, depth + 1);
			st->path.len = pathlen;
			st->path.data[pathlen] = '\0';
		}
	}
}

static void
validate_value(ValidateState *st, JsonbContainer *schema, JsonbValue *value, int depth)
{
	JsonbValue *kw;

	check_stack_depth();
	if (depth > SCHEMA_MAX_DEPTH)
		violation(st, "depth", "values nested deeper than %d levels are not validated.", SCHEMA_MAX_DEPTH);

	if ((kw = schema_get(schema, "type")))
		check_type(st, kw, value);
	if ((kw = schema_get(schema, "enum")))
		check_enum(st, kw, value);

	switch (value->type)
	{
		case jbvNumeric:
			check_number(st, schema, value->val.numeric);
			break;
		case jbvString:
			check_string(st, schema, value);
			break;
		case jbvBinary:
			if (JsonContainerIsObject(value->val.binary.data))
				check_object(st, schema, value->val.binary.data, depth);
			else
				check_array(st, schema, value->val.binary.data, depth);
			break;
		default:
			break;
	}
}

/* ---------------------------------------------------------------------------------------------
 * Checking a schema document itself
 * --------------------------------------------------------------------------------------------- */

static void
bad_schema(const char *path, const char *keyword, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid config definition: \"%s\" %s", keyword, why),
			 errdetail("At %s of the schema.", path)));
}

static bool
is_type_name(const char *s, int len)
{
	static const char *const names[] = {"string", "number", "integer", "boolean", "object", "array", "null", NULL};
	int			i;

	for (i = 0; names[i]; i++)
		if ((int) strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
			return true;
	return false;
}

static void check_schema(JsonbContainer *schema, const char *path, int depth);

static void
check_schema_value(JsonbValue *v, const char *path, const char *kw, int depth)
{
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		bad_schema(path, kw, "must be a schema object");
	check_schema(v->val.binary.data, psprintf("%s.%s", path, kw), depth + 1);
}

static void
check_schema(JsonbContainer *schema, const char *path, int depth)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;

	check_stack_depth();
	if (depth > SCHEMA_MAX_DEPTH)
		bad_schema(path, "properties", "nests too deeply");

	it = JsonbIteratorInit(schema);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *kw;
		int			i;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		kw = pnstrdup(k.val.string.val, k.val.string.len);
		for (i = 0; known_keywords[i]; i++)
			if (strcmp(known_keywords[i], kw) == 0)
				break;
		if (known_keywords[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid config definition: unknown keyword \"%s\"", kw),
					 errdetail("At %s of the schema.", path),
					 errhint("Supported: type, enum, minimum, maximum, exclusiveMinimum, exclusiveMaximum, "
							 "minLength, maxLength, pattern, required, properties, additionalProperties, "
							 "items, minItems, maxItems (and the annotations title, description, default, examples).")));

		if (strcmp(kw, "type") == 0)
		{
			if (v.type == jbvString)
			{
				if (!is_type_name(v.val.string.val, v.val.string.len))
					bad_schema(path, kw, "must name a JSON type (string, number, integer, boolean, object, array, null)");
			}
			else if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data) &&
					 JsonContainerSize(v.val.binary.data) > 0)
			{
				JsonbIterator *ti = JsonbIteratorInit(v.val.binary.data);
				JsonbValue	t;

				while ((tok = JsonbIteratorNext(&ti, &t, true)) != WJB_DONE)
					if (tok == WJB_ELEM && (t.type != jbvString || !is_type_name(t.val.string.val, t.val.string.len)))
						bad_schema(path, kw, "must name JSON types");
			}
			else
				bad_schema(path, kw, "must be a type name or a non-empty array of type names");
		}
		else if (strcmp(kw, "enum") == 0)
		{
			if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data) ||
				JsonContainerSize(v.val.binary.data) == 0)
				bad_schema(path, kw, "must be a non-empty array");
		}
		else if (strcmp(kw, "minimum") == 0 || strcmp(kw, "maximum") == 0 ||
				 strcmp(kw, "exclusiveMinimum") == 0 || strcmp(kw, "exclusiveMaximum") == 0)
		{
			if (v.type != jbvNumeric)
				bad_schema(path, kw, "must be a number");
		}
		else if (strcmp(kw, "minLength") == 0 || strcmp(kw, "maxLength") == 0 ||
				 strcmp(kw, "minItems") == 0 || strcmp(kw, "maxItems") == 0)
		{
			if (v.type != jbvNumeric || !numeric_is_integral(v.val.numeric) ||
				numeric_compare(v.val.numeric,
								DatumGetNumeric(DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))) < 0 ||
				numeric_compare(v.val.numeric,
								DatumGetNumeric(DirectFunctionCall1(int4_numeric, Int32GetDatum(PG_INT32_MAX)))) > 0)
				bad_schema(path, kw, "must be a non-negative integer");
		}
		else if (strcmp(kw, "pattern") == 0)
		{
			if (v.type != jbvString)
				bad_schema(path, kw, "must be a string");
			/* Compiling now reports a bad regular expression at definition time. */
			(void) RE_compile_and_execute(cstring_to_text_with_len(v.val.string.val, v.val.string.len),
										  "", 0, REG_ADVANCED, C_COLLATION_OID, 0, NULL);
		}
		else if (strcmp(kw, "required") == 0)
		{
			JsonbIterator *ri;
			JsonbValue	r;

			if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
				bad_schema(path, kw, "must be an array of key names");
			ri = JsonbIteratorInit(v.val.binary.data);
			while ((tok = JsonbIteratorNext(&ri, &r, true)) != WJB_DONE)
				if (tok == WJB_ELEM && r.type != jbvString)
					bad_schema(path, kw, "must be an array of key names");
		}
		else if (strcmp(kw, "properties") == 0)
		{
			JsonbIterator *pi;
			JsonbValue	pk,
						pv;

			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				bad_schema(path, kw, "must be an object of schemas");
			pi = JsonbIteratorInit(v.val.binary.data);
			while ((tok = JsonbIteratorNext(&pi, &pk, true)) != WJB_DONE)
			{
				if (tok != WJB_KEY)
					continue;
				(void) JsonbIteratorNext(&pi, &pv, true);
				check_schema_value(&pv, psprintf("%s.properties", path),
								   pnstrdup(pk.val.string.val, pk.val.string.len), depth);
			}
		}
		else if (strcmp(kw, "additionalProperties") == 0)
		{
			if (v.type != jbvBool)
				check_schema_value(&v, path, kw, depth);
		}
		else if (strcmp(kw, "items") == 0)
			check_schema_value(&v, path, kw, depth);
	}
}

/* Raises a check violation naming key when value does not satisfy schema. */
void
duet_config_schema_validate(Jsonb *schema, Jsonb *value, const char *key)
{
	ValidateState st;
	JsonbValue	root;

	if (JB_ROOT_IS_SCALAR(schema) || !JB_ROOT_IS_OBJECT(schema))
		bad_schema("$", "schema", "must be a JSON object");
	/* The checks below trust keyword types: a schema not stored by duet_config_define is checked. */
	check_schema(&schema->root, "$", 0);
	st.key = key;
	initStringInfo(&st.path);
	appendStringInfoChar(&st.path, '$');
	jsonb_root_value(value, &root);
	validate_value(&st, &schema->root, &root, 0);
}

PG_FUNCTION_INFO_V1(duet_config_schema_check);

/* duet_config_schema_check(schema jsonb) → boolean: true, or an error naming what is wrong. */
Datum
duet_config_schema_check(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);

	if (JB_ROOT_IS_SCALAR(schema) || !JB_ROOT_IS_OBJECT(schema))
		bad_schema("$", "schema", "must be a JSON object");
	check_schema(&schema->root, "$", 0);
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(duet_config_schema_validate_value);

/* duet_config_schema_validate(schema jsonb, value jsonb, key text) → boolean: true or an error. */
Datum
duet_config_schema_validate_value(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	Jsonb	   *value = PG_GETARG_JSONB_P(1);
	char	   *key = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));

	duet_config_schema_validate(schema, value, key);
	PG_RETURN_BOOL(true);
}
