// Command coredns is CoreDNS with only the plugins the real node's Corefile
// uses (hack/node/node.sh): bind, errors, cache, kubernetes and forward. The
// full build links every plugin (cloud DNS providers, etcd, dnstap, ...) and
// takes most of the node's build time; this one shares its Kubernetes client
// packages with the kubelet's build.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func init() {
	// The order CoreDNS's plugin.cfg gives these plugins.
	dnsserver.Directives = []string{"bind", "errors", "cache", "kubernetes", "forward"}
}

func main() {
	coremain.Run()
}
