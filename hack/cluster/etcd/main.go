// Command etcd is the etcd server at the version kube-apiserver is tested with,
// built here so the local control plane needs no binary download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
