/*
 * udf_reload.c — a metric's definition from the definitions file, followed while the pool runs.
 *
 * duet-ch-sync (and any careful deployment) writes a new definitions file beside the old one and
 * rename(2)s it over the path, so the path names either the old file or the new one, never a
 * half-written one. Before each block (chunk-header pools, where ClickHouse marks blocks), the
 * pool stats the path; when it names another file (device, inode, size or mtime differ), it reads
 * it and compiles the metric's new formula. The swap happens between blocks, so every row of a
 * block is computed by one definition. A new definition with other arguments or result type is
 * not taken up: ClickHouse still calls the function with the types its XML declared, and restarts
 * the pool itself when that XML changes. Nothing here writes to stderr: a definition that cannot
 * be taken up leaves the loaded one in use.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "udf.h"

static bool
same_file(const udf_metric_source *src, const struct stat *st)
{
	return src->dev == (unsigned long long) st->st_dev && src->ino == (unsigned long long) st->st_ino &&
		src->size == (unsigned long long) st->st_size && src->mtime_sec == (long long) st->st_mtim.tv_sec &&
		src->mtime_nsec == (long long) st->st_mtim.tv_nsec;
}

static void
remember(udf_metric_source *src, const struct stat *st)
{
	src->dev = (unsigned long long) st->st_dev;
	src->ino = (unsigned long long) st->st_ino;
	src->size = (unsigned long long) st->st_size;
	src->mtime_sec = (long long) st->st_mtim.tv_sec;
	src->mtime_nsec = (long long) st->st_mtim.tv_nsec;
}

static const udf_metric *
find_exact(const udf_metric_file *f, const char *name)
{
	const udf_metric *m = udf_metrics_find(f, name, strlen(name));

	return m && strcmp(m->name, name) == 0 ? m : NULL;
}

bool
udf_metric_source_open(udf_metric_source *src, const char *path, const char *name, udf_eval *ev,
					   udf_error *err)
{
	udf_metric_file file;
	const udf_metric *m;
	struct stat st;
	bool		ok;

	memset(src, 0, sizeof(*src));
	if (strlen(path) >= sizeof(src->path) || strlen(name) >= sizeof(src->name))
		return udf_fail(err, "definitions path or metric name too long");
	strcpy(src->path, path);
	strcpy(src->name, name);
	if (stat(path, &st) == 0)
		remember(src, &st);
	if (!udf_metrics_read(path, &file, err))
		return false;
	if (!(m = find_exact(&file, name)))
	{
		udf_metrics_free(&file);
		return udf_fail(err, "metric \"%s\" is not defined in \"%.300s\"", name, path);
	}
	memcpy(ev->args, m->args, sizeof(m->args));
	ev->nargs = m->nargs;
	ev->result.type = m->result.type;
	ev->metrics = &file;
	ok = udf_eval_init_metric(ev, m->formula, m->formula_len, err);
	ev->metrics = NULL;
	udf_metrics_free(&file);
	return ok;
}

void
udf_metric_source_refresh(void *arg, udf_eval *ev)
{
	udf_metric_source *src = arg;
	udf_metric_file file;
	const udf_metric *m;
	udf_error	err;
	struct stat st;

	if (stat(src->path, &st) != 0 || same_file(src, &st))
		return;
	memset(&err, 0, sizeof(err));
	if (!udf_metrics_read(src->path, &file, &err))
		return;					/* unreadable now: keep the definition, look again next block */
	remember(src, &st);
	m = find_exact(&file, src->name);
	if (m && m->nargs == ev->nargs && m->result.type.base == ev->result.type.base &&
		m->result.type.nullable == ev->result.type.nullable)
	{
		bool		same_args = true;

		for (size_t i = 0; i < m->nargs; i++)
			same_args &= strcmp(m->args[i].name, ev->args[i].name) == 0 &&
				m->args[i].type.base == ev->args[i].type.base &&
				m->args[i].type.nullable == ev->args[i].type.nullable;
		ev->metrics = &file;
		if (same_args && udf_eval_replace_metric(ev, m->formula, m->formula_len, &err))
			src->reloads++;
		ev->metrics = NULL;
	}
	udf_metrics_free(&file);
}
