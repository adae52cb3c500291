# Builds pgtenant's fuzz targets (included by nobody; run.sh calls
# `make -f test/fuzz/fuzz.mk ENGINE=...` from the repository root).
#
# ENGINE=libfuzzer: clang -fsanitize=fuzzer,address,undefined.
# ENGINE=driver:    gcc -fsanitize=address,undefined with driver.c as main()
#                   (the fallback when clang's libFuzzer is missing).
#
# The pgtenant modules are compiled again with the fuzzing compiler and
# flags into an archive, so each target links only the objects it needs
# (no main.c, no event loop).

-include config.mk

ENGINE  ?= libfuzzer
TARGETS := $(patsubst test/fuzz/%.c,%,$(wildcard test/fuzz/fuzz_*.c))
LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c))

ifeq ($(ENGINE),libfuzzer)
FCC      ?= clang
OUT      := build/fuzz/libfuzzer
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined
OBJ_SAN  := $(SAN) -fsanitize=fuzzer-no-link
LINK_SAN := $(SAN) -fsanitize=fuzzer
MAIN_OBJ :=
else
FCC      ?= gcc
OUT      := build/fuzz/driver
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined
OBJ_SAN  := $(SAN)
LINK_SAN := $(SAN)
MAIN_OBJ := $(OUT)/driver.o
endif

FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Wall -Wextra \
               -Wno-unused-parameter -Wno-missing-field-initializers -Iinclude -Itest/fuzz \
               $(DEP_CFLAGS) -DPGTENANT_VERSION=\"$(VERSION)\" -MMD -MP
LIB_OBJS := $(LIB_SRCS:src/%.c=$(OUT)/obj/%.o)

.PHONY: all
.SECONDARY:
all: $(addprefix $(OUT)/,$(TARGETS))

$(OUT)/obj/%.o: src/%.c
	@mkdir -p $(OUT)/obj
	$(FCC) $(FUZZ_CFLAGS) $(OBJ_SAN) -c -o $@ $<

$(OUT)/libpgtenant.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(OUT)/%.o: test/fuzz/%.c
	@mkdir -p $(OUT)
	$(FCC) $(FUZZ_CFLAGS) -Werror $(OBJ_SAN) -c -o $@ $<

$(OUT)/fuzz_%: $(OUT)/fuzz_%.o $(MAIN_OBJ) $(OUT)/libpgtenant.a
	$(FCC) $(LINK_SAN) -o $@ $< $(MAIN_OBJ) $(OUT)/libpgtenant.a $(DEP_LIBS) -lm

-include $(wildcard $(OUT)/obj/*.d $(OUT)/*.d)
