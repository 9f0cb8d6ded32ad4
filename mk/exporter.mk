# Prometheus metrics: the queries file for prometheus-postgres-exporter (docs/monitoring.md).
#
#   make install-exporter-queries   installs exporter/pg_duet_queries.yaml into
#                                   $(DESTDIR)$(EXPORTER_QUERIES_DIR) (default /etc/prometheus),
#                                   for the exporter's --extend.query-path

EXPORTER_QUERIES_DIR ?= /etc/prometheus

.PHONY: install-exporter-queries
install-exporter-queries:
	install -d '$(DESTDIR)$(EXPORTER_QUERIES_DIR)'
	install -m 644 exporter/pg_duet_queries.yaml '$(DESTDIR)$(EXPORTER_QUERIES_DIR)/pg_duet_queries.yaml'
