# opsn — one Makefile for the three programs, the tests, fuzzing and benchmarks.

CC	?= cc
PREFIX	?= /usr/local
DESTDIR	?=
PYTHON	?= /usr/bin/python3

# Three trees. `make` builds the release programs into bin/ (objects in
# build/obj). `make test` builds the same code again with the test-only
# switches (OPSN_TEST_*, -DOPSN_TEST_BUILD) into build/test, and `make check`
# with sanitizers too into build/san: a release binary never reads them.
# `make fuzz` builds it with clang, libFuzzer's coverage and sanitizers,
# and OPSN_FUZZ (the API's entry without I/O) into build/fuzz.
SAN	?= 0
TESTBUILD ?= 0
FUZZ	?= 0
ifeq ($(FUZZ),1)
CC	= clang
BUILD	?= build/fuzz/obj
BIN	?= build/fuzz/bin
SANFLAGS = -fsanitize=fuzzer-no-link,address,undefined \
	   -fno-omit-frame-pointer -DOPSN_FUZZ
else ifeq ($(SAN),1)
TESTBUILD = 1
BUILD	?= build/san
BIN	?= build/san/bin
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer
else ifeq ($(TESTBUILD),1)
BUILD	?= build/test
BIN	?= build/test/bin
SANFLAGS =
else
BUILD	?= build/obj
BIN	?= bin
SANFLAGS =
endif
ifeq ($(TESTBUILD),1)
TESTDEFS = -DOPSN_TEST_BUILD=1
else
TESTDEFS =
endif

PKG_COMMON	= libuv openssl sqlite3 libprotobuf-c jansson inih
PKG_CONTROLLER	= $(PKG_COMMON) libh2o libcrypt libidn2 libzip
PKG_AGENT	= $(PKG_COMMON) libvirt libcurl
PKG_CLI		= libcurl jansson inih openssl

pc_cflags = $(shell pkg-config --cflags $(1))
pc_libs = $(shell pkg-config --libs $(1))

WARN	= -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wshadow -Wpointer-arith \
	  -Wmissing-prototypes -Wstrict-prototypes
CFLAGS	?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(CFLAGS) $(WARN) $(SANFLAGS) $(TESTDEFS) -D_GNU_SOURCE \
	  -DH2O_USE_LIBUV=1 -Iinclude -I$(BUILD)/proto \
	  $(call pc_cflags,$(PKG_CONTROLLER) libvirt libcurl)
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)
# The controller's files include other modules' headers by folder.
ALL_CFLAGS += -Icontroller
# Where `make install` puts the web console, for a controller that finds
# no console folder beside its program.
$(BUILD)/controller/console/files.o: ALL_CFLAGS += -DOPSN_PREFIX='"$(PREFIX)"'

PROTOS	= $(wildcard proto/*.proto)
PROTO_C	= $(patsubst proto/%.proto,$(BUILD)/proto/%.pb-c.c,$(PROTOS))
PROTO_H	= $(PROTO_C:.c=.h)

LIB_SRC	= $(wildcard lib/*.c) $(wildcard proto/*.c)
LIB_OBJ	= $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC)) $(PROTO_C:.c=.o)
MIGRATIONS = $(sort $(wildcard controller/core/migrations/*.sql))
CTL_SRC	= $(wildcard controller/*.c) $(wildcard controller/*/*.c)
# Storage that fails on demand (core/faultvfs.c) exists in test builds only.
ifneq ($(TESTBUILD),1)
CTL_SRC	:= $(filter-out controller/core/faultvfs.c,$(CTL_SRC))
endif
CTL_OBJ	= $(patsubst %.c,$(BUILD)/%.o,$(CTL_SRC)) \
	  $(BUILD)/gen/migrations.o
AGT_OBJ	= $(patsubst %.c,$(BUILD)/%.o,$(wildcard node-agent/*.c))
CLI_OBJ	= $(patsubst %.c,$(BUILD)/%.o,$(wildcard cli/*.c))
LIBOPSN	= $(BUILD)/libopsn.a

PROGS	= $(BIN)/opsn-controller $(BIN)/opsn-agent $(BIN)/opsnctl

UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all test check unit-build fuzz fuzz-build bench soak install run \
	stop clean image
.SECONDARY:

all: $(PROGS)

$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(@D)
	protoc-c --proto_path=proto --c_out=$(BUILD)/proto $<

$(BUILD)/%.o: %.c $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/proto/%.pb-c.o: $(BUILD)/proto/%.pb-c.c
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -c -o $@ $<

$(BUILD)/gen/migrations.c: $(MIGRATIONS) ops/embed-sql.sh
	@mkdir -p $(@D)
	ops/embed-sql.sh $@ $(MIGRATIONS)

$(BUILD)/gen/migrations.o: $(BUILD)/gen/migrations.c
	$(CC) $(ALL_CFLAGS) -Icontroller/core -c -o $@ $<

$(LIBOPSN): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/opsn-controller: $(CTL_OBJ) $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pc_libs,$(PKG_CONTROLLER)) -lresolv -lm

$(BIN)/opsn-agent: $(AGT_OBJ) $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pc_libs,$(PKG_AGENT)) -lm

$(BIN)/opsnctl: $(CLI_OBJ) $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pc_libs,$(PKG_CLI) $(PKG_COMMON)) -lm

# Unit tests link the shared library; test_ctl_*.c also link the
# controller's objects (except main) and test_agt_*.c the agent's.
CTL_LIBOBJ = $(filter-out $(BUILD)/controller/main.o,$(CTL_OBJ))
AGT_LIBOBJ = $(filter-out $(BUILD)/node-agent/main.o,$(AGT_OBJ))
TEST_LIBS = $(call pc_libs,$(PKG_CONTROLLER) libvirt libcurl cmocka) -lresolv -lm

$(BUILD)/tests/test_ctl_%: tests/unit/test_ctl_%.c $(CTL_LIBOBJ) $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Itests/unit -Icontroller -o $@ $^ $(TEST_LIBS)

$(BUILD)/tests/test_agt_%: tests/unit/test_agt_%.c $(AGT_LIBOBJ) $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Itests/unit -Inode-agent -o $@ $^ $(TEST_LIBS)

CLI_LIBOBJ = $(filter-out $(BUILD)/cli/opsnctl.o,$(CLI_OBJ))
$(BUILD)/tests/test_cli_%: tests/unit/test_cli_%.c $(CLI_LIBOBJ) $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Itests/unit -Icli -o $@ $^ $(TEST_LIBS)

# The placement engine is pure: its tests link place.o alone.
PLACE_TESTS = $(filter $(BUILD)/tests/test_place%,$(UNIT_BIN))
$(PLACE_TESTS): $(BUILD)/tests/%: tests/unit/%.c \
    $(BUILD)/controller/compute/place.o $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Itests/unit -o $@ $^ $(TEST_LIBS)

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Itests/unit -o $@ $^ $(TEST_LIBS)

# The unit tests, like the end-to-end tests, use the test build.
ifeq ($(TESTBUILD),1)
unit-build: $(UNIT_BIN)
else
unit-build:
	@$(MAKE) --no-print-directory TESTBUILD=1 unit-build
endif

# The tiny guest (Debian kernel + busybox initramfs + ext4 base disk) is
# built once into build/ and cached; it is never committed.
IMAGE_DIR = build/images/tiny
image: $(IMAGE_DIR)/.stamp
$(IMAGE_DIR)/.stamp: ops/images/build-tiny.sh $(wildcard /boot/vmlinuz-*) /bin/busybox
	ops/images/build-tiny.sh $(IMAGE_DIR)

# `make test` and `make check` build the release programs too: the test
# run checks that they carry no test switch (RELEASE_BIN).
ifeq ($(TESTBUILD),1)
test: all $(UNIT_BIN) image
	@BUILD=$(BUILD) BIN=$(BIN) PYTHON=$(PYTHON) RELEASE_BIN=$(RELEASE_BIN) \
	    MODULE_CC="$(CC) $(ALL_CFLAGS)" tests/run.sh
else
test: all
	@$(MAKE) --no-print-directory TESTBUILD=1 RELEASE_BIN=$(BIN) test
endif

check:
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory SAN=1 RELEASE_BIN=bin test

# Fuzzing: every tests/fuzz/fuzz_*.c is a libFuzzer target. A target links
# the shared library, and the controller's or the CLI's objects it needs
# (less the file it includes to reach file-local parsers). `make fuzz`
# builds them (FUZZ=1 tree) and runs each for FUZZ_SECONDS.
FUZZ_SECONDS ?= 30
FUZZ_NAMES = $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN = $(addprefix $(BUILD)/fuzz/,$(FUZZ_NAMES))
CLI_NOIMPORT = $(filter-out $(BUILD)/cli/import.o,$(CLI_LIBOBJ))
fuzz_objs_fuzz_api = $(CTL_LIBOBJ)
fuzz_objs_fuzz_csv = $(CLI_LIBOBJ)
fuzz_objs_fuzz_etalab = $(CLI_NOIMPORT)
# cli/tariff.c is included; import.o and audit.o share names with the
# controller's (import_tenants, audit_verify).
fuzz_objs_fuzz_tariff = $(CTL_LIBOBJ) $(filter-out $(BUILD)/cli/tariff.o \
	$(BUILD)/cli/audit.o,$(CLI_NOIMPORT))
# The placement engine is pure: it links alone; so does the tar reader.
fuzz_objs_fuzz_place = $(BUILD)/controller/compute/place.o
fuzz_objs_fuzz_tar = $(BUILD)/controller/backup/tar.o
FUZZ_LIBS = $(call pc_libs,$(PKG_CONTROLLER) libcurl) -lresolv -lm

.SECONDEXPANSION:
$(BUILD)/fuzz/%: tests/fuzz/%.c $$(fuzz_objs_$$*) $(LIBOPSN)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Icli -Icontroller -fsanitize=fuzzer -MMD -MP \
		-o $@ $< \
		$(fuzz_objs_$*) $(LIBOPSN) $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BIN)

fuzz:
	$(MAKE) FUZZ=1 fuzz-build
	tests/fuzz/run.sh build/fuzz/obj/fuzz $(FUZZ_SECONDS) $(FUZZ_NAMES)

# The soak (not part of make test): 200 simulated agents, API traffic and
# random kills for 10 minutes, then a check of the whole history.
SOAK_BIN = build/soak/soakagents
$(SOAK_BIN): tests/soak/soakagents.c tests/bench/simlink.h $(LIBOPSN) $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Itests/bench -o $@ tests/soak/soakagents.c \
	    $(LIBOPSN) $(call pc_libs,$(PKG_COMMON)) -lm

soak: all image $(SOAK_BIN)
	@OPSN_BIN=$(abspath $(BIN)) SOAK_AGENTS_BIN=$(abspath $(SOAK_BIN)) \
	    $(PYTHON) tests/soak/soak.py

bench: all image
	@BIN=$(BIN) PYTHON=$(PYTHON) tests/bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)/lib/systemd/system \
		$(DESTDIR)/etc/opsn
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 docs/opsnctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 docs/opsn-controller.8 docs/opsn-agent.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -d $(DESTDIR)/usr/lib/sysusers.d
	for u in opsn-controller opsn-agent; do \
		sed 's|/usr/local|$(PREFIX)|g' ops/systemd/$$u.service \
			> $(DESTDIR)/lib/systemd/system/$$u.service; \
	done
	install -m 644 ops/systemd/opsn.sysusers $(DESTDIR)/usr/lib/sysusers.d/opsn.conf
	install -m 640 ops/controller.conf.sample $(DESTDIR)/etc/opsn/controller.conf.sample
	install -m 640 ops/agent.conf.sample $(DESTDIR)/etc/opsn/agent.conf.sample
	install -d $(DESTDIR)/etc/opsn/web $(DESTDIR)$(PREFIX)/share/opsn
	install -m 644 ops/web/*.html $(DESTDIR)/etc/opsn/web/
	cp -r ops/mail ops/web $(DESTDIR)$(PREFIX)/share/opsn/
	install -d $(DESTDIR)$(PREFIX)/share/opsn/console/js/pages
	install -m 644 console/*.html console/*.css console/*.svg \
		$(DESTDIR)$(PREFIX)/share/opsn/console/
	install -m 644 console/js/*.js $(DESTDIR)$(PREFIX)/share/opsn/console/js/
	install -m 644 console/js/pages/*.js \
		$(DESTDIR)$(PREFIX)/share/opsn/console/js/pages/

run:
	@ops/run.sh

stop:
	@ops/stop.sh

clean:
	rm -rf build bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
