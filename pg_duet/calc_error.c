/*
 * calc_error.c — Duet engine errors as PostgreSQL errors, and the UTF-8 boundary.
 *
 * Each engine error class maps to one SQLSTATE, so clients (and the conformance run) can tell a
 * syntax error from a type error without parsing messages; the position goes in errdetail with
 * the engine's caret excerpt, which is where psql users look for it. The engine's message already
 * names the expected token (duet_formula_check returns it as a column of its own).
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "calc_pg.h"

int
pgcalc_errcode(duet_errclass cls)
{
	switch (cls)
	{
		case DUET_ERR_SYNTAX:
			return ERRCODE_SYNTAX_ERROR;
		case DUET_ERR_TYPE:
			return ERRCODE_DATATYPE_MISMATCH;
		case DUET_ERR_UNKNOWN_FUNCTION:
		case DUET_ERR_ARITY:
			/* as PostgreSQL reports a call with the wrong number of arguments */
			return ERRCODE_UNDEFINED_FUNCTION;
		case DUET_ERR_LIMIT:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		case DUET_ERR_UNKNOWN_VARIABLE:
			return ERRCODE_UNDEFINED_COLUMN;
		case DUET_ERR_NOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		case DUET_ERR_RANGE:
			return ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE;
		case DUET_ERR_INPUT:
			/* text that is no date or timestamp, an unknown unit or pattern directive */
			return ERRCODE_INVALID_DATETIME_FORMAT;
		case DUET_OK:
			break;
	}
	return ERRCODE_INTERNAL_ERROR;
}

static const char *
class_hint(duet_errclass cls)
{
	switch (cls)
	{
		case DUET_ERR_SYNTAX:
			return "Formulas are SQL-like expressions over variables: arithmetic, comparisons, "
				"and/or/not, case, and function calls; strings are in single quotes.";
		case DUET_ERR_TYPE:
			return "Numbers, strings and booleans do not mix; compare values of one type, or use "
				"if(), case or coalesce() to choose between them.";
		case DUET_ERR_UNKNOWN_FUNCTION:
		case DUET_ERR_ARITY:
			return "The functions of the Duet formula language are listed in README.md "
				"(\"Duet formulas in PostgreSQL\").";
		case DUET_ERR_LIMIT:
			return "Shorten or simplify the formula, or split it into several formulas.";
		case DUET_ERR_RANGE:
			return "Integer arithmetic is exact and stops at the 64-bit integers; mix in a double "
				"(x * 1.0) where an approximate result is wanted. Dates lie between 0001-01-01 and "
				"9999-12-31.";
		case DUET_ERR_INPUT:
			return "Dates are written YYYY-MM-DD, timestamps YYYY-MM-DD HH:MM:SS[.ffffff] (UTC); units "
				"are year, quarter, month, week, day, hour, minute, second, millisecond, microsecond; "
				"patterns use %Y %m %d %H %M %S %f %F %T %j %u %%; time zones are tz database names "
				"such as Europe/Paris.";
		default:
			return NULL;
	}
}

const char *
pgcalc_to_utf8(const char *s, size_t len, size_t *out_len)
{
	int			enc = GetDatabaseEncoding();
	char	   *conv;

	*out_len = len;
	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return s;
	conv = pg_server_to_any(s, (int) len, PG_UTF8);
	if (conv != s)
		*out_len = strlen(conv);
	return conv;
}

char *
pgcalc_from_utf8(const char *s, size_t len)
{
	int			enc = GetDatabaseEncoding();
	char	   *conv;

	if (enc != PG_UTF8 && enc != PG_SQL_ASCII)
	{
		/* converts, and so validates */
		conv = pg_any_to_server(s, (int) len, PG_UTF8);
		if (conv != s)
			return conv;
	}
	else if (enc == PG_UTF8)
		(void) pg_verify_mbstr(PG_UTF8, s, (int) len, false);	/* never store invalid text */
	return pnstrdup(s, len);
}

void
pgcalc_report(const duet_error *err, bool evaluating)
{
	const char *hint = class_hint(err->cls);
	char	   *message = pgcalc_from_utf8(err->message, strnlen(err->message, sizeof(err->message)));
	char	   *excerpt = pgcalc_from_utf8(err->excerpt, strnlen(err->excerpt, sizeof(err->excerpt)));

	if (err->cls == DUET_ERR_NOMEM)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("The formula engine could not allocate memory: %s.", message)));

	ereport(ERROR,
			(errcode(pgcalc_errcode(err->cls)),
			 evaluating ? errmsg("formula evaluation failed: %s", message)
			 : errmsg("invalid formula: %s", message),
			 err->line <= 0 ? 0
			 : errdetail("At line %d, column %d.\n%s", err->line, err->column, excerpt),
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
}
