package mysql

import (
	"context"
	"fmt"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/stele/stele/capture"
)

func (s *Source) initialSnapshot(ctx context.Context, conn *client.Conn, info *serverInfo, sink capture.Sink, st *state) (binlogPos, error) {
	return binlogPos{}, fmt.Errorf("%w: snapshot: initial is not implemented yet", ErrConfig)
}
