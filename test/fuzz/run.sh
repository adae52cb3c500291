#!/bin/sh
# Builds and runs pgtenant's fuzz targets (see test/fuzz/*.c).
#
#   run.sh check        each target over its seed corpus once (make fuzz-check)
#   run.sh fuzz [T...]  fuzz each target (or the named ones) for FUZZ_SECONDS
#                       (default 60) with libFuzzer (make fuzz)
#
# With clang's libFuzzer missing, `check` builds the targets with gcc and
# ASan/UBSan around driver.c instead, so `make check` never needs clang;
# `fuzz` needs libFuzzer (apt-get install clang libclang-rt-14-dev).
# New inputs found while fuzzing go to build/fuzz/work/<target>/, crashes to
# build/fuzz/artifacts/<target>/; copy a crash into test/fuzz/corpus/<target>/
# once fixed, so fuzz-check keeps it as a regression input.
set -e
cd "$(dirname "$0")/../.."

mode=${1:-check}
[ $# -gt 0 ] && shift
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
JOBS=$(nproc 2>/dev/null || echo 2)

have_libfuzzer() {
	command -v clang >/dev/null 2>&1 || return 1
	tmp=$(mktemp -d)
	printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' \
		>"$tmp/t.c"
	if clang -fsanitize=fuzzer,address,undefined -o "$tmp/t" "$tmp/t.c" >/dev/null 2>&1; then
		rm -rf "$tmp"
		return 0
	fi
	rm -rf "$tmp"
	return 1
}

if [ -n "$FUZZ_ENGINE" ]; then
	engine=$FUZZ_ENGINE
elif have_libfuzzer; then
	engine=libfuzzer
else
	engine=driver
fi
if [ "$mode" = fuzz ] && [ "$engine" != libfuzzer ]; then
	echo "fuzz: clang's libFuzzer is not available (apt-get install clang libclang-rt-14-dev)" >&2
	exit 1
fi

make -s -f test/fuzz/fuzz.mk ENGINE="$engine" -j"$JOBS" >/dev/null
out=build/fuzz/$engine
targets=$*
[ -n "$targets" ] || targets=$(cd test/fuzz && find . -maxdepth 1 -name 'fuzz_*.c' | sed 's|^\./||; s/\.c$//' | sort)

# leaks are bugs; UBSan findings abort; a wedged input shows as a timeout
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
for t in $targets; do
	corpus=test/fuzz/corpus/$t
	log=build/fuzz/$t.log
	dict=test/fuzz/dict/$t.dict
	dict_arg=""
	[ -f "$dict" ] && dict_arg="-dict=$dict"
	if [ "$mode" = check ]; then
		# corpus file names are plain words: split them into arguments
		files=$(find "$corpus" -type f | sort)
		# shellcheck disable=SC2086
		if [ "$engine" = libfuzzer ]; then
			# file arguments: run each once and exit
			"$out/$t" -timeout=10 -rss_limit_mb=2048 $files >"$log" 2>&1 || failed="$failed $t"
		else
			# shellcheck disable=SC2086
			"$out/$t" $files >"$log" 2>&1 || failed="$failed $t"
		fi
		n=$(echo "$files" | wc -l)
		case " $failed " in
		*" $t "*) echo "fuzz-check: $t FAILED (log: build/fuzz/$t.log)"; tail -40 "$log" ;;
		*) echo "fuzz-check: $t ok ($n inputs, $engine)" ;;
		esac
	else
		mkdir -p "build/fuzz/work/$t" "build/fuzz/artifacts/$t"
		echo "fuzz: $t for ${FUZZ_SECONDS}s"
		# shellcheck disable=SC2086
		if ! "$out/$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
			-max_len=8192 -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$t/" \
			$dict_arg $FUZZ_ARGS "build/fuzz/work/$t" "$corpus" >"$log" 2>&1; then
			failed="$failed $t"
			echo "fuzz: $t FOUND A PROBLEM (log: build/fuzz/$t.log, inputs: build/fuzz/artifacts/$t/)"
			tail -60 "$log"
		else
			grep -a -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$log" | tail -2
		fi
	fi
done
if [ -n "$failed" ]; then
	echo "$mode: failures in:$failed" >&2
	exit 1
fi
