# duet_ask (pg_duet/ask*.c): HTTP through libcurl, JSON through jansson.
SHLIB_LINK += -lcurl -ljansson
