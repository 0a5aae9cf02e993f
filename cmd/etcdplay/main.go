// Command etcdplay deploys and operates etcd clusters over SSH.
package main

import (
	"os"

	"github.com/etcdplay/etcdplay/internal/cli"
	_ "github.com/etcdplay/etcdplay/modules/all"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
