/*
 * tenant.c — the tenant context: which tenant the current role acts for, and who may choose it.
 *
 * The requested tenant lives in the setting duet.tenant so that PostgreSQL carries it where it
 * carries settings: SET LOCAL semantics and rollback (transaction-local mode is pooler-safe),
 * parallel workers, RESET/DISCARD ALL (back to the role's default). The setting is PGC_SUSET, so
 * a non-superuser cannot change it by SET, set_config(), RESET, -c/PGOPTIONS, ALTER ROLE/DATABASE
 * SET or a function's SET clause; duet_set_tenant() changes it after checking membership.
 *
 * The setting is never trusted by itself: duet_current_tenant() returns it only when the role in
 * effect at that moment (after SET ROLE, inside SECURITY DEFINER functions, in parallel workers)
 * is a member of an enabled tenant of that name, or a superuser; otherwise NULL, which RLS
 * policies turn into "no rows". With no tenant requested, a role that belongs to exactly one
 * enabled tenant acts for it. Membership: a role listed in duet.tenant_members, or any role
 * that has its privileges (has_privs_of_role: inherited group roles count).
 *
 * Membership decisions are cached per backend and validated by change_epoch.c, so a per-row RLS
 * check costs a few comparisons.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "change_epoch.h"
#include "tenant.h"

/* duet.tenant: the requested tenant ("" = the role's default). Never trusted by itself. */
static char *duet_tenant_setting = NULL;

typedef struct TenantEntry
{
	char	   *name;
	bool		enabled;
	int			nmembers;
	Oid		   *members;		/* roles listed in duet.tenant_members */
} TenantEntry;

/* The two tables, loaded whole: they hold one row per tenant and per membership. */
static MemoryContext tenant_cxt = NULL;
static TenantEntry *tenants = NULL;
static int	ntenants = 0;
static bool tenants_loaded = false;
static DuetCacheToken tenants_token;

/* The last decision of duet_current_tenant(): per-row RLS checks hit this. */
static bool memo_valid = false;
static Oid	memo_user = InvalidOid;
static char memo_request[TENANT_NAME_MAXLEN + 1];
static const char *memo_result = NULL;	/* points into tenants[] */
static DuetCacheToken memo_token;

bool
duet_tenant_name_valid(const char *name, const char **why)
{
	size_t		len = strlen(name);
	const char *p;

	if (len == 0 || len > TENANT_NAME_MAXLEN)
	{
		*why = "A tenant name has 1 to 63 characters.";
		return false;
	}
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
	{
		*why = "A tenant name starts with a lower-case letter or a digit.";
		return false;
	}
	for (p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  *p == '_' || *p == '-' || *p == '.'))
		{
			*why = "A tenant name has only lower-case letters, digits, \"_\", \"-\" and \".\".";
			return false;
		}
	return true;
}

static bool
check_tenant_setting(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!duet_tenant_name_valid(*newval, &why))
	{
		GUC_check_errdetail("%s", why);
		return false;
	}
	return true;
}

void
duet_tenant_init(void)
{
	DefineCustomStringVariable("duet.tenant",
							   "Tenant requested for this session (set it with duet_set_tenant()).",
							   "Only superusers can set it directly; duet_current_tenant() uses it "
							   "only if the current role is a member of that tenant. Empty means "
							   "the role's only tenant, if it has exactly one.",
							   &duet_tenant_setting,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE,
							   check_tenant_setting, NULL, NULL);
}

static Oid
duet_table_oid(const char *relname)
{
	Oid			nsp = get_namespace_oid("duet", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table duet.%s does not exist", relname),
				 errhint("Run CREATE EXTENSION pg_duet in this database.")));
	return relid;
}

static AttrNumber
column_number(Relation rel, const char *colname)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), colname);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of table %s is missing", colname, RelationGetRelationName(rel));
	return attnum;
}

static TenantEntry *
find_tenant(const char *name)
{
	int			i;

	for (i = 0; i < ntenants; i++)
		if (strcmp(tenants[i].name, name) == 0)
			return &tenants[i];
	return NULL;
}

/*
 * Reads duet.tenants and duet.tenant_members directly (no privilege or RLS checks: this is the
 * authority itself), with a snapshot taken after the cache token.
 */
static void
load_tenants(void)
{
	DuetCacheToken token;
	bool		cacheable;
	Snapshot	snapshot;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext oldcxt;
	AttrNumber	att_name,
				att_enabled,
				att_tenant,
				att_member;
	int			capacity = 16;

	cacheable = duet_epoch_token(&token);

	if (tenant_cxt == NULL)
		tenant_cxt = AllocSetContextCreate(TopMemoryContext, "pg_duet tenants",
										   ALLOCSET_SMALL_SIZES);
	tenants_loaded = false;
	memo_valid = false;
	MemoryContextReset(tenant_cxt);
	tenants = NULL;
	ntenants = 0;

	/* In parallel mode no new snapshot may be taken; the query's own is as fresh as allowed. */
	snapshot = RegisterSnapshot(IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot());
	oldcxt = MemoryContextSwitchTo(tenant_cxt);
	tenants = palloc(capacity * sizeof(TenantEntry));

	rel = table_open(duet_table_oid("tenants"), AccessShareLock);
	duet_epoch_watch_relation(RelationGetRelid(rel));
	att_name = column_number(rel, "name");
	att_enabled = column_number(rel, "enabled");
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;

		if (ntenants == capacity)
		{
			capacity *= 2;
			tenants = repalloc(tenants, capacity * sizeof(TenantEntry));
		}
		d = slot_getattr(slot, att_name, &isnull);
		tenants[ntenants].name = TextDatumGetCString(d);
		d = slot_getattr(slot, att_enabled, &isnull);
		tenants[ntenants].enabled = !isnull && DatumGetBool(d);
		tenants[ntenants].nmembers = 0;
		tenants[ntenants].members = NULL;
		ntenants++;
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);

	rel = table_open(duet_table_oid("tenant_members"), AccessShareLock);
	duet_epoch_watch_relation(RelationGetRelid(rel));
	att_tenant = column_number(rel, "tenant");
	att_member = column_number(rel, "member");
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		char	   *tname = TextDatumGetCString(slot_getattr(slot, att_tenant, &isnull));
		Oid			member = DatumGetObjectId(slot_getattr(slot, att_member, &isnull));
		TenantEntry *t = find_tenant(tname);

		if (t == NULL || isnull)
			continue;
		t->members = t->members ? repalloc(t->members, (t->nmembers + 1) * sizeof(Oid))
			: palloc(sizeof(Oid));
		t->members[t->nmembers++] = member;
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);

	MemoryContextSwitchTo(oldcxt);
	UnregisterSnapshot(snapshot);

	tenants_token = token;
	tenants_loaded = cacheable;
}

static void
ensure_tenants(void)
{
	if (!tenants_loaded || !duet_epoch_token_valid(&tenants_token))
		load_tenants();
}

/*
 * Is role a member of t? Non-superusers: listed, or has the privileges of a listed role.
 * Superusers have every role's privileges, so for them only an explicit chain of membership
 * counts (this decides a superuser's default tenant; superusers may choose any tenant anyway).
 */
static bool
role_in_tenant(Oid role, bool is_super, const TenantEntry *t)
{
	int			i;

	for (i = 0; i < t->nmembers; i++)
	{
		Oid			m = t->members[i];

		if (m == role)
			return true;
		if (is_super ? is_member_of_role_nosuper(role, m) : has_privs_of_role(role, m))
			return true;
	}
	return false;
}

char *
duet_require_tenant(const char *fn, const char *global_hint)
{
	const char *t = duet_current_tenant_name();

	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs a tenant, and none is selected", fn),
				 errhint("Call duet_set_tenant(tenant) first. %s", global_hint)));
	return pstrdup(t);
}

/* The tenant the current role acts for, or NULL. The pointer is valid until the next call. */
const char *
duet_current_tenant_name(void)
{
	Oid			user = GetUserId();
	const char *request = duet_tenant_setting ? duet_tenant_setting : "";
	const char *result = NULL;
	bool		is_super;

	if (memo_valid && memo_user == user && strcmp(memo_request, request) == 0 &&
		duet_epoch_token_valid(&memo_token) &&
		duet_epoch_token_valid(&tenants_token))
		return memo_result;

	ensure_tenants();
	is_super = superuser_arg(user);

	if (request[0] != '\0')
	{
		TenantEntry *t = find_tenant(request);

		if (t != NULL && (is_super || (t->enabled && role_in_tenant(user, false, t))))
			result = t->name;
	}
	else
	{
		int			i,
					found = 0;

		for (i = 0; i < ntenants; i++)
			if (tenants[i].enabled && role_in_tenant(user, is_super, &tenants[i]))
			{
				found++;
				result = tenants[i].name;
			}
		if (found != 1)
			result = NULL;
	}

	if (tenants_loaded && strlen(request) <= TENANT_NAME_MAXLEN)
	{
		memo_user = user;
		strlcpy(memo_request, request, sizeof(memo_request));
		memo_result = result;
		memo_token = tenants_token;
		memo_valid = true;
	}
	return result;
}

PG_FUNCTION_INFO_V1(duet_current_tenant);

/* duet_current_tenant() → text: the tenant the current role acts for, NULL when none. */
Datum
duet_current_tenant(PG_FUNCTION_ARGS)
{
	const char *t = duet_current_tenant_name();

	if (t == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(t));
}

PG_FUNCTION_INFO_V1(duet_set_tenant);

/*
 * duet_set_tenant(tenant text, local bool DEFAULT false) → text
 *
 * Checks that the current role may act for the tenant, then sets duet.tenant for the session or,
 * with local, until the end of the transaction. NULL returns to the role's default tenant.
 * A non-member gets the same error whether or not the tenant exists: names do not leak.
 */
Datum
duet_set_tenant(PG_FUNCTION_ARGS)
{
	bool		local = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	Oid			user = GetUserId();
	bool		is_super = superuser_arg(user);
	char	   *name = NULL;
	const char *why;
	const char *now;

	if (!PG_ARGISNULL(0))
	{
		TenantEntry *t;

		name = text_to_cstring(PG_GETARG_TEXT_PP(0));
		if (!duet_tenant_name_valid(name, &why))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid tenant name \"%s\"", name),
					 errdetail("%s", why)));
		ensure_tenants();
		t = find_tenant(name);
		if (!is_super && (t == NULL || !role_in_tenant(user, false, t)))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to act for tenant \"%s\"", name),
					 errdetail("Role \"%s\" is not a member of a tenant of that name.",
							   GetUserNameFromId(user, false)),
					 errhint("An administrator adds members with duet_tenant_add_member().")));
		if (t == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("tenant \"%s\" does not exist", name)));
		if (!t->enabled && !is_super)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("tenant \"%s\" is disabled", name)));
	}

	if (local && !IsTransactionBlock())
		ereport(WARNING,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("a transaction-local tenant lasts only until the end of this statement"),
				 errhint("Call duet_set_tenant(tenant, true) inside BEGIN ... COMMIT.")));

	/* Our check above is the authorization; the setting itself is superuser-only. */
	(void) set_config_option("duet.tenant", name ? name : "",
							 PGC_SUSET, PGC_S_SESSION,
							 local ? GUC_ACTION_LOCAL : GUC_ACTION_SET,
							 true, 0, false);

	now = duet_current_tenant_name();
	if (now == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(now));
}

PG_FUNCTION_INFO_V1(duet_my_tenants);

/* duet_my_tenants() → text[]: the enabled tenants the current role may act for (sorted). */
Datum
duet_my_tenants(PG_FUNCTION_ARGS)
{
	Oid			user = GetUserId();
	bool		is_super = superuser_arg(user);
	Datum	   *elems;
	int			i,
				n = 0;

	ensure_tenants();
	elems = palloc(Max(ntenants, 1) * sizeof(Datum));
	for (i = 0; i < ntenants; i++)
		if (tenants[i].enabled && (is_super || role_in_tenant(user, false, &tenants[i])))
			elems[n++] = CStringGetTextDatum(tenants[i].name);
	/* Sorted by name so the result does not depend on heap order. */
	for (i = 1; i < n; i++)
	{
		Datum		d = elems[i];
		int			j = i - 1;

		while (j >= 0 && strcmp(TextDatumGetCString(elems[j]), TextDatumGetCString(d)) > 0)
		{
			elems[j + 1] = elems[j];
			j--;
		}
		elems[j + 1] = d;
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}
