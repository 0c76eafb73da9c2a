#!/usr/bin/env bash
# The whole test suite: formatting and import grouping, vet, staticcheck,
# govulncheck (when its database is reachable), every package's tests (with the race
# detector), and a short fuzz run of every decoder that reads untrusted bytes. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== goimports"
# generated.go is gqlgen's output, formatted by gqlgen itself.
misgrouped=$(go tool goimports -local github.com/stele/stele -l $(git ls-files '*.go' 2>/dev/null | grep -v 'generated.go$' || find . -name '*.go' ! -name generated.go))
if [ -n "$misgrouped" ]; then
  echo "goimports -local github.com/stele/stele would change:"; echo "$misgrouped"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
go tool staticcheck ./...

echo "== govulncheck"
# It needs vuln.go.dev; on a machine without it, say so and go on.
if vulnout=$(go tool govulncheck ./... 2>&1); then
  echo "$vulnout" | tail -n 3
elif echo "$vulnout" | grep -qiE 'vuln.go.dev|dial tcp|no such host|connection refused|i/o timeout|TLS handshake'; then
  echo "govulncheck skipped: the vulnerability database (vuln.go.dev) cannot be reached from this machine"
else
  echo "$vulnout"; exit 1
fi

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== fuzz (short)"
fuzztime="${STELE_FUZZTIME:-6s}"
go test -run='^$' -fuzz='^FuzzParseIngest$' -fuzztime="$fuzztime" ./record
go test -run='^$' -fuzz='^FuzzDecode$' -fuzztime="$fuzztime" ./record
go test -run='^$' -fuzz='^FuzzKeyFastPaths$' -fuzztime="$fuzztime" ./record
go test -run='^$' -fuzz='^FuzzOpenCheckpoint$' -fuzztime=100000x .
go test -run='^$' -fuzz='^FuzzReadRequest$' -fuzztime="$fuzztime" ./api
go test -run='^$' -fuzz='^FuzzGraphQL$' -fuzztime="$fuzztime" ./api/graphql
go test -run='^$' -fuzz='^FuzzScanArrayMatchesDecoder$' -fuzztime="$fuzztime" ./api
go test -run='^$' -fuzz='^FuzzCutArrayMatchesDecoder$' -fuzztime="$fuzztime" ./api
go test -run='^$' -fuzz='^FuzzFastPathsMatchDecoder$' -fuzztime="$fuzztime" ./record
go test -run='^$' -fuzz='^FuzzNumber$' -fuzztime="$fuzztime" ./capture/dynamodb
go test -run='^$' -fuzz='^FuzzDecode$' -fuzztime="$fuzztime" ./capture/debezium
go test -run='^$' -fuzz='^FuzzFastPathsMatchUnmarshal$' -fuzztime="$fuzztime" ./capture/debezium
go test -run='^$' -fuzz='^FuzzParseStatement$' -fuzztime="$fuzztime" ./capture/mysql
go test -run='^$' -fuzz='^FuzzCloudEvent$' -fuzztime="$fuzztime" ./record
go test -run='^$' -fuzz='^FuzzParseAddCheckpoint$' -fuzztime="$fuzztime" ./witness
go test -run='^$' -fuzz='^FuzzParsePolicy$' -fuzztime="$fuzztime" ./witness
go test -run='^$' -fuzz='^FuzzParseSignatureLines$' -fuzztime="$fuzztime" ./witness
go test -run='^$' -fuzz='^FuzzValue$' -fuzztime="$fuzztime" ./internal/jsonscan
go test -run='^$' -fuzz='^FuzzFastMatchesLibrary$' -fuzztime="$fuzztime" ./schema
go test -run='^$' -fuzz='^FuzzParse$' -fuzztime="$fuzztime" ./internal/frame
go test -run='^$' -fuzz='^FuzzParseTrailer$' -fuzztime="$fuzztime" ./logstore
go test -run='^$' -fuzz='^FuzzDecodeCursor$' -fuzztime="$fuzztime" ./query
go test -run='^$' -fuzz='^FuzzReadFrames$' -fuzztime="$fuzztime" ./privacy/keystore
go test -run='^$' -fuzz='^FuzzColumnJSON$' -fuzztime="$fuzztime" ./capture/postgres
go test -run='^$' -fuzz='^FuzzVaultResponse$' -fuzztime="$fuzztime" ./privacy/keystore
go test -run='^$' -fuzz='^FuzzDecodePositions$' -fuzztime="$fuzztime" ./capture

echo "== all tests passed"
