package keystore

import "container/list"

// keyCache is an LRU of unwrapped keys, bounded by entry count. It owns its
// key bytes and zeroes them when they leave, so a destroyed or evicted key
// does not linger in the heap longer than the garbage collector makes it.
// Not safe for concurrent use; Store guards it with its mutex.
type keyCache struct {
	max   int
	ll    *list.List
	items map[kidT]*list.Element
}

type cacheItem struct {
	kid kidT
	key []byte
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, ll: list.New(), items: make(map[kidT]*list.Element)}
}

// get returns a copy of the cached key, so callers cannot change or keep the
// cache's own bytes.
func (c *keyCache) get(kid kidT) ([]byte, bool) {
	el, ok := c.items[kid]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return append([]byte(nil), el.Value.(*cacheItem).key...), true
}

func (c *keyCache) put(kid kidT, key []byte) {
	if c.max <= 0 {
		return
	}
	if el, ok := c.items[kid]; ok {
		c.ll.MoveToFront(el)
		return
	}
	c.items[kid] = c.ll.PushFront(&cacheItem{kid: kid, key: append([]byte(nil), key...)})
	for c.ll.Len() > c.max {
		c.removeElement(c.ll.Back())
	}
}

func (c *keyCache) remove(kid kidT) {
	if el, ok := c.items[kid]; ok {
		c.removeElement(el)
	}
}

func (c *keyCache) removeElement(el *list.Element) {
	it := el.Value.(*cacheItem)
	clear(it.key)
	delete(c.items, it.kid)
	c.ll.Remove(el)
}

func (c *keyCache) clearAll() {
	for c.ll.Len() > 0 {
		c.removeElement(c.ll.Back())
	}
}

func (c *keyCache) len() int { return c.ll.Len() }
