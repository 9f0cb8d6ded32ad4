/*
 * devbroker — a standalone development Kafka broker built on librdkafka's mock cluster.
 *
 * Debian ships no Kafka broker; librdkafka's mock cluster speaks the real protocol on random
 * 127.0.0.1 ports, which is enough for tests, benchmarks and the demo.
 *
 *   devbroker [-b brokers] [-f bootstrap-file] [-t topic:partitions]...
 *
 * Prints the bootstrap string on stdout (and writes it to the -f file once the topics exist, so a
 * caller can wait for the file). Control:
 *   SIGUSR1  all brokers down (connections dropped, new ones refused; leadership stays)
 *   SIGUSR2  all brokers up again
 *   SIGTERM/SIGINT  exit
 * and line commands on stdin (until EOF): "topic NAME N", "down", "up", "quit".
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t pending_down, pending_up, pending_quit;

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		pending_down = 1;
	else if (sig == SIGUSR2)
		pending_up = 1;
	else
		pending_quit = 1;
}

static int
create_topic(rd_kafka_mock_cluster_t *mc, const char *spec)
{
	char		name[256];
	int			parts = 1;
	const char *colon = strrchr(spec, ':');
	size_t		len = colon ? (size_t) (colon - spec) : strlen(spec);
	rd_kafka_resp_err_t err;

	if (len == 0 || len >= sizeof(name))
	{
		fprintf(stderr, "devbroker: bad topic \"%s\"\n", spec);
		return -1;
	}
	memcpy(name, spec, len);
	name[len] = '\0';
	if (colon)
		parts = atoi(colon + 1);
	if (parts < 1 || parts > 1000)
	{
		fprintf(stderr, "devbroker: bad partition count in \"%s\"\n", spec);
		return -1;
	}
	err = rd_kafka_mock_topic_create(mc, name, parts, 1);
	if (err)
	{
		fprintf(stderr, "devbroker: cannot create topic %s: %s\n", name, rd_kafka_err2str(err));
		return -1;
	}
	fprintf(stderr, "devbroker: topic %s with %d partitions\n", name, parts);
	return 0;
}

static void
set_state(rd_kafka_mock_cluster_t *mc, int up)
{
	if (up)
		rd_kafka_mock_broker_set_up(mc, -1);
	else
		rd_kafka_mock_broker_set_down(mc, -1);
	fprintf(stderr, "devbroker: brokers %s\n", up ? "up" : "down");
}

/* One stdin command; returns 1 on quit. */
static int
command(rd_kafka_mock_cluster_t *mc, char *line)
{
	char		name[256];
	int			parts;
	char		spec[300];

	line[strcspn(line, "\r\n")] = '\0';
	if (sscanf(line, "topic %255s %d", name, &parts) == 2)
	{
		snprintf(spec, sizeof(spec), "%s:%d", name, parts);
		create_topic(mc, spec);
	}
	else if (strcmp(line, "down") == 0)
		set_state(mc, 0);
	else if (strcmp(line, "up") == 0)
		set_state(mc, 1);
	else if (strcmp(line, "quit") == 0)
		return 1;
	else if (line[0] != '\0')
		fprintf(stderr, "devbroker: unknown command \"%s\" (topic NAME N | down | up | quit)\n", line);
	return 0;
}

int
main(int argc, char **argv)
{
	int			nbrokers = 1;
	const char *bootfile = NULL;
	char		errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	const char *bootstraps;
	int			opt;
	int			use_stdin;
	struct sigaction sa;

	conf = rd_kafka_conf_new();
	/* The mock cluster needs a client instance for bookkeeping only; keep it quiet. */
	rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk)
	{
		fprintf(stderr, "devbroker: %s\n", errstr);
		return 1;
	}

	/* Brokers first: topics need the cluster. */
	for (int i = 1; i < argc - 1; i++)
		if (strcmp(argv[i], "-b") == 0)
			nbrokers = atoi(argv[i + 1]);
	if (nbrokers < 1 || nbrokers > 16)
	{
		fprintf(stderr, "devbroker: -b must be 1..16\n");
		return 2;
	}
	mc = rd_kafka_mock_cluster_new(rk, nbrokers);
	if (!mc)
	{
		fprintf(stderr, "devbroker: cannot create the mock cluster\n");
		return 1;
	}

	while ((opt = getopt(argc, argv, "b:f:t:")) != -1)
	{
		switch (opt)
		{
			case 'b':
				break;
			case 'f':
				bootfile = optarg;
				break;
			case 't':
				if (create_topic(mc, optarg) != 0)
					return 2;
				break;
			default:
				fprintf(stderr, "usage: devbroker [-b brokers] [-f bootstrap-file] [-t topic:partitions]...\n");
				return 2;
		}
	}

	bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
	printf("%s\n", bootstraps);
	fflush(stdout);
	if (bootfile)
	{
		/* Write then rename, so a waiting reader never sees a partial address. */
		char		tmp[4096];
		FILE	   *f;

		snprintf(tmp, sizeof(tmp), "%s.tmp", bootfile);
		f = fopen(tmp, "w");
		if (!f || fprintf(f, "%s\n", bootstraps) < 0 || fclose(f) != 0 || rename(tmp, bootfile) != 0)
		{
			fprintf(stderr, "devbroker: cannot write %s: %s\n", bootfile, strerror(errno));
			return 1;
		}
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	use_stdin = 1;			/* until EOF */
	while (!pending_quit)
	{
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		int			n = poll(&pfd, use_stdin ? 1 : 0, 200);

		if (pending_down)
		{
			pending_down = 0;
			set_state(mc, 0);
		}
		if (pending_up)
		{
			pending_up = 0;
			set_state(mc, 1);
		}
		if (n > 0 && (pfd.revents & (POLLIN | POLLHUP)))
		{
			char		line[512];

			if (!fgets(line, sizeof(line), stdin))
				use_stdin = 0;	/* EOF (e.g. </dev/null): keep serving, signals only */
			else if (command(mc, line))
				break;
		}
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	if (bootfile)
		unlink(bootfile);
	return 0;
}
