// Command hoopverify checks a hoop audit export (docs/audit.md, "Export
// format", version 1) with Go's reference code for signed notes and
// transparency logs, golang.org/x/mod/sumdb/note and .../tlog, which hoop's
// authors did not write.
//
//	hoopverify -key VERIFIER_KEY [-key ...] FILE
//
// It prints one OK line and exits 0, or prints "FAIL seq N: what" (or
// "FAIL: what") and exits 1. Usage errors exit 2.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	maxLine  = 16 << 20 // longest line read
	maxEntry = 65535    // longest event, docs/audit.md
)

// fail prints the verdict and exits 1; seq < 0 when no event applies.
func fail(seq int64, format string, args ...interface{}) {
	if seq >= 0 {
		fmt.Printf("FAIL seq %d: %s\n", seq, fmt.Sprintf(format, args...))
	} else {
		fmt.Printf("FAIL: %s\n", fmt.Sprintf(format, args...))
	}
	os.Exit(1)
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint checks a signed note's signature against the known keys and
// parses its tlog-checkpoint body: origin, decimal size, base64 root hash.
func openCheckpoint(text string, known note.Verifiers) (checkpoint, error) {
	var c checkpoint
	n, err := note.Open([]byte(text), known)
	if err != nil {
		return c, fmt.Errorf("signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n") // n.Text ends in "\n"
	if len(lines) != 4 {
		return c, fmt.Errorf("body has %d lines, want 3 (origin, size, root hash)", len(lines)-1)
	}
	c.origin = lines[0]
	c.size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil || c.size < 0 || strconv.FormatInt(c.size, 10) != lines[1] {
		return c, fmt.Errorf("tree size %q is not a decimal number", lines[1])
	}
	c.root, err = tlog.ParseHash(lines[2])
	if err != nil || c.root.String() != lines[2] {
		return c, fmt.Errorf("root hash %q is not base64 of 32 bytes", lines[2])
	}
	// RFC 6962: the empty tree's hash is SHA-256 of nothing (tlog uses zeros).
	if c.size == 0 && c.root != tlog.Hash(sha256.Sum256(nil)) {
		return c, fmt.Errorf("tree of size 0 must have root SHA-256(\"\")")
	}
	for _, s := range n.Sigs {
		if s.Name == c.origin {
			return c, nil
		}
	}
	return c, fmt.Errorf("origin %q is not the name of the key that signed it (%s)", c.origin, n.Sigs[0].Name)
}

// event is an event line waiting for its bodies and inclusion proof.
type event struct {
	seq      int64
	hash     tlog.Hash // tlog.RecordHash of the line
	line     []byte
	msgSHA   string // top-level message_sha256, if any
	msgBytes int64  // top-level message_bytes, -1 if none
	bodies   map[string]int
}

type verifier struct {
	known   note.Verifiers
	line    int // current line number, from 1
	section int // 0 header, 1 checkpoints, 2 consistency proofs, 3 events
	header  struct {
		Version  *int   `json:"hoop_audit_export"`
		Origin   string `json:"origin"`
		FirstSeq int64  `json:"first_seq"`
		TreeSize int64  `json:"tree_size"`
	}
	cps    []checkpoint
	proofs int   // consistency proofs checked
	next   int64 // seq the next event line must have
	ev     *event
	events int
}

// decode unmarshals a line, failing for the event it belongs to, if any.
func (v *verifier) decode(line []byte, x interface{}) {
	if err := json.Unmarshal(line, x); err != nil {
		seq := int64(-1)
		if v.ev != nil {
			seq = v.ev.seq
		}
		fail(seq, "line %d: %v", v.line, err)
	}
}

// do checks one line of the export.
func (v *verifier) do(line []byte) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		fail(-1, "line %d: not a JSON object: %v", v.line, err)
	}
	if v.section == 0 {
		if _, ok := m["hoop_audit_export"]; !ok {
			fail(-1, "line 1 is not the export header")
		}
		v.decode(line, &v.header)
		if v.header.Version == nil || *v.header.Version != 1 {
			fail(-1, "line 1: export format version is not 1, the one this checks")
		}
		v.section = 1
		return
	}
	switch {
	case m["seq"] != nil:
		v.startEvents()
		v.event(line, m)
	case m["checkpoint"] != nil && v.section == 1:
		var cp struct{ Checkpoint string }
		v.decode(line, &cp)
		c, err := openCheckpoint(cp.Checkpoint, v.known)
		if err != nil {
			fail(-1, "line %d: checkpoint %d: %v", v.line, len(v.cps)+1, err)
		}
		if c.origin != v.header.Origin {
			fail(-1, "line %d: checkpoint origin %q, header says %q", v.line, c.origin, v.header.Origin)
		}
		if len(v.cps) > 0 && c.size < v.cps[len(v.cps)-1].size {
			fail(-1, "line %d: checkpoints not in ascending tree size", v.line)
		}
		v.cps = append(v.cps, c)
	case m["consistency"] != nil && (v.section == 1 || v.section == 2):
		v.section = 2
		v.consistency(line)
	case m["body"] != nil:
		v.startEvents()
		v.body(line)
	case m["inclusion"] != nil:
		v.startEvents()
		v.inclusion(line)
	default:
		fail(-1, "line %d: unknown or misplaced line", v.line)
	}
}

func (v *verifier) consistency(line []byte) {
	var c struct {
		Consistency struct {
			From, To int64
			Proof    tlog.TreeProof
		}
	}
	v.decode(line, &c)
	i := v.proofs
	if i+1 >= len(v.cps) {
		fail(-1, "line %d: more consistency proofs than pairs of checkpoints", v.line)
	}
	old, cur := v.cps[i], v.cps[i+1]
	if c.Consistency.From != old.size || c.Consistency.To != cur.size {
		fail(-1, "line %d: consistency proof %d->%d, want %d->%d (checkpoints %d and %d)",
			v.line, c.Consistency.From, c.Consistency.To, old.size, cur.size, i+1, i+2)
	}
	p, err := c.Consistency.Proof, error(nil)
	if old.size == 0 && len(p) != 0 {
		err = fmt.Errorf("proof from the empty tree must be empty")
	} else if old.size > 0 {
		err = tlog.CheckTree(p, cur.size, cur.root, old.size, old.root)
	}
	if err != nil {
		fail(-1, "line %d: checkpoint of size %d is not a prefix of the one of size %d: %v", v.line, old.size, cur.size, err)
	}
	v.proofs++
}

// startEvents checks the header, checkpoints and proofs before the events.
func (v *verifier) startEvents() {
	if v.section == 3 {
		return
	}
	v.section = 3
	if len(v.cps) == 0 {
		fail(-1, "no checkpoint")
	}
	if v.proofs != len(v.cps)-1 {
		fail(-1, "%d consistency proofs for %d checkpoints", v.proofs, len(v.cps))
	}
	if t := v.last().size; v.header.TreeSize != t {
		fail(-1, "header tree_size %d, last checkpoint has %d", v.header.TreeSize, t)
	}
	if v.header.FirstSeq < 0 || v.header.FirstSeq > v.header.TreeSize {
		fail(-1, "header first_seq %d outside the tree of size %d", v.header.FirstSeq, v.header.TreeSize)
	}
	v.next = v.header.FirstSeq
}

func (v *verifier) last() checkpoint { return v.cps[len(v.cps)-1] }

func (v *verifier) event(line []byte, m map[string]json.RawMessage) {
	if v.ev != nil {
		fail(v.ev.seq, "line %d: no inclusion proof before the next event line", v.line)
	}
	seq, err := strconv.ParseInt(string(m["seq"]), 10, 64)
	prefix := []byte(`{"seq":` + string(m["seq"]))
	if err != nil || seq < 0 || !bytes.HasPrefix(line, prefix) || len(line) == len(prefix) ||
		(line[len(prefix)] != ',' && line[len(prefix)] != '}') {
		fail(v.next, "line %d: event whose first member is not \"seq\" with an integer", v.line)
	}
	switch {
	case seq < v.next:
		fail(seq, "line %d: repeated or out of order (seq %d expected)", v.line, v.next)
	case v.next >= v.header.TreeSize:
		fail(seq, "line %d: beyond the last checkpoint (tree size %d)", v.line, v.header.TreeSize)
	case seq > v.next:
		fail(v.next, "line %d: missing, seq %d is in its place", v.line, seq)
	}
	if len(line) > maxEntry {
		fail(seq, "line %d: event is %d bytes, over the %d-byte limit", v.line, len(line), maxEntry)
	}
	ev := &event{seq: seq, hash: tlog.RecordHash(line), line: append([]byte(nil), line...), msgBytes: -1, bodies: map[string]int{}}
	if raw := m["message_sha256"]; raw != nil {
		if json.Unmarshal(raw, &ev.msgSHA) != nil {
			fail(seq, "line %d: message_sha256 is not a string", v.line)
		}
	}
	if raw := m["message_bytes"]; raw != nil {
		if json.Unmarshal(raw, &ev.msgBytes) != nil {
			fail(seq, "line %d: message_bytes is not an integer", v.line)
		}
	}
	v.ev = ev
}

func (v *verifier) body(line []byte) {
	var b struct{ Body, Data string }
	v.decode(line, &b)
	if v.ev == nil {
		fail(v.next, "line %d: body line without its event line", v.line)
	}
	data, err := base64.StdEncoding.DecodeString(b.Data)
	if err != nil {
		fail(v.ev.seq, "line %d: body data is not base64: %v", v.line, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != b.Body {
		fail(v.ev.seq, "line %d: body's SHA-256 is %x, line says %q", v.line, sum, b.Body)
	}
	if !bytes.Contains(v.ev.line, []byte(`"`+b.Body+`"`)) {
		fail(v.ev.seq, "line %d: body %s is not named in its event", v.line, b.Body)
	}
	v.ev.bodies[b.Body] = len(data)
}

func (v *verifier) inclusion(line []byte) {
	var in struct {
		Inclusion struct {
			Seq      int64
			TreeSize int64 `json:"tree_size"`
			Proof    tlog.RecordProof
		}
	}
	v.decode(line, &in)
	ev, t := v.ev, v.last()
	if ev == nil {
		fail(v.next, "line %d: inclusion proof without its event line", v.line)
	}
	if in.Inclusion.Seq != ev.seq {
		fail(ev.seq, "line %d: inclusion proof is for seq %d", v.line, in.Inclusion.Seq)
	}
	if in.Inclusion.TreeSize != t.size {
		fail(ev.seq, "line %d: inclusion proof for tree size %d, last checkpoint has %d", v.line, in.Inclusion.TreeSize, t.size)
	}
	if err := tlog.CheckRecord(in.Inclusion.Proof, t.size, t.root, ev.seq, ev.hash); err != nil {
		fail(ev.seq, "line %d: event is not leaf %d of the checkpoint of size %d: %v", v.line, ev.seq, t.size, err)
	}
	if ev.msgSHA != "" {
		n, ok := ev.bodies[ev.msgSHA]
		if !ok {
			fail(ev.seq, "no body line for message_sha256 %s", ev.msgSHA)
		}
		if ev.msgBytes >= 0 && int64(n) != ev.msgBytes {
			fail(ev.seq, "body is %d bytes, message_bytes says %d", n, ev.msgBytes)
		}
	}
	v.ev = nil
	v.next++
	v.events++
}

// splitLines is bufio.ScanLines without dropping a '\r': an entry is hashed
// exactly as it is in the file, less the '\n' that ends it.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func main() {
	var keys []string
	flag.Func("key", "verifier key `name+hexid+base64` (repeatable)", func(s string) error {
		keys = append(keys, s)
		return nil
	})
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: hoopverify -key VERIFIER_KEY [-key ...] EXPORT.jsonl\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if len(keys) == 0 || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var vs []note.Verifier
	for _, k := range keys {
		nv, err := note.NewVerifier(k)
		if err != nil {
			fmt.Fprintf(os.Stderr, "hoopverify: -key %q: %v\n", k, err)
			os.Exit(2)
		}
		vs = append(vs, nv)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "hoopverify: %v\n", err)
		os.Exit(2)
	}
	defer f.Close()

	v := &verifier{known: note.VerifierList(vs...)}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	sc.Split(splitLines)
	for sc.Scan() {
		v.line++
		v.do(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		fail(-1, "line %d: %v", v.line+1, err)
	}
	if v.section == 0 {
		fail(-1, "empty file")
	}
	v.startEvents()
	if v.ev != nil {
		fail(v.ev.seq, "no inclusion proof: the export ends")
	}
	if v.next != v.header.TreeSize {
		fail(v.next, "missing: the export ends before the tree size %d", v.header.TreeSize)
	}
	t := v.last()
	fmt.Printf("OK %s: %d events (seq %d to %d), %d checkpoints, tree size %d, root %s\n",
		t.origin, v.events, v.header.FirstSeq, t.size-1, len(v.cps), t.size, t.root)
}
