/*
 * privileged.h — the one way pg_duet runs anything as another role.
 *
 * Every switch of the user id (to the extension owner, the bootstrap superuser, a rule's or a
 * consumer's owner, or back to a caller) goes through duet_run_privileged(): it fixes search_path,
 * adds SECURITY_RESTRICTED_OPERATION and undoes every setting made inside when it returns. See
 * SECURITY.md for why each of these is needed.
 */
#ifndef DUET_PRIVILEGED_H
#define DUET_PRIVILEGED_H

/*
 * The search_path of a section that runs as the owner or a superuser: names resolve in pg_catalog
 * first and the temp schema last (never for functions and operators), so nothing the caller can
 * create is found. SQL text run there still names every object with its schema, operators and
 * casts included (OPERATOR(pg_catalog.=), pg_catalog.text, duet.rules): test/lint checks that.
 */
#define DUET_PRIVILEGED_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * The search_path of a section that runs a user's own SQL as that user (a rule's query, a
 * consumer's COPY): the user's schemas as PostgreSQL's default has them, the temp schema last.
 */
#define DUET_USER_SEARCH_PATH "pg_catalog, \"$user\", public, pg_temp"

typedef void (*duet_privileged_fn) (void *arg);

/*
 * Runs fn(arg) as role inside a security-restricted operation with search_path set to
 * search_path (DUET_PRIVILEGED_SEARCH_PATH when NULL), in a new GUC nest level whose changes are
 * all undone when fn returns (an error undoes them through the transaction's abort). The user id
 * and security context are restored whether fn returns or raises.
 */
extern void duet_run_privileged(Oid role, const char *search_path, duet_privileged_fn fn, void *arg);

/*
 * For a background worker right after it connects: DUET_PRIVILEGED_SEARCH_PATH for the whole
 * session, whatever ALTER DATABASE/ROLE ... SET search_path says.
 */
extern void duet_worker_pin_search_path(void);

/* The extension owner: the owner of schema duet, which owns every table of the extension. */
extern Oid	duet_extension_owner(void);

/*
 * Runs a one-row internal call (SQL text naming every object with its schema) as the extension
 * owner and returns its first column when that is a non-null bigint, else 0.
 */
extern int64 duet_run_as_owner(const char *sql, int nargs, Oid *types, Datum *values,
							   const char *nulls);

/*
 * Whether a read-only query (SQL text naming every object with its schema, no NULL arguments)
 * returns a row when run as role: one answer from a table the caller may not read.
 */
extern bool duet_privileged_exists(Oid role, const char *sql, int nargs, Oid *types, Datum *values);

/*
 * The public SQL API of a tenant's objects (rules_api.c): identifies the caller and its verified
 * tenant (an error naming `what`, e.g. "Pipelines", when it has none), then calls
 * duet.<internal>(tenant, caller oid, <the function's arguments>[, extra_value]) as the extension
 * owner and returns its bigint result (0 for void).
 */
struct FunctionCallInfoBaseData;
extern int64 duet_forward_as_owner(struct FunctionCallInfoBaseData *fcinfo, const char *internal,
								   int extra, bool extra_value, const char *what);

#endif							/* DUET_PRIVILEGED_H */
