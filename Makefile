# pgtenant build. `./configure && make` as usual; a bare `make` (or `make check`)
# on a fresh checkout installs missing Debian packages, runs autoconf and
# ./configure itself, so README's two commands work with nothing done by hand.

-include config.mk

SRCS      := $(wildcard src/*.c)
OBJS      := $(SRCS:src/%.c=build/%.o)
LIB_OBJS  := $(filter-out build/main.o,$(OBJS))
UNIT_SRCS := $(wildcard test/unit/*_test.c)
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=build/unit/%)

WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers
OPT       ?= -O2
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(OPT) -g $(WARN) -Iinclude $(DEP_CFLAGS) $(CFLAGS_USER) $(EXTRA_CFLAGS) \
             -MMD -MP -DPGTENANT_VERSION=\"$(VERSION)\"
ALL_LDFLAGS = $(LDFLAGS_USER) $(EXTRA_LDFLAGS)
LIBS       = $(DEP_LIBS) -lm

PYTEST    := /usr/bin/python3 -m pytest

.PHONY: all deps check unit-check integration-check isolation-check soak check-asan bench install \
	clean format lint demo fuzz fuzz-check

all: pgtenant

deps:
	@./scripts/deps.sh

configure: configure.ac
	@./scripts/deps.sh
	aclocal && autoconf

config.mk: configure config.mk.in
	./configure

pgtenant: config.mk $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

build/%.o: src/%.c config.mk
	@mkdir -p build
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The live page (GET / on metrics_listen) is compiled in as a C string: src/dashboard_page.c
# is generated from src/page/index.html (and committed, so every build of src/*.c finds it).
src/dashboard_page.c: src/page/index.html scripts/embed.sh
	sh scripts/embed.sh dashboard_page src/page/index.html >$@.tmp && mv $@.tmp $@

build/unit/%: test/unit/%.c $(LIB_OBJS) test/unit/unit.h
	@mkdir -p build/unit
	$(CC) $(ALL_CFLAGS) -Itest/unit -o $@ $< $(LIB_OBJS) $(ALL_LDFLAGS) $(LIBS)

unit-check: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration-check: pgtenant
	$(PYTEST) -q -p no:cacheprovider test/integration $(PYTEST_ARGS)

# Randomized tenant-isolation checker (test/isolation, README "Randomized isolation
# checker"): ISO_SECONDS of clients with fixed seeds; ISO_ARGS for more options.
# `make soak SECONDS=N` runs it for N seconds with random seeds.
ISO_SECONDS ?= 60
SECONDS     ?= 600
ISOCHECK    := /usr/bin/python3 test/isolation/isocheck.py

isolation-check: pgtenant
	PGTENANT_BIN=./pgtenant $(ISOCHECK) --seconds $(ISO_SECONDS) $(ISO_ARGS)

soak: pgtenant
	PGTENANT_BIN=./pgtenant $(ISOCHECK) --soak --seconds $(SECONDS) $(ISO_ARGS)

# The README's test command: installs what is missing, builds, runs every test.
check: deps
	$(MAKE) pgtenant
	$(MAKE) unit-check
	$(MAKE) fuzz-check
	$(MAKE) integration-check
	$(MAKE) isolation-check

# Fuzz targets of the parsers that take untrusted bytes (test/fuzz/run.sh):
# fuzz-check replays the seed corpora (seconds; gcc+ASan when clang's
# libFuzzer is missing), fuzz runs libFuzzer for FUZZ_SECONDS (60) a target.
fuzz-check: config.mk
	@./test/fuzz/run.sh check

fuzz: config.mk
	@FUZZ_SECONDS="$(FUZZ_SECONDS)" ./test/fuzz/run.sh fuzz

check-asan: deps
	$(MAKE) clean
	PGTENANT_SANITIZED=1 $(MAKE) OPT=-O1 CFLAGS_USER=-g \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -DPGTENANT_VERIFY_FAST" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" pgtenant unit-check integration-check \
		isolation-check ISO_SECONDS=30

bench: pgtenant
	bash bench/all.sh

demo: pgtenant
	./scripts/demo.sh

# Where `make install` puts the systemd unit and the sysusers.d entry of its
# user; override on the command line (make install unitdir=/etc/systemd/system).
unitdir     ?= $(prefix)/lib/systemd/system
sysusersdir ?= $(prefix)/lib/sysusers.d

# The unit names /usr/bin and /etc/pgtenant; the installed one names the
# directories pgtenant is installed to. An existing pgtenant.ini is never
# overwritten: the new example goes beside it as pgtenant.ini.example.
install: pgtenant
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(mandir)/man1 $(DESTDIR)$(mandir)/man5 \
		$(DESTDIR)$(mandir)/man7 $(DESTDIR)$(unitdir) $(DESTDIR)$(sysusersdir) \
		$(DESTDIR)$(sysconfdir)/pgtenant
	install -m 755 pgtenant $(DESTDIR)$(bindir)/pgtenant
	install -m 644 man/pgtenant.1 $(DESTDIR)$(mandir)/man1/
	install -m 644 man/pgtenant.ini.5 $(DESTDIR)$(mandir)/man5/
	install -m 644 man/pgtenant-admin.7 $(DESTDIR)$(mandir)/man7/
	@mkdir -p build
	sed -e 's|/usr/bin/pgtenant|$(bindir)/pgtenant|g' \
		-e 's|/etc/pgtenant/|$(sysconfdir)/pgtenant/|g' etc/pgtenant.service >build/pgtenant.service
	install -m 644 build/pgtenant.service $(DESTDIR)$(unitdir)/pgtenant.service
	install -m 644 etc/pgtenant.sysusers $(DESTDIR)$(sysusersdir)/pgtenant.conf
	@if [ -e $(DESTDIR)$(sysconfdir)/pgtenant/pgtenant.ini ]; then \
		echo "$(DESTDIR)$(sysconfdir)/pgtenant/pgtenant.ini exists: kept;" \
			"the new example is pgtenant.ini.example beside it"; \
		install -m 644 etc/pgtenant.ini $(DESTDIR)$(sysconfdir)/pgtenant/pgtenant.ini.example; \
	else \
		echo install -m 644 etc/pgtenant.ini $(DESTDIR)$(sysconfdir)/pgtenant/pgtenant.ini; \
		install -m 644 etc/pgtenant.ini $(DESTDIR)$(sysconfdir)/pgtenant/pgtenant.ini; \
	fi

format:
	clang-format -i src/*.c include/*.h test/unit/*.c test/unit/*.h

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--suppress=missingIncludeSystem -Iinclude src
	clang-tidy --quiet src/*.c -- -std=gnu11 -D_GNU_SOURCE -Iinclude $(DEP_CFLAGS)
	clang-format --dry-run --Werror src/*.c include/*.h test/unit/*.c test/unit/*.h

clean:
	rm -rf build pgtenant

-include $(OBJS:.o=.d)
