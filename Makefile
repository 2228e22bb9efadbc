# gamingd -- build, run, test, bench.
#
#   make run     install what is missing, build, start gamingd with the generator
#   make test    unit tests (cmocka) and integration tests (pytest) on the real binary
#   make asan    the same tests on a build with AddressSanitizer and UBSan
#   make bench   throughput, memory and pull-query latency figures
#   make deps    install the Debian packages the targets need (apt-get)

CC      ?= gcc
PKGS    := liblmdb libmicrohttpd jansson rdkafka avro-c libcurl
CFLAGS  ?= -O2 -g
# the project's own flags stay in force when CFLAGS is set on the command line
GD_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -MMD -MP
LDLIBS  := -llmdb -lmicrohttpd -ljansson -lrdkafka -lavro -lcurl -lm -pthread
BUILD   ?= build

# Debian packages: to build, to test, to benchmark.
DEPS_BUILD := gcc make pkg-config liblmdb-dev libmicrohttpd-dev libjansson-dev \
              librdkafka-dev libavro-dev libcurl4-openssl-dev
DEPS_TEST  := libcmocka-dev python3 python3-pytest curl lmdb-utils python3-prometheus-client chromium \
              kcat python3-confluent-kafka python3-avro python3-requests
DEPS_BENCH := wrk
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST     := /usr/bin/python3 -m pytest

SRCS := $(wildcard server/*.c ingest/*.c store/*.c api/*.c)
LIB_SRCS := $(filter-out server/main.c,$(SRCS))
# schemas/*.avsc are built in as C strings (gd_schema_<name>)
AVSC := $(wildcard schemas/*.avsc)
OBJS = $(SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/schemas.o
LIB_OBJS = $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/schemas.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: all run test unit integration asan bench deps deps-check clean
all: deps-check $(BUILD)/gamingd

# Installs only what is missing; every build target checks first.
deps:
	@missing=$$(for p in $(DEPS_BUILD) $(DEPS_TEST) $(DEPS_BENCH); do \
	    dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "all packages present"; fi

deps-check:
	@for p in $(DEPS_BUILD) $(DEPS_TEST); do dpkg -s $$p >/dev/null 2>&1 || { $(MAKE) --no-print-directory deps; break; }; done

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -c $< -o $@

$(BUILD)/gen/schemas.c: $(AVSC)
	@mkdir -p $(dir $@)
	@for f in $(AVSC); do \
	    printf 'const char gd_schema_%s[] =\n' "$$(basename $$f .avsc)"; \
	    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $$f; \
	    printf '    ;\n'; \
	done > $@

$(BUILD)/obj/gen/schemas.o: $(BUILD)/gen/schemas.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -c $< -o $@

$(BUILD)/gamingd: $(OBJS)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/unit/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcmocka

run: all
	$(BUILD)/gamingd --source generator --listen 127.0.0.1:8080 --data-dir ./data

unit: deps-check $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# librdkafka's mock cluster as a broker process for the Kafka tests
$(BUILD)/mock_broker: tests/kafka/mock_broker.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -o $@ $< $(LDFLAGS) -lrdkafka

integration: deps-check $(BUILD)/gamingd $(BUILD)/mock_broker
	GAMINGD_BIN=$(abspath $(BUILD)/gamingd) MOCK_BROKER_BIN=$(abspath $(BUILD)/mock_broker) \
	    $(PYTEST) -q tests/integration

test: unit integration

# Sanitizer build in its own tree, then the whole suite against it.
asan:
	$(MAKE) --no-print-directory BUILD=build/asan \
	    CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" test

$(BUILD)/sse_load: tests/bench/sse_load.c
	$(CC) $(CFLAGS) $(GD_CFLAGS) -o $@ $<

bench: all $(BUILD)/sse_load $(BUILD)/mock_broker
	@command -v wrk >/dev/null || $(MAKE) --no-print-directory deps
	/usr/bin/python3 tests/bench/bench.py --bin $(abspath $(BUILD)/gamingd) --sse-load $(abspath $(BUILD)/sse_load) \
	    --mock-broker $(abspath $(BUILD)/mock_broker)

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(UNIT_BINS:%=%.d)
