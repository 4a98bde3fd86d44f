package presence

// PendingLen returns how many users have deltas waiting to be written.
func (t *Tracker) PendingLen() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}
