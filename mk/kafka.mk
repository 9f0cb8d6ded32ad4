# Kafka: the extension links librdkafka; test/kafka/devbroker is the dev broker (librdkafka mock
# cluster) used by the TAP tests, the benchmark and the demo.
SHLIB_LINK += -lrdkafka

$(BUILD)/devbroker: test/kafka/devbroker.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -g -Wall -Wextra -Werror $< -o $@ -lrdkafka

all: $(BUILD)/devbroker
