package lookup

import (
	"container/list"
	"sync"
	"time"
)

type cacheKey struct {
	name  string // canonical, fully qualified
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	a       *answer
	expires time.Time
}

// cache is a size-bounded LRU of answers, each kept until its TTL runs out.
type cache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front: most recently used
	items map[cacheKey]*list.Element
	hits  uint64
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), items: make(map[cacheKey]*list.Element, min(max, 1024))}
}

func (c *cache) get(k cacheKey, now time.Time) (*answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return nil, false
	}
	ce := e.Value.(*cacheEntry)
	if !now.Before(ce.expires) {
		c.ll.Remove(e)
		delete(c.items, k)
		return nil, false
	}
	c.ll.MoveToFront(e)
	c.hits++
	return ce.a, true
}

func (c *cache) put(k cacheKey, a *answer, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		ce := e.Value.(*cacheEntry)
		ce.a, ce.expires = a, expires
		c.ll.MoveToFront(e)
		return
	}
	c.items[k] = c.ll.PushFront(&cacheEntry{key: k, a: a, expires: expires})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

// CacheStats says how the cache is used: entries held and answers served
// from it. Both are zero without a cache.
type CacheStats struct {
	Entries int
	Hits    uint64
}

// CacheStats reports the cache's use.
func (c *Client) CacheStats() CacheStats {
	if c.cache == nil {
		return CacheStats{}
	}
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	return CacheStats{Entries: c.cache.ll.Len(), Hits: c.cache.hits}
}
