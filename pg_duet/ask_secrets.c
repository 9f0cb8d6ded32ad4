/*
 * ask_secrets.c — recognising a provider's API key in text that is about to leave the server.
 *
 * A provider's reply (or error text) may echo its key: a misconfigured proxy, a prompt injected
 * through data asking the model to print it, a hostile endpoint. Exact matching is not enough:
 * the key can come back split across string literals, spaced, masked or encoded. What is
 * recognised is described at duet_key_leaks(); ask_provider.c discards any text that carries it.
 * And the one question about keys anyone but a superuser may ask: whether a provider has one.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "ask.h"
#include "privileged.h"

/* Letters and digits of s, lower-cased: separators, quotes and || do not hide a split key. */
static char *
alnum_folded(const char *s, size_t len)
{
	char	   *out = palloc(len + 1);
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
		if (isalnum((unsigned char) s[i]))
			out[n++] = pg_tolower((unsigned char) s[i]);
	out[n] = '\0';
	return out;
}

/*
 * Whether text carries the key in any form we can recognise: as is; split, spaced or quoted
 * (any KEY_WINDOW letters and digits of the key in a row, once separators are dropped — which
 * also catches a masked form that shows that much of it), forwards or reversed; in base64 at any of the three byte
 * alignments (standard or URL-safe alphabet); or in hex. A reply that does is discarded whole:
 * redacting part of it would leave the rest.
 */
#define KEY_WINDOW 8
bool
duet_key_leaks(const char *key, const char *text)
{
	size_t		klen = key ? strlen(key) : 0;
	char	   *fkey;
	char	   *ftext;
	size_t		fklen;

	if (text == NULL || klen < 4)
		return false;
	if (strstr(text, key))
		return true;
	fkey = alnum_folded(key, klen);
	ftext = alnum_folded(text, strlen(text));
	fklen = strlen(fkey);
	for (int reversed = 0; reversed < 2; reversed++)
	{
		for (size_t i = 0; fklen >= KEY_WINDOW && i + KEY_WINDOW <= fklen; i++)
		{
			char		window[KEY_WINDOW + 1];

			for (int j = 0; j < KEY_WINDOW; j++)
				window[j] = reversed ? fkey[fklen - 1 - i - j] : fkey[i + j];
			window[KEY_WINDOW] = '\0';
			if (strstr(ftext, window))
				return true;
		}
	}
	for (int shift = 0; shift < 3; shift++)
	{
		/* Encode shift filler bytes + key; the characters that depend on the key alone are kept. */
		int			srclen = shift + (int) klen;
		char	   *src = palloc(srclen);
		int			enclen = pg_b64_enc_len(srclen);
		char	   *enc = palloc(enclen + 1);
		int			n;
		int			skip = (shift * 4 + 2) / 3;	/* chars touched by the filler */
		int			keep;

		memset(src, 0, shift);
		memcpy(src + shift, key, klen);
		n = pg_b64_encode(src, srclen, enc, enclen);
		if (n < 0)
			continue;
		keep = n - skip - 4;	/* the last group may depend on what follows the key */
		if (keep >= KEY_WINDOW)
		{
			char	   *core = pnstrdup(enc + skip, keep);
			char	   *urlsafe = pstrdup(core);

			for (char *c = urlsafe; *c; c++)
				*c = (*c == '+') ? '-' : (*c == '/') ? '_' : *c;
			if (strstr(text, core) || strstr(text, urlsafe))
				return true;
		}
	}
	{
		char	   *hex = palloc(klen * 2 + 1);

		hex_encode(key, klen, hex);
		hex[klen * 2] = '\0';
		if (strcasestr(text, hex))
			return true;
	}
	return false;
}

PG_FUNCTION_INFO_V1(duet_ask_provider_has_key);

/*
 * duet_ask_provider_has_key(provider) → whether the provider has a stored key. For the provider
 * guard trigger, which runs as a role a superuser let change duet.llm_providers: only such roles
 * (and superusers) may ask, so no one else learns which providers hold a key.
 */
Datum
duet_ask_provider_has_key(PG_FUNCTION_ARGS)
{
	Oid			providers = get_relname_relid("llm_providers", get_namespace_oid("duet", false));

	if (pg_class_aclmask(providers, GetUserId(), ACL_INSERT | ACL_UPDATE | ACL_DELETE, ACLMASK_ANY) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function duet_ask_provider_has_key"),
				 errdetail("Only roles that may change duet.llm_providers may ask whether a provider has a key.")));
	PG_RETURN_BOOL(duet_privileged_exists(BOOTSTRAP_SUPERUSERID,
										  "SELECT FROM duet.llm_provider_keys k "
										  "WHERE k.provider OPERATOR(pg_catalog.=) $1",
										  1, (Oid[]) {TEXTOID}, (Datum[]) {PG_GETARG_DATUM(0)}));
}
