module github.com/stele/stele

go 1.26.8

require (
	github.com/go-json-experiment/json v1.27.2
	github.com/transparency-dev/merkle v0.0.2
	golang.org/x/mod v0.43.0
	golang.org/x/sys v0.50.0
)

require github.com/google/go-cmp v0.7.0 // indirect
