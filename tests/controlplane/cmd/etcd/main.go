// Command etcd is the upstream etcd server (the version k8s.io/kubernetes
// itself depends on), built for Sendit's test control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
