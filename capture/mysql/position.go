package mysql

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/uuid"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/stele/stele/capture"
)

// Position-store keys.
const (
	posKeyGTID   = "gtid"   // the executed GTID set after the last durable transaction
	posKeyBinlog = "binlog" // file:offset just past it
	posKeyFlavor = "flavor"
)

// binlogPos is the source's position: just past a committed transaction.
// In GTID mode (every MariaDB server, MySQL with gtid_mode = ON) streaming
// resumes from the GTID set; otherwise from file:offset. Both are kept.
type binlogPos struct {
	GTIDMode bool
	GTID     string // executed GTID set (may be empty in GTID mode)
	File     string
	Offset   uint32
}

func (p binlogPos) binlog() string {
	if p.File == "" {
		return ""
	}
	return p.File + ":" + strconv.FormatUint(uint64(p.Offset), 10)
}

// String is the position as Stats and logs show it.
func (p binlogPos) String() string {
	if p.GTIDMode {
		if p.GTID == "" {
			return "gtid:(empty)"
		}
		return p.GTID
	}
	return p.binlog()
}

func (p binlogPos) positions(flavor string) capture.Positions {
	out := capture.Positions{posKeyFlavor: flavor}
	if b := p.binlog(); b != "" {
		out[posKeyBinlog] = b
	}
	if p.GTIDMode {
		out[posKeyGTID] = p.GTID
	}
	return out
}

// positionFrom reads a stored position (ok false: none stored).
func positionFrom(stored capture.Positions) (binlogPos, bool, error) {
	var p binlogPos
	gtid, hasGTID := stored[posKeyGTID]
	b, hasBinlog := stored[posKeyBinlog]
	if !hasGTID && !hasBinlog {
		return p, false, nil
	}
	p.GTIDMode, p.GTID = hasGTID, gtid
	if hasBinlog {
		f, o, err := parseBinlogPos(b)
		if err != nil {
			return p, false, err
		}
		p.File, p.Offset = f, o
	}
	return p, true, nil
}

// parseBinlogPos parses "file:offset".
func parseBinlogPos(s string) (string, uint32, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("binlog position %q: want file:offset", s)
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("binlog position %q: offset: %w", s, err)
	}
	return s[:i], uint32(n), nil
}

// gtidSet is the executed GTID set of one flavor, advanced as transactions
// commit.
type gtidSet struct {
	flavor string
	set    gomysql.GTIDSet
}

func parseGTIDSet(flavor, s string) (*gtidSet, error) {
	set, err := gomysql.ParseGTIDSet(flavor, s)
	if err != nil {
		return nil, fmt.Errorf("parse %s GTID set %q: %w", flavor, s, err)
	}
	return &gtidSet{flavor: flavor, set: set}, nil
}

func (g *gtidSet) String() string { return g.set.String() }

// txGTID is one transaction's GTID, from its GTID event.
type txGTID struct {
	text string // "uuid:n", "uuid:tag:n", "domain-server-seq"; "" for an anonymous transaction
	sid  uuid.UUID
	tag  gomysql.Tag
	gno  int64
	mdb  *gomysql.MariadbGTID
}

// mysqlTxGTID reads a MySQL GTID event; an anonymous one (gtid_mode OFF)
// gives an empty text.
func mysqlTxGTID(e *replication.GTIDEvent, tag gomysql.Tag) (txGTID, error) {
	if e.GNO == 0 {
		return txGTID{}, nil
	}
	sid, err := uuid.FromBytes(e.SID)
	if err != nil {
		return txGTID{}, fmt.Errorf("GTID event: source id: %w", err)
	}
	g := txGTID{sid: sid, tag: tag, gno: e.GNO}
	if tag.String() != "" {
		g.text = fmt.Sprintf("%s:%s:%d", sid, tag, e.GNO)
	} else {
		g.text = fmt.Sprintf("%s:%d", sid, e.GNO)
	}
	return g, nil
}

func mariadbTxGTID(e *replication.MariadbGTIDEvent) txGTID {
	g := e.GTID
	return txGTID{text: fmt.Sprintf("%d-%d-%d", g.DomainID, g.ServerID, g.SequenceNumber), mdb: &g}
}

// add marks g executed.
func (s *gtidSet) add(g txGTID) error {
	if g.text == "" {
		return nil
	}
	switch set := s.set.(type) {
	case *gomysql.MariadbGTIDSet:
		return set.AddSet(g.mdb)
	case *gomysql.MysqlGTIDSet:
		set.AddGTIDWithTag(g.sid, g.tag, g.gno)
		return nil
	}
	return fmt.Errorf("GTID set of unknown type %T", s.set)
}

// StartAt stores gtid (a GTID set of flavor's syntax) as the position of
// the source whose state directory is stateDir, so its first run captures
// from there instead of from the server's current position. It refuses a
// source that already has a position: moving one would skip or repeat
// changes.
func StartAt(ctx context.Context, stateDir, flavor, gtid string) error {
	if _, err := parseGTIDSet(flavor, gtid); err != nil {
		return fmt.Errorf("%w: start GTID set: %w", ErrConfig, err)
	}
	ps, err := capture.OpenPositions(filepath.Join(stateDir, "positions"))
	if err != nil {
		return err
	}
	if _, ok, _ := positionFrom(ps.All()); ok {
		return fmt.Errorf("%w: %s already holds a position", ErrConfig, stateDir)
	}
	return ps.Save(ctx, binlogPos{GTIDMode: true, GTID: gtid}.positions(flavor))
}
