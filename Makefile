# astgate: plain GNU make. `make` builds build/astgate; `make test` and `make run` also install
# missing Debian packages (as root) and fetch the pinned grammar first. V=1 shows commands.

CC ?= cc
# src/ is layered (base, engine, http, proxy, api, cli: see ../shared/STYLE.md); headers are
# included by bare name
INCLUDES := -Isrc $(addprefix -I,$(wildcard src/*/))
CLANG ?= clang-14
CFLAGS ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes \
	-Wno-unused-parameter $(INCLUDES) -MMD -MP
LIBS := -ltree-sitter -lyaml -lpcre2-8 -levent -levent_pthreads -lcurl -ljansson -lpthread -lm
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

GRAMMAR := grammars/tree-sitter-typescript
GRAMMAR_STAMP := $(GRAMMAR)/.version

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC := $(sort $(filter-out src/cli/main.c,$(wildcard src/*/*.c)))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

GRAMMAR_OBJ := build/grammar/ts_parser.o build/grammar/ts_scanner.o \
	build/grammar/tsx_parser.o build/grammar/tsx_scanner.o \
	build/llhttp/llhttp.o build/llhttp/api.o build/llhttp/http.o

OBJ := $(LIB_SRC:%.c=build/%.o)
ASAN_OBJ := $(LIB_SRC:%.c=build/asan/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/asan/%)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: bench-api bench-tools bench-hold bench-proxy demo all deps grammar run test test-build unit golden fuzz fuzz-build bench clean format check-format
.DELETE_ON_ERROR:

all: build/astgate

deps:
	$(Q)scripts/deps.sh

grammar: $(GRAMMAR_STAMP)
$(GRAMMAR_STAMP):
	$(Q)scripts/fetch-grammar.sh grammars

# grammar sources are generated code: built once, optimised, without our warnings or sanitizers
build/grammar/ts_%.o: $(GRAMMAR_STAMP)
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) -O2 -g0 -w -fPIC -I$(GRAMMAR)/typescript/src -c $(GRAMMAR)/typescript/src/$*.c -o $@
build/grammar/tsx_%.o: $(GRAMMAR_STAMP)
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) -O2 -g0 -w -fPIC -I$(GRAMMAR)/tsx/src -c $(GRAMMAR)/tsx/src/$*.c -o $@

# llhttp (Node.js's HTTP/1.1 parser) from Debian's node-llhttp, which ships its C sources: built
# like the grammar, as third-party code
LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
override CFLAGS += -I$(LLHTTP_INC)
build/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) -O2 -g0 -w -fPIC -I$(LLHTTP_INC) -c $< -o $@

build/%.o: %.c | $(GRAMMAR_STAMP)
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

build/asan/%.o: %.c | $(GRAMMAR_STAMP)
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) -O1 $(SAN) -c $< -o $@

build/libastgate.a: $(OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
build/asan/libastgate.a: $(ASAN_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

build/astgate: build/src/cli/main.o build/libastgate.a $(GRAMMAR_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

build/asan/astgate: build/asan/src/cli/main.o build/asan/libastgate.a $(GRAMMAR_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LIBS)

build/asan/test_%: build/asan/tests/unit/test_%.o build/asan/libastgate.a $(GRAMMAR_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LIBS) -lcmocka

run: deps
	$(Q)$(MAKE) --no-print-directory all
	./build/astgate serve

# the engine alone on the bundled sample reply, showing the change
demo: all
	@rm -f build/sample.log
	./build/astgate rewrite --rules rules/mastra.yaml --log build/sample.log tests/samples/reply.md \
		>build/sample.md
	@echo "== the change (diff -u reply rewritten):"
	@diff -u tests/samples/reply.md build/sample.md || true
	@echo "== the audit log (build/sample.log):"
	@cat build/sample.log

test-build: build/asan/astgate $(UNIT_BIN)

test: deps
	$(Q)$(MAKE) --no-print-directory test-build
	$(Q)tests/run.sh build/asan

unit: test-build
	$(Q)for t in $(UNIT_BIN); do $$t || exit 1; done

# libFuzzer targets (clang-14): make fuzz runs each for FUZZ_SECONDS
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 $(INCLUDES) -I$(LLHTTP_INC) -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer
build/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(GRAMMAR_OBJ)
	@mkdir -p $(@D)
	@echo "  FUZZ    $@"
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(GRAMMAR_OBJ) $(LIBS)

fuzz-build:
	$(Q)scripts/deps.sh fuzz
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BIN)

fuzz: fuzz-build
	$(Q)for f in $(FUZZ_BIN); do \
		name=$${f#build/fuzz/fuzz_}; mkdir -p build/fuzz/corpus/$$name; \
		dict=; [ -f tests/fuzz/$$name.dict ] && dict=-dict=tests/fuzz/$$name.dict; \
		echo "== fuzz $$name ($(FUZZ_SECONDS)s)"; \
		$$f -max_total_time=$(FUZZ_SECONDS) $$dict build/fuzz/corpus/$$name tests/fuzz/corpus/$$name \
			|| exit 1; \
	done

bench: all
	$(Q)bench/run.sh

bench-proxy: all
	$(Q)bench/run-proxy.sh

# the API adapters (Chat Completions, Responses, Anthropic Messages) in process, on the corpus
bench-api: build/libastgate.a $(GRAMMAR_OBJ)
	$(Q)$(CC) $(CFLAGS) -Isrc bench/bench_api.c build/libastgate.a $(GRAMMAR_OBJ) $(LIBS) \
		-o build/bench_api
	$(Q)build/bench_api rules/mastra.yaml tests/golden/*/input.md

# holding a tool call's code vs the same code as reply text (bench/bench_tools.c)
bench-tools: build/libastgate.a $(GRAMMAR_OBJ)
	$(Q)$(CC) $(CFLAGS) -Isrc $(INCLUDES) bench/bench_tools.c build/libastgate.a $(GRAMMAR_OBJ) $(LIBS) \
		-o build/bench_tools
	$(Q)build/bench_tools rules/mastra.yaml

# the streaming core's CPU per streamed reply, hold block vs minimal (bench/bench_hold.c)
bench-hold: build/libastgate.a $(GRAMMAR_OBJ)
	$(Q)$(CC) $(CFLAGS) -Isrc $(INCLUDES) bench/bench_hold.c build/libastgate.a $(GRAMMAR_OBJ) $(LIBS) \
		-o build/bench_hold
	$(Q)node bench/proxy/upstream.js --dump 7 build/bench-proxy-reply.md
	@echo "== the reply of bench/run-proxy.sh"
	$(Q)build/bench_hold --reps 7 --iters 40 build/bench-proxy-reply.md
	@echo "== the golden replies (tests/golden/*/input.md), rules/mastra.yaml"
	$(Q)build/bench_hold --reps 5 --iters 2 tests/golden/*/input.md

format:
	$(Q)clang-format -i src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c
check-format:
	$(Q)clang-format --dry-run --Werror src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c

# deploy/: the container image (FROM scratch, its root file system staged from this machine's
# files: no registry needed), built with podman or docker, tagged astgate:VERSION and
# astgate:latest; `make test-deploy` checks deploy/ (Kubernetes manifests, systemd unit, image)
.PHONY: image test-deploy
image: build/astgate
	$(Q)deploy/build-image.sh build/astgate

test-deploy: deps
	$(Q)tests/deploy/run.sh

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(ASAN_OBJ:.o=.d) build/src/cli/main.d build/asan/src/cli/main.d
