-- pg_duet install script, part 90: a comment on every column of every table and view of schema duet.
-- The same statements are at the end of pg_duet--0.1.0--0.2.0.sql. sql/docs_comments.sql checks that
-- nothing is left without one; docs/sql-reference.md is generated from them (docs/gen_reference.py).

-- duet.tenants
COMMENT ON COLUMN duet.tenants.name IS 'tenant identifier: lower case, [a-z0-9][a-z0-9_.-]*, at most 63 characters';
COMMENT ON COLUMN duet.tenants.display_name IS 'human-readable name';
COMMENT ON COLUMN duet.tenants.enabled IS 'false after duet_tenant_disable: no member can act for the tenant';
COMMENT ON COLUMN duet.tenants.created_at IS 'when the tenant was created';
COMMENT ON COLUMN duet.tenants.created_by IS 'session user who created the tenant';

-- duet.tenant_members
COMMENT ON COLUMN duet.tenant_members.tenant IS 'the tenant';
COMMENT ON COLUMN duet.tenant_members.member IS 'a role that may act for the tenant (and every role having its privileges); stored as the role''s OID, so it survives a rename';
COMMENT ON COLUMN duet.tenant_members.added_at IS 'when the role was added';
COMMENT ON COLUMN duet.tenant_members.added_by IS 'session user who added the role';

-- duet.config_definitions
COMMENT ON COLUMN duet.config_definitions.key IS 'config key: lower case, [a-z][a-z0-9_.-]*, at most 128 characters';
COMMENT ON COLUMN duet.config_definitions.schema IS 'JSON-Schema subset every value of the key must satisfy (type, enum, minimum, pattern, required, properties, items, ...)';
COMMENT ON COLUMN duet.config_definitions.description IS 'what the key is for';
COMMENT ON COLUMN duet.config_definitions.updated_at IS 'when the definition was last written';
COMMENT ON COLUMN duet.config_definitions.updated_by IS 'role that last wrote the definition';

-- duet.config
COMMENT ON COLUMN duet.config.key IS 'config key';
COMMENT ON COLUMN duet.config.tenant IS 'the tenant whose override this is; NULL for the global default';
COMMENT ON COLUMN duet.config.value IS 'the value (jsonb, at most 1 MiB)';
COMMENT ON COLUMN duet.config.version IS 'version of this (key, tenant): strictly increasing, an unset is a version too';
COMMENT ON COLUMN duet.config.updated_at IS 'when the value was last written';
COMMENT ON COLUMN duet.config.updated_by IS 'role that last wrote the value';

-- duet.config_history
COMMENT ON COLUMN duet.config_history.id IS 'history row id; the payload of NOTIFY duet_config';
COMMENT ON COLUMN duet.config_history.key IS 'config key';
COMMENT ON COLUMN duet.config_history.tenant IS 'the tenant whose override changed; NULL for the global default';
COMMENT ON COLUMN duet.config_history.version IS 'version of (key, tenant) this change created';
COMMENT ON COLUMN duet.config_history.operation IS 'set, unset or rollback';
COMMENT ON COLUMN duet.config_history.value IS 'the value from this version on; NULL when unset';
COMMENT ON COLUMN duet.config_history.previous_value IS 'the value before this change; NULL when there was none';
COMMENT ON COLUMN duet.config_history.rolled_back_to IS 'for a rollback: the version whose value was restored';
COMMENT ON COLUMN duet.config_history.changed_at IS 'when the change was made (pruned past duet.config_history_retention)';
COMMENT ON COLUMN duet.config_history.changed_by IS 'role that made the change';

-- duet.config_effective
COMMENT ON COLUMN duet.config_effective.key IS 'config key';
COMMENT ON COLUMN duet.config_effective.value IS 'effective value for the current tenant';
COMMENT ON COLUMN duet.config_effective.source IS 'where the value comes from: tenant (an override) or default';
COMMENT ON COLUMN duet.config_effective.tenant IS 'the tenant of an override; NULL for a default';
COMMENT ON COLUMN duet.config_effective.version IS 'version of the value';
COMMENT ON COLUMN duet.config_effective.updated_at IS 'when the value was last written';
COMMENT ON COLUMN duet.config_effective.updated_by IS 'role that last wrote the value';

-- duet.kafka_consumers
COMMENT ON COLUMN duet.kafka_consumers.id IS 'consumer id';
COMMENT ON COLUMN duet.kafka_consumers.name IS 'consumer name, as given to duet_kafka_consume';
COMMENT ON COLUMN duet.kafka_consumers.topic IS 'Kafka topic consumed';
COMMENT ON COLUMN duet.kafka_consumers.target IS 'table the rows are written to';
COMMENT ON COLUMN duet.kafka_consumers.brokers IS 'bootstrap servers (host:port,...)';
COMMENT ON COLUMN duet.kafka_consumers.format IS 'message format: json (keys to columns), jsonb (whole message in one column), csv or text';
COMMENT ON COLUMN duet.kafka_consumers.batch_size IS 'most messages per transaction';
COMMENT ON COLUMN duet.kafka_consumers.flush_interval_ms IS 'longest wait, in milliseconds, before a partial batch is committed';
COMMENT ON COLUMN duet.kafka_consumers.start_position IS 'where partitions without a stored offset start: earliest, latest or a timestamp';
COMMENT ON COLUMN duet.kafka_consumers.parallelism IS 'number of workers sharing the topic''s partitions';
COMMENT ON COLUMN duet.kafka_consumers.column_map IS 'message field to column mapping, when names differ';
COMMENT ON COLUMN duet.kafka_consumers.properties IS 'librdkafka properties passed through (security.protocol, sasl.*, ssl.*); may hold secrets, hence superuser only';
COMMENT ON COLUMN duet.kafka_consumers.owner IS 'role the rows are written as (the creator of the consumer)';
COMMENT ON COLUMN duet.kafka_consumers.enabled IS 'false after duet_kafka_stop';
COMMENT ON COLUMN duet.kafka_consumers.generation IS 'bumped by every stop, start, reset or change: workers of an older generation exit';
COMMENT ON COLUMN duet.kafka_consumers.created_at IS 'when the consumer was created';

-- duet.kafka_offsets
COMMENT ON COLUMN duet.kafka_offsets.consumer_id IS 'the consumer (duet.kafka_consumers.id)';
COMMENT ON COLUMN duet.kafka_offsets.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_offsets.next_offset IS 'offset of the next message to ingest, committed in the transaction that wrote the rows before it';
COMMENT ON COLUMN duet.kafka_offsets.skip_before IS 'after duet_kafka_reset to a timestamp: messages older than this are passed over';
COMMENT ON COLUMN duet.kafka_offsets.updated_at IS 'when the offset was last committed';

-- duet.kafka_dead_letters
COMMENT ON COLUMN duet.kafka_dead_letters.id IS 'dead letter id';
COMMENT ON COLUMN duet.kafka_dead_letters.consumer_id IS 'the consumer that read the message (kept after the consumer is dropped)';
COMMENT ON COLUMN duet.kafka_dead_letters.consumer IS 'the consumer''s name at the time';
COMMENT ON COLUMN duet.kafka_dead_letters.owner IS 'owner of the consumer: roles with its privileges see the row';
COMMENT ON COLUMN duet.kafka_dead_letters.topic IS 'Kafka topic';
COMMENT ON COLUMN duet.kafka_dead_letters.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_dead_letters.offset IS 'offset of the message';
COMMENT ON COLUMN duet.kafka_dead_letters.key IS 'message key, raw bytes';
COMMENT ON COLUMN duet.kafka_dead_letters.value IS 'message value, raw bytes';
COMMENT ON COLUMN duet.kafka_dead_letters.error IS 'why the message could not be ingested (parse error or constraint violation)';
COMMENT ON COLUMN duet.kafka_dead_letters.detail IS 'the error''s detail, when there is one';
COMMENT ON COLUMN duet.kafka_dead_letters.failed_at IS 'when the message was set aside';

-- duet.kafka_partition_status
COMMENT ON COLUMN duet.kafka_partition_status.name IS 'consumer name';
COMMENT ON COLUMN duet.kafka_partition_status.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_partition_status.committed_offset IS 'next offset to ingest, as committed with the rows';
COMMENT ON COLUMN duet.kafka_partition_status.high_watermark IS 'the partition''s high watermark as last seen by a running worker; NULL when none runs';
COMMENT ON COLUMN duet.kafka_partition_status.lag IS 'messages not yet ingested: high watermark minus committed offset';
COMMENT ON COLUMN duet.kafka_partition_status.committed_at IS 'when the offset was last committed';

-- duet.kafka_status
COMMENT ON COLUMN duet.kafka_status.name IS 'consumer name';
COMMENT ON COLUMN duet.kafka_status.topic IS 'Kafka topic';
COMMENT ON COLUMN duet.kafka_status.target IS 'target table';
COMMENT ON COLUMN duet.kafka_status.format IS 'message format';
COMMENT ON COLUMN duet.kafka_status.parallelism IS 'workers configured';
COMMENT ON COLUMN duet.kafka_status.owner IS 'role the rows are written as';
COMMENT ON COLUMN duet.kafka_status.state IS 'stopped, starting, running, idle, broker unreachable, error, or not running (no worker serves this database: see reason)';
COMMENT ON COLUMN duet.kafka_status.workers IS 'workers running now';
COMMENT ON COLUMN duet.kafka_status.rows IS 'rows ingested since the workers started';
COMMENT ON COLUMN duet.kafka_status.bytes IS 'message bytes ingested since the workers started';
COMMENT ON COLUMN duet.kafka_status.batches IS 'batches committed since the workers started';
COMMENT ON COLUMN duet.kafka_status.errors IS 'errors since the workers started (messages sent to dead letters included)';
COMMENT ON COLUMN duet.kafka_status.dead_letters IS 'rows of duet.kafka_dead_letters for this consumer';
COMMENT ON COLUMN duet.kafka_status.last_error IS 'the most recent error of any of its workers';
COMMENT ON COLUMN duet.kafka_status.last_error_at IS 'when the most recent error happened';
COMMENT ON COLUMN duet.kafka_status.lag IS 'messages not yet ingested, summed over partitions';
COMMENT ON COLUMN duet.kafka_status.rate IS 'rows per second ingested recently';

-- duet.kafka_outbox
COMMENT ON COLUMN duet.kafka_outbox.id IS 'event id: events are published in this order';
COMMENT ON COLUMN duet.kafka_outbox.topic IS 'Kafka topic to publish to';
COMMENT ON COLUMN duet.kafka_outbox.key IS 'message key';
COMMENT ON COLUMN duet.kafka_outbox.value IS 'message value';
COMMENT ON COLUMN duet.kafka_outbox.headers IS 'message headers, a JSON object of strings';
COMMENT ON COLUMN duet.kafka_outbox.created_at IS 'when duet_kafka_publish was called';
COMMENT ON COLUMN duet.kafka_outbox.sent_at IS 'when the broker acknowledged the message; NULL while pending';
COMMENT ON COLUMN duet.kafka_outbox.partition IS 'partition the broker wrote the message to';
COMMENT ON COLUMN duet.kafka_outbox.offset IS 'offset the broker gave the message';

-- duet.kafka_outbox_status
COMMENT ON COLUMN duet.kafka_outbox_status.pending IS 'events written but not yet acknowledged by the broker';
COMMENT ON COLUMN duet.kafka_outbox_status.oldest_pending_at IS 'when the oldest pending event was written; NULL when none is pending';
COMMENT ON COLUMN duet.kafka_outbox_status.sent_last_hour IS 'events the broker acknowledged in the last hour';
COMMENT ON COLUMN duet.kafka_outbox_status.last_sent_at IS 'when the broker last acknowledged an event';

-- duet.rules
COMMENT ON COLUMN duet.rules.id IS 'rule id';
COMMENT ON COLUMN duet.rules.tenant IS 'tenant the rule belongs to';
COMMENT ON COLUMN duet.rules.name IS 'rule name, unique per tenant';
COMMENT ON COLUMN duet.rules.target IS 'row rules: the table whose inserts are evaluated; NULL for a query rule';
COMMENT ON COLUMN duet.rules.query IS 'query rules: SQL returning label and metric columns, run as owner; NULL for a row rule';
COMMENT ON COLUMN duet.rules.condition IS 'Duet formula; true means the alert condition holds';
COMMENT ON COLUMN duet.rules.value IS 'optional Duet formula: the value reported with the alert';
COMMENT ON COLUMN duet.rules.severity IS 'info, warning, error or critical';
COMMENT ON COLUMN duet.rules.labels IS 'columns identifying an alert instance (one alert per distinct label set)';
COMMENT ON COLUMN duet.rules.message IS 'message template with {column} and {value} placeholders';
COMMENT ON COLUMN duet.rules.for_period IS 'how long the condition must hold before the alert fires (pending until then)';
COMMENT ON COLUMN duet.rules.keep_firing_for IS 'how long an alert keeps firing after the condition stops holding (recovering until then)';
COMMENT ON COLUMN duet.rules.topic IS 'outbox topic for firing and resolved events, e.g. rules.alerts; NULL for none';
COMMENT ON COLUMN duet.rules.enabled IS 'false after duet_rule_disable';
COMMENT ON COLUMN duet.rules.owner IS 'the rule''s author: its query runs with this role''s privileges';
COMMENT ON COLUMN duet.rules.version IS 'incremented by every change of the rule';
COMMENT ON COLUMN duet.rules.created_at IS 'when the rule was created';
COMMENT ON COLUMN duet.rules.updated_at IS 'when the rule was last changed';

-- duet.alerts
COMMENT ON COLUMN duet.alerts.id IS 'alert id';
COMMENT ON COLUMN duet.alerts.rule_id IS 'the rule (duet.rules.id)';
COMMENT ON COLUMN duet.alerts.tenant IS 'tenant of the rule';
COMMENT ON COLUMN duet.alerts.labels IS 'label set identifying this instance: the rule''s label columns and their values';
COMMENT ON COLUMN duet.alerts.state IS 'normal, pending, firing, recovering, resolved, error or nodata';
COMMENT ON COLUMN duet.alerts.pending_since IS 'when the condition started to hold';
COMMENT ON COLUMN duet.alerts.firing_since IS 'when the alert fired; set while it is active (firing or recovering)';
COMMENT ON COLUMN duet.alerts.recovering_since IS 'when the condition stopped holding while the alert was firing';
COMMENT ON COLUMN duet.alerts.last_eval_at IS 'when the instance was last evaluated';
COMMENT ON COLUMN duet.alerts.value IS 'the value formula''s result at the last evaluation';
COMMENT ON COLUMN duet.alerts.message IS 'the rendered message at the last evaluation';
COMMENT ON COLUMN duet.alerts.error IS 'the evaluation error, in state error';

-- duet.alert_transitions
COMMENT ON COLUMN duet.alert_transitions.id IS 'transition id; the payload of NOTIFY duet_alerts';
COMMENT ON COLUMN duet.alert_transitions.alert_id IS 'the alert instance (duet.alerts.id)';
COMMENT ON COLUMN duet.alert_transitions.rule_id IS 'the rule (duet.rules.id)';
COMMENT ON COLUMN duet.alert_transitions.tenant IS 'tenant of the rule';
COMMENT ON COLUMN duet.alert_transitions.labels IS 'label set of the alert';
COMMENT ON COLUMN duet.alert_transitions.from_state IS 'state before the transition';
COMMENT ON COLUMN duet.alert_transitions.to_state IS 'state after the transition';
COMMENT ON COLUMN duet.alert_transitions.at IS 'evaluation time of the transition (pruned past duet.rules_history_retention)';
COMMENT ON COLUMN duet.alert_transitions.value IS 'value that caused the transition';
COMMENT ON COLUMN duet.alert_transitions.message IS 'rendered message';
COMMENT ON COLUMN duet.alert_transitions.error IS 'evaluation error, for a transition to error';

-- duet.alerts_active
COMMENT ON COLUMN duet.alerts_active.alert_id IS 'alert id (duet.alerts.id)';
COMMENT ON COLUMN duet.alerts_active.tenant IS 'tenant of the rule';
COMMENT ON COLUMN duet.alerts_active.rule IS 'rule name';
COMMENT ON COLUMN duet.alerts_active.severity IS 'rule severity';
COMMENT ON COLUMN duet.alerts_active.labels IS 'label set of the alert';
COMMENT ON COLUMN duet.alerts_active.state IS 'pending, firing, recovering, error or nodata';
COMMENT ON COLUMN duet.alerts_active.pending_since IS 'when the condition started to hold';
COMMENT ON COLUMN duet.alerts_active.firing_since IS 'when the alert fired';
COMMENT ON COLUMN duet.alerts_active.recovering_since IS 'when the condition stopped holding while firing';
COMMENT ON COLUMN duet.alerts_active.last_eval_at IS 'when the instance was last evaluated';
COMMENT ON COLUMN duet.alerts_active.value IS 'value at the last evaluation';
COMMENT ON COLUMN duet.alerts_active.message IS 'rendered message at the last evaluation';
COMMENT ON COLUMN duet.alerts_active.error IS 'evaluation error, in state error';

-- duet.alert_history
COMMENT ON COLUMN duet.alert_history.id IS 'transition id (duet.alert_transitions.id; the payload of NOTIFY duet_alerts)';
COMMENT ON COLUMN duet.alert_history.tenant IS 'tenant of the rule';
COMMENT ON COLUMN duet.alert_history.rule IS 'rule name';
COMMENT ON COLUMN duet.alert_history.severity IS 'rule severity';
COMMENT ON COLUMN duet.alert_history.labels IS 'label set of the alert';
COMMENT ON COLUMN duet.alert_history.from_state IS 'state before the transition';
COMMENT ON COLUMN duet.alert_history.to_state IS 'state after the transition';
COMMENT ON COLUMN duet.alert_history.at IS 'evaluation time of the transition';
COMMENT ON COLUMN duet.alert_history.value IS 'value that caused the transition';
COMMENT ON COLUMN duet.alert_history.message IS 'rendered message';
COMMENT ON COLUMN duet.alert_history.error IS 'evaluation error, for a transition to error';

-- duet.llm_providers
COMMENT ON COLUMN duet.llm_providers.name IS 'provider name';
COMMENT ON COLUMN duet.llm_providers.kind IS 'wire format: openai (POST base_url/chat/completions, Bearer key) or anthropic (POST base_url/messages, x-api-key)';
COMMENT ON COLUMN duet.llm_providers.base_url IS 'API base URL, e.g. https://api.openai.com/v1';
COMMENT ON COLUMN duet.llm_providers.model IS 'model name sent to the provider';
COMMENT ON COLUMN duet.llm_providers.priority IS 'order of the fallback chain: lowest first';
COMMENT ON COLUMN duet.llm_providers.timeout_ms IS 'time limit of one HTTP request, in milliseconds (100 to 600000)';
COMMENT ON COLUMN duet.llm_providers.max_retries IS 'retries on the same provider after a retryable failure (0 to 10)';
COMMENT ON COLUMN duet.llm_providers.max_tokens IS 'most tokens the model may answer with';
COMMENT ON COLUMN duet.llm_providers.headers IS 'extra HTTP headers, a JSON object';
COMMENT ON COLUMN duet.llm_providers.api_key_env IS 'name of the server''s environment variable holding the key (instead of duet.llm_provider_keys)';
COMMENT ON COLUMN duet.llm_providers.enabled IS 'false: the provider is skipped';
COMMENT ON COLUMN duet.llm_providers.updated_at IS 'when the row was written';
COMMENT ON COLUMN duet.llm_providers.updated_by IS 'role that wrote the row';

-- duet.llm_provider_keys
COMMENT ON COLUMN duet.llm_provider_keys.provider IS 'the provider (duet.llm_providers.name)';
COMMENT ON COLUMN duet.llm_provider_keys.api_key IS 'the API key (superuser only; never dumped, logged or shown in errors)';

-- duet.ask_examples
COMMENT ON COLUMN duet.ask_examples.id IS 'example id';
COMMENT ON COLUMN duet.ask_examples.tenant IS 'tenant the example belongs to; NULL for a global example (made by a superuser)';
COMMENT ON COLUMN duet.ask_examples.question IS 'the question in natural language';
COMMENT ON COLUMN duet.ask_examples.sql IS 'the verified SQL answer';
COMMENT ON COLUMN duet.ask_examples.created_at IS 'when the example was added';
COMMENT ON COLUMN duet.ask_examples.created_by IS 'session user who added it';

-- duet.ask_cache
COMMENT ON COLUMN duet.ask_cache.cache_key IS 'md5 of (tenant, question, schema fingerprint, model)';
COMMENT ON COLUMN duet.ask_cache.tenant IS 'tenant of the asker';
COMMENT ON COLUMN duet.ask_cache.question IS 'the question';
COMMENT ON COLUMN duet.ask_cache.fingerprint IS 'fingerprint of the schema context the model saw';
COMMENT ON COLUMN duet.ask_cache.model IS 'model that answered';
COMMENT ON COLUMN duet.ask_cache.sql IS 'the accepted SQL (re-checked by the guard on every hit)';
COMMENT ON COLUMN duet.ask_cache.created_at IS 'when the answer was cached (expires after duet.ask_cache_ttl)';

-- duet.ask_log
COMMENT ON COLUMN duet.ask_log.id IS 'log row id';
COMMENT ON COLUMN duet.ask_log.at IS 'when the ask started';
COMMENT ON COLUMN duet.ask_log.tenant IS 'tenant of the asker';
COMMENT ON COLUMN duet.ask_log.role IS 'role that asked';
COMMENT ON COLUMN duet.ask_log.question IS 'the question';
COMMENT ON COLUMN duet.ask_log.sql IS 'the SQL answered (the last one tried when rejected)';
COMMENT ON COLUMN duet.ask_log.provider IS 'provider that answered';
COMMENT ON COLUMN duet.ask_log.model IS 'model that answered';
COMMENT ON COLUMN duet.ask_log.attempts IS 'HTTP requests sent, retries and fallbacks included';
COMMENT ON COLUMN duet.ask_log.corrections IS 'rejected answers sent back to the model';
COMMENT ON COLUMN duet.ask_log.tokens_in IS 'prompt tokens, as reported by the provider';
COMMENT ON COLUMN duet.ask_log.tokens_out IS 'answer tokens, as reported by the provider';
COMMENT ON COLUMN duet.ask_log.latency_ms IS 'wall time of the ask, in milliseconds';
COMMENT ON COLUMN duet.ask_log.status IS 'ok, cached, rejected (the guard refused every answer), failed (no provider answered, or another error), over_budget (an ask.limit.* limit refused a request) or cancelled (cancelled, timed out, or its session ended during the ask)';
COMMENT ON COLUMN duet.ask_log.error IS 'the error of a rejected or failed ask (keys scrubbed)';

-- duet.ask_stats
COMMENT ON COLUMN duet.ask_stats.tenant IS 'tenant of the askers';
COMMENT ON COLUMN duet.ask_stats.model IS 'model';
COMMENT ON COLUMN duet.ask_stats.providers IS 'providers that answered';
COMMENT ON COLUMN duet.ask_stats.asks IS 'asks logged';
COMMENT ON COLUMN duet.ask_stats.answered IS 'asks with status ok';
COMMENT ON COLUMN duet.ask_stats.cache_hits IS 'asks answered from the cache';
COMMENT ON COLUMN duet.ask_stats.rejected IS 'asks whose answers the guard refused';
COMMENT ON COLUMN duet.ask_stats.failed IS 'asks no provider answered';
COMMENT ON COLUMN duet.ask_stats.avg_latency_ms IS 'mean latency, in milliseconds';
COMMENT ON COLUMN duet.ask_stats.p95_latency_ms IS '95th percentile latency, in milliseconds';
COMMENT ON COLUMN duet.ask_stats.http_requests IS 'HTTP requests sent';
COMMENT ON COLUMN duet.ask_stats.corrections IS 'rejected answers sent back to the model';
COMMENT ON COLUMN duet.ask_stats.tokens_in IS 'prompt tokens';
COMMENT ON COLUMN duet.ask_stats.tokens_out IS 'answer tokens';
COMMENT ON COLUMN duet.ask_stats.last_ask IS 'time of the latest ask';

-- duet.metrics (arguments, argument_types and return_type are commented in part 60)
COMMENT ON COLUMN duet.metrics.name IS 'metric name: the ClickHouse function''s name';
COMMENT ON COLUMN duet.metrics.formula IS 'the Duet formula';
COMMENT ON COLUMN duet.metrics.description IS 'what the metric measures';
COMMENT ON COLUMN duet.metrics.defined_by IS 'session user who defined the metric';
COMMENT ON COLUMN duet.metrics.defined_at IS 'when the metric was defined';

-- duet.kafka_gaps, and the gap columns of duet.kafka_status
COMMENT ON COLUMN duet.kafka_gaps.id IS 'gap id';
COMMENT ON COLUMN duet.kafka_gaps.consumer_id IS 'the consumer (duet.kafka_consumers.id)';
COMMENT ON COLUMN duet.kafka_gaps.consumer IS 'consumer name';
COMMENT ON COLUMN duet.kafka_gaps.owner IS 'the consumer''s owner (its admins see its gaps)';
COMMENT ON COLUMN duet.kafka_gaps.topic IS 'Kafka topic';
COMMENT ON COLUMN duet.kafka_gaps.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_gaps.reason IS 'why the range was skipped (e.g. retention deleted it)';
COMMENT ON COLUMN duet.kafka_gaps.at IS 'when the gap was found';
COMMENT ON COLUMN duet.kafka_status.gaps IS 'ranges of offsets skipped (duet.kafka_gaps)';
COMMENT ON COLUMN duet.kafka_status.gap_messages IS 'messages in those ranges';

-- duet_ask's audit, limits and ClickHouse targets (part 55): the columns 0.2.0 added
COMMENT ON COLUMN duet.ask_examples.target IS 'what the example is for: NULL for PostgreSQL, else a ClickHouse server (duet.clickhouse_servers.name)';
COMMENT ON COLUMN duet.ask_log.target IS 'what was asked about: NULL for this database, else the ClickHouse server (duet.clickhouse_servers.name)';
COMMENT ON COLUMN duet.ask_log.cost IS 'cost of the ask''s language-model requests at duet.llm_prices (0 when the model has no price)';

-- duet.llm_prices
COMMENT ON COLUMN duet.llm_prices.provider IS 'the provider (duet.llm_providers.name)';
COMMENT ON COLUMN duet.llm_prices.model IS 'model name, as in duet.llm_providers.model';
COMMENT ON COLUMN duet.llm_prices.input_per_mtok IS 'price of one million prompt tokens';
COMMENT ON COLUMN duet.llm_prices.output_per_mtok IS 'price of one million answer tokens';
COMMENT ON COLUMN duet.llm_prices.currency IS 'ISO 4217 code of the prices; informational: costs add up as they are, without conversion';

-- duet.ask_usage
COMMENT ON COLUMN duet.ask_usage.tenant IS 'tenant of the askers; NULL for asks without a tenant';
COMMENT ON COLUMN duet.ask_usage.day IS 'UTC day';
COMMENT ON COLUMN duet.ask_usage.requests IS 'HTTP requests sent to providers, retries, fallbacks and corrections included';
COMMENT ON COLUMN duet.ask_usage.tokens_in IS 'prompt tokens, as reported by the providers';
COMMENT ON COLUMN duet.ask_usage.tokens_out IS 'answer tokens, as reported by the providers';
COMMENT ON COLUMN duet.ask_usage.cost IS 'cost at duet.llm_prices';

-- duet.llm_usage
COMMENT ON COLUMN duet.llm_usage.tenant IS 'tenant (the viewer''s)';
COMMENT ON COLUMN duet.llm_usage.day IS 'UTC day';
COMMENT ON COLUMN duet.llm_usage.requests IS 'HTTP requests sent to providers, retries, fallbacks and corrections included';
COMMENT ON COLUMN duet.llm_usage.tokens_in IS 'prompt tokens';
COMMENT ON COLUMN duet.llm_usage.tokens_out IS 'answer tokens';
COMMENT ON COLUMN duet.llm_usage.tokens IS 'prompt and answer tokens together (what ask.limit.tokens_per_day counts)';
COMMENT ON COLUMN duet.llm_usage.cost IS 'cost of the day at duet.llm_prices';
COMMENT ON COLUMN duet.llm_usage.month_to_date_cost IS 'cost of the UTC month up to and including this day (what ask.limit.cost_per_month counts)';

-- duet.clickhouse_servers
COMMENT ON COLUMN duet.clickhouse_servers.name IS 'server name, the target option of duet_ask and the key in ask.clickhouse.access';
COMMENT ON COLUMN duet.clickhouse_servers.url IS 'base URL of the server''s HTTP interface, e.g. http://127.0.0.1:8123';
COMMENT ON COLUMN duet.clickhouse_servers.database IS 'database the queries run in: unqualified table names are its tables';
COMMENT ON COLUMN duet.clickhouse_servers.user_name IS 'ClickHouse user of the requests (HTTP basic authentication)';
COMMENT ON COLUMN duet.clickhouse_servers.timeout_ms IS 'time limit of a schema or guard request, in milliseconds (100 to 600000); a run has duet.ask_run_timeout';
COMMENT ON COLUMN duet.clickhouse_servers.max_memory_usage IS 'ClickHouse setting max_memory_usage of every run, in bytes';
COMMENT ON COLUMN duet.clickhouse_servers.max_rows_to_read IS 'ClickHouse setting max_rows_to_read of every run (read_overflow_mode=throw)';
COMMENT ON COLUMN duet.clickhouse_servers.enabled IS 'false: the server cannot be a target';
COMMENT ON COLUMN duet.clickhouse_servers.updated_at IS 'when the row was written';
COMMENT ON COLUMN duet.clickhouse_servers.updated_by IS 'role that wrote the row';

-- duet.clickhouse_server_passwords
COMMENT ON COLUMN duet.clickhouse_server_passwords.server IS 'the server (duet.clickhouse_servers.name)';
COMMENT ON COLUMN duet.clickhouse_server_passwords.password IS 'password of the server''s user_name (superuser only; never dumped, logged or shown in errors)';

-- duet.health (issue 17, Prometheus metrics: pg_duet/sql/75_monitor.sql)
COMMENT ON COLUMN duet.health.tenant IS 'the tenant the figure is about; NULL for figures of no tenant (Kafka consumers, the outbox, the server, workers)';
COMMENT ON COLUMN duet.health.subsystem IS 'rules, ask, kafka, outbox, server or workers';
COMMENT ON COLUMN duet.health.metric IS 'the figure''s name within its subsystem, as docs/monitoring.md lists it (evaluations, firing, calls, lag, ...)';
COMMENT ON COLUMN duet.health.labels IS 'what the figure is about, as a JSON object: severity, ask status, consumer/topic/state; the Prometheus labels of the same metric';
COMMENT ON COLUMN duet.health.value IS 'the figure: a count since the server started (counters) or a current value (gauges)';
-- Metrics layer (issue 13): versions, tenants, history, catalog ----------------------------------
COMMENT ON COLUMN duet.metrics.tenant IS 'the tenant whose metric this is (an override of the global metric of that name, or its own); NULL for a global metric';
COMMENT ON COLUMN duet.metrics.version IS 'version of this metric in its scope, increasing with every change (duet.metrics_history)';
COMMENT ON COLUMN duet.metrics.unit IS 'display unit: ratio, percent, currency or integer; NULL when unspecified';
COMMENT ON COLUMN duet.metrics.owner IS 'who answers for the metric (a team or a person), for catalogs; free text';
COMMENT ON COLUMN duet.metrics.depends_on IS 'the metrics the formula calls directly';
COMMENT ON COLUMN duet.metrics_history.id IS 'history entry id';
COMMENT ON COLUMN duet.metrics_history.name IS 'metric name';
COMMENT ON COLUMN duet.metrics_history.tenant IS 'the metric''s tenant; NULL for a global metric';
COMMENT ON COLUMN duet.metrics_history.version IS 'the version this change made';
COMMENT ON COLUMN duet.metrics_history.operation IS 'define, drop, or rollback (to rolled_back_to)';
COMMENT ON COLUMN duet.metrics_history.formula IS 'the formula from this version on; NULL after a drop';
COMMENT ON COLUMN duet.metrics_history.description IS 'the description from this version on';
COMMENT ON COLUMN duet.metrics_history.arguments IS 'the parameters from this version on';
COMMENT ON COLUMN duet.metrics_history.argument_types IS 'their ClickHouse types';
COMMENT ON COLUMN duet.metrics_history.return_type IS 'the ClickHouse result type';
COMMENT ON COLUMN duet.metrics_history.unit IS 'the display unit';
COMMENT ON COLUMN duet.metrics_history.owner IS 'the owner label';
COMMENT ON COLUMN duet.metrics_history.depends_on IS 'the metrics the formula called';
COMMENT ON COLUMN duet.metrics_history.rolled_back_to IS 'for a rollback: the version restored';
COMMENT ON COLUMN duet.metrics_history.reason IS 'why the change was made, as its author gave it';
COMMENT ON COLUMN duet.metrics_history.changed_at IS 'when';
COMMENT ON COLUMN duet.metrics_history.changed_by IS 'the role that made the change';
COMMENT ON COLUMN duet.metrics_catalog.name IS 'metric name: call it as name(arguments) in any formula';
COMMENT ON COLUMN duet.metrics_catalog.description IS 'what the metric measures';
COMMENT ON COLUMN duet.metrics_catalog.unit IS 'display unit: ratio, percent, currency or integer';
COMMENT ON COLUMN duet.metrics_catalog.owner IS 'who answers for the metric';
COMMENT ON COLUMN duet.metrics_catalog.source IS 'global, or tenant (the current tenant''s own or override)';
COMMENT ON COLUMN duet.metrics_catalog.tenant IS 'the tenant of a tenant metric; NULL for a global one';
COMMENT ON COLUMN duet.metrics_catalog.version IS 'current version in its scope';
COMMENT ON COLUMN duet.metrics_catalog.formula IS 'the Duet formula';
COMMENT ON COLUMN duet.metrics_catalog.arguments IS 'parameters, in call order';
COMMENT ON COLUMN duet.metrics_catalog.argument_types IS 'their ClickHouse types (Nullable(Float64) for numbers)';
COMMENT ON COLUMN duet.metrics_catalog.return_type IS 'ClickHouse result type';
COMMENT ON COLUMN duet.metrics_catalog.depends_on IS 'the metrics it calls';
COMMENT ON COLUMN duet.metrics_catalog.defined_by IS 'who made the current version';
COMMENT ON COLUMN duet.metrics_catalog.defined_at IS 'when the current version was made';
COMMENT ON COLUMN duet.metrics.defined_by IS 'the role that made the current version';
COMMENT ON COLUMN duet.metrics.defined_at IS 'when the current version was made';
-- The Kafka ingestion pool (issue 12, "consumers are not processes") ---------------------------
COMMENT ON COLUMN duet.kafka_status.parallelism IS 'partition groups configured (each read by one pool worker at a time)';
COMMENT ON COLUMN duet.kafka_status.workers IS 'partition groups served now by the pool workers';
COMMENT ON COLUMN duet.kafka_status.pool_workers IS 'indexes of the pool workers (duet.kafka_pool) serving its partition groups now';
COMMENT ON COLUMN duet.kafka_pool.pool_worker IS 'index of the pool worker in this database''s pool, from 0';
COMMENT ON COLUMN duet.kafka_pool.pid IS 'process id of the pool worker; NULL when it is not running';
COMMENT ON COLUMN duet.kafka_pool.started_at IS 'when the pool worker started';
COMMENT ON COLUMN duet.kafka_pool.groups IS 'consumer partition groups the pool worker serves now';
COMMENT ON COLUMN duet.kafka_pool.clients IS 'librdkafka clients (rd_kafka_t) the pool worker runs now: its consumers with the same owner, brokers and properties share two (one fetches, one looks up metadata and offsets) and one fetch of a topic they read at the same position; a consumer behind the others reads in two more until it catches up; a consumer group member has one of its own';
COMMENT ON COLUMN duet.kafka_pool.problem IS 'why the pool worker is not running (no background worker slot: raise max_worker_processes); NULL when it runs';
-- issue 12, batch path: upsert mode, replayable dead letters, duet.kafka_consumer_config
COMMENT ON COLUMN duet.kafka_consumers.mode IS 'append: every message a new row; upsert: INSERT … ON CONFLICT (key_columns) DO UPDATE, a tombstone deletes its key''s row';
COMMENT ON COLUMN duet.kafka_consumers.key_columns IS 'upsert mode: the target''s columns of a unique index that identify a row; NULL in append mode';
COMMENT ON COLUMN duet.kafka_consumers.key_source IS 'upsert mode: key (the key columns come from the message key: its text, or its JSON fields) or value (from the message''s fields)';
COMMENT ON COLUMN duet.kafka_dead_letters.message_timestamp IS 'the message''s Kafka timestamp, for duet_kafka_replay (_timestamp)';
COMMENT ON COLUMN duet.kafka_dead_letters.headers IS 'the message''s headers as a JSON object, for duet_kafka_replay (_headers); JSON null when they were not valid UTF-8';
COMMENT ON COLUMN duet.kafka_consumer_config.name IS 'consumer name';
COMMENT ON COLUMN duet.kafka_consumer_config.topic IS 'Kafka topic consumed';
COMMENT ON COLUMN duet.kafka_consumer_config.target IS 'table the rows are written to';
COMMENT ON COLUMN duet.kafka_consumer_config.brokers IS 'bootstrap servers (host:port,...)';
COMMENT ON COLUMN duet.kafka_consumer_config.format IS 'message format: json, jsonb, csv or text';
COMMENT ON COLUMN duet.kafka_consumer_config.batch_size IS 'most messages per transaction';
COMMENT ON COLUMN duet.kafka_consumer_config.flush_interval_ms IS 'longest wait, in milliseconds, before a partial batch is committed';
COMMENT ON COLUMN duet.kafka_consumer_config.start_position IS 'where partitions without a stored offset start: earliest, latest or a timestamp';
COMMENT ON COLUMN duet.kafka_consumer_config.parallelism IS 'number of workers sharing the topic''s partitions';
COMMENT ON COLUMN duet.kafka_consumer_config.column_map IS 'message field to column mapping, when names differ';
COMMENT ON COLUMN duet.kafka_consumer_config.properties IS 'librdkafka properties; the secret ones (passwords, keys) show as ''********''';
COMMENT ON COLUMN duet.kafka_consumer_config.owner IS 'role the rows are written as';
COMMENT ON COLUMN duet.kafka_consumer_config.enabled IS 'false after duet_kafka_stop';
COMMENT ON COLUMN duet.kafka_consumer_config.created_at IS 'when the consumer was created';
COMMENT ON COLUMN duet.kafka_consumer_config.mode IS 'append or upsert';
COMMENT ON COLUMN duet.kafka_consumer_config.key_columns IS 'upsert mode: the key columns';
COMMENT ON COLUMN duet.kafka_consumer_config.key_source IS 'upsert mode: where the key columns come from (key or value)';

-- Alertmanager and alert content (issue 17, sql/45_alertmanager.sql)
COMMENT ON COLUMN duet.rules.annotations IS 'Alertmanager annotations: name -> template ({column}, {value} or a Duet formula), e.g. summary, description, runbook_url';
COMMENT ON COLUMN duet.rules.resolve_message IS 'template rendered with the row that resolves the alert; sent as the resolved alert''s summary';
COMMENT ON COLUMN duet.alerts.annotations IS 'annotations rendered with the row that last met the condition';
COMMENT ON COLUMN duet.alerts.resolve_message IS 'resolve message rendered when the alert resolved (NULL when no row showed it, e.g. a query rule''s instance that disappeared)';
COMMENT ON COLUMN duet.alerts.started_at IS 'startsAt sent to Alertmanager: when the current or last firing episode began';
COMMENT ON COLUMN duet.alerts.resolved_at IS 'endsAt sent to Alertmanager once the alert resolved';
COMMENT ON COLUMN duet.alerts.notify_version IS 'bumped when the alert starts firing and when it resolves; Alertmanagers are sent each version';
COMMENT ON COLUMN duet.alertmanager_deliveries.alert_id IS 'the alert (duet.alerts.id)';
COMMENT ON COLUMN duet.alertmanager_deliveries.tenant IS 'tenant of the alert';
COMMENT ON COLUMN duet.alertmanager_deliveries.alertmanager IS 'the Alertmanager: its URL from duet.alertmanager_urls without user:password';
COMMENT ON COLUMN duet.alertmanager_deliveries.delivered_version IS 'the notify_version this Alertmanager accepted last (0: none)';
COMMENT ON COLUMN duet.alertmanager_deliveries.sent_at IS 'when this Alertmanager last accepted the alert';
COMMENT ON COLUMN duet.alertmanager_deliveries.attempts IS 'POSTs that carried the alert to this Alertmanager, accepted or not';
COMMENT ON COLUMN duet.alertmanager_deliveries.last_attempt_at IS 'when the alert was last sent to this Alertmanager';
COMMENT ON COLUMN duet.alertmanager_deliveries.last_error IS 'why the last attempt failed (about the Alertmanager only; NULL after a success)';
COMMENT ON COLUMN duet.alertmanager_status.alertmanager IS 'the Alertmanager: its URL from duet.alertmanager_urls without user:password';
COMMENT ON COLUMN duet.alertmanager_status.configured IS 'whether it is in duet.alertmanager_urls now';
COMMENT ON COLUMN duet.alertmanager_status.last_attempt_at IS 'when the sender last posted to it';
COMMENT ON COLUMN duet.alertmanager_status.last_success_at IS 'when it last accepted alerts';
COMMENT ON COLUMN duet.alertmanager_status.consecutive_failures IS 'failed posts in a row (0: healthy)';
COMMENT ON COLUMN duet.alertmanager_status.next_attempt_at IS 'end of the backoff after a failure';
COMMENT ON COLUMN duet.alertmanager_status.last_error IS 'the last failure, with the start of Alertmanager''s answer';
COMMENT ON COLUMN duet.alertmanager_status.alerts_sent IS 'alerts it accepted since the row was created';
COMMENT ON COLUMN duet.alerts_active.annotations IS 'rendered annotations of the alert';
COMMENT ON COLUMN duet.alerts_active.alertmanager_labels IS 'the label set Alertmanager gets: the tenant''s alertmanager.labels config, the rule''s labels, alertname, tenant, severity';
COMMENT ON COLUMN duet.alerts_active.notify_version IS 'version of the alert''s notification (see duet.alerts.notify_version)';
COMMENT ON COLUMN duet.alerts_active.delivery IS 'per Alertmanager: whether it accepted the current version, when, attempts and last error';

-- duet.health's pipelines rows (issue 19 item 4, issue 17 item 3: pg_duet/sql/75_monitor.sql)
COMMENT ON COLUMN duet.health.subsystem IS 'rules, ask, kafka, outbox, server, workers or pipelines';
COMMENT ON COLUMN duet.health.labels IS 'what the figure is about, as a JSON object: severity, ask status, consumer/topic/state, pipeline/mode; the Prometheus labels of the same metric';

-- the metrics as ClickHouse SQL (issue 13 item 3: pg_duet/sql/60_metrics.sql, metrics_ch_sql.c)
COMMENT ON FUNCTION duet_clickhouse_sql_functions() IS
    'per metric the caller uses: its ClickHouse expression with exactly Duet''s semantics (composed metrics inlined; runs on 18.16) and the DROP/CREATE FUNCTION statements of a SQL user-defined function (ClickHouse 21.10 and later), or in not_compiled the construct without an exact ClickHouse form';

-- Duet's arithmetic for the generated PostgreSQL SQL (issue 13: pg_duet/sql/60_metrics.sql, metrics_sql_ops.c)
COMMENT ON FUNCTION duet_num_add(double precision, double precision) IS
    'Duet''s a + b on double precision (generated metric SQL): NULL for a non-finite operand or result, never -0, never an overflow error';
COMMENT ON FUNCTION duet_num_sub(double precision, double precision) IS
    'Duet''s a - b on double precision (generated metric SQL): NULL for a non-finite operand or result, never -0, never an overflow error';
COMMENT ON FUNCTION duet_num_mul(double precision, double precision) IS
    'Duet''s a * b on double precision (generated metric SQL): NULL for a non-finite operand or result, never -0, no overflow or underflow error';
COMMENT ON FUNCTION duet_num_div(double precision, double precision) IS
    'Duet''s a / b on double precision (generated metric SQL): NULL for b = 0 and for a non-finite operand or result, never -0, no overflow or underflow error';

-- How fresh the watermarks are (kafka_stats.c)
COMMENT ON COLUMN duet.kafka_status.partitions IS 'per partition: committed_offset, high_watermark, lag, high_watermark_at (a jsonb array)';
COMMENT ON COLUMN duet.kafka_partition_status.high_watermark_at IS 'when the high watermark was last known current (its leader broker connected, from librdkafka''s statistics, duet.kafka_statistics_interval); older during an outage, when lag is the last one known';
