# gamingd -- build, run, test, bench.
#
#   make run     install what is missing, build, start gamingd with the generator
#   make test    unit tests (cmocka) and integration tests (pytest) on the real binary
#   make asan    the same tests on a build with AddressSanitizer and UBSan
#   make bench   throughput, memory and pull-query latency figures; BASELINE=binary
#                compares with another build, interleaved (ONLY=pull: pull queries alone;
#                ONLY=soak: data file and RSS over 30 days of event time; ONLY=tables:
#                what a tumbling and a session table of the user's cost per event;
#                ONLY=replay: replays on every core and on one; ONLY=compare: every
#                figure of the engine's table against BASELINE, one table of medians;
#                ONLY=partitioned: partitioned mode for 1 to 4 instances against BASELINE,
#                STANDBY=N: this binary's --standby-replicas; ONLY=takeover: a
#                take-over after kill -9 with a standby and without)
#   make fuzz    libFuzzer over the parsers, FUZZ_SECONDS (20) each
#   make deps    install the Debian packages the targets need (apt-get)

CC      ?= gcc
PKGS    := liblmdb libmicrohttpd jansson rdkafka avro-c libcurl
CFLAGS  ?= -O2 -g
# the project's own flags stay in force when CFLAGS is set on the command line
GD_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -MMD -MP
LDLIBS  := -llmdb -lmicrohttpd -ljansson -lrdkafka -lavro -lcurl -lgnutls -lreadline -lm -pthread
BUILD   ?= build

# Debian packages: to build, to test, to benchmark, to fuzz. Each target
# checks only what it needs, so a plain build installs no test tools.
DEPS_BUILD := gcc make pkg-config liblmdb-dev libmicrohttpd-dev libjansson-dev \
              librdkafka-dev libavro-dev libcurl4-openssl-dev libgnutls28-dev \
              libreadline-dev
DEPS_TEST  := libcmocka-dev tmux python3 python3-pytest curl lmdb-utils python3-prometheus-client chromium \
              kcat python3-confluent-kafka python3-avro python3-requests python3-websocket python3-yaml \
              prometheus openssl
DEPS_BENCH := wrk
DEPS_FUZZ  := clang libclang-rt-14-dev
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST     := /usr/bin/python3 -m pytest

SRCS := $(wildcard server/*.c ingest/*.c store/*.c sql/*.c api/*.c cli/*.c)
# the daemon's layers; main.c and the SQL shell (cli/, a client of the daemon) are no part of them
LIB_SRCS := $(filter-out server/main.c cli/%.c,$(SRCS))
# schemas/*.avsc are built in as C strings (gd_schema_<name>)
AVSC := $(wildcard schemas/*.avsc)
GEN_OBJS = $(BUILD)/obj/gen/schemas.o $(BUILD)/obj/gen/builtin_sql.o $(BUILD)/obj/gen/page.o
OBJS = $(SRCS:%.c=$(BUILD)/obj/%.o) $(GEN_OBJS)
LIB_OBJS = $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(GEN_OBJS)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: all run test unit integration asan bench fuzz deps deps-build deps-test deps-bench deps-fuzz clean
all: deps-build $(BUILD)/gamingd

# Installs what is missing of WANT (by default what every target needs).
WANT ?= $(DEPS_BUILD) $(DEPS_TEST) $(DEPS_BENCH) $(DEPS_FUZZ)
deps:
	@missing=$$(for p in $(WANT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "all packages present"; fi

# Each target's packages, installed when one is missing. Whatever compiles
# or fetches waits for them (order-only prerequisites), so make -j does not
# start a compiler while apt-get is still installing the headers it needs.
need = @for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || { $(MAKE) --no-print-directory deps WANT="$(1)"; break; }; done
deps-build:
	$(call need,$(DEPS_BUILD))
	@command -v npm >/dev/null || $(MAKE) --no-print-directory deps WANT=npm
deps-test: deps-build ; $(call need,$(DEPS_TEST))
deps-bench: deps-test ; $(call need,$(DEPS_BENCH))
deps-fuzz: deps-build ; $(call need,$(DEPS_FUZZ))

$(BUILD)/obj/%.o: %.c | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -c $< -o $@

$(BUILD)/gen/schemas.c: $(AVSC)
	@mkdir -p $(dir $@)
	@for f in $(AVSC); do \
	    printf 'const char gd_schema_%s[] =\n' "$$(basename $$f .avsc)"; \
	    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $$f; \
	    printf '    ;\n'; \
	done > $@

# sql/builtin.sql is built in as a C string (gd_builtin_sql)
$(BUILD)/gen/builtin_sql.c: sql/builtin.sql
	@mkdir -p $(dir $@)
	@{ printf 'const char gd_builtin_sql[] =\n'; \
	   sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $<; printf '    ;\n'; } > $@

$(BUILD)/obj/gen/builtin_sql.o: $(BUILD)/gen/builtin_sql.c | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -c $< -o $@

$(BUILD)/obj/gen/schemas.o: $(BUILD)/gen/schemas.c | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -c $< -o $@

# The live page's chart library: uPlot from the npm registry, at the version
# api/page/package-lock.json pins, fetched once into build/web (any BUILD).
# One npm step makes several files, so it touches a stamp, and each file the
# page takes from node_modules is made by that stamp: make -j then never asks
# for one of them without running the npm step first, and runs it once.
UPLOT := build/web/node_modules/uplot
NPM_STAMP := build/web/npm-ci.stamp
UPLOT_FILES := $(UPLOT)/dist/uPlot.iife.min.js $(UPLOT)/dist/uPlot.min.css $(UPLOT)/LICENSE
$(NPM_STAMP): api/page/package.json api/page/package-lock.json | deps-build
	@mkdir -p build/web
	cp api/page/package.json api/page/package-lock.json build/web/
	cd build/web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
$(UPLOT_FILES): $(NPM_STAMP) ;
PAGE_ASSETS := index.html=api/page/index.html app.js=api/page/app.js style.css=api/page/style.css \
               uPlot.iife.min.js=$(UPLOT)/dist/uPlot.iife.min.js uPlot.min.css=$(UPLOT)/dist/uPlot.min.css \
               uPlot.LICENSE=$(UPLOT)/LICENSE
$(BUILD)/gen/page.c: api/page/embed.sh $(NPM_STAMP) $(foreach a,$(PAGE_ASSETS),$(lastword $(subst =, ,$(a))))
	@mkdir -p $(dir $@)
	api/page/embed.sh $(PAGE_ASSETS) > $@

$(BUILD)/obj/gen/page.o: $(BUILD)/gen/page.c | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -I. -c $< -o $@

$(BUILD)/gamingd: $(OBJS)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -o $@ $(filter %.o,$^) $(LDFLAGS) $(LDLIBS)

$(BUILD)/unit/%: tests/unit/%.c $(LIB_OBJS) | deps-test
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -o $@ $(filter %.c %.o,$^) $(LDFLAGS) $(LDLIBS) -lcmocka

# The fuzz targets without libFuzzer: their seed corpora and the inputs that
# once crashed (tests/fuzz/regressions/TARGET/) are replayed by `make unit`.
FUZZ_TARGETS := records avro file_source pull push_filters sql route regex
REPLAY_BINS = $(FUZZ_TARGETS:%=$(BUILD)/unit/replay_%)
$(BUILD)/unit/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/store_fixture.c $(LIB_OBJS) | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -o $@ $(filter %.c %.o,$^) $(LDFLAGS) $(LDLIBS)

run: all
	$(BUILD)/gamingd --source generator --listen 127.0.0.1:8080 --data-dir ./data

unit: deps-test $(UNIT_BINS) $(REPLAY_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done
	@set -e; for t in $(FUZZ_TARGETS); do \
	    $(BUILD)/unit/replay_$$t tests/fuzz/corpus/$$t tests/fuzz/regressions/$$t; done

# librdkafka's mock cluster as a broker process for the Kafka tests
$(BUILD)/mock_broker: tests/kafka/mock_broker.c | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GD_CFLAGS) -o $@ $< $(LDFLAGS) -lrdkafka

integration: deps-test $(BUILD)/gamingd $(BUILD)/mock_broker
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

bench: deps-bench all $(BUILD)/sse_load $(BUILD)/mock_broker
	/usr/bin/python3 tests/bench/bench.py --bin $(abspath $(BUILD)/gamingd) --sse-load $(abspath $(BUILD)/sse_load) \
	    --mock-broker $(abspath $(BUILD)/mock_broker) $(if $(BASELINE),--baseline $(abspath $(BASELINE))) \
	    $(if $(ONLY),--only $(ONLY)) $(if $(STANDBY),--standby-replicas $(STANDBY))

# libFuzzer (clang) with ASan and UBSan over the parsers, each target for
# FUZZ_SECONDS, from its seed corpus in tests/fuzz/corpus/; what it finds
# goes to build/fuzz/crashes/ (a crash fails the run). New corpus entries
# stay in build/fuzz/corpus/.
FUZZ_SECONDS ?= 20
FUZZ_CC      ?= clang
FUZZ_BUILD   := build/fuzz
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJS = $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o) $(patsubst $(BUILD)/obj/gen/%,$(FUZZ_BUILD)/obj/gen/%,$(GEN_OBJS))

$(FUZZ_BUILD)/obj/%.o: %.c | deps-fuzz
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(GD_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c | deps-fuzz
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(GD_CFLAGS) -I. -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/store_fixture.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $(GD_CFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

.SECONDARY: $(FUZZ_OBJS)
fuzz: deps-fuzz $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
	@set -e; mkdir -p $(FUZZ_BUILD)/crashes; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t; echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	    $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -close_fd_mask=3 \
	        -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t- $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t 2>&1 | \
	        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|SUMMARY|artifact'; \
	    test -z "$$(ls $(FUZZ_BUILD)/crashes | grep "^$$t-")"; done

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(UNIT_BINS:%=%.d) $(REPLAY_BINS:%=%.d) $(FUZZ_OBJS:.o=.d)
