/*
 * tenant.h — the tenant context (tenant.c), for every concern that scopes data by tenant.
 */
#ifndef DUET_TENANT_H
#define DUET_TENANT_H

#define TENANT_NAME_MAXLEN 63

/* Defines duet.tenant; called from duet_config_init(). */
extern void duet_tenant_init(void);

/*
 * The tenant the current role (GetUserId()) acts for, verified against the membership tables
 * at the moment of the call; NULL when none. Valid until the next call.
 */
extern const char *duet_current_tenant_name(void);

/*
 * The current tenant (palloc'd), or an error saying that fn needs one, with global_hint naming the
 * function that changes the global default instead.
 */
extern char *duet_require_tenant(const char *fn, const char *global_hint);

/* Syntax of tenant names: 1-63 of [a-z0-9_.-], starting with [a-z0-9]. */
extern bool duet_tenant_name_valid(const char *name, const char **why);

#endif							/* DUET_TENANT_H */
