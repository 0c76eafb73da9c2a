package mysql

import (
	"context"
	"fmt"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/stele/stele/capture"
)

// initialSnapshot would record every captured table's rows consistent with
// the binlog start (START TRANSACTION WITH CONSISTENT SNAPSHOT, the position
// from SHOW STATUS LIKE 'binlog_snapshot_%' on MariaDB or under FLUSH TABLES
// WITH READ LOCK on MySQL). Not built yet: New refuses snapshot: initial.
func (s *Source) initialSnapshot(context.Context, *client.Conn, *serverInfo, capture.Sink, *state) (binlogPos, error) {
	return binlogPos{}, fmt.Errorf("%w: snapshot: initial is not built yet", ErrConfig)
}
