// Command go_oracle reports how Go's net/http (the parser dockerd uses) reads raw HTTP
// request bytes, for tests/differential_test.ts.
//
// Input: JSON lines {"id": N, "b64": "..."} on stdin. Output: one JSON line per input, in
// order, with up to 3 pipelined requests read from one bufio.Reader over the bytes.
// Standard library only: it is built offline by the test.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
)

type input struct {
	ID  int    `json:"id"`
	B64 []byte `json:"b64"`
}

type request struct {
	Method           string              `json:"method"`
	RequestURI       string              `json:"requestURI"`
	Proto            string              `json:"proto"`
	Host             []byte              `json:"host"` // bytes: a header may hold any octet
	Path             string              `json:"path"`
	RawQuery         string              `json:"rawQuery"`
	Query            map[string][]string `json:"query"`
	QueryErr         string              `json:"queryErr"`
	ContentLength    int64               `json:"contentLength"`
	TransferEncoding []string            `json:"transferEncoding"`
	Close            bool                `json:"close"`
	Body             []byte              `json:"body"`
	Consumed         int                 `json:"consumed"`
	Form             map[string][]string `json:"form"`
	PostForm         map[string][]string `json:"postForm"`
	FormReadBody     int                 `json:"formReadBody"`
	ParseFormErr     string              `json:"parseFormErr"`
	// MultipartReadBody is what r.FormValue takes from the body when no ParseForm came
	// first (it calls ParseMultipartForm, which reads multipart/form-data bodies too).
	MultipartReadBody int `json:"multipartReadBody"`
}

type output struct {
	ID       int       `json:"id"`
	Requests []request `json:"requests"`
	// Error is why the request after Requests could not be read ("" when the input ended).
	Error string `json:"error"`
}

// countingReader counts the bytes ParseForm takes from a body.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func values(v url.Values) map[string][]string {
	out := map[string][]string{}
	for k, vs := range v {
		out[k] = vs
	}
	return out
}

func readOne(src *bytes.Reader, br *bufio.Reader, total int, start *int) (*request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	pos := total - src.Len() - br.Buffered()
	out := &request{
		Method: req.Method, RequestURI: req.RequestURI, Proto: req.Proto, Host: []byte(req.Host),
		Path: req.URL.Path, RawQuery: req.URL.RawQuery,
		ContentLength: req.ContentLength, TransferEncoding: req.TransferEncoding,
		Close: req.Close, Body: body, Consumed: pos - *start,
	}
	*start = pos
	q, qerr := url.ParseQuery(req.URL.RawQuery)
	out.Query = values(q)
	if qerr != nil {
		out.QueryErr = qerr.Error()
	}
	counter := &countingReader{r: bytes.NewReader(body)}
	req.Body = io.NopCloser(counter)
	if err := req.ParseForm(); err != nil {
		out.ParseFormErr = err.Error()
	}
	out.Form = values(req.Form)
	out.PostForm = values(req.PostForm)
	out.FormReadBody = counter.n
	fresh := req.Clone(req.Context())
	fresh.Form, fresh.PostForm, fresh.MultipartForm = nil, nil, nil
	multipart := &countingReader{r: bytes.NewReader(body)}
	fresh.Body = io.NopCloser(multipart)
	_ = fresh.FormValue("")
	out.MultipartReadBody = multipart.n
	return out, nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	enc := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var item input
		if err := json.Unmarshal(in.Bytes(), &item); err != nil {
			panic(err)
		}
		src := bytes.NewReader(item.B64)
		br := bufio.NewReader(src)
		out := output{ID: item.ID, Requests: []request{}}
		start := 0
		for i := 0; i < 3; i++ {
			r, err := readOne(src, br, len(item.B64), &start)
			if err == io.EOF {
				break
			}
			if err != nil {
				out.Error = err.Error()
				break
			}
			out.Requests = append(out.Requests, *r)
			if r.Close {
				break
			}
		}
		if err := enc.Encode(out); err != nil {
			panic(err)
		}
	}
	if err := in.Err(); err != nil {
		panic(err)
	}
}
