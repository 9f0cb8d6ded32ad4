/*
 * calc_value.c — the one PostgreSQL <-> Duet value layer (DESIGN.md §4, "one binder").
 *
 * Which PostgreSQL type becomes which Duet value (docs/calc.md, "PostgreSQL values"), how a formula
 * variable finds its column, and how a Duet result becomes jsonb or text. duet_calc's row, jsonb
 * and positional forms (calc_bind.c), the planner's rewrite (calc_support.c) and rule conditions,
 * values and messages (rules_formula.c) all go through here, so one formula over one row gives one
 * answer wherever it runs. sql/calc_binding.sql runs the conformance vectors through both.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "access/xact.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include <math.h>

#include "calc_pg.h"

/*
 * The column's Duet type as a signature character ('n' number, 's' string, 'b' boolean, 'a' not
 * known before the value is seen; '\0' not a formula value), and how its datums are read. By base
 * type: a domain binds as the type it is over.
 */
char
pgcalc_column_init(PgcalcColumn *col, Oid typid, MemoryContext mcxt)
{
	Oid			base = getBaseType(typid);

	col->typid = base;
	switch (base)
	{
		case INT2OID:
			col->kind = PGCALC_COL_INT2;
			return 'n';
		case INT4OID:
			col->kind = PGCALC_COL_INT4;
			return 'n';
		case INT8OID:
			col->kind = PGCALC_COL_INT8;
			return 'n';
		case OIDOID:
			col->kind = PGCALC_COL_OID;
			return 'n';
		case FLOAT4OID:
			col->kind = PGCALC_COL_FLOAT4;
			return 'n';
		case FLOAT8OID:
			col->kind = PGCALC_COL_FLOAT8;
			return 'n';
		case NUMERICOID:
			col->kind = PGCALC_COL_NUMERIC;
			return 'n';
		case TEXTOID:
		case VARCHAROID:
			col->kind = PGCALC_COL_TEXT;
			return 's';
		case BPCHAROID:
			col->kind = PGCALC_COL_BPCHAR;
			return 's';
		case NAMEOID:
			col->kind = PGCALC_COL_NAME;
			return 's';
		case BOOLOID:
			col->kind = PGCALC_COL_BOOL;
			return 'b';
		case DATEOID:
			col->kind = PGCALC_COL_DATE;
			return 'd';
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			/* both count microseconds: timestamptz from UTC, timestamp as written (UTC by contract) */
			col->kind = PGCALC_COL_TIMESTAMP;
			return 't';
		case UNKNOWNOID:
			/* an untyped literal (a C string), or a null whose type nothing says: not known yet */
			col->kind = PGCALC_COL_CSTRING;
			return 'a';
		case UUIDOID:
			break;
		default:
			/*
			 * Other types are not formula values: their text depends on the session (DateStyle,
			 * IntervalStyle, TimeZone, extra_float_digits, bytea_output, lc_monetary), and a rule
			 * evaluated by the worker must give the answer duet_calc gives in a session. Enum labels
			 * and uuids print the same everywhere.
			 */
			if (!type_is_enum(base))
				return '\0';
			break;
	}
	{
		Oid			typoutput;
		bool		varlena;

		col->kind = PGCALC_COL_OTHER;
		getTypeOutputInfo(base, &typoutput, &varlena);
		fmgr_info_cxt(typoutput, &col->output, mcxt);
		return 's';
	}
}

/* pgcalc_column_init, raising the error when the column's type is not a formula value. */
char
pgcalc_column_init_or_error(PgcalcColumn *col, Oid typid, const char *name, MemoryContext mcxt)
{
	char		sig = pgcalc_column_init(col, typid, mcxt);

	if (sig == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of type %s cannot be a formula variable",
						name, format_type_be(typid)),
				 errdetail("Formula variables take smallint, integer, bigint, oid, real, double precision, "
						   "numeric, text, varchar, char, name, boolean, date, timestamp, timestamptz, "
						   "uuid or enum columns."),
				 errhint("Cast the column where the row is made, as in SELECT %s::text AS %s, ...",
						 quote_identifier(name), quote_identifier(name))));
	return sig;
}

duet_type
pgcalc_sig_type(char sig)
{
	switch (sig)
	{
		case 'n':
			return DUET_T_NUMBER;
		case 's':
			return DUET_T_STRING;
		case 'b':
			return DUET_T_BOOL;
		case 'd':
			return DUET_T_DATE;
		case 't':
			return DUET_T_TIMESTAMP;
		default:
			return DUET_T_ANY;
	}
}

/*
 * The column a variable names: the one with exactly that name; failing that, the only column
 * whose name equals it ignoring ASCII case (as a rule written `Spend > budget` over a column
 * spend expects). Several such columns and no exact match: none (*ambiguous set), since choosing
 * would depend on column order. Returns the 0-based attribute index or -1.
 */
int
pgcalc_find_column(TupleDesc desc, const char *name, bool *ambiguous)
{
	int			folded = -1;

	if (ambiguous)
		*ambiguous = false;
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (att->attisdropped)
			continue;
		if (strcmp(NameStr(att->attname), name) == 0)
			return a;
		if (pg_strcasecmp(NameStr(att->attname), name) == 0)
		{
			if (folded >= 0)
			{
				/* keep looking for an exact match */
				folded = -2;
			}
			else if (folded == -1)
				folded = a;
		}
	}
	if (folded == -2 && ambiguous)
		*ambiguous = true;
	return folded >= 0 ? folded : -1;
}


/* A string input in the engine's encoding (converted in CurrentMemoryContext when needed). */
static duet_value
string_value(const char *ptr, size_t len)
{
	size_t		ulen;
	const char *u = pgcalc_to_utf8(ptr, len, &ulen);

	return duet_string(u, ulen);
}

double
pgcalc_numeric_double(Numeric num)
{
	/* Correctly rounded, through the shortest decimal text and strtod; beyond the doubles: ±inf. */
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, NumericGetDatum(num)));
}

/*
 * A jsonb number: an integer when its text has no fraction (jsonb keeps `7` and `7.0` apart) and
 * it fits in 64 bits, else the correctly rounded double (NULL beyond the doubles).
 */
duet_value
pgcalc_jsonb_number(Numeric num)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	const char *p = text;
	int64		i = 0;
	bool		neg = *p == '-';

	if (neg)
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		int			digit = *p - '0';

		/* accumulate negatively, so that -2^63 fits */
		if (i < (PG_INT64_MIN + digit) / 10)
			break;
		i = i * 10 - digit;
	}
	if (*p == '\0' && p > text + neg && (neg || i != PG_INT64_MIN))
		return duet_int(neg ? i : -i);
	return pgcalc_number_or_null(pgcalc_numeric_double(num));
}

/* PostgreSQL counts from 2000-01-01, Duet from 1970-01-01 */
#define PG_DUET_EPOCH_DAYS (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)
#define PG_DUET_EPOCH_US ((int64) PG_DUET_EPOCH_DAYS * USECS_PER_DAY)

/* A date or timestamp outside the formula's 0001-01-01 .. 9999-12-31 (or infinite) is an error. */
static void
time_out_of_range(Oid typid, Datum d)
{
	Oid			typoutput;
	bool		varlena;

	getTypeOutputInfo(typid, &typoutput, &varlena);
	ereport(ERROR,
			(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
			 errmsg("%s %s is outside the range of formula dates", format_type_be(typid),
					OidOutputFunctionCall(typoutput, d)),
			 errdetail("Formula dates and timestamps lie between 0001-01-01 and 9999-12-31 (UTC)."),
			 errhint("Filter or clamp the column where the row is made, as in least(col, '9999-12-31').")));
}

static duet_value
date_value(Oid typid, Datum d)
{
	DateADT		v = DatumGetDateADT(d);

	if (DATE_NOT_FINITE(v) || (int64) v + PG_DUET_EPOCH_DAYS < DUET_DATE_MIN ||
		(int64) v + PG_DUET_EPOCH_DAYS > DUET_DATE_MAX)
		time_out_of_range(typid, d);
	return duet_date((int32) (v + PG_DUET_EPOCH_DAYS));
}

static duet_value
timestamp_value(Oid typid, Datum d)
{
	Timestamp	v = DatumGetTimestamp(d);

	if (TIMESTAMP_NOT_FINITE(v) || v + PG_DUET_EPOCH_US < (int64) DUET_DATE_MIN * USECS_PER_DAY ||
		v + PG_DUET_EPOCH_US >= ((int64) DUET_DATE_MAX + 1) * USECS_PER_DAY)
		time_out_of_range(typid, d);
	return duet_timestamp(v + PG_DUET_EPOCH_US);
}

void
pgcalc_set_now(duet_vm *vm)
{
	duet_vm_set_now(vm, GetCurrentStatementStartTimestamp() + PG_DUET_EPOCH_US);
}

/* The Duet value of a non-null datum of the column. Strings may point into the datum. */
duet_value
pgcalc_datum_value(const PgcalcColumn *col, Datum d)
{
	switch (col->kind)
	{
		case PGCALC_COL_INT2:
			return duet_int(DatumGetInt16(d));
		case PGCALC_COL_INT4:
			return duet_int(DatumGetInt32(d));
		case PGCALC_COL_INT8:
			return duet_int(DatumGetInt64(d));
		case PGCALC_COL_OID:
			return duet_int(DatumGetObjectId(d));
		case PGCALC_COL_FLOAT4:
			return pgcalc_number_or_null(DatumGetFloat4(d));
		case PGCALC_COL_FLOAT8:
			return pgcalc_number_or_null(DatumGetFloat8(d));
		case PGCALC_COL_NUMERIC:
			return pgcalc_number_or_null(pgcalc_numeric_double(DatumGetNumeric(d)));
		case PGCALC_COL_TEXT:
			{
				text	   *t = DatumGetTextPP(d);

				return string_value(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
		case PGCALC_COL_BPCHAR:
			{
				/* trailing blanks are not significant in char(n), as PostgreSQL compares it */
				text	   *t = DatumGetTextPP(d);
				const char *p = VARDATA_ANY(t);
				size_t		len = VARSIZE_ANY_EXHDR(t);

				while (len > 0 && p[len - 1] == ' ')
					len--;
				return string_value(p, len);
			}
		case PGCALC_COL_NAME:
			{
				const char *p = NameStr(*DatumGetName(d));

				return string_value(p, strlen(p));
			}
		case PGCALC_COL_CSTRING:
			{
				const char *p = DatumGetCString(d);

				return string_value(p, strlen(p));
			}
		case PGCALC_COL_BOOL:
			return duet_bool(DatumGetBool(d));
		case PGCALC_COL_DATE:
			return date_value(col->typid, d);
		case PGCALC_COL_TIMESTAMP:
			return timestamp_value(col->typid, d);
		case PGCALC_COL_OTHER:
			{
				char	   *p = OutputFunctionCall((FmgrInfo *) &col->output, d);

				return string_value(p, strlen(p));
			}
	}
	return duet_null();
}

/*
 * A value of a jsonb object (duet_calc's jsonb form, duet_rule_test's row): its signature
 * character, or '\0' for an array or an object, which are not formula values.
 */
char
pgcalc_jsonb_value(const JsonbValue *v, duet_value *out)
{
	switch (v->type)
	{
		case jbvNull:
			*out = duet_null();
			return 'a';
		case jbvNumeric:
			*out = pgcalc_jsonb_number(v->val.numeric);
			return 'n';
		case jbvString:
			*out = string_value(v->val.string.val, v->val.string.len);
			return 's';
		case jbvBool:
			*out = duet_bool(v->val.boolean);
			return 'b';
		default:
			return '\0';
	}
}

/*
 * The text duet_format_number gives for d, as a numeric: PostgreSQL's own Ryu digits laid out in
 * Duet's notation (calc/number.c), the same text the ClickHouse UDFs print.
 */
static Numeric
number_numeric(double d)
{
	char		text[32];

	duet_format_number(d, text, sizeof(text));
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/*
 * A result as jsonb. Numbers are duet_format_number's digits, the shortest text that reads back
 * as the same double, so jsonb shows exactly the double the engine computed (float8 → numeric
 * would round to 15 significant digits) and prints it as ClickHouse's UDFs do.
 */
Jsonb *
pgcalc_value_jsonb(const duet_value *v)
{
	JsonbValue	jv;

	switch (v->type)
	{
		case DUET_T_NUMBER:
			jv.type = jbvNumeric;
			jv.val.numeric = number_numeric(v->u.num);
			break;
		case DUET_T_INT:
			jv.type = jbvNumeric;
			jv.val.numeric = int64_to_numeric(v->u.i);	/* exact */
			break;
		case DUET_T_STRING:
			jv.type = jbvString;
			jv.val.string.val = pgcalc_from_utf8(v->u.str.ptr, v->u.str.len);
			jv.val.string.len = strlen(jv.val.string.val);
			break;
		case DUET_T_BOOL:
			jv.type = jbvBool;
			jv.val.boolean = v->u.boolean;
			break;
		case DUET_T_DATE:
		case DUET_T_TIMESTAMP:
			{
				/* the engine's text, "2026-12-02" / "2026-12-02 10:00:00", as the UDFs write it */
				char		buf[32];

				jv.type = jbvString;
				jv.val.string.len = (int) duet_format_time_value(v, buf, sizeof(buf));
				jv.val.string.val = pstrdup(buf);
				break;
			}
		default:
			jv.type = jbvNull;
			break;
	}
	return JsonbValueToJsonb(&jv);
}

/* A result as text in the database encoding, as messages show it: "null" for NULL. */
char *
pgcalc_value_text(const duet_value *v)
{
	char		buf[32];

	switch (v->type)
	{
		case DUET_T_NUMBER:
		case DUET_T_INT:
			duet_format_value_number(v, buf, sizeof(buf));
			return pstrdup(buf);
		case DUET_T_BOOL:
			return pstrdup(v->u.boolean ? "true" : "false");
		case DUET_T_DATE:
		case DUET_T_TIMESTAMP:
			duet_format_time_value(v, buf, sizeof(buf));
			return pstrdup(buf);
		case DUET_T_STRING:
			return pgcalc_from_utf8(v->u.str.ptr, v->u.str.len);
		default:
			return pstrdup("null");
	}
}
