#!/usr/bin/env bash
# The whole test suite: formatting, vet, every package's tests (with the race
# detector), and a short fuzz run of the record decoders. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== fuzz (short)"
fuzztime="${STELE_FUZZTIME:-15s}"
go test -run='^$' -fuzz='^FuzzParseIngest$' -fuzztime="$fuzztime" ./record
go test -run='^$' -fuzz='^FuzzDecode$' -fuzztime="$fuzztime" ./record
go test -run='^$' -fuzz='^FuzzKeyFastPaths$' -fuzztime="$fuzztime" ./record

echo "== all tests passed"
