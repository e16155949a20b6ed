package plutos

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	Event string // "message" when the frame had no event: line
	Data  string
}

// sseReader parses the WHATWG event-stream format: lines end in \n, \r\n or \r; "event:" names
// the event; "data:" lines are joined with \n; a blank line dispatches (an event without data is
// not); lines starting with ':' are comments (keep-alives).
type sseReader struct {
	scanner *bufio.Scanner
	first   bool
}

const maxSSELine = 4 << 20

func newSSEReader(r io.Reader) *sseReader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	s.Split(scanSSELines)
	return &sseReader{scanner: s, first: true}
}

// scanSSELines splits on \n, \r\n or \r.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		// \r: a following \n belongs to the same line ending; wait to see it.
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// Next returns the next event, or io.EOF at the end of the stream (a last event without the
// closing blank line is discarded, as the WHATWG standard says; clients/sse_corpus.json is the test).
func (r *sseReader) Next() (sseEvent, error) {
	var name string
	var data []string
	sawData := false
	for r.scanner.Scan() {
		line := r.scanner.Text()
		if r.first {
			line = strings.TrimPrefix(line, "\ufeff")
			r.first = false
		}
		if line == "" {
			if sawData {
				return makeEvent(name, data), nil
			}
			name, data = "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			name = value
		case "data":
			data = append(data, value)
			sawData = true
		}
	}
	if err := r.scanner.Err(); err != nil {
		return sseEvent{}, err
	}
	// The stream is over: an event not ended by a blank line is discarded, as the standard says.
	return sseEvent{}, io.EOF
}

func makeEvent(name string, data []string) sseEvent {
	if name == "" {
		name = "message"
	}
	return sseEvent{Event: name, Data: strings.Join(data, "\n")}
}
