#!/usr/bin/env bash
# Configures and builds one tree. Usage: scripts/build.sh [DIR] [extra cmake arguments]
#   scripts/build.sh build                                  release build (default)
#   scripts/build.sh build-asan -DSANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build}
shift || true
case $dir in /*) ;; *) dir=$root/$dir ;; esac
cmake -S "$root" -B "$dir" "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
