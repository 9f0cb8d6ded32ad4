/*
 * kafka_conf.c — librdkafka configuration from a consumer's properties.
 *
 * Properties are passed through to librdkafka (security.protocol, sasl.*, ssl.*, tuning), but some
 * librdkafka settings reach the server's file system or load code (plugin.library.paths,
 * ssl.*.location, sasl.kerberos.kinit.cmd, ...). Only superusers may set anything outside a
 * short list of network/security/tuning properties.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "kafka.h"

/* Properties a non-superuser may set: exact names, or prefixes ending in '.'. */
static const char *const allowed_properties[] = {
	"security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
	"sasl.oauthbearer.config", "ssl.endpoint.identification.algorithm", "ssl.cipher.suites",
	"ssl.curves.list", "ssl.sigalgs.list", "ssl.ca.pem", "ssl.certificate.pem", "ssl.key.pem",
	"ssl.key.password", "client.id", "client.rack", "fetch.", "queued.", "socket.", "reconnect.",
	"retry.backoff.ms", "session.timeout.ms", "max.poll.interval.ms", "message.max.bytes",
	"receive.message.max.bytes", "topic.metadata.", "metadata.max.age.ms", "api.version.",
	"broker.version.fallback", "isolation.level", "check.crcs", "connections.max.idle.ms", NULL
};

/* Set by the worker itself; not overridable. */
static const char *const reserved_properties[] = {
	"bootstrap.servers", "metadata.broker.list", "group.id", "enable.auto.commit",
	"enable.auto.offset.store", "auto.offset.reset", "enable.partition.eof",
	"statistics.interval.ms",	/* the watermarks' freshness (kafka_stats.c) */
	"log.queue", NULL
};

bool
duet_kafka_property_allowed(const char *name, bool superuser)
{
	for (int i = 0; reserved_properties[i]; i++)
		if (strcmp(name, reserved_properties[i]) == 0)
			return false;
	if (superuser)
		return true;
	for (int i = 0; allowed_properties[i]; i++)
	{
		const char *a = allowed_properties[i];
		size_t		len = strlen(a);

		if (a[len - 1] == '.' ? strncmp(name, a, len) == 0 : strcmp(name, a) == 0)
			return true;
	}
	return false;
}

/*
 * Properties that hold a secret (passwords, client secrets, private keys): kept apart from the
 * consumer's other properties, in duet.kafka_consumer_secrets, which pg_dump does not write.
 */
bool
duet_kafka_property_secret(const char *name)
{
	return strstr(name, "password") != NULL || strstr(name, "secret") != NULL ||
		strcmp(name, "ssl.key.pem") == 0 || strcmp(name, "sasl.oauthbearer.config") == 0;
}

bool
duet_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
					size_t errlen)
{
	return rd_kafka_conf_set(conf, name, value, errbuf, errlen) == RD_KAFKA_CONF_OK;
}

/* A configuration with bootstrap servers and every property of props (a jsonb object). */
rd_kafka_conf_t *
duet_kafka_conf_new(const char *brokers, Jsonb *props, char *errbuf, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	/*
	 * queued.min.messages: librdkafka (2.0.2) counts it on the queue a partition's messages are
	 * forwarded to, which is the whole partition group's here, and a partition above it stops
	 * fetching until its broker thread's next wake-up, up to a second later: at the default
	 * (100,000) a fast group ran dry about a third of the time. The byte limit,
	 * queued.max.messages.kbytes (64 MB), then bounds a group's queue. Properties may set both.
	 */
	if (!duet_kafka_conf_set(conf, "bootstrap.servers", brokers, errbuf, errlen) ||
		!duet_kafka_conf_set(conf, "log_level", "3", errbuf, errlen) ||
		!duet_kafka_conf_set(conf, "queued.min.messages", "1000000", errbuf, errlen))
	{
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	if (props && JB_ROOT_IS_OBJECT(props))
	{
		JsonbIterator *it = JsonbIteratorInit(&props->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *key = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *value;

			if (tok == WJB_KEY)
			{
				key = pnstrdup(v.val.string.val, v.val.string.len);
				continue;
			}
			if (tok != WJB_VALUE)
				continue;
			if (v.type == jbvString)
				value = pnstrdup(v.val.string.val, v.val.string.len);
			else if (v.type == jbvNumeric)
				value = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
			else if (v.type == jbvBool)
				value = v.val.boolean ? "true" : "false";
			else
			{
				snprintf(errbuf, errlen, "property \"%s\" must be a string, number or boolean", key);
				rd_kafka_conf_destroy(conf);
				return NULL;
			}
			if (!duet_kafka_conf_set(conf, key, value, errbuf, errlen))
			{
				rd_kafka_conf_destroy(conf);
				return NULL;
			}
		}
	}
	return conf;
}
