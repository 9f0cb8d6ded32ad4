/*
 * duet_ch_sync.c — duet-ch-sync: brings ClickHouse's copy of the metrics up to date from PostgreSQL.
 *
 *   duet-ch-sync --dir USER_SCRIPTS [--xml FILE] [--format RowBinary] [--no-pool] [--dbname CONNINFO]
 *   duet-ch-sync --print [--format …] [--no-pool] [--dbname CONNINFO]
 *   duet-ch-sync --print-sql [--dbname CONNINFO]
 *
 * Connects with libpq (CONNINFO, else the PG* environment), reads duet_clickhouse_config() — the
 * <functions> XML and the duet_udf definitions file for the metrics the connecting role uses — and
 * replaces USER_SCRIPTS/duet_metrics.tsv and the XML (default USER_SCRIPTS/duet_function.xml)
 * atomically: each is written to a temporary file in the same directory, fsync'd, rename(2)d over
 * the old one, and the directory fsync'd. A running duet_udf pool takes the new definitions up
 * before its next block (ch_udfs/udf_reload.c); ClickHouse re-reads the XML itself. --print writes
 * both to stdout instead, followed by the metrics as ClickHouse SQL user-defined functions
 * (duet_clickhouse_sql_functions(): DROP/CREATE FUNCTION statements for ClickHouse 21.10 and later,
 * a comment naming the construct for a metric without an exact ClickHouse form); --print-sql
 * prints only those, to pipe into clickhouse-client --multiquery. Exit status 0, or 1 with one
 * line on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libpq-fe.h"

/* One line on stderr (libpq's messages span lines), exit 1. */
static void
fail(const char *fmt, const char *a, const char *b)
{
	char		msg[2048];
	size_t		n;

	snprintf(msg, sizeof(msg), fmt, a, b);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == ' ')
		msg[--n] = '\0';
	fprintf(stderr, "duet-ch-sync: %s\n", msg);
	exit(1);
}

static void
usage(const char *msg)
{
	fprintf(stderr, "duet-ch-sync: %s\n"
			"usage: duet-ch-sync --dir USER_SCRIPTS [--xml FILE] [--format FORMAT] [--no-pool] [--dbname CONNINFO]\n"
			"       duet-ch-sync --print [--format FORMAT] [--no-pool] [--dbname CONNINFO]\n"
			"       duet-ch-sync --print-sql [--dbname CONNINFO]\n", msg);
	exit(2);
}

/* Writes text to path through a temporary file in its directory and rename(2). */
static void
replace_file(const char *path, const char *text)
{
	char		tmp[PATH_MAX];
	char		dircopy[PATH_MAX];
	size_t		len = strlen(text),
				off = 0;
	int			fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid()) >= (int) sizeof(tmp))
		fail("path too long: %s%s", path, "");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail("could not create \"%s\": %s", tmp, strerror(errno));
	while (off < len)
	{
		ssize_t		n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			unlink(tmp);
			fail("could not write \"%s\": %s", tmp, strerror(errno));
		}
		off += (size_t) n;
	}
	if (fsync(fd) != 0 || close(fd) != 0)
	{
		unlink(tmp);
		fail("could not write \"%s\": %s", tmp, strerror(errno));
	}
	if (rename(tmp, path) != 0)
	{
		unlink(tmp);
		fail("could not rename onto \"%s\": %s", path, strerror(errno));
	}
	snprintf(dircopy, sizeof(dircopy), "%s", path);
	fd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0)
	{
		(void) fsync(fd);
		close(fd);
	}
}

int
main(int argc, char **argv)
{
	const char *dir = NULL,
			   *xml_path = NULL,
			   *format = "RowBinary",
			   *conninfo = "";
	bool		pool = true,
				print = false,
				print_sql = false;
	char		defs_path[PATH_MAX],
				xml_default[PATH_MAX];
	PGconn	   *conn;
	PGresult   *res;
	char	   *schema,
			   *ddl = NULL;
	char		sql[1024];
	const char *params[2];

	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--no-pool") == 0)
			pool = false;
		else if (strcmp(a, "--print") == 0)
			print = true;
		else if (strcmp(a, "--print-sql") == 0)
			print_sql = true;
		else if (!v)
			usage("missing value");
		else if (strcmp(a, "--dir") == 0)
			dir = v, i++;
		else if (strcmp(a, "--xml") == 0)
			xml_path = v, i++;
		else if (strcmp(a, "--format") == 0)
			format = v, i++;
		else if (strcmp(a, "--dbname") == 0)
			conninfo = v, i++;
		else
			usage("unknown option");
	}
	if (!print && !print_sql && !dir)
		usage("give --dir (or --print, --print-sql)");

	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
		fail("could not connect to PostgreSQL: %s%s", PQerrorMessage(conn), "");
	/* the extension's schema, whatever the role's search_path */
	res = PQexec(conn, "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
				 "ON n.oid OPERATOR(pg_catalog.=) e.extnamespace WHERE e.extname OPERATOR(pg_catalog.=) 'pg_duet'");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fail("extension pg_duet is not installed in this database%s%s", "", "");
	schema = PQescapeIdentifier(conn, PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0)));
	PQclear(res);
	if (print || print_sql)
	{
		/* the SQL user-defined functions, one statement pair (or comment) per metric */
		snprintf(sql, sizeof(sql),
				 "SELECT '-- pg_duet metrics as ClickHouse SQL user-defined functions (ClickHouse 21.10 and later)' "
				 "OPERATOR(pg_catalog.||) pg_catalog.chr(10) OPERATOR(pg_catalog.||) "
				 "COALESCE(pg_catalog.string_agg(COALESCE(f.ddl, '-- ' "
				 "OPERATOR(pg_catalog.||) f.name OPERATOR(pg_catalog.||) ': not compiled: ' "
				 "OPERATOR(pg_catalog.||) f.not_compiled) OPERATOR(pg_catalog.||) pg_catalog.chr(10), '' ORDER BY f.name), '') "
				 "FROM %s.duet_clickhouse_sql_functions() f", schema);
		res = PQexec(conn, sql);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
			fail("duet_clickhouse_sql_functions() failed: %s%s", PQerrorMessage(conn), "");
		ddl = strdup(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	if (print_sql && !print)
	{
		fputs(ddl, stdout);
		PQfreemem(schema);
		PQfinish(conn);
		free(ddl);
		return 0;
	}
	snprintf(sql, sizeof(sql), "SELECT c.xml, c.definitions FROM %s.duet_clickhouse_config($1, $2) c", schema);
	PQfreemem(schema);
	params[0] = format;
	params[1] = pool ? "true" : "false";
	res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fail("duet_clickhouse_config() failed: %s%s", PQerrorMessage(conn), "");
	if (print)
		printf("%s\n%s\n%s", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), ddl);
	else
	{
		if (snprintf(defs_path, sizeof(defs_path), "%s/duet_metrics.tsv", dir) >= (int) sizeof(defs_path) ||
			snprintf(xml_default, sizeof(xml_default), "%s/duet_function.xml", dir) >= (int) sizeof(xml_default))
			fail("path too long: %s%s", dir, "");
		/* definitions first: the XML may name a new metric, which must then be in the file */
		replace_file(defs_path, PQgetvalue(res, 0, 1));
		replace_file(xml_path ? xml_path : xml_default, PQgetvalue(res, 0, 0));
	}
	free(ddl);
	PQclear(res);
	PQfinish(conn);
	return 0;
}
