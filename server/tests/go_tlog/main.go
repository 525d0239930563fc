// Command tlogcheck is an independent tlog-tiles client for the tests: Go's
// golang.org/x/mod/sumdb/tlog (the proof algorithms, tiles checked against
// the tree as they are read) and sumdb/note (the checkpoint's signature),
// from Debian's golang-golang-x-mod-dev, reading a log over HTTP at the
// C2SP tlog-tiles paths, from a server or straight from a bucket.
//
//	tlogcheck -url BASE -key VKEY [-state FILE] [-sigv4]
//
// It verifies BASE/checkpoint with VKEY (its origin must be the key's
// name), proves it consistent with the checkpoint in FILE (the last one it
// verified, if any), reads every entry bundle, checks each entry's
// inclusion proof against the checkpoint, and then writes the checkpoint
// to FILE. A partial tile or bundle that is gone (the log grew and deleted
// it, as C2SP tlog-tiles allows) is read from its full tile, truncated. On
// -sigv4 signs every GET with AWS Signature Version 4 (S3, unsigned
// payload) from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION, for
// a bucket that is not public. On
// success it prints "size N root B64 entries N consistent-with M" and exits
// 0; otherwise it prints the failed check on standard error and exits 1.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The largest answer read: a full bundle of 256 entries of 65,535 bytes.
const maxBody = 256 * (2 + 65535)

type client struct {
	base  string
	http  *http.Client
	tiles map[tlog.Tile][]byte
	sigv4 bool
}

func main() {
	base := flag.String("url", "", "the log's base URL")
	vkey := flag.String("key", "", "the log's note verifier key")
	state := flag.String("state", "", "the last verified checkpoint (read, then written)")
	sigv4 := flag.Bool("sigv4", false, "sign GETs with AWS SigV4 from the environment")
	flag.Parse()
	c := &client{
		base:  strings.TrimSuffix(*base, "/"),
		http:  &http.Client{Timeout: 20 * time.Second},
		tiles: map[tlog.Tile][]byte{},
		sigv4: *sigv4,
	}
	if err := c.run(*vkey, *state); err != nil {
		fmt.Fprintln(os.Stderr, "tlogcheck:", err)
		os.Exit(1)
	}
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// sign adds AWS Signature Version 4 headers to a GET for service s3.
func sign(req *http.Request, now time.Time) {
	key, secret, region := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_REGION")
	amzDate, day := now.UTC().Format("20060102T150405Z"), now.UTC().Format("20060102")
	const payload = "UNSIGNED-PAYLOAD"
	req.Header.Set("x-amz-date", amzDate)
	req.Header.Set("x-amz-content-sha256", payload)
	const signed = "host;x-amz-content-sha256;x-amz-date"
	canonical := strings.Join([]string{
		"GET", req.URL.EscapedPath(), req.URL.RawQuery,
		"host:" + req.URL.Host + "\nx-amz-content-sha256:" + payload + "\nx-amz-date:" + amzDate + "\n",
		signed, payload,
	}, "\n")
	scope := day + "/" + region + "/s3/aws4_request"
	digest := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(digest[:])
	k := hmacSHA256([]byte("AWS4"+secret), day)
	for _, part := range []string{region, "s3", "aws4_request"} {
		k = hmacSHA256(k, part)
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+key+"/"+scope+
		", SignedHeaders="+signed+", Signature="+hex.EncodeToString(hmacSHA256(k, toSign)))
}

// get returns the body of BASE/path, or nil on 404.
func (c *client) get(path string) ([]byte, error) {
	req, err := http.NewRequest("GET", c.base+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	if c.sigv4 {
		sign(req, time.Now())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", path, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", path, maxBody)
	}
	return body, nil
}

// c2spPath is Go sumdb's tile path without its height ("tile/8/"), and
// "entries" for "data": C2SP tlog-tiles.
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), "tile/8/")
	if t.L == -1 {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

// fetch reads tile t; a missing partial tile is read from the full one.
// Hash tiles come back W*32 bytes long, bundles as W entries.
func (c *client) fetch(t tlog.Tile) ([]byte, error) {
	if data, ok := c.tiles[t]; ok {
		return data, nil
	}
	data, err := c.get(c2spPath(t))
	if err != nil {
		return nil, err
	}
	if data == nil && t.W < 256 {
		full := t
		full.W = 256
		if data, err = c.get(c2spPath(full)); err != nil {
			return nil, err
		}
		if data != nil && t.L >= 0 && len(data) >= t.W*32 {
			data = data[:t.W*32]
		}
	}
	if data == nil {
		return nil, fmt.Errorf("%s: not found", c2spPath(t))
	}
	if t.L >= 0 && len(data) != t.W*32 {
		return nil, fmt.Errorf("%s: %d bytes, want %d", c2spPath(t), len(data), t.W*32)
	}
	c.tiles[t] = data
	return data, nil
}

// The tlog.TileReader the proofs read through.
func (c *client) Height() int { return 8 }
func (c *client) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := c.fetch(t)
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}
func (c *client) SaveTiles([]tlog.Tile, [][]byte) {}

// openCheckpoint verifies a C2SP checkpoint note and returns its tree.
func openCheckpoint(msg []byte, v note.Verifier) (tlog.Tree, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("checkpoint signature: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 || lines[0] != v.Name() {
		return tlog.Tree{}, errors.New("checkpoint body: origin is not the key's name")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return tlog.Tree{}, fmt.Errorf("checkpoint body: size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return tlog.Tree{}, fmt.Errorf("checkpoint body: root %q", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return tlog.Tree{N: size, Hash: h}, nil
}

// bundle splits a C2SP entry bundle of exactly want entries (a full one
// is cut to its first want).
func bundle(data []byte, want int) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 && len(out) < want {
		if len(data) < 2 {
			return nil, errors.New("entry bundle: truncated length")
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, errors.New("entry bundle: truncated entry")
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("entry bundle: %d entries, want %d", len(out), want)
	}
	return out, nil
}

func (c *client) run(vkey, state string) error {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fmt.Errorf("verifier key: %v", err)
	}
	msg, err := c.get("checkpoint")
	if err != nil || msg == nil {
		return fmt.Errorf("checkpoint: %v (missing: %v)", err, msg == nil)
	}
	tree, err := openCheckpoint(msg, v)
	if err != nil {
		return err
	}
	thr := tlog.TileHashReader(tree, c)
	consistentWith := int64(-1)
	if state != "" {
		old, err := os.ReadFile(state)
		if err == nil {
			prev, err := openCheckpoint(old, v)
			if err != nil {
				return fmt.Errorf("state: %v", err)
			}
			switch {
			case prev.N > tree.N:
				return fmt.Errorf("consistency: the log shrank from %d to %d", prev.N, tree.N)
			case prev.N == tree.N && prev.Hash != tree.Hash:
				return fmt.Errorf("consistency: two roots at size %d", tree.N)
			case prev.N < tree.N && prev.N > 0:
				p, err := tlog.ProveTree(tree.N, prev.N, thr)
				if err != nil {
					return fmt.Errorf("consistency proof %d -> %d: %v", prev.N, tree.N, err)
				}
				if err := tlog.CheckTree(p, tree.N, tree.Hash, prev.N, prev.Hash); err != nil {
					return fmt.Errorf("consistency %d -> %d: %v", prev.N, tree.N, err)
				}
			}
			consistentWith = prev.N
		} else if !os.IsNotExist(err) {
			return fmt.Errorf("state: %v", err)
		}
	}
	for k := int64(0); k*256 < tree.N; k++ {
		w := tree.N - k*256
		if w > 256 {
			w = 256
		}
		data, err := c.fetch(tlog.Tile{H: 8, L: -1, N: k, W: int(w)})
		if err != nil {
			return err
		}
		entries, err := bundle(data, int(w))
		if err != nil {
			return fmt.Errorf("%s: %v", c2spPath(tlog.Tile{H: 8, L: -1, N: k, W: int(w)}), err)
		}
		for i, e := range entries {
			idx := k*256 + int64(i)
			p, err := tlog.ProveRecord(tree.N, idx, thr)
			if err != nil {
				return fmt.Errorf("inclusion proof of %d: %v", idx, err)
			}
			if err := tlog.CheckRecord(p, tree.N, tree.Hash, idx, tlog.RecordHash(e)); err != nil {
				return fmt.Errorf("inclusion of entry %d: %v", idx, err)
			}
		}
	}
	if state != "" {
		if err := os.WriteFile(state, msg, 0o644); err != nil {
			return fmt.Errorf("state: %v", err)
		}
	}
	fmt.Printf("size %d root %s entries %d consistent-with %d\n",
		tree.N, base64.StdEncoding.EncodeToString(tree.Hash[:]), tree.N, consistentWith)
	return nil
}
