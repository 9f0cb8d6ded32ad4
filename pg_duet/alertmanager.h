/*
 * alertmanager.h — pushing alerts to Prometheus Alertmanager (alertmanager.c, docs/alerting.md).
 */
#ifndef DUET_ALERTMANAGER_H
#define DUET_ALERTMANAGER_H

/* duet.alertmanager_urls: comma-separated Alertmanager base URLs (superuser-only). */
extern char *duet_alertmanager_urls;

/* Settings and the commit-time wake-up's shared memory; from _PG_init. */
extern void duet_alertmanager_init(void);

/* Whether duet.alertmanager_urls names an Alertmanager: the supervisor then runs the sender. */
extern bool duet_alertmanager_configured(void);

/* The sender, one per database; started by the per-database supervisor (kafka_launcher.c). */
PGDLLEXPORT void duet_alertmanager_main(Datum arg);

#endif							/* DUET_ALERTMANAGER_H */
