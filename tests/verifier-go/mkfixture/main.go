// Command mkfixture writes a valid hoop audit export (docs/audit.md, "Export
// format", version 1) made with Go's own note and tlog code, to test
// hoopverify before, and independently of, hoop's exporter.
//
//	mkfixture -o FILE   writes the export, prints its verifier key
//	mkfixture -newkey   prints a fresh verifier key of the same name
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const origin = "hoop.example/audit"

// proof is a consistency proof (From, To) or an inclusion proof (Seq, TreeSize).
type proof struct {
	From     int64       `json:"from,omitempty"`
	To       int64       `json:"to,omitempty"`
	Seq      *int64      `json:"seq,omitempty"`
	TreeSize int64       `json:"tree_size,omitempty"`
	Proof    []tlog.Hash `json:"proof"`
}

func line(out *strings.Builder, v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	out.Write(b)
	out.WriteByte('\n')
}

func main() {
	out := flag.String("o", "", "write the export to `FILE`")
	newKey := flag.Bool("newkey", false, "only print a fresh verifier key named "+origin)
	flag.Parse()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		log.Fatal(err)
	}
	if *newKey {
		fmt.Println(vkey)
		return
	}
	if *out == "" {
		log.Fatal("usage: mkfixture -o FILE | -newkey")
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		log.Fatal(err)
	}

	// Ten events; seq 4's message is stored beside it as a body.
	body := []byte(`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a big answer"}]}}`)
	sum := sha256.Sum256(body)
	bodyHex := hex.EncodeToString(sum[:])
	var events [][]byte
	for i := 0; i < 10; i++ {
		msg := fmt.Sprintf(`"message":{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"read_file"}}`, i)
		if i == 4 {
			msg = fmt.Sprintf(`"message_sha256":"%s","message_bytes":%d`, bodyHex, len(body))
		}
		events = append(events, []byte(fmt.Sprintf(
			`{"seq":%d,"v":1,"time":"2026-12-03T09:25:53.%09dZ","type":"request","exchange":"%016x",`+
				`"actor":{"sub":"alice","kind":"human"},"target":"files","jsonrpc_id":%d,"method":"tools/call",`+
				`"name":"read_file","decision":"allow","rule":"r1",%s}`,
			i, 123456789+i, 0xa0+i/2, i, msg)))
	}

	// The tree, in memory.
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		hs := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			hs[i] = stored[x]
		}
		return hs, nil
	})
	for i, e := range events {
		hs, err := tlog.StoredHashes(int64(i), e, r)
		if err != nil {
			log.Fatal(err)
		}
		stored = append(stored, hs...)
	}

	var b strings.Builder
	sizes := []int64{6, 10}
	T := sizes[len(sizes)-1]
	line(&b, struct {
		Version  int    `json:"hoop_audit_export"`
		Origin   string `json:"origin"`
		Key      string `json:"key"`
		FirstSeq int64  `json:"first_seq"`
		TreeSize int64  `json:"tree_size"`
		At       string `json:"exported_at"`
	}{1, origin, vkey, 0, T, "2026-12-03T10:00:00Z"})
	for _, n := range sizes {
		root, err := tlog.TreeHash(n, r)
		if err != nil {
			log.Fatal(err)
		}
		signed, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", origin, n, root)}, signer)
		if err != nil {
			log.Fatal(err)
		}
		line(&b, map[string]string{"checkpoint": string(signed)})
	}
	for i := 1; i < len(sizes); i++ {
		p, err := tlog.ProveTree(sizes[i], sizes[i-1], r)
		if err != nil {
			log.Fatal(err)
		}
		line(&b, map[string]proof{"consistency": {From: sizes[i-1], To: sizes[i], Proof: []tlog.Hash(p)}})
	}
	for i, e := range events {
		b.Write(e)
		b.WriteByte('\n')
		if i == 4 {
			line(&b, map[string]string{"body": bodyHex, "data": base64.StdEncoding.EncodeToString(body)})
		}
		p, err := tlog.ProveRecord(T, int64(i), r)
		if err != nil {
			log.Fatal(err)
		}
		seq := int64(i)
		line(&b, map[string]proof{"inclusion": {Seq: &seq, TreeSize: T, Proof: []tlog.Hash(p)}})
	}
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println(vkey)
}
