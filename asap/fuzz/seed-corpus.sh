#!/bin/sh
# Writes a seed corpus for the `decode` target from the capture fixtures:
# one file per message, first byte 00 = ASAP, 01 = ENRP.
set -eu
cd "$(dirname "$0")"
mkdir -p corpus/decode
grep -hv '^#' ../wire/tests/data/*.hex | while read -r frame proto hex; do
    sel=00; [ "$proto" = enrp ] && sel=01
    printf '%s%s' "$sel" "$hex" | xxd -r -p > "corpus/decode/$proto-$frame-$(printf '%s' "$hex" | cksum | cut -d' ' -f1)"
done
