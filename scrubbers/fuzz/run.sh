#!/usr/bin/env bash
# Fuzzes the scrubbing engine for SECONDS seconds in all, split between the targets.
#
#   scrubbers/fuzz/run.sh SECONDS [TARGET...]      (targets: scrub_value scrub_text)
#
# Installs cargo-fuzz into target/tools of the repository if it is missing. cargo-fuzz
# needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Crashes land in scrubbers/fuzz/artifacts/TARGET/, the growing corpus in
# scrubbers/fuzz/corpus/TARGET/ (both ignored by git).
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$fuzz_dir/../.." && pwd)"
tools="$repo/target/tools"

if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
    echo "installing cargo-fuzz into $tools" >&2
    cargo install cargo-fuzz --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(scrub_value scrub_text)
fi
per_target=$(( seconds / ${#targets[@]} ))
if (( per_target < 1 )); then
    per_target=1
fi

cd "$fuzz_dir/.."
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    echo "fuzzing $target for ${per_target}s" >&2
    cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$per_target" \
        -dict=fuzz/scrub.dict \
        -max_len=8192 \
        -timeout=10 \
        -rss_limit_mb=4096 \
        -print_final_stats=1
done
