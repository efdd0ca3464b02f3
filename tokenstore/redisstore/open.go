package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Options configure a Store.
type Options struct {
	// URL is redis://[user@]host:port/db, rediss:// for TLS, or with
	// ?master_name= for Sentinel (see the package doc). It never holds a
	// password.
	URL string
	// Password is Redis's password (AUTH), read from a file
	// (COOP_PROXY_STORE_PASSWORD_FILE); SetPassword changes it.
	Password string
	// CAFile is a PEM bundle of the CAs to trust for rediss:// (the
	// system's when ""); CertFile and KeyFile a client certificate and
	// its key, for servers that require one.
	CAFile, CertFile, KeyFile string
	// SealKeys are AES-256 keys (32 bytes each, ParseKeys): the first
	// seals the records, all of them open them.
	SealKeys [][]byte
	// Plaintext stores records unsealed; Open refuses no SealKeys
	// without it. With SealKeys it changes nothing.
	Plaintext bool
	// LockTTL is how long a grant's lock outlives a holder that died;
	// the holder extends it every LockTTL/3. Default 45s.
	LockTTL time.Duration
	// Grace is how long the next holder of a grant's lock waits for a
	// previous holder that never finished (its lock expired, its marker
	// still set: it died, or it or Redis paused) to write its tokens,
	// before it takes over and refreshes itself. Default LockTTL.
	Grace time.Duration
	// WaitReplicas, when positive, is the number of Redis replicas that
	// must acknowledge a write (WAIT) for it to count as durable.
	WaitReplicas int
	// WaitTimeout bounds that WAIT; default 1s.
	WaitTimeout time.Duration
	// Replica names this replica in lock owners and as the writer of
	// what it writes; default "<hostname>-<pid>".
	Replica  string
	Log      *zap.Logger
	Observer Observer // may be nil
}

// Observer is told of the Store's operations, for metrics.
type Observer interface {
	// Op reports one operation: "load", "keys", "update", "delete",
	// "info", "write" (the fenced write inside an update or delete).
	Op(op string, d time.Duration, err error)
	// LockWait reports the time spent waiting for a grant's lock.
	LockWait(d time.Duration)
	// Error reports a failure by kind: "unreachable", "timeout",
	// "lock_lost", "conflict", "unseal", "corrupt", "wait".
	Error(kind string)
}

// Timeouts of every Redis call, so that a Redis that hangs (SIGSTOP, a
// partition) holds no caller for longer, whatever its ctx.
const (
	dialTimeout = 3 * time.Second
	ioTimeout   = 3 * time.Second
	// writeTimeout bounds the fenced write and its WAIT, which run even
	// when the caller's ctx has ended (they may hold a rotated refresh
	// token).
	writeTimeout = 10 * time.Second
)

// Store is a token store in Redis, shared by replicas. Its methods are
// safe for concurrent use.
type Store struct {
	rdb      *redis.Client
	desc     string // "redis://host:port/db": what errors and Info name
	sealer   *sealer
	ttl      time.Duration
	grace    time.Duration
	waitN    int
	waitT    time.Duration
	replica  string
	log      *zap.Logger
	obs      Observer
	password atomic.Pointer[string]

	// queues holds, per grant hash, a channel on which this Store's
	// goroutines queue for the grant's lock: they wait there without
	// polling Redis.
	queues sync.Map // string → chan struct{}
	// releasing counts the releases of abandoned locks under way (see
	// abandon), which Close waits for.
	releasing sync.WaitGroup

	mu   sync.Mutex
	seen map[string]seenGrant // grant name → what this Store last read or wrote
	// unfinished holds, per grant name, a write of new tokens whose
	// outcome is unknown (Redis did not answer): its marker is left in
	// Redis, and the write is tried again, fenced by that marker, before
	// this Store's next lock of the grant (see finish).
	unfinished map[string]fencedWrite
}

// seenGrant is the last copy of a grant this Store read or wrote: what it
// writes back when Redis loses the grant.
type seenGrant struct {
	record  []byte // the encoded record (tokenstore.MarshalRecord)
	version int64
}

// Open returns the store at o.URL. It checks the URL, the TLS files and
// the keys, but does not connect: a replica starts, and serves from
// memory, while Redis is down.
func Open(_ context.Context, o Options) (*Store, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		// url's error quotes the URL: it might hold a password.
		return nil, errors.New("redisstore: the store URL does not parse; want redis://host:port/db or rediss://host:port/db")
	}
	q := u.Query()
	if _, ok := u.User.Password(); ok || q.Has("password") || q.Has("sentinel_password") {
		return nil, errors.New("redisstore: the store URL holds a password: remove it and put the password in the file named by COOP_PROXY_STORE_PASSWORD_FILE")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redisstore: the store URL's scheme is %q; want redis:// or rediss:// (TLS)", u.Scheme)
	}
	if len(o.SealKeys) == 0 && !o.Plaintext {
		return nil, errors.New("redisstore: no keys to seal the tokens with: set COOP_PROXY_STORE_KEY_FILE, or COOP_PROXY_STORE_PLAINTEXT=true to keep them in Redis unencrypted")
	}
	sealer, err := newSealer(o.SealKeys)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	s := &Store{
		sealer:  sealer,
		ttl:     cmpOr(o.LockTTL, 45*time.Second),
		waitN:   o.WaitReplicas,
		waitT:   cmpOr(o.WaitTimeout, time.Second),
		replica: o.Replica,
		log:     o.Log,
		obs:     o.Observer,
		seen:    map[string]seenGrant{},

		unfinished: map[string]fencedWrite{},
	}
	s.grace = cmpOr(o.Grace, s.ttl)
	if s.replica == "" {
		host, _ := os.Hostname()
		s.replica = host + "-" + strconv.Itoa(os.Getpid())
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.password.Store(&o.Password)
	addPassword(o.Password)
	tlsConf, err := tlsConfig(u, o)
	if err != nil {
		return nil, err
	}
	if q.Has("master_name") {
		err = s.openSentinel(o, tlsConf)
	} else {
		err = s.openDirect(o, tlsConf)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// openDirect connects to one Redis server (go-redis's ParseURL form).
func (s *Store) openDirect(o Options, tlsConf *tls.Config) error {
	ro, err := redis.ParseURL(o.URL)
	if err != nil {
		return fmt.Errorf("redisstore: the store URL: %w", err)
	}
	s.desc = "redis://" + ro.Addr + "/" + strconv.Itoa(ro.DB)
	if tlsConf != nil {
		s.desc = "rediss://" + ro.Addr + "/" + strconv.Itoa(ro.DB)
	}
	ro.TLSConfig = tlsConf
	user := ro.Username
	ro.CredentialsProvider = func() (string, string) { return user, *s.password.Load() }
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
	ro.PoolTimeout = ioTimeout
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = 1
	ro.DialerRetries = 1 // the caller tries again; five dials would hold it for 5 × dialTimeout
	ro.DisableIdentity = true
	if ro.Protocol == 0 {
		ro.Protocol = 2 // plain AUTH and pub/sub; no push notifications to handle
	}
	s.rdb = redis.NewClient(ro)
	explainMissingCert(s.rdb, tlsConf)
	return nil
}

// openSentinel connects to the master that Sentinel names
// (go-redis's ParseFailoverURL form: the host is a Sentinel, addr= adds
// others, master_name= names the master). The password is the master's
// and the Sentinels' alike.
func (s *Store) openSentinel(o Options, tlsConf *tls.Config) error {
	fo, err := redis.ParseFailoverURL(o.URL)
	if err != nil {
		return fmt.Errorf("redisstore: the Sentinel store URL: %w", err)
	}
	scheme := "redis"
	if tlsConf != nil {
		scheme = "rediss"
	}
	s.desc = fmt.Sprintf("%s://%s/%d?master_name=%s", scheme, fo.SentinelAddrs[0], fo.DB, fo.MasterName)
	if tlsConf != nil {
		// The Sentinels and the master they name are other hosts than
		// the URL's: each certificate is checked against the host
		// dialled (crypto/tls takes the name from the address when
		// ServerName is empty), the master's against the address the
		// Sentinels give.
		tlsConf.ServerName = ""
	}
	fo.TLSConfig = tlsConf
	user := fo.Username
	fo.SentinelPassword = o.Password
	fo.CredentialsProvider = func() (string, string) { return user, *s.password.Load() }
	fo.DialTimeout, fo.ReadTimeout, fo.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
	fo.PoolTimeout = ioTimeout
	fo.ContextTimeoutEnabled = true
	fo.MaxRetries = 1
	fo.DialerRetries = 1 // the caller tries again; five dials would hold it for 5 × dialTimeout
	fo.DisableIdentity = true
	if fo.Protocol == 0 {
		fo.Protocol = 2
	}
	s.rdb = redis.NewFailoverClient(fo)
	explainMissingCert(s.rdb, tlsConf)
	return nil
}

// tlsConfig is the TLS configuration of a rediss:// URL (nil for
// redis://, where TLS files are refused).
func tlsConfig(u *url.URL, o Options) (*tls.Config, error) {
	if u.Scheme != "rediss" {
		if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" {
			return nil, errors.New("redisstore: a CA or client certificate file is set but the store URL is redis://; use rediss:// for TLS")
		}
		return nil, nil
	}
	host := u.Hostname()
	if h, _, err := net.SplitHostPort(u.Host); err == nil {
		host = h
	}
	conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redisstore: reading the CA file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redisstore: CA file %s holds no PEM certificate", o.CAFile)
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("redisstore: a client certificate needs both its certificate file and its key file")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redisstore: client certificate %s with key %s: %w", o.CertFile, o.KeyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// explainMissingCert makes the network errors of a rediss:// store that
// has no client certificate say so once a server asked for one: with TLS
// 1.3 a server that requires a certificate refuses its absence after the
// handshake, and all the client sees is a connection reset. Servers that
// merely accept one (tls-auth-clients optional) are still served without.
func explainMissingCert(rdb *redis.Client, conf *tls.Config) {
	if conf == nil || len(conf.Certificates) > 0 {
		return
	}
	h := &certHint{}
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		h.asked.Store(true)
		return &tls.Certificate{}, nil // none
	}
	rdb.AddHook(h)
}

// certHint is the go-redis hook of explainMissingCert.
type certHint struct{ asked atomic.Bool }

func (h *certHint) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *certHint) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return h.explainCmd(cmd, next(ctx, cmd))
	}
}

func (h *certHint) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			h.explainCmd(cmd, cmd.Err())
		}
		return h.explain(err)
	}
}

// explainCmd sets cmd's error to explain(err) (commands give callers
// their own error, not the hook's) and returns it.
func (h *certHint) explainCmd(cmd redis.Cmder, err error) error {
	if e := h.explain(err); e != err {
		cmd.SetErr(e)
		return e
	}
	return err
}

// explain adds the hint to err when a command failed on the network (not
// with Redis's answer) after a server asked for a certificate.
func (h *certHint) explain(err error) error {
	var answer redis.Error
	if err == nil || !h.asked.Load() || errors.As(err, &answer) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w (Redis asked for a client certificate and none is set: COOP_PROXY_STORE_CERT_FILE and COOP_PROXY_STORE_CERT_KEY_FILE)", err)
}

// SetPassword changes the password that new connections to Redis use (on
// SIGHUP, when the password file changed); open ones stay as they are.
func (s *Store) SetPassword(p string) {
	addPassword(p)
	s.password.Store(&p)
}

// Close closes the connections to Redis, once the releases of abandoned
// locks are done.
func (s *Store) Close() error {
	s.releasing.Wait()
	return s.rdb.Close()
}

// Shared implements tokenstore.Backend: replicas on many hosts share Redis.
func (s *Store) Shared() bool { return true }

// String is the store's description, "redis://host:port/db".
func (s *Store) String() string { return s.desc }
