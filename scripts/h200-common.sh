# Sourced by h200-remote.sh and h200-tools.sh, which run `cargo-gpu remote-run --remote local` on
# a GPU machine: a private work folder with its own target dir and config, the run records, and a
# PASS/FAIL table printed last. Set `width` (the check names' column) before sourcing.
work=$(mktemp -d)
export CARGO_TARGET_DIR="$work/target" CARGO_GPU_CONFIG="$work/config.toml" CARGO_TERM_COLOR=never
runs="$CARGO_TARGET_DIR/gpu/runs"
rows="$work/table.txt"
: >"$rows"
failed=0
row() { printf "%-${width:-52}s %s\n" "$1" "$2" >>"$rows"; }
verdict() { # NAME CONDITION-EXIT-STATUS DETAIL
    if [ "$2" = 0 ]; then row "$1" "PASS $3"; else row "$1" "FAIL $3"; failed=1; fi
}
config() { printf '[remotes.local]\nworkdir = "%s"\n%s\n' "$work/remote" "${1:-}" >"$CARGO_GPU_CONFIG"; }
last() { ls "$runs" | sort | tail -n 1; }
field() { sed -n "s/^$2 = //p" "$runs/$1/record.toml" | head -n 1; }
