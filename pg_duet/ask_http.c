/*
 * ask_http.c — one HTTP POST to a language-model provider, cancellable.
 *
 * libcurl's easy interface blocks for the whole request, so a slow provider would hold a backend
 * hostage past pg_cancel_backend and statement_timeout. The multi interface lets us wait in short
 * slices and run CHECK_FOR_INTERRUPTS between them; the handles are released on every exit path,
 * errors included. Redirects are not followed (a redirect must not carry an API key elsewhere) and
 * only http/https are allowed.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "ask.h"
#include "pg_duet.h"

/* How often the wait wakes to look for interrupts: the bound on cancellation latency. */
#define HTTP_POLL_SLICE_MS	50
/* Provider answers are small; a larger body is a misbehaving endpoint. */
#define HTTP_MAX_BODY		(8 * 1024 * 1024)

static bool curl_ready = false;

static void
ensure_curl(void)
{
	if (curl_ready)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	curl_ready = true;
}

/* Appends the body; refusing (returning 0) makes libcurl fail with CURLE_WRITE_ERROR. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	HttpResponse *resp = (HttpResponse *) userdata;
	size_t		n = size * nmemb;

	if (resp->body.len + n > HTTP_MAX_BODY)
		return 0;
	appendBinaryStringInfo(&resp->body, data, (int) n);
	return n;
}

/* Picks retry-after-ms (milliseconds) or Retry-After (seconds or an HTTP date). */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	HttpResponse *resp = (HttpResponse *) userdata;
	size_t		n = size * nmemb;
	char		line[256];
	char	   *value;

	if (n >= sizeof(line))
		return n;
	memcpy(line, data, n);
	line[n] = '\0';
	/* A new response (after 100-continue) starts afresh. */
	if (strncmp(line, "HTTP/", 5) == 0)
	{
		resp->retry_after_ms = -1;
		return n;
	}
	value = strchr(line, ':');
	if (value == NULL)
		return n;
	*value++ = '\0';
	while (*value == ' ' || *value == '\t')
		value++;
	value[strcspn(value, "\r\n")] = '\0';

	if (pg_strcasecmp(line, "retry-after-ms") == 0)
	{
		char	   *end;
		double		ms = strtod(value, &end);

		if (end != value && ms >= 0 && ms < 1e9)
			resp->retry_after_ms = (int) ms;
	}
	else if (pg_strcasecmp(line, "retry-after") == 0 && resp->retry_after_ms < 0)
	{
		char	   *end;
		double		s = strtod(value, &end);

		if (end != value && *end == '\0' && s >= 0 && s < 1e6)
			resp->retry_after_ms = (int) (s * 1000);
		else
		{
			time_t		when = curl_getdate(value, NULL);

			if (when > 0)
			{
				time_t		now = time(NULL);

				resp->retry_after_ms = when > now ? (int) Min((when - now) * 1000, 1000000000) : 0;
			}
		}
	}
	return n;
}

static HttpOutcome
classify(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_OK:
			return HTTP_OK;
		case CURLE_OPERATION_TIMEDOUT:
			return HTTP_TIMED_OUT;
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
			return HTTP_CONNECT_FAILED;
		default:
			return HTTP_FAILED;
	}
}

HttpOutcome
duet_http_post(const char *url, List *headers, const char *body, int timeout_ms,
			   HttpResponse *resp)
{
	return duet_http_post_stream(url, headers, body, timeout_ms, resp, NULL, NULL);
}

/*
 * As duet_http_post, and between waits (in backend context, where errors may be raised) calls
 * drain(resp, arg) whenever body bytes arrived; drain consumes what it can from resp->body and
 * returns false to end the transfer early (the outcome is then HTTP_OK).
 */
HttpOutcome
duet_http_post_stream(const char *url, List *headers, const char *body, int timeout_ms,
					  HttpResponse *resp, HttpDrain drain, void *drain_arg)
{
	CURLM	   *volatile multi = NULL;
	CURL	   *volatile easy = NULL;
	struct curl_slist *volatile hdrs = NULL;
	volatile HttpOutcome outcome = HTTP_FAILED;
	ListCell   *lc;

	ensure_curl();
	initStringInfo(&resp->body);
	resp->status = 0;
	resp->retry_after_ms = -1;
	resp->error[0] = '\0';

	PG_TRY();
	{
		CURLcode	rc = CURLE_OK;
		bool		done = false;

		multi = curl_multi_init();
		easy = curl_easy_init();
		if (multi == NULL || easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create an HTTP request handle")));
		foreach(lc, headers)
		{
			struct curl_slist *next = curl_slist_append(hdrs, (const char *) lfirst(lc));

			if (next == NULL)
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
			hdrs = next;
		}
		curl_easy_setopt(easy, CURLOPT_URL, url);
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
		curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
		curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(timeout_ms, 10000));
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, resp);
		curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(easy, CURLOPT_HEADERDATA, resp);
		curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, resp->error);
		curl_easy_setopt(easy, CURLOPT_USERAGENT, "pg_duet/" PG_DUET_VERSION);
		curl_multi_add_handle(multi, easy);

		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		while (!done)
		{
			int			running = 0;
			int			numfds;
			CURLMsg    *msg;
			int			left;

			curl_multi_perform(multi, &running);
			while ((msg = curl_multi_info_read(multi, &left)) != NULL)
				if (msg->msg == CURLMSG_DONE)
				{
					rc = msg->data.result;
					done = true;
				}
			if (drain && resp->body.len > 0)
			{
				if (resp->status == 0)
					curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp->status);
				if (!drain(resp, drain_arg))
				{
					rc = CURLE_OK;
					done = true;
				}
			}
			if (done || running == 0)
				break;
			curl_multi_poll(multi, NULL, 0, HTTP_POLL_SLICE_MS, &numfds);
			/* pg_cancel_backend, statement_timeout, termination: leave through PG_FINALLY. */
			CHECK_FOR_INTERRUPTS();
		}
		pgstat_report_wait_end();

		outcome = classify(rc);
		if (outcome == HTTP_OK)
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp->status);
		else if (resp->error[0] == '\0')
			strlcpy(resp->error, curl_easy_strerror(rc), sizeof(resp->error));
	}
	PG_FINALLY();
	{
		pgstat_report_wait_end();
		if (multi && easy)
			curl_multi_remove_handle(multi, easy);
		if (easy)
			curl_easy_cleanup(easy);
		if (multi)
			curl_multi_cleanup(multi);
		if (hdrs)
			curl_slist_free_all(hdrs);
	}
	PG_END_TRY();
	return outcome;
}

void
duet_http_sleep(int ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
