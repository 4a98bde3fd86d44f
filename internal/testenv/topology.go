package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterNodeTimeout is cluster-node-timeout of the test clusters: longer
// than the outages the tests cause, so that a restarted master is never
// marked FAIL (there are no replicas to take over anyway).
const clusterNodeTimeout = 5 * time.Second

// RedisCluster is a Redis Cluster of three masters (no replicas) on
// 127.0.0.1, made with `redis-cli --cluster create`, without persistence.
// A node keeps its identity and slots across Kill/Stop and Start (its
// nodes.conf stays), but not its data.
type RedisCluster struct {
	tb    testing.TB
	Nodes []*Redis
	// Password is every node's requirepass ("" for none); Do sends it.
	Password string
	// TLS holds the certificate files of a TLS cluster (nil for a plain
	// one).
	TLS *TLSFiles
}

// ClusterOptions secure a cluster StartRedisClusterWith starts.
type ClusterOptions struct {
	// Password, when set, is every node's requirepass and masterauth.
	Password string
	// TLS makes every node listen for TLS only (port 0, tls-port; Addrs
	// are the TLS addresses) with a certificate for 127.0.0.1 signed by a
	// CA made for the test, and speak TLS on the cluster bus (tls-cluster)
	// and to its masters (tls-replication). Clients are not asked for
	// certificates unless TLSClientAuth. Do speaks TLS to such a node.
	TLS bool
	// TLSClientAuth, with TLS, makes every node require a client
	// certificate signed by the CA (tls-auth-clients yes); TLS's
	// ClientCertFile is one, and Do presents it.
	TLSClientAuth bool
	// CertHost, with TLS, is the only name in the nodes' certificate
	// (no IP address), as with certificates issued for host names: a
	// client dialing 127.0.0.1 cannot verify it.
	CertHost string
	// AnnounceHost, when set, is every node's cluster-announce-hostname
	// and its preferred endpoint (cluster-preferred-endpoint-type
	// hostname): CLUSTER SLOTS and redirections name it instead of
	// 127.0.0.1.
	AnnounceHost string
}

// StartRedisCluster starts three cluster-enabled redis-servers, joins them
// into one cluster with the 16384 slots split evenly, and waits until every
// node reports cluster_state:ok. It fails the test if that takes over 30s.
func StartRedisCluster(tb testing.TB) *RedisCluster {
	tb.Helper()
	return StartRedisClusterWith(tb, ClusterOptions{})
}

// StartRedisClusterWith is StartRedisCluster with a password and/or TLS.
func StartRedisClusterWith(tb testing.TB, o ClusterOptions) *RedisCluster {
	tb.Helper()
	cli, err := redisCLIBinary()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	c := &RedisCluster{tb: tb, Password: o.Password}
	if o.TLS {
		c.TLS = newTLSFiles(tb, o.CertHost, o.TLSClientAuth)
	}
	for range 3 {
		busPort := FreePort(tb)
		extra := []string{
			"--cluster-enabled", "yes",
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout.Milliseconds())),
			// The bus port defaults to port+10000, which may not
			// exist for a high free port.
			"--cluster-port", strconv.Itoa(busPort),
		}
		if o.TLS {
			extra = append(extra, "--tls-cluster", "yes", "--tls-replication", "yes")
		}
		if o.AnnounceHost != "" {
			extra = append(extra, "--cluster-announce-hostname", o.AnnounceHost, "--cluster-preferred-endpoint-type", "hostname")
		}
		c.Nodes = append(c.Nodes, startNode(tb, c.TLS, o.Password, func(r *Redis) {
			r.extra = append(r.extra, "--cluster-config-file", filepath.Join(r.dir, "nodes.conf"))
		}, extra...))
	}
	args := cliSecurity(c.TLS, o.Password)
	args = append(args, "--cluster", "create")
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		if err := c.waitOK(n, 30*time.Second); err != nil {
			tb.Fatalf("testenv: %v", err)
		}
	}
	return c
}

// cliSecurity are the redis-cli arguments that reach nodes secured so.
func cliSecurity(files *TLSFiles, password string) []string {
	var args []string
	if files != nil {
		args = append(args, "--tls", "--cacert", files.CAFile, "--cert", files.ClientCertFile, "--key", files.ClientKeyFile)
	}
	if password != "" {
		args = append(args, "-a", password, "--no-auth-warning")
	}
	return args
}

// Addrs returns the nodes' addresses, "127.0.0.1:port" each.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// Seeds returns the addresses comma-separated, as REDIS_CLUSTER_ADDRS.
func (c *RedisCluster) Seeds() string { return strings.Join(c.Addrs(), ",") }

// KeySlot returns CLUSTER KEYSLOT key, as Redis computes it.
func (c *RedisCluster) KeySlot(key string) int {
	c.tb.Helper()
	reply := c.Nodes[0].Do("CLUSTER", "KEYSLOT", key)
	n, err := strconv.Atoi(reply)
	if err != nil {
		c.tb.Fatalf("testenv: CLUSTER KEYSLOT %s = %q", key, reply)
	}
	return n
}

// MasterOf returns the node serving key's slot.
func (c *RedisCluster) MasterOf(key string) *Redis {
	c.tb.Helper()
	slot := c.KeySlot(key)
	for _, n := range c.Nodes {
		if servesSlot(n.Do("CLUSTER", "NODES"), slot) {
			return n
		}
	}
	c.tb.Fatalf("testenv: no node serves slot %d (key %q)", slot, key)
	return nil
}

// servesSlot reports whether the "myself" line of CLUSTER NODES lists slot.
func servesSlot(nodes string, slot int) bool {
	for _, r := range ownSlots(nodes) {
		if r[0] <= slot && slot <= r[1] {
			return true
		}
	}
	return false
}

// ownSlots returns the slot ranges (first, last) on the "myself" line of
// CLUSTER NODES.
func ownSlots(nodes string) [][2]int {
	var out [][2]int
	for line := range strings.SplitSeq(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "myself") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, found := strings.Cut(r, "-")
			if !found {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil {
				out = append(out, [2]int{a, b})
			}
		}
	}
	return out
}

// SlotOwners returns, for each of the 16 384 slots, the node serving it
// now (nil for none), from every node's CLUSTER NODES.
func (c *RedisCluster) SlotOwners() []*Redis {
	owners := make([]*Redis, 16384)
	for _, n := range c.Nodes {
		for _, r := range ownSlots(n.Do("CLUSTER", "NODES")) {
			for slot := r[0]; slot <= r[1] && slot < len(owners); slot++ {
				owners[slot] = n
			}
		}
	}
	return owners
}

// Restart kills node n (SIGKILL), keeps it down for outage, starts it
// again empty, and waits until it serves its slots (a restarted master
// refuses writes for a moment while it rejoins).
func (c *RedisCluster) Restart(n *Redis, outage time.Duration) {
	c.tb.Helper()
	n.Kill()
	time.Sleep(outage)
	n.Start()
	if err := c.waitOK(n, 20*time.Second); err != nil {
		c.tb.Fatalf("testenv: %v", err)
	}
}

// WaitServing waits until n reports cluster_state:ok.
func (c *RedisCluster) WaitServing(n *Redis, timeout time.Duration) error {
	return c.waitOK(n, timeout)
}

func (c *RedisCluster) waitOK(n *Redis, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		info, err := n.DoErr("CLUSTER", "INFO")
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		last = fmt.Sprint(info, err)
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cluster node %s not ok within %v: %s", n.Addr(), timeout, last)
}

// RedisSentinel is one master, one replica and three Sentinels on
// 127.0.0.1 (quorum 2), without persistence. Sentinels consider a silent
// master down after 5 s, longer than the outages the tests cause, so
// failovers happen only when Failover asks for one.
type RedisSentinel struct {
	tb        testing.TB
	Name      string   // the master's name, "mymaster"
	Data      []*Redis // the master and the replica, in start order
	Sentinels []*Redis
	// Password is the data nodes' requirepass, SentinelPassword the
	// Sentinels' ("" for none); Do sends them.
	Password, SentinelPassword string
	// TLS holds the certificate files of a TLS set (nil for a plain one).
	TLS *TLSFiles
}

// SentinelOptions secure a set StartRedisSentinelWith starts.
type SentinelOptions struct {
	// Password, when set, is the data nodes' requirepass and masterauth,
	// and the Sentinels' auth-pass for the master.
	Password string
	// SentinelPassword, when set, is the Sentinels' own requirepass (they
	// also authenticate to each other with it).
	SentinelPassword string
	// TLS makes the data nodes and the Sentinels listen for TLS only, as
	// ClusterOptions.TLS does, with tls-replication yes everywhere: the
	// replica syncs, and the Sentinels reach the data nodes and each
	// other, over TLS. Do speaks TLS to them.
	TLS bool
	// TLSClientAuth, with TLS, makes the data nodes and the Sentinels
	// require a client certificate, as ClusterOptions.TLSClientAuth does.
	TLSClientAuth bool
}

// StartRedisSentinel starts the master, the replica (replicaof the master),
// waits until the replica is in sync, then starts three Sentinels and waits
// until each knows the replica and the two other Sentinels.
func StartRedisSentinel(tb testing.TB) *RedisSentinel {
	tb.Helper()
	return StartRedisSentinelWith(tb, SentinelOptions{})
}

// StartRedisSentinelWith is StartRedisSentinel with passwords and/or TLS.
func StartRedisSentinelWith(tb testing.TB, o SentinelOptions) *RedisSentinel {
	tb.Helper()
	s := &RedisSentinel{tb: tb, Name: "mymaster", Password: o.Password, SentinelPassword: o.SentinelPassword}
	if o.TLS {
		s.TLS = newTLSFiles(tb, "", o.TLSClientAuth)
	}
	var data []string
	if o.Password != "" {
		data = append(data, "--masterauth", o.Password)
	}
	if o.TLS {
		data = append(data, "--tls-replication", "yes")
	}
	master := startNode(tb, s.TLS, o.Password, nil, data...)
	replica := startNode(tb, s.TLS, o.Password, nil, append(data, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))...)
	s.Data = []*Redis{master, replica}
	waitUntil(tb, 20*time.Second, "replica in sync", func() (bool, string) {
		info, err := replica.DoErr("INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up"), info
	})
	for range 3 {
		s.Sentinels = append(s.Sentinels, startRedis(tb, func(r *Redis) {
			conf := filepath.Join(r.dir, "sentinel.conf")
			if s.TLS != nil {
				r.tlsConfig = s.TLS.config
			}
			r.password = o.SentinelPassword
			r.args = func(dir string) []string {
				// Sentinel rewrites its config file, so it is written
				// fresh for each run (the tests never restart one).
				var b strings.Builder
				if s.TLS != nil {
					fmt.Fprintf(&b, "port 0\ntls-port %d\ntls-replication yes\n", r.port)
					args := s.TLS.serverArgs()
					for i := 0; i+1 < len(args); i += 2 {
						fmt.Fprintf(&b, "%s %s\n", strings.TrimPrefix(args[i], "--"), args[i+1])
					}
				} else {
					fmt.Fprintf(&b, "port %d\n", r.port)
				}
				if o.SentinelPassword != "" {
					fmt.Fprintf(&b, "requirepass %s\n", o.SentinelPassword)
				}
				fmt.Fprintf(&b, "bind 127.0.0.1\ndir %s\n"+
					"sentinel monitor %s 127.0.0.1 %d 2\n"+
					"sentinel down-after-milliseconds %s 5000\n"+
					"sentinel failover-timeout %s 10000\n"+
					"sentinel parallel-syncs %s 1\n",
					dir, s.Name, master.Port(), s.Name, s.Name, s.Name)
				if o.Password != "" {
					fmt.Fprintf(&b, "sentinel auth-pass %s %s\n", s.Name, o.Password)
				}
				if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
					tb.Errorf("testenv: write sentinel.conf: %v", err)
				}
				return []string{conf, "--sentinel"}
			}
		}))
	}
	for _, sn := range s.Sentinels {
		waitUntil(tb, 30*time.Second, "sentinel "+sn.Addr()+" knows the replica and the other sentinels", func() (bool, string) {
			reps, err1 := sn.DoErr("SENTINEL", "REPLICAS", s.Name)
			peers, err2 := sn.DoErr("SENTINEL", "SENTINELS", s.Name)
			ok := err1 == nil && err2 == nil && strings.Contains(reps, strconv.Itoa(replica.Port())) &&
				strings.Count(peers, "runid") == 2
			return ok, reps + " " + peers
		})
	}
	return s
}

// startNode starts a data node with the security given (files nil for
// plain, password "" for none) and extra arguments; setup, when set,
// adjusts it further.
func startNode(tb testing.TB, files *TLSFiles, password string, setup func(r *Redis), extra ...string) *Redis {
	tb.Helper()
	return startRedis(tb, func(r *Redis) {
		r.extra = append([]string(nil), extra...)
		if files != nil {
			r.tlsConfig = files.config
			r.extra = append(r.extra, files.serverArgs()...)
		}
		if password != "" {
			r.password = password
			r.extra = append(r.extra, "--requirepass", password)
		}
		if setup != nil {
			setup(r)
		}
	})
}

// Addrs returns the Sentinels' addresses comma-separated, as
// REDIS_SENTINEL_ADDRS.
func (s *RedisSentinel) Addrs() string {
	a := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		a[i] = sn.Addr()
	}
	return strings.Join(a, ",")
}

// Master returns the data node the first Sentinel names as the master.
func (s *RedisSentinel) Master() *Redis {
	s.tb.Helper()
	addr := s.masterAddr(s.Sentinels[0])
	for _, d := range s.Data {
		if d.Addr() == addr {
			return d
		}
	}
	s.tb.Fatalf("testenv: sentinel names master %q, not one of the data nodes", addr)
	return nil
}

func (s *RedisSentinel) masterAddr(sn *Redis) string {
	reply, err := sn.DoErr("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name)
	if err != nil {
		return ""
	}
	f := respList(reply)
	if len(f) != 2 {
		return ""
	}
	return net.JoinHostPort(f[0], f[1])
}

// Failover runs SENTINEL FAILOVER and waits until every Sentinel names the
// other data node as master and it reports role:master. It returns the new
// master. The old master is turned into a replica by the Sentinels a few
// seconds later (at their next INFO of it, every 10 s); clients told of
// the switch (+switch-master) have left it by then.
func (s *RedisSentinel) Failover() *Redis {
	s.tb.Helper()
	old := s.Master()
	var next *Redis
	for _, d := range s.Data {
		if d != old {
			next = d
		}
	}
	if reply := s.Sentinels[0].Do("SENTINEL", "FAILOVER", s.Name); reply != "OK" {
		s.tb.Fatalf("testenv: SENTINEL FAILOVER: %s", reply)
	}
	waitUntil(s.tb, 30*time.Second, "failover to "+next.Addr(), func() (bool, string) {
		for _, sn := range s.Sentinels {
			if a := s.masterAddr(sn); a != next.Addr() {
				return false, "sentinel " + sn.Addr() + " names " + a
			}
		}
		role, err := next.DoErr("ROLE")
		if err != nil || !strings.HasPrefix(role, "[master") {
			return false, fmt.Sprint("new master role ", role, err)
		}
		return true, ""
	})
	return next
}

// Restart kills the current master, keeps it down for outage (shorter
// than the Sentinels' 5 s, so no failover starts) and starts it again
// empty; the replica then resyncs from it and is empty too.
func (s *RedisSentinel) Restart(outage time.Duration) {
	s.tb.Helper()
	m := s.Master()
	m.Kill()
	time.Sleep(outage)
	m.Start()
}

// RedisTLS is a redis-server that also listens for TLS on TLSPort, with a
// certificate for 127.0.0.1 and localhost signed by a CA made for the
// test. The plain port stays open for Do.
type RedisTLS struct {
	*Redis
	TLSPort int
	TLSFiles
}

// TLSFiles are the PEM files of a TLS server or deployment made for a
// test.
type TLSFiles struct {
	CAFile      string // the CA that signed the servers' certificate
	WrongCAFile string // another CA, which did not
	// ClientCertFile and ClientKeyFile are a client certificate signed by
	// CAFile's CA; WrongClientCertFile and WrongClientKeyFile one signed
	// by WrongCAFile's.
	ClientCertFile, ClientKeyFile           string
	WrongClientCertFile, WrongClientKeyFile string

	certFile, keyFile string      // the servers' certificate (for 127.0.0.1 and localhost) and key
	clientAuth        bool        // servers require a client certificate (tls-auth-clients yes)
	config            *tls.Config // trusts CAFile and presents the client certificate, for Do
}

// StartRedisTLS generates the CAs and the server's certificate with
// crypto/x509 and starts the server. Clients are not asked for
// certificates.
func StartRedisTLS(tb testing.TB) *RedisTLS {
	tb.Helper()
	t := &RedisTLS{TLSPort: FreePort(tb), TLSFiles: *newTLSFiles(tb, "", false)}
	t.Redis = StartRedisWith(tb, append([]string{"--tls-port", strconv.Itoa(t.TLSPort)}, t.serverArgs()...)...)
	return t
}

// newTLSFiles writes a CA, another CA, a server certificate for 127.0.0.1
// and localhost signed by the first, and client certificates signed by
// each, made with crypto/x509, in a temporary directory. With hostOnly
// set, the server certificate names that host alone, no IP address, and
// Do checks that name. clientAuth makes the servers require a client
// certificate.
func newTLSFiles(tb testing.TB, hostOnly string, clientAuth bool) *TLSFiles {
	tb.Helper()
	dir := tb.TempDir()
	ca, caKey, caPEM := newCA(tb, "presenced test CA")
	wrong, wrongKey, wrongPEM := newCA(tb, "some other CA")
	server := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		// Client auth too: cluster nodes and replicas present it to
		// their peers.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if hostOnly != "" {
		server.Subject.CommonName, server.DNSNames, server.IPAddresses = hostOnly, []string{hostOnly}, nil
	}
	client := func(serial int64) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "presenced"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
	f := &TLSFiles{
		CAFile: filepath.Join(dir, "ca.pem"), WrongCAFile: filepath.Join(dir, "wrong-ca.pem"),
		certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server.key"),
		ClientCertFile: filepath.Join(dir, "client.pem"), ClientKeyFile: filepath.Join(dir, "client.key"),
		WrongClientCertFile: filepath.Join(dir, "wrong-client.pem"), WrongClientKeyFile: filepath.Join(dir, "wrong-client.key"),
		clientAuth: clientAuth,
	}
	for _, w := range []struct {
		file string
		pem  []byte
	}{{f.CAFile, caPEM}, {f.WrongCAFile, wrongPEM}} {
		if err := os.WriteFile(w.file, w.pem, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	writeLeaf(tb, server, ca, caKey, f.certFile, f.keyFile)
	writeLeaf(tb, client(3), ca, caKey, f.ClientCertFile, f.ClientKeyFile)
	writeLeaf(tb, client(4), wrong, wrongKey, f.WrongClientCertFile, f.WrongClientKeyFile)
	pair, err := tls.LoadX509KeyPair(f.ClientCertFile, f.ClientKeyFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	f.config = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: hostOnly, Certificates: []tls.Certificate{pair}}
	return f
}

// writeLeaf signs tmpl (valid for a day) with the CA and writes it and a
// new key as PEM files.
func writeLeaf(tb testing.TB, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// serverArgs are the redis-server arguments that serve f's certificate.
func (f *TLSFiles) serverArgs() []string {
	auth := "no"
	if f.clientAuth {
		auth = "yes"
	}
	return []string{
		"--tls-cert-file", f.certFile,
		"--tls-key-file", f.keyFile,
		"--tls-ca-cert-file", f.CAFile,
		"--tls-auth-clients", auth,
	}
}

// TLSURL returns the TLS address as a REDIS_URL, "rediss://127.0.0.1:port".
func (r *RedisTLS) TLSURL() string {
	return "rediss://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(r.TLSPort))
}

// WriteCertPair writes a self-signed certificate named name and its key
// as PEM files (0600) in a temporary directory, for tests of TLS settings.
func WriteCertPair(tb testing.TB, name string) (certFile, keyFile string) {
	tb.Helper()
	_, key, certPEM := newCA(tb, name)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}

// newCA returns a self-signed CA certificate, its key and its PEM.
func newCA(tb testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// waitUntil polls cond every 50ms until it holds, failing the test after
// timeout with cond's last description.
func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testenv: %s: not within %v: %s", what, timeout, desc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// respList splits an array reply as Do renders it ("[a b c]").
func respList(reply string) []string {
	return strings.Fields(strings.TrimSuffix(strings.TrimPrefix(reply, "["), "]"))
}

// redisCLIBinary finds redis-cli in PATH, /usr/bin or /usr/sbin.
func redisCLIBinary() (string, error) {
	if p, err := exec.LookPath("redis-cli"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-cli", "/usr/sbin/redis-cli"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("redis-cli not found in PATH, /usr/bin or /usr/sbin; install it: apt-get install redis-tools")
}
