package keystore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The cluster keystore: the same keys, wrapped by the same MasterKey, kept
// in a JetStream KV bucket (R3 in a cluster) that every Stele node reads.
//
// # Bucket layout
//
//	master            master body: master id + a wrapped canary, checked on open
//	k.<kid>           key body (the file store's entry body): the only
//	                  messages that hold key material, each written once
//	n.<kind>.<name>   the kid that is the live generation of (kind, name);
//	                  name in unpadded base64url. Created with compare-and-set,
//	                  so nodes racing to create a key end with one
//	d.<kid>           tombstone of a destroyed kid; never deleted
//
// The bucket keeps one value per key (History 1). A kid is written under
// k.<kid> first, then claimed under n.<kind>.<name> with KV Create; the
// loser of a race erases its own k.<kid> and returns the winner's kid.
//
// Destroy writes d.<kid> first (from then on no node serves the kid and no
// creator reuses it), then erases the k.<kid> message with JetStream's
// secure delete — every replica overwrites the message's bytes in its block
// file — then purges the subject's history and clears the name. What the
// bytes leave behind in each server's raft log is described in
// docs/privacy.md ("Keys in a cluster").

const (
	kvMasterKey = "master"
	kvKeyPrefix = "k."
	kvNamePfx   = "n."
	kvTombPfx   = "d."
	// DefaultStaleAfter is how long a KV store keeps serving keys from
	// memory after it last confirmed it has seen every tombstone in the
	// bucket, when Options.StaleAfter is 0.
	DefaultStaleAfter = 5 * time.Second
)

// ErrStale: the KV keystore could not confirm, within Options.StaleAfter,
// that it has seen every key destroyed in the bucket (the NATS servers are
// unreachable or the watch lags); it serves no key until it can.
var ErrStale = errors.New("keystore: cluster keystore is not current with the bucket")

// kvEntry is one key known from the bucket.
type kvEntry struct {
	e   *entry
	rev uint64 // stream sequence of its k.<kid> message
}

// KVStore is the keystore kept in a JetStream KV bucket. It has the
// methods of Store that the privacy layer and the batch MAC use, with the
// same meaning; every key it returns is durable on a quorum of the bucket's
// replicas already, so Sync has nothing left to do.
//
// Every node holds the bucket in memory through a watch (as the file store
// holds its shards), so GetOrCreate and Key answer without a round trip
// for keys that exist. Destruction on another node reaches this one through
// the watch; to bound how long a lagging watch can keep serving a
// destroyed key, a probe asks the stream leader for the newest tombstone
// every StaleAfter/4 and the store refuses keys (ErrStale) once it has not
// confirmed seeing it for StaleAfter. A watch, not a check on each use:
// a round trip per Key would cap reads at the network's rate, while the
// probe costs one request per interval whatever the load.
type KVStore struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream string // the bucket's stream, KV_<bucket>
	prefix string // $KV.<bucket>.
	log    *slog.Logger
	stale  time.Duration

	watcher jetstream.KeyWatcher
	cancel  context.CancelFunc
	done    chan struct{}

	mu         sync.Mutex
	master     MasterKey
	entries    map[kidT]kvEntry
	names      map[nameKey]kidT
	destroyed  map[kidT]struct{}
	scrub      map[kidT]uint64 // destroyed kids whose entry is not erased yet, by revision
	cache      *keyCache
	lastRev    uint64        // newest revision the watch applied
	applied    chan struct{} // closed and replaced whenever lastRev moves
	freshUntil time.Time
	staleSaid  bool
	onDestroy  []func(kids []string)
	failed     error
	closed     bool
}

// OpenKV opens (or creates) the keystore in the KV bucket named bucket,
// wrapped under master. opts.Replicas sets the bucket's replicas when it is
// created (3 in a cluster; 0 means 1). It returns once this node has read
// the whole bucket.
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket string, master MasterKey, opts Options) (*KVStore, error) {
	if master == nil {
		return nil, errors.New("keystore: open KV: master key is nil")
	}
	if js == nil {
		return nil, errors.New("keystore: open KV: JetStream is nil")
	}
	if bucket == "" {
		return nil, errors.New("keystore: open KV: bucket is empty; want a bucket name such as STELE_KEYS")
	}
	logger, cacheSize := opts.defaults()
	replicas := max(opts.Replicas, 1)
	stale := opts.StaleAfter
	if stale <= 0 {
		stale = DefaultStaleAfter
	}
	kv, err := createBucket(ctx, js, bucket, replicas)
	if err != nil {
		return nil, err
	}
	s := &KVStore{
		js:        js,
		kv:        kv,
		stream:    "KV_" + bucket,
		prefix:    "$KV." + bucket + ".",
		log:       logger.With("component", "keystore", "bucket", bucket),
		stale:     stale,
		master:    master,
		entries:   make(map[kidT]kvEntry),
		names:     make(map[nameKey]kidT),
		destroyed: make(map[kidT]struct{}),
		scrub:     make(map[kidT]uint64),
		cache:     newKeyCache(cacheSize),
		applied:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	if err := s.checkMaster(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("keystore: open KV %s: watch: %w", bucket, err)
	}
	s.watcher = w
	// The initial values end with a nil entry; everything after is live.
	for initial := true; initial; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				cancel()
				return nil, fmt.Errorf("keystore: open KV %s: watch ended while reading the bucket", bucket)
			}
			if e == nil {
				initial = false
				continue
			}
			s.apply(e)
		case <-ctx.Done():
			cancel()
			return nil, fmt.Errorf("keystore: open KV %s: read the bucket: %w", bucket, ctx.Err())
		}
	}
	if err := s.probe(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("keystore: open KV %s: %w", bucket, err)
	}
	s.scrubDestroyed(ctx)
	go s.follow(wctx)
	s.mu.Lock()
	n, d := len(s.entries), len(s.destroyed)
	s.mu.Unlock()
	s.log.Info("keystore opened", "master", master.ID(), "replicas", replicas, "keys", n, "destroyed", d)
	return s, nil
}

// createBucket creates the bucket, or opens it if it exists. The first
// creation in a new cluster can fail until JetStream has a meta leader, so
// it is retried until ctx ends.
//
// The bucket's stream is made here rather than by CreateKeyValue because
// KV buckets deny message deletes, and a stream cannot drop that later:
// erasure needs the secure delete of one message. Otherwise the stream is
// the one CreateKeyValue makes (subjects, rollups, direct gets, one value
// per key), so the KV API works on it unchanged.
// attemptTimeout bounds one attempt of createBucket.
const attemptTimeout = 5 * time.Second

func createBucket(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.KeyValue, error) {
	cfg := jetstream.StreamConfig{
		Name:              "KV_" + bucket,
		Description:       "Stele keystore: data keys wrapped by the master key",
		Subjects:          []string{"$KV." + bucket + ".>"},
		MaxMsgsPerSubject: 1, // a value with key bytes is never overwritten, only securely erased
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowRollup:       true,
		DenyDelete:        false,
		Duplicates:        2 * time.Minute,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
	}
	var last error
	for {
		// Each attempt has its own deadline: while a new cluster places
		// its meta leader a JetStream API request can go unanswered, and
		// with only ctx's deadline one lost request would use it all up.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		st, err := js.Stream(actx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = js.CreateStream(actx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				cancel()
				continue // created by another node meanwhile
			}
		}
		if err == nil {
			if st.CachedInfo().Config.DenyDelete {
				cancel()
				return nil, fmt.Errorf("keystore: open KV %s: the bucket denies message deletes, so keys could not be erased; it was not created by Stele: use another bucket name", bucket)
			}
			kv, kerr := js.KeyValue(actx, bucket)
			if kerr == nil {
				cancel()
				return kv, nil
			}
			// Right after another node created the stream its info can
			// still be missing on this server (the stream's replicas are
			// being placed), which the KV API reports as no bucket: a
			// moment later it is there.
			if !errors.Is(kerr, jetstream.ErrBucketNotFound) && !errors.Is(kerr, context.DeadlineExceeded) {
				cancel()
				return nil, fmt.Errorf("keystore: open KV %s: %w", bucket, kerr)
			}
			err = kerr
		}
		cancel()
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("keystore: open KV %s: %w (last: %w)", bucket, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *KVStore) checkMaster(ctx context.Context) error {
	mb, err := masterBody(ctx, s.master)
	if err != nil {
		return fmt.Errorf("keystore: open KV: %w", err)
	}
	_, err = s.kv.Create(ctx, kvMasterKey, mb)
	if err == nil {
		return nil
	}
	if !isCASConflict(err) {
		return fmt.Errorf("keystore: open KV: write the master canary: %w", err)
	}
	// The bucket allows direct gets, which any replica answers: right
	// after another node created the canary, this server's replica may
	// not hold it yet (seen with six nodes starting at once).
	e, err := s.kv.Get(ctx, kvMasterKey)
	for errors.Is(err, jetstream.ErrKeyNotFound) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("keystore: open KV: read the master canary: %w (last: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
		e, err = s.kv.Get(ctx, kvMasterKey)
	}
	if err != nil {
		return fmt.Errorf("keystore: open KV: read the master canary: %w", err)
	}
	if err := checkMasterBody(ctx, s.master, e.Value()); err != nil {
		return fmt.Errorf("keystore: open KV: %w", err)
	}
	return nil
}

func nameKeyOf(kind Kind, name string) string {
	return kvNamePfx + kind.String() + "." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

func parseNameKey(key string) (nameKey, bool) {
	for _, k := range []Kind{KindSubject, KindPeriod, KindSystem} {
		p := kvNamePfx + k.String() + "."
		if len(key) > len(p) && key[:len(p)] == p {
			name, err := base64.RawURLEncoding.DecodeString(key[len(p):])
			return nameKey{k, string(name)}, err == nil
		}
	}
	return nameKey{}, false
}

func kidFromKey(key, prefix string) (kidT, bool) {
	if len(key) <= len(prefix) || key[:len(prefix)] != prefix {
		return kidT{}, false
	}
	return parseKid(key[len(prefix):])
}

// apply folds one watched value into memory.
func (s *KVStore) apply(e jetstream.KeyValueEntry) {
	key, put := e.Key(), e.Operation() == jetstream.KeyValuePut
	var gone []string
	s.mu.Lock()
	switch {
	case len(key) > len(kvKeyPrefix) && key[:len(kvKeyPrefix)] == kvKeyPrefix:
		k, ok := kidFromKey(key, kvKeyPrefix)
		if !ok {
			break
		}
		if !put {
			delete(s.entries, k)
			delete(s.scrub, k)
			break
		}
		if _, dead := s.destroyed[k]; dead {
			s.scrub[k] = e.Revision() // erased by Destroy or the next open
			break
		}
		ent, err := decodeEntry(e.Value())
		if err != nil || ent.kid != k {
			s.log.Warn("keystore: bucket value does not decode as a key entry; ignored", "key", kvKeyPrefix+formatKid(k), "revision", e.Revision())
			break
		}
		s.entries[k] = kvEntry{e: ent, rev: e.Revision()}
	case len(key) > len(kvNamePfx) && key[:len(kvNamePfx)] == kvNamePfx:
		nk, ok := parseNameKey(key)
		if !ok {
			break
		}
		k, ok := parseKid(string(e.Value()))
		if _, dead := s.destroyed[k]; put && ok && !dead {
			s.names[nk] = k
		} else if !put {
			delete(s.names, nk)
		}
	case len(key) > len(kvTombPfx) && key[:len(kvTombPfx)] == kvTombPfx:
		k, ok := kidFromKey(key, kvTombPfx)
		if !ok || !put {
			break
		}
		// Told even if this node destroyed it: hooks are idempotent, and
		// every node then hears every destruction the same way.
		gone = append(gone, formatKid(k))
		s.forgetLocked(k)
	}
	if r := e.Revision(); r > s.lastRev {
		s.lastRev = r
		close(s.applied)
		s.applied = make(chan struct{})
	}
	hooks := s.onDestroy
	s.mu.Unlock()
	if len(gone) > 0 {
		for _, h := range hooks {
			h(gone)
		}
	}
}

// forgetLocked marks k destroyed in memory; its entry, if this node holds
// it, waits in scrub until its message is erased. s.mu held.
func (s *KVStore) forgetLocked(k kidT) {
	s.destroyed[k] = struct{}{}
	s.cache.remove(k)
	if ent, ok := s.entries[k]; ok {
		nk := nameKey{ent.e.kind, ent.e.name}
		if s.names[nk] == k {
			delete(s.names, nk)
		}
		s.scrub[k] = ent.rev
		delete(s.entries, k)
	}
}

// OnDestroy registers fn to be called with the kids destroyed anywhere in
// the cluster, as this node learns of them — and with every kid it knows
// when it stops being current (ErrStale) — so caches of keys derived from
// them (the privacy layer's) are dropped too.
func (s *KVStore) OnDestroy(fn func(kids []string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onDestroy = append(s.onDestroy, fn)
}

// follow applies watch updates and runs the freshness probe until Close.
func (s *KVStore) follow(ctx context.Context) {
	defer close(s.done)
	updates := s.watcher.Updates()
	go s.probeLoop(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				return
			}
			if e != nil {
				s.apply(e)
			}
		}
	}
}

func (s *KVStore) probeLoop(ctx context.Context) {
	t := time.NewTicker(s.stale / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.stale/2)
		err := s.probe(pctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			continue
		}
		s.mu.Lock()
		expired := time.Now().After(s.freshUntil) && !s.staleSaid
		var all []string
		if expired {
			s.staleSaid = true
			for k := range s.entries {
				all = append(all, formatKid(k))
			}
			s.cache.clearAll()
		}
		hooks := s.onDestroy
		s.mu.Unlock()
		if expired {
			s.log.Warn("keystore: cannot confirm the bucket's destroyed keys; serving no key until it can", "stale_after", s.stale, "err", err)
			for _, h := range hooks {
				h(all)
			}
		}
	}
}

// probe asks the stream leader for the newest tombstone and waits until the
// watch has applied it; then every key destroyed before the probe started
// is known here, and keys may be served for StaleAfter from that start.
func (s *KVStore) probe(ctx context.Context) error {
	start := time.Now()
	seq, err := s.lastTombstone(ctx)
	if err != nil {
		return err
	}
	for {
		s.mu.Lock()
		if s.lastRev >= seq {
			s.freshUntil = start.Add(s.stale)
			if s.staleSaid {
				s.staleSaid = false
				s.log.Info("keystore: current with the bucket again")
			}
			s.mu.Unlock()
			return nil
		}
		ch := s.applied
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for the watch to reach revision %d: %w", seq, ctx.Err())
		}
	}
}

// lastTombstone is the stream sequence of the newest d.<kid> (0 if none),
// asked of the stream leader: a direct get may be answered by a replica
// that is behind.
func (s *KVStore) lastTombstone(ctx context.Context) (uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": s.prefix + kvTombPfx + ">"})
	msg, err := s.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+s.stream, req)
	if err != nil {
		return 0, fmt.Errorf("ask for the newest tombstone: %w", err)
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("ask for the newest tombstone: answer is not JSON: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return 0, nil // nothing destroyed yet
	case resp.Error != nil:
		return 0, fmt.Errorf("ask for the newest tombstone: %s (code %d)", resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return 0, errors.New("ask for the newest tombstone: empty answer")
	}
	return resp.Message.Seq, nil
}

// usable reports why the store cannot serve; s.mu held.
func (s *KVStore) usable() error {
	if s.closed {
		return ErrClosed
	}
	if s.failed != nil {
		return s.failed
	}
	if time.Now().After(s.freshUntil) {
		return fmt.Errorf("%w: last confirmed more than %s ago", ErrStale, s.stale)
	}
	return nil
}

// GetOrCreate returns the live key of (kind, name), creating it in the
// bucket if there is none. Two nodes creating the same name at once end
// with one key: the name is claimed with compare-and-set and the loser
// returns the winner's key. The key is durable when it returns.
func (s *KVStore) GetOrCreate(ctx context.Context, kind Kind, name string) (kid string, key []byte, err error) {
	if err := validName(kind, name); err != nil {
		return "", nil, err
	}
	nk := nameKey{kind, name}
	nkey := nameKeyOf(kind, name)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		if attempt > 0 {
			// A destruction or a racing creation is in flight: give it
			// the moment it needs rather than spin on the servers.
			select {
			case <-ctx.Done():
				return "", nil, ctx.Err()
			case <-time.After(time.Duration(min(attempt, 20)) * 5 * time.Millisecond):
			}
		}
		s.mu.Lock()
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			return "", nil, err
		}
		k, known := s.names[nk]
		master := s.master
		s.mu.Unlock()
		if known {
			key, err := s.key(ctx, k)
			if errors.Is(err, ErrDestroyed) {
				// Ask the bucket next time round, which also clears a
				// claim a cut-short Destroy left behind.
				s.mu.Lock()
				if s.names[nk] == k {
					delete(s.names, nk)
				}
				s.mu.Unlock()
				continue
			}
			return formatKid(k), key, err
		}
		// Another node may have claimed the name before our watch shows it.
		if cur, err := s.kv.Get(ctx, nkey); err == nil {
			if k, ok := parseKid(string(cur.Value())); ok {
				if s.isDestroyed(ctx, k) {
					s.clearName(ctx, nkey, cur.Revision())
					continue
				}
				key, err := s.key(ctx, k)
				if errors.Is(err, ErrUnknownKey) {
					continue // claimed, entry not visible yet
				}
				if err == nil {
					s.learnName(nk, k)
				}
				return formatKid(k), key, err
			}
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return "", nil, fmt.Errorf("keystore: create %s key: read the name: %w", kind, err)
		}

		e := &entry{kind: kind, name: name, masterID: master.ID()}
		if _, err := rand.Read(e.kid[:]); err != nil {
			return "", nil, fmt.Errorf("keystore: create %s key: kid: %w", kind, err)
		}
		if key, err = newKey(ctx, master, e); err != nil {
			return "", nil, err
		}
		kidText := formatKid(e.kid)
		// The entry first, then the claim: a claimed name always has its
		// entry. A crash in between leaves an entry no name points to,
		// wrapped, never handed out, so nothing is sealed under it.
		rev, err := s.kv.Create(ctx, kvKeyPrefix+kidText, appendEntryBody(nil, e))
		if err != nil {
			clear(key)
			return "", nil, fmt.Errorf("keystore: create %s key: write the entry: %w", kind, err)
		}
		if _, err := s.kv.Create(ctx, nkey, []byte(kidText)); err != nil {
			clear(key)
			// Lost the race (or failed): erase our entry, then use theirs.
			if eerr := s.eraseEntry(ctx, e.kid, rev); eerr != nil {
				s.log.Warn("keystore: erase the entry of a lost creation race", "err", eerr)
			}
			if isCASConflict(err) {
				continue
			}
			return "", nil, fmt.Errorf("keystore: create %s key: claim the name: %w", kind, err)
		}
		s.mu.Lock()
		if _, dead := s.destroyed[e.kid]; !dead {
			s.entries[e.kid] = kvEntry{e: e, rev: rev}
			s.names[nk] = e.kid
			s.cache.put(e.kid, key)
		}
		s.mu.Unlock()
		return kidText, key, nil
	}
}

func (s *KVStore) learnName(nk nameKey, k kidT) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dead := s.destroyed[k]; !dead {
		s.names[nk] = k
	}
}

// isDestroyed reports whether k has a tombstone, asking the bucket when
// memory does not know.
func (s *KVStore) isDestroyed(ctx context.Context, k kidT) bool {
	s.mu.Lock()
	_, dead := s.destroyed[k]
	s.mu.Unlock()
	if dead {
		return true
	}
	_, err := s.kv.Get(ctx, kvTombPfx+formatKid(k))
	if err == nil {
		s.mu.Lock()
		s.forgetLocked(k)
		s.mu.Unlock()
		return true
	}
	return false
}

// clearName removes a name claim whose kid is destroyed (a Destroy that
// stopped before clearing it), if the claim is still at rev.
func (s *KVStore) clearName(ctx context.Context, nkey string, rev uint64) {
	if err := s.kv.Delete(ctx, nkey, jetstream.LastRevision(rev)); err != nil && !isCASConflict(err) {
		s.log.Warn("keystore: clear the name of a destroyed key", "err", err)
	}
}

// isGone reports that a message to delete no longer exists: erased by an
// earlier attempt or by the creator that lost a race. The client flattens
// the server's error into text (ErrMsgDeleteUnsuccessful: "...
// err_code=10043 ..."), so the code is read from there.
func isGone(err error) bool {
	return errors.Is(err, jetstream.ErrMsgNotFound) ||
		(errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && strings.Contains(err.Error(), "err_code=10043"))
}

// isCASConflict reports a lost compare-and-set: the key exists, or its
// revision moved. Replicated streams answer with another error code than
// R1 ones, and the client maps only some paths to its sentinels.
func isCASConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Key returns the data key for kid: ErrDestroyed if it was destroyed
// anywhere in the cluster, ErrUnknownKey if it never existed.
func (s *KVStore) Key(ctx context.Context, kid string) ([]byte, error) {
	k, ok := parseKid(kid)
	if !ok {
		return nil, fmt.Errorf("keystore: kid %q is malformed, want %d base64url characters (or %d hex digits): %w", truncate(kid, 64), kidTextLen, legacyKidText, ErrUnknownKey)
	}
	return s.key(ctx, k)
}

func (s *KVStore) key(ctx context.Context, k kidT) ([]byte, error) {
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if _, dead := s.destroyed[k]; dead {
		s.mu.Unlock()
		return nil, fmt.Errorf("keystore: kid %s: %w", k, ErrDestroyed)
	}
	if key, ok := s.cache.get(k); ok {
		s.mu.Unlock()
		return key, nil
	}
	ent, ok := s.entries[k]
	master := s.master
	s.mu.Unlock()
	if !ok {
		// Created on another node and not watched here yet: the bucket
		// is the authority.
		v, err := s.kv.Get(ctx, kvKeyPrefix+formatKid(k))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if s.isDestroyed(ctx, k) {
				return nil, fmt.Errorf("keystore: kid %s: %w", k, ErrDestroyed)
			}
			return nil, fmt.Errorf("keystore: kid %s: %w", k, ErrUnknownKey)
		case err != nil:
			return nil, fmt.Errorf("keystore: kid %s: read the bucket: %w", k, err)
		}
		e, err := decodeEntry(v.Value())
		if err != nil || e.kid != k {
			return nil, fmt.Errorf("keystore: kid %s: bucket value does not decode as its entry: %w", k, ErrCorrupt)
		}
		ent = kvEntry{e: e, rev: v.Revision()}
	}
	key, err := unwrapKey(ctx, master, ent.e)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dead := s.destroyed[k]; dead {
		clear(key)
		return nil, fmt.Errorf("keystore: kid %s: %w", k, ErrDestroyed)
	}
	if _, known := s.entries[k]; !known {
		s.entries[k] = ent
	}
	s.cache.put(k, key)
	return key, nil
}

// Sync returns at once (or the reason the store cannot serve): a key is
// durable on a quorum of the bucket's replicas before GetOrCreate returns it.
func (s *KVStore) Sync(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.failed
}

// Destroy erases every generation of (kind, name) from the bucket: a
// tombstone for each kid first (no node serves it, no creator reuses it),
// then the entry's message securely erased on every replica, its subject
// purged and the name cleared. It returns the destroyed kids; none if the
// name had no key. If it fails after the tombstone, the key is no longer
// served and a retry (or the next OpenKV) finishes the erasure.
func (s *KVStore) Destroy(ctx context.Context, kind Kind, name string) (kids []string, err error) {
	if err := validName(kind, name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	nk := nameKey{kind, name}
	nkey := nameKeyOf(kind, name)
	s.mu.Lock()
	if s.closed || s.failed != nil {
		s.mu.Unlock()
		return nil, s.Sync(ctx)
	}
	var ks []kidT
	if k, ok := s.names[nk]; ok {
		ks = append(ks, k)
	}
	for k, ent := range s.entries {
		if ent.e.kind == kind && ent.e.name == name && !slices.Contains(ks, k) {
			ks = append(ks, k) // older generations this node still holds
		}
	}
	s.mu.Unlock()
	var nameRev uint64
	cur, err := s.kv.Get(ctx, nkey)
	switch {
	case err == nil:
		nameRev = cur.Revision()
		if k, ok := parseKid(string(cur.Value())); ok && !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, fmt.Errorf("keystore: destroy %s key: read the name: %w", kind, err)
	}
	if len(ks) == 0 {
		return nil, nil
	}
	for _, k := range ks {
		if _, err := s.kv.Create(ctx, kvTombPfx+formatKid(k), []byte{formatVersion}); err != nil && !isCASConflict(err) {
			return kids, fmt.Errorf("keystore: destroy %s key: write the tombstone: %w", kind, err)
		}
		s.mu.Lock()
		s.forgetLocked(k)
		rev, known := s.scrub[k]
		s.mu.Unlock()
		kids = append(kids, formatKid(k))
		if !known {
			if v, err := s.kv.Get(ctx, kvKeyPrefix+formatKid(k)); err == nil {
				rev = v.Revision()
			}
		}
		if err := s.eraseEntry(ctx, k, rev); err != nil {
			return kids, fmt.Errorf("keystore: destroy %s key: recorded, key no longer served, but erasing it from the bucket failed (retried by Destroy and OpenKV): %w", kind, err)
		}
	}
	if nameRev > 0 {
		s.clearName(ctx, nkey, nameRev)
	}
	s.log.Info("keystore: destroyed", "kind", kind.String(), "generations", len(kids), "took", time.Since(start))
	return kids, nil
}

// eraseEntry securely erases the k.<kid> message at rev (JetStream
// overwrites its bytes on every replica) and purges the subject, so no
// earlier value of it survives either.
func (s *KVStore) eraseEntry(ctx context.Context, k kidT, rev uint64) error {
	if rev > 0 {
		st, err := s.js.Stream(ctx, s.stream)
		if err != nil {
			return fmt.Errorf("erase kid %s: %w", k, err)
		}
		if err := st.SecureDeleteMsg(ctx, rev); err != nil && !isGone(err) {
			return fmt.Errorf("erase kid %s: secure delete of message %d: %w", k, rev, err)
		}
	}
	if err := s.kv.Purge(ctx, kvKeyPrefix+formatKid(k)); err != nil {
		return fmt.Errorf("erase kid %s: purge its history: %w", k, err)
	}
	s.mu.Lock()
	delete(s.entries, k)
	delete(s.scrub, k)
	s.mu.Unlock()
	return nil
}

// scrubDestroyed finishes erasures a Destroy left half done: an entry
// still in the bucket whose kid has a tombstone.
func (s *KVStore) scrubDestroyed(ctx context.Context) {
	s.mu.Lock()
	left := make(map[kidT]uint64, len(s.scrub))
	for k, rev := range s.scrub {
		left[k] = rev
	}
	s.mu.Unlock()
	for k, rev := range left {
		if err := s.eraseEntry(ctx, k, rev); err != nil {
			s.log.Warn("keystore: finish erasing a destroyed key", "err", err)
		}
	}
}

// Names lists the live names of kind, sorted.
func (s *KVStore) Names(kind Kind) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return namesOf(s.names, kind)
}

// Len is the number of live keys this node knows.
func (s *KVStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// MasterID is the id of the master key the bucket is wrapped under.
func (s *KVStore) MasterID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.master.ID()
}

// Close stops the watch and drops every unwrapped key from memory. The
// bucket and its keys stay.
func (s *KVStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cache.clearAll()
	s.mu.Unlock()
	err := s.watcher.Stop()
	s.cancel()
	<-s.done
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("keystore: close KV: %w", err)
	}
	return nil
}
