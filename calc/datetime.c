/*
 * datetime.c — dates and timestamps (docs/calc.md, "Dates and timestamps").
 *
 * A date is a count of days since 1970-01-01 (DUET_T_DATE, u.i), a timestamp a count of
 * microseconds since 1970-01-01 00:00:00 UTC (DUET_T_TIMESTAMP, u.i), both in the proleptic
 * Gregorian calendar from 0001-01-01 to 9999-12-31 (DUET_DATE_MIN/MAX): a result outside is
 * DUET_ERR_RANGE, text that is no date, an unknown unit or pattern directive DUET_ERR_INPUT.
 * Calendar arithmetic is Howard Hinnant's days_from_civil/civil_from_days (exact integer
 * arithmetic, no time zone, no libc). Time zones are not part of a value: everything is UTC.
 */
#define _POSIX_C_SOURCE 200809L	/* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calc_int.h"

#define US_PER_SEC INT64_C(1000000)
#define US_PER_DAY (INT64_C(86400) * US_PER_SEC)

/* ---- the calendar ---- */

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t		q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t
duet_days_from_civil(int64_t y, int m, int d)
{
	int64_t		era,
				yoe,
				doy,
				doe;

	y -= m <= 2;
	era = floor_div(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void
duet_civil_from_days(int64_t z, int *y, int *m, int *d)
{
	int64_t		era,
				doe,
				yoe,
				doy,
				mp;

	z += 719468;
	era = floor_div(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int) (doy - (153 * mp + 2) / 5 + 1);
	*m = (int) (mp < 10 ? mp + 3 : mp - 9);
	*y = (int) (yoe + era * 400 + (*m <= 2));
}

static bool
leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(int y, int m)
{
	static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && leap(y) ? 29 : n[m - 1];
}

/* ISO day of week, 1 Monday .. 7 Sunday (1970-01-01 was a Thursday) */
static int
iso_dow(int64_t days)
{
	return (int) ((days % 7 + 10) % 7) + 1;
}

static int64_t
ts_days(int64_t us)
{
	return floor_div(us, US_PER_DAY);
}

/* a time value's microseconds (a date is its midnight) */
static int64_t
as_us(const duet_value *v)
{
	return v->type == DUET_T_DATE ? v->u.i * US_PER_DAY : v->u.i;
}

static duet_errclass
range_error(duet_error *err, const char *fn)
{
	duet_set_runtime_error(err, DUET_ERR_RANGE, 0, 0,
						   "%s: date out of range (0001-01-01 to 9999-12-31)", fn);
	return DUET_ERR_RANGE;
}

static duet_errclass
input_error(duet_error *err, const char *fmt, const char *fn, const char *s, size_t len)
{
	char		text[64];
	size_t		n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;

	memcpy(text, s, n);
	text[n] = '\0';
	duet_set_runtime_error(err, DUET_ERR_INPUT, 0, 0, fmt, fn, text);
	return DUET_ERR_INPUT;
}

/* The value, or DUET_ERR_RANGE outside 0001-01-01 .. 9999-12-31. */
static duet_errclass
make_date(int64_t days, duet_value *out, duet_error *err, const char *fn)
{
	if (days < DUET_DATE_MIN || days > DUET_DATE_MAX)
		return range_error(err, fn);
	*out = duet_date((int32_t) days);
	return DUET_OK;
}

static duet_errclass
make_ts(int64_t us, duet_value *out, duet_error *err, const char *fn)
{
	if (us < DUET_DATE_MIN * US_PER_DAY || us > (DUET_DATE_MAX + 1) * US_PER_DAY - 1)
		return range_error(err, fn);
	*out = duet_timestamp(us);
	return DUET_OK;
}

duet_errclass
duet_make_timestamp(int64_t us, duet_value *out, duet_error *err, const char *fn)
{
	return make_ts(us, out, err, fn);
}

/* ---- text ---- */

size_t
duet_format_time_value(const duet_value *v, char *buf, size_t bufsize)
{
	int			y,
				m,
				d;
	int64_t		days = v->type == DUET_T_DATE ? v->u.i : ts_days(v->u.i);
	int			n;

	duet_civil_from_days(days, &y, &m, &d);
	if (v->type == DUET_T_DATE)
		n = snprintf(buf, bufsize, "%04d-%02d-%02d", y, m, d);
	else
	{
		int64_t		tod = v->u.i - days * US_PER_DAY;
		int64_t		sec = tod / US_PER_SEC;
		int			frac = (int) (tod % US_PER_SEC);

		n = snprintf(buf, bufsize, "%04d-%02d-%02d %02d:%02d:%02d", y, m, d,
					 (int) (sec / 3600), (int) (sec / 60 % 60), (int) (sec % 60));
		if (frac && n > 0 && (size_t) n + 7 < bufsize)
		{
			/* PostgreSQL's text: the fraction without trailing zeros */
			int			digits = 6;

			while (frac % 10 == 0)
				frac /= 10, digits--;
			n += snprintf(buf + n, bufsize - (size_t) n, ".%0*d", digits, frac);
		}
	}
	return n < 0 ? 0 : (size_t) n;
}

/* fixed-width decimal field: exactly w digits */
static bool
digits(const char *s, size_t len, size_t *pos, int w, int *out)
{
	int			v = 0;

	if (*pos + (size_t) w > len)
		return false;
	for (int i = 0; i < w; i++)
	{
		char		c = s[*pos + (size_t) i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*pos += (size_t) w;
	*out = v;
	return true;
}

typedef struct fields
{
	int			y,
				m,
				d,
				hh,
				mi,
				ss,
				us;
} fields;

/*
 * Reads s against a pattern: %Y four-digit year, %m %d %H %M %S two digits, %f one to six
 * digits of fraction, %F = %Y-%m-%d, %T = %H:%M:%S, %% a percent sign; other characters match
 * themselves. False on a mismatch or an invalid field (the caller's DUET_ERR_INPUT); *bad_pattern
 * when the pattern has a directive it does not know.
 */
static bool
parse_fields(const char *s, size_t len, const char *pat, size_t plen, fields *f, bool *bad_pattern)
{
	size_t		pos = 0;

	*bad_pattern = false;
	for (size_t i = 0; i < plen; i++)
	{
		char		c = pat[i];
		bool		ok = true;

		if (c != '%')
		{
			if (pos >= len || s[pos] != c)
				return false;
			pos++;
			continue;
		}
		if (++i >= plen)
		{
			*bad_pattern = true;
			return false;
		}
		switch (pat[i])
		{
			case 'Y': ok = digits(s, len, &pos, 4, &f->y); break;
			case 'm': ok = digits(s, len, &pos, 2, &f->m); break;
			case 'd': ok = digits(s, len, &pos, 2, &f->d); break;
			case 'H': ok = digits(s, len, &pos, 2, &f->hh); break;
			case 'M': ok = digits(s, len, &pos, 2, &f->mi); break;
			case 'S': ok = digits(s, len, &pos, 2, &f->ss); break;
			case 'F':
				ok = digits(s, len, &pos, 4, &f->y) && pos < len && s[pos++] == '-' &&
					digits(s, len, &pos, 2, &f->m) && pos < len && s[pos++] == '-' &&
					digits(s, len, &pos, 2, &f->d);
				break;
			case 'T':
				ok = digits(s, len, &pos, 2, &f->hh) && pos < len && s[pos++] == ':' &&
					digits(s, len, &pos, 2, &f->mi) && pos < len && s[pos++] == ':' &&
					digits(s, len, &pos, 2, &f->ss);
				break;
			case 'f':
				{
					int			n = 0,
								v = 0;

					while (n < 6 && pos < len && s[pos] >= '0' && s[pos] <= '9')
						v = v * 10 + (s[pos++] - '0'), n++;
					if (n == 0)
						return false;
					while (n++ < 6)
						v *= 10;
					f->us = v;
					break;
				}
			case '%':
				ok = pos < len && s[pos++] == '%';
				break;
			default:
				*bad_pattern = true;
				return false;
		}
		if (!ok)
			return false;
	}
	return pos == len && f->y >= 1 && f->m >= 1 && f->m <= 12 && f->d >= 1 &&
		f->d <= month_days(f->y, f->m) && f->hh <= 23 && f->mi <= 59 && f->ss <= 59;
}

static int64_t
fields_us(const fields *f)
{
	return duet_days_from_civil(f->y, f->m, f->d) * US_PER_DAY +
		((int64_t) f->hh * 3600 + f->mi * 60 + f->ss) * US_PER_SEC + f->us;
}

/*
 * ISO 8601 text as PostgreSQL reads it for the literal forms: YYYY-MM-DD, optionally followed by
 * a space or T and HH:MM:SS with an optional fraction of up to six digits and an optional Z.
 * want_time: a time part is allowed (timestamp); a date read as a timestamp is its midnight.
 */
static bool
parse_iso(const char *s, size_t len, bool want_time, int64_t *us)
{
	fields		f = {1970, 1, 1, 0, 0, 0, 0};
	bool		bad;

	if (len >= 1 && s[len - 1] == 'Z' && want_time)
		len--;
	if (len == 10)
		return parse_fields(s, len, "%F", 2, &f, &bad) && (*us = fields_us(&f), true);
	if (!want_time || len < 19 || (s[10] != ' ' && s[10] != 'T'))
		return false;
	if (!parse_fields(s, 10, "%F", 2, &f, &bad) || !parse_fields(s + 11, 8, "%T", 2, &f, &bad))
		return false;
	if (len > 19)
	{
		fields		g = f;

		if (s[19] != '.' || !parse_fields(s + 20, len - 20, "%f", 2, &g, &bad))
			return false;
		f.us = g.us;
	}
	*us = fields_us(&f);
	return true;
}

/* ---- units ---- */

typedef enum unit
{
	U_YEAR, U_QUARTER, U_MONTH, U_WEEK, U_DAY, U_HOUR, U_MINUTE, U_SECOND, U_MILLISECOND,
	U_MICROSECOND, U_DOW, U_ISODOW, U_DOY, U_EPOCH, U_NONE
} unit;

static const char *const unit_names[] = {
	"year", "quarter", "month", "week", "day", "hour", "minute", "second", "millisecond",
	"microsecond", "dow", "isodow", "doy", "epoch"
};

static const unsigned char unit_len[] = {4, 7, 5, 4, 3, 4, 6, 6, 11, 11, 3, 6, 3, 5};

static const int64_t unit_us[] = {
	0, 0, 0, 7 * US_PER_DAY, US_PER_DAY, 3600 * US_PER_SEC, 60 * US_PER_SEC, US_PER_SEC, 1000, 1
};

/* The unit a string names (case-insensitive), limited to [first, last]; else DUET_ERR_INPUT. */
static duet_errclass
get_unit(const duet_value *v, unit last, const char *fn, unit *u, duet_error *err)
{
	for (int k = 0; k <= (int) last; k++)
	{
		size_t		n = unit_len[k];

		if (v->u.str.len == n && (v->u.str.ptr[0] | 0x20) == unit_names[k][0])
		{
			size_t		i;

			for (i = 0; i < n; i++)
				if ((v->u.str.ptr[i] | 0x20) != unit_names[k][i])
					break;
			if (i == n)
			{
				*u = (unit) k;
				return DUET_OK;
			}
		}
	}
	return input_error(err, "%s: unknown unit \"%s\"", fn, v->u.str.ptr, v->u.str.len);
}

static void
split(int64_t us, int *y, int *m, int *d, int64_t *tod)
{
	int64_t		days = ts_days(us);

	duet_civil_from_days(days, y, m, d);
	*tod = us - days * US_PER_DAY;
}

/* ---- builtins (strict: never called with a NULL argument) ---- */

#define UNUSED __attribute__((unused))
#define FN(name) duet_errclass name(UNUSED duet_value *args, UNUSED int argc, UNUSED duet_vm *vm, \
									duet_value *out, UNUSED duet_error *err)

/* date(x): ISO text, a date, or a timestamp's date */
FN(duet_fn_date)
{
	int64_t		us;

	switch (args[0].type)
	{
		case DUET_T_DATE:
			*out = args[0];
			return DUET_OK;
		case DUET_T_TIMESTAMP:
			return make_date(ts_days(args[0].u.i), out, err, "date");
		case DUET_T_STRING:
			if (!parse_iso(args[0].u.str.ptr, args[0].u.str.len, false, &us))
				return input_error(err, "%s: invalid date \"%s\" (expected YYYY-MM-DD)", "date",
								   args[0].u.str.ptr, args[0].u.str.len);
			return make_date(ts_days(us), out, err, "date");
		default:
			duet_set_runtime_error(err, DUET_ERR_TYPE, 0, 0, "function date cannot take a %s argument",
								   duet_type_name(args[0].type));
			return DUET_ERR_TYPE;
	}
}

/* timestamp(x): ISO text, a timestamp, or a date's midnight */
FN(duet_fn_timestamp)
{
	int64_t		us;

	switch (args[0].type)
	{
		case DUET_T_TIMESTAMP:
			*out = args[0];
			return DUET_OK;
		case DUET_T_DATE:
			return make_ts(as_us(&args[0]), out, err, "timestamp");
		case DUET_T_STRING:
			if (!parse_iso(args[0].u.str.ptr, args[0].u.str.len, true, &us))
				return input_error(err, "%s: invalid timestamp \"%s\" (expected YYYY-MM-DD HH:MM:SS[.ffffff])",
								   "timestamp", args[0].u.str.ptr, args[0].u.str.len);
			return make_ts(us, out, err, "timestamp");
		default:
			duet_set_runtime_error(err, DUET_ERR_TYPE, 0, 0,
								   "function timestamp cannot take a %s argument",
								   duet_type_name(args[0].type));
			return DUET_ERR_TYPE;
	}
}

FN(duet_fn_now)
{
	return make_ts(duet_vm_now(vm), out, err, "now");
}

FN(duet_fn_today)
{
	return make_date(ts_days(duet_vm_now(vm)), out, err, "today");
}

/* date_trunc(unit, t): the start of t's year … second; a date stays a date */
FN(duet_fn_date_trunc)
{
	unit		u;
	int			y,
				m,
				d;
	int64_t		tod,
				days,
				us = as_us(&args[1]);
	duet_errclass cls = get_unit(&args[0], U_MICROSECOND, "date_trunc", &u, err);

	if (cls != DUET_OK)
		return cls;
	split(us, &y, &m, &d, &tod);
	days = ts_days(us);
	switch (u)
	{
		case U_YEAR: days = duet_days_from_civil(y, 1, 1); tod = 0; break;
		case U_QUARTER: days = duet_days_from_civil(y, (m - 1) / 3 * 3 + 1, 1); tod = 0; break;
		case U_MONTH: days = duet_days_from_civil(y, m, 1); tod = 0; break;
		case U_WEEK: days -= iso_dow(days) - 1; tod = 0; break;
		default: tod -= tod % unit_us[u]; break;
	}
	if (args[1].type == DUET_T_DATE)
		return make_date(days, out, err, "date_trunc");
	return make_ts(days * US_PER_DAY + tod, out, err, "date_trunc");
}

/* date_add(unit, n, t): t moved by n units; months clamp to the month's last day, as PostgreSQL */
FN(duet_fn_date_add)
{
	unit		u;
	int64_t		n,
				us = as_us(&args[2]),
				r;
	duet_errclass cls = get_unit(&args[0], U_MICROSECOND, "date_add", &u, err);

	if (cls != DUET_OK)
		return cls;
	if (args[1].type == DUET_T_INT)
		n = args[1].u.i;
	else if (!(args[1].u.num > -1e15 && args[1].u.num < 1e15))
		return range_error(err, "date_add");	/* beyond any date, whole or not (and before a cast) */
	else if (args[1].u.num == (double) (int64_t) args[1].u.num)
		n = (int64_t) args[1].u.num;
	else
	{
		duet_set_runtime_error(err, DUET_ERR_INPUT, 0, 0,
							   "date_add: the amount must be a whole number of units");
		return DUET_ERR_INPUT;
	}
	if (args[2].type == DUET_T_DATE && u > U_DAY)
	{
		duet_set_runtime_error(err, DUET_ERR_TYPE, 0, 0,
							   "date_add: a date moves by days or more, not by %s; use timestamp(d)",
							   unit_names[u]);
		return DUET_ERR_TYPE;
	}
	if (u <= U_MONTH)
	{
		int			y,
					m,
					d;
		int64_t		tod,
					months;

		if (n > 120000 || n < -120000)
			return range_error(err, "date_add");
		months = n * (u == U_YEAR ? 12 : u == U_QUARTER ? 3 : 1);
		split(us, &y, &m, &d, &tod);
		months += (int64_t) y * 12 + (m - 1);
		y = (int) floor_div(months, 12);
		m = (int) (months - (int64_t) y * 12) + 1;
		if (y < 1 || y > 9999)
			return range_error(err, "date_add");
		if (d > month_days(y, m))
			d = month_days(y, m);
		r = duet_days_from_civil(y, m, d) * US_PER_DAY + tod;
	}
	else if (__builtin_mul_overflow(n, unit_us[u], &r) || __builtin_add_overflow(r, us, &r))
		return range_error(err, "date_add");
	if (args[2].type == DUET_T_DATE)
		return make_date(ts_days(r), out, err, "date_add");
	return make_ts(r, out, err, "date_add");
}

/* the index of the unit period holding us: date_diff counts the boundaries between two */
static int64_t
period(unit u, int64_t us)
{
	int			y,
				m,
				d;
	int64_t		tod;

	if (u > U_MONTH)
		return u == U_WEEK ? floor_div(ts_days(us) + 3, 7) : floor_div(us, unit_us[u]);
	split(us, &y, &m, &d, &tod);
	switch (u)
	{
		case U_YEAR: return y;
		case U_QUARTER: return (int64_t) y * 4 + (m - 1) / 3;
		case U_MONTH: return (int64_t) y * 12 + m - 1;
		case U_WEEK: return floor_div(ts_days(us) + 3, 7);	/* weeks start on Monday */
		default: return floor_div(us, unit_us[u]);
	}
}

/* date_diff(unit, a, b): unit boundaries crossed from a to b (ClickHouse dateDiff), an integer */
FN(duet_fn_date_diff)
{
	unit		u;
	duet_errclass cls = get_unit(&args[0], U_MICROSECOND, "date_diff", &u, err);

	if (cls != DUET_OK)
		return cls;
	*out = duet_int(period(u, as_us(&args[2])) - period(u, as_us(&args[1])));
	return DUET_OK;
}

FN(duet_fn_day_of_week)
{
	*out = duet_int(iso_dow(ts_days(as_us(&args[0]))));
	return DUET_OK;
}

/* extract(unit, t): a field of t, an integer (epoch: seconds, a double when fractional) */
FN(duet_fn_extract)
{
	unit		u;
	int			y,
				m,
				d;
	int64_t		tod,
				us = as_us(&args[1]),
				days = ts_days(us);
	duet_errclass cls = get_unit(&args[0], U_EPOCH, "extract", &u, err);

	if (cls != DUET_OK)
		return cls;
	split(us, &y, &m, &d, &tod);
	switch (u)
	{
		case U_YEAR: *out = duet_int(y); break;
		case U_QUARTER: *out = duet_int((m - 1) / 3 + 1); break;
		case U_MONTH: *out = duet_int(m); break;
		case U_WEEK:
			{
				/* ISO week: the week (Monday first) holding the year's first Thursday is week 1 */
				int64_t		thu = days - iso_dow(days) + 4;
				int			ty,
							tm,
							td;

				duet_civil_from_days(thu, &ty, &tm, &td);
				*out = duet_int((thu - duet_days_from_civil(ty, 1, 1)) / 7 + 1);
				break;
			}
		case U_DAY: *out = duet_int(d); break;
		case U_HOUR: *out = duet_int(tod / (3600 * US_PER_SEC)); break;
		case U_MINUTE: *out = duet_int(tod / (60 * US_PER_SEC) % 60); break;
		case U_SECOND: *out = duet_int(tod / US_PER_SEC % 60); break;
		case U_MILLISECOND: *out = duet_int(tod % US_PER_SEC / 1000); break;
		case U_MICROSECOND: *out = duet_int(tod % US_PER_SEC); break;
		case U_DOW: *out = duet_int(iso_dow(days) % 7); break;
		case U_ISODOW: *out = duet_int(iso_dow(days)); break;
		case U_DOY: *out = duet_int(days - duet_days_from_civil(y, 1, 1) + 1); break;
		case U_EPOCH:
			*out = us % US_PER_SEC == 0 ? duet_int(us / US_PER_SEC) :
				duet_number((double) us / 1e6);
			break;
		case U_NONE: break;
	}
	return DUET_OK;
}

/*
 * format_datetime(t, pattern): strftime's directives %Y %m %d %H %M %S %F %T %j (day of year)
 * %u (ISO day of week) %f (six digits of microseconds) %%; any other directive is DUET_ERR_INPUT.
 */
FN(duet_fn_format_datetime)
{
	const char *pat = args[1].u.str.ptr;
	size_t		plen = args[1].u.str.len,
				n = 0;
	int			y,
				m,
				d;
	int64_t		tod,
				us = as_us(&args[0]),
				days = ts_days(us);
	char	   *buf;

	/* each byte of the pattern gives at most 19 bytes (%F, %T) */
	if (!(buf = duet_vm_alloc(vm, plen * 10 + 1, err)))
		return err->cls;
	split(us, &y, &m, &d, &tod);
	for (size_t i = 0; i < plen; i++)
	{
		int			sec = (int) (tod / US_PER_SEC);

		if (pat[i] != '%')
		{
			buf[n++] = pat[i];
			continue;
		}
		if (++i >= plen)
			return input_error(err, "%s: pattern \"%s\" ends with %%", "format_datetime", pat, plen);
		switch (pat[i])
		{
			case 'Y': n += (size_t) sprintf(buf + n, "%04d", y); break;
			case 'm': n += (size_t) sprintf(buf + n, "%02d", m); break;
			case 'd': n += (size_t) sprintf(buf + n, "%02d", d); break;
			case 'H': n += (size_t) sprintf(buf + n, "%02d", sec / 3600); break;
			case 'M': n += (size_t) sprintf(buf + n, "%02d", sec / 60 % 60); break;
			case 'S': n += (size_t) sprintf(buf + n, "%02d", sec % 60); break;
			case 'F': n += (size_t) sprintf(buf + n, "%04d-%02d-%02d", y, m, d); break;
			case 'T':
				n += (size_t) sprintf(buf + n, "%02d:%02d:%02d", sec / 3600, sec / 60 % 60, sec % 60);
				break;
			case 'j':
				n += (size_t) sprintf(buf + n, "%03d", (int) (days - duet_days_from_civil(y, 1, 1) + 1));
				break;
			case 'u': n += (size_t) sprintf(buf + n, "%d", iso_dow(days)); break;
			case 'f': n += (size_t) sprintf(buf + n, "%06d", (int) (tod % US_PER_SEC)); break;
			case '%': buf[n++] = '%'; break;
			default:
				return input_error(err, "%s: unknown directive in pattern \"%s\"", "format_datetime",
								   pat, plen);
		}
	}
	*out = duet_string(buf, n);
	return DUET_OK;
}

static duet_errclass
parse_with(duet_value *args, bool date, duet_value *out, duet_error *err)
{
	const char *fn = date ? "parse_date" : "parse_datetime";
	fields		f = {1970, 1, 1, 0, 0, 0, 0};
	bool		bad;

	if (!parse_fields(args[0].u.str.ptr, args[0].u.str.len, args[1].u.str.ptr, args[1].u.str.len,
					  &f, &bad))
	{
		if (bad)
			return input_error(err, "%s: unknown directive in pattern \"%s\"", fn,
							   args[1].u.str.ptr, args[1].u.str.len);
		return input_error(err, "%s: text \"%s\" does not match the pattern", fn,
						   args[0].u.str.ptr, args[0].u.str.len);
	}
	if (date)
		return make_date(duet_days_from_civil(f.y, f.m, f.d), out, err, fn);
	return make_ts(fields_us(&f), out, err, fn);
}

FN(duet_fn_parse_datetime)
{
	return parse_with(args, false, out, err);
}

FN(duet_fn_parse_date)
{
	return parse_with(args, true, out, err);
}

bool
duet_parse_time(const char *s, size_t len, duet_type want, duet_value *out)
{
	int64_t		us;
	duet_error	err;

	if (!parse_iso(s, len, want == DUET_T_TIMESTAMP, &us))
		return false;
	if (want == DUET_T_DATE)
		return make_date(ts_days(us), out, &err, "date") == DUET_OK;
	return make_ts(us, out, &err, "timestamp") == DUET_OK;
}

/* The clock when the binder set none: the real time, read once per evaluation by the vm. */
int64_t
duet_clock_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * US_PER_SEC + ts.tv_nsec / 1000;
}
