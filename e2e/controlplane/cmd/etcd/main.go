// Command etcd is etcd's own server main, built from go.etcd.io/etcd/server/v3 at the version the
// control plane's go.mod pins, so the end-to-end suite needs no etcd binary from elsewhere.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
