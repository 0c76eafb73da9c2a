package mysql

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/stele/stele/capture/mysqlctx"
)

// serverInfo is what set-up learned about the server.
type serverInfo struct {
	flavor   string
	version  string
	serverID uint32
	// gtidMode: positions are GTID sets (every MariaDB, MySQL with
	// gtid_mode = ON).
	gtidMode bool
	// rowMetadata: table-map events carry column names
	// (binlog_row_metadata = FULL).
	rowMetadata bool
	// statements: the binlog carries each statement's text (rows-query or
	// annotate-rows events), so statement comments name the actor.
	statements bool
	// collations maps collation ids to character sets.
	collations map[uint64]string
}

// connect opens a SQL connection (catalog look-ups, set-up, snapshot).
func (s *Source) connect(ctx context.Context) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := client.ConnectWithDialer(ctx, "tcp", s.addr(), s.user, s.password, s.database, d.DialContext, func(c *client.Conn) error {
		if s.tls != nil {
			c.SetTLSConfig(s.tls)
		}
		c.ReadTimeout = 5 * time.Minute
		c.WriteTimeout = time.Minute
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.Redacted(), s.classify(err))
	}
	for _, q := range []string{"SET NAMES utf8mb4", "SET SESSION time_zone = '+00:00'"} {
		if _, err := conn.Execute(q); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s on %s: %w", q, s.Redacted(), s.classify(err))
		}
	}
	return conn, nil
}

// resultString is a result's value as a string of its own: go-mysql's
// GetString points into the result's buffers, which Close hands to the
// next query (names read from a closed result came back garbled).
func resultString(res *gomysql.Result, row, col int) (string, error) {
	v, err := res.GetString(row, col)
	return strings.Clone(v), err
}

// variables reads global variables by name; a variable the server does not
// have is missing from the map.
func variables(conn *client.Conn, names ...string) (map[string]string, error) {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "'" + n + "'"
	}
	res, err := conn.Execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + strings.Join(quoted, ",") + ")")
	if err != nil {
		return nil, err
	}
	defer res.Close()
	out := map[string]string{}
	for i := range res.RowNumber() {
		k, _ := resultString(res, i, 0)
		v, _ := resultString(res, i, 1)
		out[strings.ToLower(k)] = v
	}
	return out, nil
}

func on(v string) bool {
	switch strings.ToUpper(v) {
	case "ON", "1", "TRUE", "YES":
		return true
	}
	return false
}

// setup checks that the server is ready for binlog capture; each failure
// names the fix.
func (s *Source) setup(ctx context.Context, conn *client.Conn) (*serverInfo, error) {
	vars, err := variables(conn, "version", "version_comment", "log_bin", "binlog_format", "binlog_row_image",
		"binlog_row_metadata", "server_id", "gtid_mode", "binlog_expire_logs_seconds", "expire_logs_days",
		"binlog_rows_query_log_events", "binlog_annotate_row_events", "binlog_row_value_options")
	if err != nil {
		return nil, fmt.Errorf("read server variables: %w", s.classify(err))
	}
	info := &serverInfo{version: vars["version"], collations: map[uint64]string{}}
	isMaria := strings.Contains(strings.ToLower(vars["version"]+" "+vars["version_comment"]), "mariadb")
	info.flavor = FlavorMySQL
	if isMaria {
		info.flavor = FlavorMariaDB
	}
	if s.cfg.Flavor != "" && s.cfg.Flavor != info.flavor {
		return nil, fmt.Errorf("%w: flavor %s is configured but the server is %s %s: set flavor: %s (or use a %s:// URL)", ErrConfig, s.cfg.Flavor, info.flavor, info.version, info.flavor, info.flavor)
	}
	cnf := "my.cnf ([mysqld] section)"
	if isMaria {
		cnf = "the server's configuration ([mariadbd] or [mysqld] section)"
	}
	if !on(vars["log_bin"]) {
		return nil, fmt.Errorf("%w: the binary log is off (log_bin = %s): add log_bin = binlog, binlog_format = ROW and server_id = 1 to %s and restart the server", ErrSetup, vars["log_bin"], cnf)
	}
	if f := strings.ToUpper(vars["binlog_format"]); f != "ROW" {
		return nil, fmt.Errorf("%w: binlog_format is %s, so row changes are not in the binlog as rows: run SET GLOBAL binlog_format = 'ROW' and add binlog_format = ROW to %s (sessions already open keep writing %s until they reconnect)", ErrSetup, f, cnf, f)
	}
	if img := strings.ToUpper(vars["binlog_row_image"]); img != "" && img != "FULL" {
		s.logger.Warn(fmt.Sprintf("set-up: binlog_row_image is %s: before images hold only the key columns and after images only the changed ones; run SET GLOBAL binlog_row_image = 'FULL' and add binlog_row_image = FULL to %s for complete images", img, cnf))
	}
	if md, ok := vars["binlog_row_metadata"]; ok {
		if strings.ToUpper(md) != "FULL" {
			return nil, fmt.Errorf("%w: binlog_row_metadata is %s, so table-map events carry no column names and old events would be decoded with today's table definition (mislabelling columns after an ALTER TABLE): run SET GLOBAL binlog_row_metadata = 'FULL' and add binlog_row_metadata = FULL to %s", ErrSetup, md, cnf)
		}
		info.rowMetadata = true
	} else {
		s.logger.Warn("set-up: this server has no binlog_row_metadata (MySQL before 8.0.1, MariaDB before 10.5): column names come from the live information_schema, so rows written before an ALTER TABLE that Stele has not read yet may be mislabelled; upgrade the server for the schema as it was", "version", info.version)
	}
	id, _ := strconv.ParseUint(vars["server_id"], 10, 32)
	info.serverID = uint32(id)
	if id == 0 {
		return nil, fmt.Errorf("%w: server_id is 0, and a server with id 0 refuses replicas: add server_id = 1 to %s and restart it (or SET GLOBAL server_id = 1)", ErrSetup, cnf)
	}
	if uint32(id) == s.cfg.ServerID {
		return nil, fmt.Errorf("%w: the source's server id %d is the server's own server_id: give the source another one (URL parameter server_id=n, distinct from every server and replica)", ErrConfig, id)
	}
	if isMaria {
		info.gtidMode = true
		info.statements = on(vars["binlog_annotate_row_events"])
		if !info.statements {
			s.logger.Warn(fmt.Sprintf("set-up: binlog_annotate_row_events is OFF, so statement comments (/* stele {...} */) cannot name the actor; run SET GLOBAL binlog_annotate_row_events = ON and add it to %s, or use the stele_context table", cnf))
		}
	} else {
		info.gtidMode = strings.ToUpper(vars["gtid_mode"]) == "ON"
		info.statements = on(vars["binlog_rows_query_log_events"])
		if !info.statements {
			s.logger.Info(fmt.Sprintf("set-up: binlog_rows_query_log_events is OFF, so statement comments (/* stele {...} */) cannot name the actor; run SET GLOBAL binlog_rows_query_log_events = ON and add it to %s, or use the stele_context table", cnf))
		}
		if strings.Contains(strings.ToUpper(vars["binlog_row_value_options"]), "PARTIAL_JSON") {
			s.logger.Warn(fmt.Sprintf("set-up: binlog_row_value_options = PARTIAL_JSON: updated JSON values are logged as diffs and recorded as {\"$json_diff\": …}; SET GLOBAL binlog_row_value_options = '' and remove it from %s for whole values", cnf))
		}
	}
	if err := s.checkRetention(vars, cnf); err != nil {
		return nil, err
	}
	if err := s.checkGrants(conn); err != nil {
		return nil, err
	}
	// Reading the binlog's status needs REPLICATION CLIENT (BINLOG MONITOR).
	if _, err := masterStatus(conn); err != nil {
		return nil, fmt.Errorf("read the binlog position: %w", s.classify(err))
	}
	if res, err := conn.Execute("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL"); err == nil {
		for i := range res.RowNumber() {
			id, _ := res.GetUint(i, 0)
			cs, _ := resultString(res, i, 1)
			info.collations[id] = cs
		}
		res.Close()
	} else {
		s.logger.Warn("set-up: cannot read information_schema.COLLATIONS; character sets come from a built-in list", "err", err)
	}
	if s.cfg.CreateContextTable {
		if _, err := conn.Execute(strings.Replace(mysqlctx.TableDDL, "stele_context", "`"+s.cfg.ContextTable+"`", 1)); err != nil {
			return nil, fmt.Errorf("create the context table %s.%s: %w", s.database, s.cfg.ContextTable, s.classify(err))
		}
	}
	s.logger.Info("set-up: server ready for binlog capture", "flavor", info.flavor, "version", info.version,
		"gtid", info.gtidMode, "row_metadata", info.rowMetadata, "server_id", info.serverID, "replica_server_id", s.cfg.ServerID)
	return info, nil
}

// checkRetention refuses binlog retention shorter than MaxLag.
func (s *Source) checkRetention(vars map[string]string, cnf string) error {
	var retention time.Duration
	var name string
	if v, err := strconv.ParseFloat(vars["binlog_expire_logs_seconds"], 64); err == nil && v > 0 {
		retention, name = time.Duration(v)*time.Second, "binlog_expire_logs_seconds"
	}
	if v, err := strconv.ParseFloat(vars["expire_logs_days"], 64); err == nil && v > 0 {
		if d := time.Duration(v * 24 * float64(time.Hour)); retention == 0 || d < retention {
			retention, name = d, "expire_logs_days"
		}
	}
	if retention == 0 || retention >= s.cfg.MaxLag {
		return nil
	}
	secs := int64(s.cfg.MaxLag / time.Second)
	return fmt.Errorf("%w: the server purges binlogs after %s (%s), less than this source's max_lag of %s: a Stele outage longer than that would lose changes; run SET GLOBAL binlog_expire_logs_seconds = %d and set it in %s (and expire_logs_days = 0), or lower max_lag",
		ErrSetup, retention, name, s.cfg.MaxLag, secs, cnf)
}

// checkGrants reads SHOW GRANTS for REPLICATION SLAVE and REPLICATION
// CLIENT (BINLOG MONITOR on MariaDB 10.5+). Grants through roles are not
// followed: with a role, a missing privilege shows later as the server's
// own error (still classified as ErrPermission).
func (s *Source) checkGrants(conn *client.Conn) error {
	res, err := conn.Execute("SHOW GRANTS")
	if err != nil {
		s.logger.Warn("set-up: cannot read the user's grants", "err", err)
		return nil
	}
	defer res.Close()
	var slave, clientPriv, role bool
	for i := range res.RowNumber() {
		g, _ := resultString(res, i, 0)
		u := strings.ToUpper(g)
		if !strings.Contains(u, " ON ") {
			role = true
			continue
		}
		if !strings.Contains(u, " ON *.* ") {
			continue
		}
		if strings.Contains(u, "ALL PRIVILEGES") {
			return nil
		}
		slave = slave || strings.Contains(u, "REPLICATION SLAVE") || strings.Contains(u, "REPLICATION REPLICA")
		clientPriv = clientPriv || strings.Contains(u, "REPLICATION CLIENT") || strings.Contains(u, "BINLOG MONITOR") || strings.Contains(u, "SUPER")
	}
	if slave && clientPriv || role {
		return nil
	}
	var missing []string
	if !slave {
		missing = append(missing, "REPLICATION SLAVE")
	}
	if !clientPriv {
		missing = append(missing, "REPLICATION CLIENT")
	}
	return fmt.Errorf("%w: user %s lacks %s on *.*: %s", ErrPermission, s.user, strings.Join(missing, " and "), s.grantFix())
}

// masterStatus reads the binlog's current file and offset, and the
// executed GTID set MySQL reports with them.
func masterStatus(conn sqlExecer) (binlogPos, error) {
	res, err := conn.Execute("SHOW MASTER STATUS")
	if err != nil {
		var me *gomysql.MyError
		if !asMyError(err, &me) || me.Code != gomysql.ER_PARSE_ERROR {
			return binlogPos{}, err
		}
		// MySQL 8.4 renamed it.
		if res, err = conn.Execute("SHOW BINARY LOG STATUS"); err != nil {
			return binlogPos{}, err
		}
	}
	defer res.Close()
	if res.RowNumber() == 0 {
		return binlogPos{}, fmt.Errorf("SHOW MASTER STATUS returned no row: is the binary log on?")
	}
	var p binlogPos
	p.File, _ = resultString(res, 0, 0)
	off, _ := res.GetUint(0, 1)
	p.Offset = uint32(off)
	if len(res.Fields) >= 5 {
		p.GTID, _ = resultString(res, 0, 4)
	}
	return p, nil
}

// binlogFiles lists SHOW BINARY LOGS: each file and its size.
func binlogFiles(conn *client.Conn) ([]string, []uint64, error) {
	res, err := conn.Execute("SHOW BINARY LOGS")
	if err != nil {
		return nil, nil, err
	}
	defer res.Close()
	var names []string
	var sizes []uint64
	for i := range res.RowNumber() {
		n, _ := resultString(res, i, 0)
		sz, _ := res.GetUint(i, 1)
		names = append(names, n)
		sizes = append(sizes, sz)
	}
	return names, sizes, nil
}
