#!/usr/bin/env bash
# crash_soak.sh: the kill -9 test for 1,000 cycles (CI runs 50).
#   bash tests/crash_soak.sh [cycles]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target crash_test
TALLY_CRASH_CYCLES="${1:-1000}" ./build/release/tests/crash_test
