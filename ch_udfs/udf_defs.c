/*
 * udf_defs.c — the metric definitions file. ClickHouse splits a function's command on spaces, so a
 * formula cannot travel on the command line; duet_clickhouse_config() in PostgreSQL writes this
 * file and the XML that runs `duet_udf --metric <name>`. One metric per line, tab-separated:
 *
 *     name <TAB> return type <TAB> arguments (name:Type,…, names %XX-escaped) <TAB> formula
 *
 * The return type is one duet_udf can write (udf_result_type_supported): [Nullable(]Float64,
 * Int64, UInt64 (exact integers only, udf_check_int_result), UInt8, Bool or String[)].
 *
 * The formula escapes \n, \t and \\ (as in test/conformance/*.tsv); '#' starts a comment line.
 * A metric's formula may call the other metrics of the file (pg_duet writes them all): duet_udf
 * reads the whole file and the compiler expands the calls (udf_metrics_resolve).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
udf_metrics_read(const char *path, udf_metric_file *out, udf_error *err)
{
	FILE	   *f = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0,
				itemcap = 0;
	ssize_t		len;
	unsigned	lineno = 0;

	memset(out, 0, sizeof(*out));
	if (!f)
		return udf_fail(err, "could not open metric definitions \"%s\": %s", path, strerror(errno));
	while ((len = getline(&line, &cap, f)) >= 0)
	{
		char	   *fields[5];
		int			n;
		udf_metric *m;

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
		if (out->n == itemcap)
		{
			size_t		c = itemcap ? itemcap * 2 : 16;
			udf_metric *grown = realloc(out->items, c * sizeof(udf_metric));

			if (!grown)
			{
				udf_fail(err, "out of memory");
				goto fail;
			}
			out->items = grown;
			itemcap = c;
		}
		m = &out->items[out->n];
		memset(m, 0, sizeof(*m));
		if (strlen(fields[0]) >= sizeof(m->name) ||
			!udf_type_parse(fields[1], strlen(fields[1]), &m->result.type, err) ||
			!udf_columns_parse(fields[2], m->args, &m->nargs, err))
		{
			char		msg[sizeof(err->message)];

			if (strlen(fields[0]) >= sizeof(m->name))
				udf_fail(err, "metric name too long");
			memcpy(msg, err->message, sizeof(msg));
			udf_fail(err, "%s:%u: %s", path, lineno, msg);
			goto fail;
		}
		strcpy(m->name, fields[0]);
		m->formula_len = unescape_formula(fields[3]);
		m->formula = malloc(m->formula_len + 1);
		if (!m->formula)
		{
			udf_fail(err, "out of memory");
			goto fail;
		}
		memcpy(m->formula, fields[3], m->formula_len + 1);
		out->n++;
	}
	free(line);
	fclose(f);
	/* pointers into items only now that the array no longer moves */
	for (size_t i = 0; i < out->n; i++)
		for (size_t k = 0; k < out->items[i].nargs; k++)
		{
			out->items[i].params[k] = out->items[i].args[k].name;
			out->items[i].param_types[k] = udf_type_duet(out->items[i].args[k].type);
		}
	return true;
fail:
	free(line);
	fclose(f);
	udf_metrics_free(out);
	return false;
}

const udf_metric *
udf_metrics_find(const udf_metric_file *f, const char *name, size_t len)
{
	for (size_t i = 0; i < f->n; i++)
		if (strlen(f->items[i].name) == len && memcmp(f->items[i].name, name, len) == 0)
			return &f->items[i];
	for (size_t i = 0; i < f->n; i++)
		if (strlen(f->items[i].name) == len && strncasecmp(f->items[i].name, name, len) == 0)
			return &f->items[i];
	return NULL;
}

bool
udf_metrics_resolve(void *arg, const char *name, size_t len, duet_metric *out)
{
	const udf_metric *m = udf_metrics_find(arg, name, len);

	if (!m)
		return false;
	out->formula = m->formula;
	out->formula_len = m->formula_len;
	out->nparams = m->nargs;
	out->params = m->params;
	out->param_types = m->param_types;
	return true;
}

void
udf_metrics_free(udf_metric_file *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->items[i].formula);
	free(f->items);
	f->items = NULL;
	f->n = 0;
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
