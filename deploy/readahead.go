package deploy

import (
	"io"
	"sync"
)

// readAhead reads r in a goroutine into a few large buffers, so that fetching and
// decompressing overlap with extraction and disk writes: the shell pipeline this replaces
// (curl | zstd -dc | tar -x) gets that overlap from running three processes. At most
// depth buffers of size bytes are in flight, which bounds memory.
type readAhead struct {
	ch   chan chunk
	free chan []byte
	stop chan struct{}
	once sync.Once
	cur  chunk
	off  int
	err  error
	wg   sync.WaitGroup
}

type chunk struct {
	buf []byte
	n   int
	err error
}

func newReadAhead(r io.Reader, size, depth int) *readAhead {
	ra := &readAhead{ch: make(chan chunk, depth), free: make(chan []byte, depth+1), stop: make(chan struct{})}
	for i := 0; i < depth+1; i++ {
		ra.free <- make([]byte, size)
	}
	ra.wg.Add(1)
	go func() {
		defer ra.wg.Done()
		defer close(ra.ch)
		for {
			var buf []byte
			select {
			case buf = <-ra.free:
			case <-ra.stop:
				return
			}
			n, err := io.ReadFull(r, buf)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF // a short last chunk is the normal end of the stream
			}
			select {
			case ra.ch <- chunk{buf, n, err}:
			case <-ra.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ra
}

// Read returns the buffered bytes in order, then the underlying reader's error.
func (ra *readAhead) Read(p []byte) (int, error) {
	for ra.off >= ra.cur.n {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.cur.buf != nil {
			ra.free <- ra.cur.buf
		}
		c, ok := <-ra.ch
		if !ok {
			ra.cur, ra.err = chunk{}, io.ErrClosedPipe
			return 0, ra.err
		}
		ra.cur, ra.off = c, 0
		if c.n == 0 && c.err != nil {
			ra.err = c.err
			return 0, c.err
		}
		if c.err != nil {
			ra.err = c.err // delivered after this chunk's bytes
		}
	}
	n := copy(p, ra.cur.buf[ra.off:ra.cur.n])
	ra.off += n
	return n, nil
}

// Close stops the goroutine and waits for it; it does not close the underlying reader.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	ra.wg.Wait()
	return nil
}
