package signer

import "io"

// spool holds the normalised entity in chunks, so that growing it never
// copies what is already there, and can be read any number of times.
type spool struct {
	chunks [][]byte
	next   int // size of the next chunk
	n      int
}

const maxChunk = 4 << 20

func newSpool(hint int) *spool { return &spool{next: max(hint, 4096)} }

func (s *spool) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(s.chunks) > 0 {
			last := &s.chunks[len(s.chunks)-1]
			if free := cap(*last) - len(*last); free > 0 {
				k := min(free, len(p))
				*last = append(*last, p[:k]...)
				p = p[k:]
				s.n += k
				continue
			}
		}
		s.chunks = append(s.chunks, make([]byte, 0, s.next))
		s.next = min(2*s.next, maxChunk)
	}
	return n, nil
}

// Bytes returns the content as one slice, valid until the next Write. If
// it is in several chunks they are joined once, and the join replaces
// them, so the content is never held twice.
func (s *spool) Bytes() []byte {
	switch len(s.chunks) {
	case 0:
		return nil
	case 1:
		return s.chunks[0]
	}
	b := make([]byte, 0, s.n)
	for _, c := range s.chunks {
		b = append(b, c...)
	}
	s.chunks = [][]byte{b}
	return b
}

// Len returns the number of octets written.
func (s *spool) Len() int { return s.n }

// Reader returns a reader over the whole content, from the start.
func (s *spool) Reader() io.Reader { return &spoolReader{chunks: s.chunks} }

// spoolReader reads chunks[i][off:], then the chunks after it.
type spoolReader struct {
	chunks [][]byte
	i, off int
}

func (r *spoolReader) Read(p []byte) (int, error) {
	for r.i < len(r.chunks) && r.off == len(r.chunks[r.i]) {
		r.i, r.off = r.i+1, 0
	}
	if r.i == len(r.chunks) {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[r.i][r.off:])
	r.off += n
	return n, nil
}

// WriteTo writes the chunks as they are, without copying.
func (r *spoolReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for ; r.i < len(r.chunks); r.i, r.off = r.i+1, 0 {
		n, err := w.Write(r.chunks[r.i][r.off:])
		total += int64(n)
		r.off += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
