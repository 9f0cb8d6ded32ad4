/*
 * udf_defs.c — the metric definitions file. ClickHouse splits a function's command on spaces, so a
 * formula cannot travel on the command line; duet_clickhouse_config() in PostgreSQL writes this
 * file and the XML that runs `duet_udf --metric <name>`. One metric per line, tab-separated:
 *
 *     name <TAB> return type <TAB> arguments (name:Type,…, names %XX-escaped) <TAB> formula
 *
 * The formula escapes \n, \t and \\ (as in test/conformance/*.tsv); '#' starts a comment line.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "udf.h"

/* Splits line into at most 4 tab-separated fields in place. */
static int
split_fields(char *line, char **f)
{
	int			n = 0;

	f[n++] = line;
	for (char *p = line; *p; p++)
		if (*p == '\t')
		{
			if (n == 4)
				return 5;
			*p = '\0';
			f[n++] = p + 1;
		}
	return n;
}

static size_t
unescape_formula(char *s)
{
	char	   *w = s;

	for (char *r = s; *r; r++)
	{
		if (*r == '\\' && (r[1] == 'n' || r[1] == 't' || r[1] == '\\'))
		{
			r++;
			*w++ = *r == 'n' ? '\n' : *r == 't' ? '\t' : '\\';
		}
		else
			*w++ = *r;
	}
	*w = '\0';
	return (size_t) (w - s);
}

bool
udf_metric_load(const char *path, const char *name, udf_metric *m, udf_error *err)
{
	FILE	   *f = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		len;
	unsigned	lineno = 0;
	bool		found = false;

	memset(m, 0, sizeof(*m));
	if (!f)
		return udf_fail(err, "could not open metric definitions \"%s\": %s", path, strerror(errno));
	while (!found && (len = getline(&line, &cap, f)) >= 0)
	{
		char	   *fields[5];
		int			n;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		n = split_fields(line, fields);
		if (n != 4)
		{
			udf_fail(err, "%s:%u: expected 4 tab-separated fields, found %d", path, lineno, n);
			goto fail;
		}
		if (strcmp(fields[0], name) != 0)
			continue;
		found = true;
		if (!udf_type_parse(fields[1], strlen(fields[1]), &m->result.type, err) ||
			!udf_columns_parse(fields[2], m->args, &m->nargs, err))
		{
			char		msg[sizeof(err->message)];

			memcpy(msg, err->message, sizeof(msg));
			udf_fail(err, "%s:%u: %s", path, lineno, msg);
			goto fail;
		}
		m->formula_len = unescape_formula(fields[3]);
		m->formula = malloc(m->formula_len + 1);
		if (!m->formula)
		{
			udf_fail(err, "out of memory");
			goto fail;
		}
		memcpy(m->formula, fields[3], m->formula_len + 1);
	}
	if (!found)
	{
		udf_fail(err, "metric \"%s\" is not defined in \"%s\"", name, path);
		goto fail;
	}
	free(line);
	fclose(f);
	return true;
fail:
	free(line);
	fclose(f);
	return false;
}

void
udf_metric_free(udf_metric *m)
{
	free(m->formula);
	m->formula = NULL;
}

/*
 * A relative definitions path is resolved next to the executable as ClickHouse ran it: the
 * directory of argv[0] when it has one (user_scripts/duet_udf may be a symlink to the installed
 * binary; the definitions file sits beside the link), else the resolved /proc/self/exe.
 */
void
udf_resolve_definitions(const char *argv0, const char *given, char *path, size_t size)
{
	char		exe[PATH_MAX];
	ssize_t		n;
	char	   *slash;

	if (given[0] == '/')
	{
		snprintf(path, size, "%s", given);
		return;
	}
	if (argv0 && strchr(argv0, '/'))
	{
		snprintf(exe, sizeof(exe), "%s", argv0);
		*strrchr(exe, '/') = '\0';
		snprintf(path, size, "%s/%s", exe[0] ? exe : "/", given);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
	{
		snprintf(path, size, "%s", given);
		return;
	}
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	snprintf(path, size, "%s/%s", exe, given);
}
