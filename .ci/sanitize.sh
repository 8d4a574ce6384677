#!/usr/bin/env bash
# Sanitizer job: never crash, never corrupt memory, never leak.
#
#  1. Builds the extension in Debug with AddressSanitizer + UndefinedBehaviorSanitizer
#     (CMake option ARENAGRAD_SANITIZE=ON), installs it into a throwaway venv and runs the
#     whole test suite with libasan preloaded into python. PYTHONMALLOC=malloc routes
#     Python's objects through ASan too, so a Value used after free is caught.
#     Leak detection is off there: CPython never frees everything at exit and LeakSanitizer
#     suppressions match any frame of a stack, so "python" would hide our leaks too.
#  2. Leaks instead get two targeted checks: tests/cpp/arena_check.cpp drives the arena
#     without Python under ASan+UBSan+LeakSanitizer (detect_leaks=1), and the suite's
#     tests/test_leaks.py checks that no Python object or arena node outlives its use.
#
# Any sanitizer report aborts the process, so the job fails on the first one.
# Usage: .ci/sanitize.sh [extra pytest args]   (about 3-5 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-sanitize
python3 -m venv --clear "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q scikit-build-core pybind11 numpy pytest hypothesis ninja cmake

echo "== building the sanitized extension (Debug, ASan + UBSan)"
"$venv/bin/python" -m pip install -q --no-build-isolation . \
  -Cbuild-dir=build/sanitize \
  -Ccmake.build-type=Debug \
  -Ccmake.define.ARENAGRAD_SANITIZE=ON \
  -Ccmake.define.ARENAGRAD_CUDA=OFF  # no device to run kernels on; saves the nvcc build

libasan="$(gcc -print-file-name=libasan.so)"
[ -f "$libasan" ] || { echo "libasan.so not found (gcc -print-file-name=libasan.so)"; exit 1; }
# libstdc++ too: python does not link it, and ASan resolves its __cxa_throw interceptor at
# startup ("CHECK failed: real___cxa_throw != 0" on the first C++ exception otherwise).
libstdcxx="$(gcc -print-file-name=libstdc++.so)"

echo "== arena leak check (no Python; ASan + UBSan + LeakSanitizer)"
g++ -std=c++17 -g -O1 -Wall -Wextra -Werror -ffp-contract=off \
  -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
  -Icpp tests/cpp/arena_check.cpp -o build/sanitize/arena_check
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  build/sanitize/arena_check

echo "== test suite under ASan + UBSan"
# Run from outside the source tree so `import arenagrad` finds the sanitized install.
repo="$PWD"
cd "$venv"
LD_PRELOAD="$libasan $libstdcxx" \
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:strict_init_order=1:detect_stack_use_after_return=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
PYTHONMALLOC=malloc \
ARENAGRAD_SANITIZED=1 \
PYTHONPATH="$repo/.ci" \
  "$PWD/bin/python" -m pytest -q -p sanitize_profile -p no:cacheprovider \
    --rootdir="$repo" -c "$repo/pyproject.toml" "$repo/tests" "$@"
echo "== sanitizer job: no reports"
