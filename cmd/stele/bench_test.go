package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/stele/stele/bench"
)

func TestBenchOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bench.Options
	}{
		{nil, bench.Options{HTTPRounds: 3, StreamRounds: 3, Records: 1_000_000, Throughput: 300_000, Clients: 256, Queries: 5000,
			Capture: bench.CaptureOptions{Changes: 200_000, Rounds: 3, LatencyFor: 20 * time.Second, TxInserts: 200_000, TxRows: 2000}, DynamoDB: bench.DynamoDBOptions{Items: 20_000, Rounds: 3}, Kafka: bench.KafkaOptions{Events: 100_000, Rounds: 3},
			MySQL: bench.MySQLOptions{Changes: 50_000, Rounds: 3, LatencyFor: 5 * time.Second, BigMB: 8}}},
		{[]string{"--quick"}, bench.Options{HTTPRounds: 3, StreamRounds: 3, Records: 100_000, Throughput: 60_000, Clients: 256, Queries: 1000,
			Capture: bench.CaptureOptions{Changes: 100_000, Rounds: 3, LatencyFor: 8 * time.Second, TxInserts: 40_000, TxRows: 2000}, DynamoDB: bench.DynamoDBOptions{Items: 10_000, Rounds: 3}, Kafka: bench.KafkaOptions{Events: 100_000, Rounds: 3},
			MySQL: bench.MySQLOptions{Changes: 50_000, Rounds: 3, LatencyFor: 5 * time.Second, BigMB: 8}}},
		{[]string{"--only", "http,append", "--http-rounds", "5", "--stream-rounds", "2"}, bench.Options{HTTPRounds: 5, StreamRounds: 2, Only: []string{"http", "append"}, Records: 1_000_000, Throughput: 300_000, Clients: 256, Queries: 5000,
			Capture: bench.CaptureOptions{Changes: 200_000, Rounds: 3, LatencyFor: 20 * time.Second, TxInserts: 200_000, TxRows: 2000}, DynamoDB: bench.DynamoDBOptions{Items: 20_000, Rounds: 3}, Kafka: bench.KafkaOptions{Events: 100_000, Rounds: 3},
			MySQL: bench.MySQLOptions{Changes: 50_000, Rounds: 3, LatencyFor: 5 * time.Second, BigMB: 8}}},
		// Flags given explicitly win over --quick, in any order.
		{[]string{"--records", "5000", "--quick", "--capture=false", "--capture-latency", "2s", "--erase-records", "700", "--capture-big-mb", "64", "--capture-rounds", "5", "--dynamodb=false", "--dynamodb-rounds", "1",
			"--mysql=false", "--mysql-changes", "2000", "--mysql-rounds", "5", "--mysql-latency", "1s", "--mysql-big-mb", "1024", "--kafka-events", "1000000", "--kafka-rounds", "1"},
			bench.Options{HTTPRounds: 3, StreamRounds: 3, Records: 5000, Throughput: 60_000, Clients: 256, Queries: 1000, EraseRecords: 700, SkipCapture: true, SkipDynamoDB: true, SkipMySQL: true,
				Capture: bench.CaptureOptions{Changes: 100_000, Rounds: 5, LatencyFor: 2 * time.Second, BigMB: 64, TxInserts: 40_000, TxRows: 2000}, DynamoDB: bench.DynamoDBOptions{Items: 10_000, Rounds: 1}, Kafka: bench.KafkaOptions{Events: 1_000_000, Rounds: 1},
				MySQL: bench.MySQLOptions{Changes: 2000, Rounds: 5, LatencyFor: time.Second, BigMB: 1024}}},
	} {
		got, _, err := benchOptions(tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v:\n got %+v\nwant %+v", tc.args, got, tc.want)
		}
	}
	if _, _, err := benchOptions([]string{"--capture-latency", "soon"}); err == nil {
		t.Error("a bad duration was accepted")
	}
}
