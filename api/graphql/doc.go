// Package graphql serves Stele's read API as GraphQL at /graphql, with a
// GraphiQL playground at /graphql/playground. The schema (schema.graphqls)
// comes first; gqlgen generates the executor from it:
//
//	go generate ./api/graphql/
//
// which runs `go tool gqlgen` with gqlgen.yml. Resolvers are hand-written
// (resolver.go) over the same query engine and log as the REST API, through
// the small interfaces this package defines. Every request is checked
// against limits (limits.go) before it is validated, before it runs and
// while it runs: body, tokens, fields, aliases, depth, complexity with
// introspection costed as what it answers, and the answer's size.
//
// Personal data: resolvers read records through the query engine's read
// hook (query.WithReadHook), which the caller puts in the request context;
// package api installs one that shows personal data as the caller's role
// may see it, holds the answer and records the operation's clear reads
// before sending it. Proof and checkpoint fields serve stored bytes.
package graphql

//go:generate go tool gqlgen generate --config gqlgen.yml
