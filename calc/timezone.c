/*
 * timezone.c — time zone names, only through an explicit argument (docs/calc.md, "Dates and
 * timestamps"): to_timezone(t, zone) is the wall-clock time of instant t in zone, from_timezone(t,
 * zone) the instant of wall-clock time t in zone, as PostgreSQL's `AT TIME ZONE` in its two
 * directions.
 *
 * The rules come from the system tz database (/usr/share/zoneinfo, which PostgreSQL also reads
 * when built --with-system-tzdata, as Debian's is) through glibc's localtime_r and its tm_gmtoff:
 * the zone is selected with TZ=":name" and tzset(), and the process's TZ is restored after each
 * conversion, so nothing else in the process (a PostgreSQL backend, the UDF) sees a change.
 * Wall-clock times that a transition skips or repeats are resolved as PostgreSQL does: in a gap the
 * offset before the transition, in a repeated hour the later instant (after the transition).
 */
#define _DEFAULT_SOURCE			/* tm_gmtoff, setenv */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calc_int.h"

#define ZONEINFO "/usr/share/zoneinfo"
#define US_PER_SEC INT64_C(1000000)

/*
 * A zone name: letters, digits, / _ + - (no "..", not absolute), naming a zone file of the
 * database: a file that starts with the TZif magic (glibc reads anything else, such as
 * "leapseconds", as UTC without a word), outside right/ (leap-second zones, whose tm_gmtoff glibc
 * shifts by the leap seconds: neither PostgreSQL nor Duet counts them).
 */
static bool
zone_file(const char *name, size_t len, char *tzvalue, size_t size)
{
	char		path[256],
				magic[4];
	int			fd;
	bool		tzif;

	if (len == 0 || len > 100 || name[0] == '/' || name[0] == '.' ||
		(len >= 6 && memcmp(name, "right/", 6) == 0))
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '/' || c == '_' || c == '+' || c == '-'))
			return false;
		if (c == '/' && i + 1 < len && name[i + 1] == '.')
			return false;
	}
	snprintf(path, sizeof(path), "%s/%.*s", ZONEINFO, (int) len, name);
	/* a directory fails the read (EISDIR); O_NONBLOCK: no wait on anything but a file */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return false;
	tzif = read(fd, magic, sizeof(magic)) == (ssize_t) sizeof(magic) && memcmp(magic, "TZif", 4) == 0;
	close(fd);
	if (!tzif)
		return false;
	snprintf(tzvalue, size, ":%.*s", (int) len, name);
	return true;
}

typedef struct zone_scope
{
	char	   *saved;			/* the process's TZ, or NULL when it had none */
} zone_scope;

static void
zone_enter(zone_scope *z, const char *tzvalue)
{
	const char *old = getenv("TZ");

	z->saved = old ? strdup(old) : NULL;
	setenv("TZ", tzvalue, 1);
	tzset();
}

static void
zone_leave(zone_scope *z)
{
	if (z->saved)
	{
		setenv("TZ", z->saved, 1);
		free(z->saved);
	}
	else
		unsetenv("TZ");
	tzset();
}

/* UTC offset in microseconds at instant us, in the entered zone */
static int64_t
offset_at(int64_t us)
{
	time_t		secs = (time_t) (us / US_PER_SEC - (us % US_PER_SEC < 0));
	struct tm	tm;

	if (!localtime_r(&secs, &tm))
		return 0;
	return (int64_t) tm.tm_gmtoff * US_PER_SEC;
}

static duet_errclass
convert(duet_value *args, bool to_local, duet_value *out, duet_error *err)
{
	const char *fn = to_local ? "to_timezone" : "from_timezone";
	char		tzvalue[128];
	int64_t		t = args[0].type == DUET_T_DATE ? args[0].u.i * 86400 * US_PER_SEC : args[0].u.i,
				r;
	zone_scope	z;

	if (!zone_file(args[1].u.str.ptr, args[1].u.str.len, tzvalue, sizeof(tzvalue)))
	{
		duet_set_runtime_error(err, DUET_ERR_INPUT, 0, 0, "%s: unknown time zone \"%.*s\"", fn,
							   (int) (args[1].u.str.len > 64 ? 64 : args[1].u.str.len),
							   args[1].u.str.ptr);
		return DUET_ERR_INPUT;
	}
	zone_enter(&z, tzvalue);
	if (to_local)
		r = t + offset_at(t);
	else
	{
		/* offsets before and after any transition near t (zones move by less than 14 hours) */
		int64_t		before = offset_at(t - 14 * 3600 * US_PER_SEC),
					after = offset_at(t + 14 * 3600 * US_PER_SEC);

		/* one reading, or a repeated hour: the later instant; else (only the earlier reading, or a
		 * skipped hour) the offset before the transition */
		r = before == after || offset_at(t - after) == after ? t - after : t - before;
	}
	zone_leave(&z);
	return duet_make_timestamp(r, out, err, fn);
}

duet_errclass
duet_fn_to_timezone(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	(void) argc;
	(void) vm;
	return convert(args, true, out, err);
}

duet_errclass
duet_fn_from_timezone(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	(void) argc;
	(void) vm;
	return convert(args, false, out, err);
}
