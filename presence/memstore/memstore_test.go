package memstore_test

import (
	"testing"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
	"github.com/presenced/presenced/presence/storetest"
)

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) presence.Store {
		return memstore.New(storetest.TTL, nil)
	})
}
