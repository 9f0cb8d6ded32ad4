/*
 * duet_config.h — the Config Service's internal interfaces between its C files.
 */
#ifndef DUET_CONFIG_H
#define DUET_CONFIG_H

#include "utils/jsonb.h"

/* Config keys: lower-case dotted names, at most this long (also a CHECK in 20_config.sql). */
#define CONFIG_KEY_MAXLEN 128

/* duet.config_history_retention in minutes (0 = keep forever), defined in config.c. */
extern int	duet_config_history_retention;

/* config_schema.c: raises ERRCODE_CHECK_VIOLATION naming key when value violates schema. */
extern void duet_config_schema_validate(Jsonb *schema, Jsonb *value, const char *key);

/* config_cache.c: key syntax, 1-128 of [a-z0-9_.-] starting with a letter. */
extern bool duet_config_key_valid(const char *key);

/* config_cache.c: the effective value of key for the current tenant, or NULL. */
extern Jsonb *duet_config_lookup(const char *key);

/* config_cache.c: requests the shared counters of cache lookups when preloaded (duet_config_init). */
extern void duet_config_cache_shmem_init(void);

#endif							/* DUET_CONFIG_H */
