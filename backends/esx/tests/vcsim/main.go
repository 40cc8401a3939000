// Command vcsim serves govmomi's vCenter/ESX simulator for the virtabs-esx tests.
//
// TEST INFRASTRUCTURE ONLY. This is the project's own small main around the simulator
// package of Debian's golang-github-vmware-govmomi-dev (0.24.2), which ships the package
// but no vcsim command. It is modelled on upstream govmomi's vcsim/main.go (Apache-2.0)
// and adds what the virtabs tests need:
//
//   - -cert/-key: serve TLS with the given certificate (the simulator's built-in one is
//     1024-bit RSA, which OpenSSL 3 at Debian's default level refuses);
//   - -tls=false: plain HTTP;
//   - -method-delay Method:ms,...: extra delay for single methods (to provoke client timeouts);
//   - -l 127.0.0.1:0: a free port chosen by the kernel, printed on stdout;
//   - -paging: a PAGING DOUBLE. 0.24.2's RetrievePropertiesEx ignores RetrieveOptions.maxObjects
//     and has no ContinueRetrievePropertiesEx; with -paging the root PropertyCollector is wrapped so
//     that it returns at most maxObjects objects per page with a token, and serves
//     ContinueRetrievePropertiesEx / CancelRetrievePropertiesEx, as real vCenter does. Only the
//     paging is simulated; the objects are the simulator's own.
//   - a SOAP call counter: GET /vcsim/calls returns {"Method": count, ...} for every
//     POST to /sdk since the start or the last POST /vcsim/calls/reset.
//
// Build offline in GOPATH mode:
//
//	GO111MODULE=off GOPATH=$PWD/gopath:/usr/share/gocode go build -o vcsim virtabs-vcsim
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// pagingCollector is the paging double described in the package comment. The simulator makes one
// zero-valued instance per session by reflection, so the page store is created lazily.
type pagingCollector struct {
	simulator.PropertyCollector

	pageMu sync.Mutex
	pages  map[string]*pending
	seq    int
}

type pending struct {
	objects []types.ObjectContent
	size    int
}

// nextPage cuts one page of at most size objects, storing the rest under a new token.
func (pc *pagingCollector) nextPage(objects []types.ObjectContent, size int) types.RetrieveResult {
	if size <= 0 || len(objects) <= size {
		return types.RetrieveResult{Objects: objects}
	}
	pc.pageMu.Lock()
	defer pc.pageMu.Unlock()
	if pc.pages == nil {
		pc.pages = map[string]*pending{}
	}
	pc.seq++
	token := "page-" + strconv.Itoa(pc.seq)
	pc.pages[token] = &pending{objects: objects[size:], size: size}
	return types.RetrieveResult{Objects: objects[:size], Token: token}
}

func (pc *pagingCollector) take(token string) (*pending, bool) {
	pc.pageMu.Lock()
	defer pc.pageMu.Unlock()
	p, ok := pc.pages[token]
	delete(pc.pages, token)
	return p, ok
}

// RetrievePropertiesEx honours RetrieveOptions.maxObjects.
func (pc *pagingCollector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, r)
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	page := pc.nextPage(body.Res.Returnval.Objects, int(r.Options.MaxObjects))
	body.Res.Returnval = &page
	return body
}

// ContinueRetrievePropertiesEx returns the next page of an earlier RetrievePropertiesEx.
func (pc *pagingCollector) ContinueRetrievePropertiesEx(r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	p, ok := pc.take(r.Token)
	if !ok {
		body.Fault_ = simulator.Fault("unknown token", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: pc.nextPage(p.objects, p.size)}
	return body
}

// CancelRetrievePropertiesEx drops the pages left behind a token.
func (pc *pagingCollector) CancelRetrievePropertiesEx(r *types.CancelRetrievePropertiesEx) soap.HasFault {
	body := &methods.CancelRetrievePropertiesExBody{}
	if _, ok := pc.take(r.Token); !ok {
		body.Fault_ = simulator.Fault("unknown token", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	body.Res = &types.CancelRetrievePropertiesExResponse{}
	return body
}

// callCounter counts SOAP requests by method name.
type callCounter struct {
	mu     sync.Mutex
	counts map[string]int
	next   http.Handler
}

// The first element inside the SOAP Body is the method, e.g. <RetrievePropertiesEx xmlns="urn:vim25">.
var methodRE = regexp.MustCompile(`<(?:[A-Za-z0-9_]+:)?Body[^>]*>\s*<(?:[A-Za-z0-9_]+:)?([A-Za-z0-9_]+)`)

func (c *callCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/vcsim/calls" && r.Method == http.MethodGet:
		c.mu.Lock()
		data, _ := json.Marshal(c.counts)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
		return
	case r.URL.Path == "/vcsim/calls/reset" && r.Method == http.MethodPost:
		c.mu.Lock()
		c.counts = map[string]int{}
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/sdk" {
		body, err := ioutil.ReadAll(r.Body)
		_ = r.Body.Close()
		if err == nil {
			name := "unknown"
			if m := methodRE.FindSubmatch(body); m != nil {
				name = string(m[1])
			}
			c.mu.Lock()
			c.counts[name]++
			c.mu.Unlock()
		}
		r.Body = ioutil.NopCloser(bytes.NewReader(body))
	}
	c.next.ServeHTTP(w, r)
}

func main() {
	model := simulator.VPX()

	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "number of datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "number of clusters")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "number of hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "number of standalone hosts")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "number of local datastores")
	flag.IntVar(&model.Machine, "vm", model.Machine, "number of virtual machines per resource pool")
	flag.IntVar(&model.Pool, "pool", model.Pool, "number of resource pools per compute resource")
	flag.IntVar(&model.App, "app", model.App, "number of virtual apps per compute resource")
	flag.IntVar(&model.Pod, "pod", model.Pod, "number of storage pods per datacenter")
	flag.IntVar(&model.Portgroup, "pg", model.Portgroup, "number of port groups")
	flag.IntVar(&model.Folder, "folder", model.Folder, "number of folders")
	flag.BoolVar(&model.Autostart, "autostart", model.Autostart, "power on model-created VMs")
	flag.IntVar(&model.DelayConfig.Delay, "delay", model.DelayConfig.Delay, "delay added to every SOAP call (ms)")
	methodDelay := flag.String("method-delay", "", "extra delay per method, e.g. RetrievePropertiesEx:3000,Login:10 (ms)")
	isESX := flag.Bool("esx", false, "simulate a standalone ESX host instead of a vCenter")
	useTLS := flag.Bool("tls", true, "serve HTTPS (false: plain HTTP)")
	certFile := flag.String("cert", "", "PEM certificate (chain) to serve; default: the simulator's built-in one")
	keyFile := flag.String("key", "", "PEM private key of -cert")
	listen := flag.String("l", "127.0.0.1:8989", "listen address (port 0: a free port)")
	username := flag.String("username", "", "login user name (default: any)")
	password := flag.String("password", "", "login password (default: any)")
	trace := flag.Bool("trace", false, "trace SOAP traffic to stderr")
	paging := flag.Bool("paging", false, "honour maxObjects and serve ContinueRetrievePropertiesEx (paging double)")
	flag.Parse()

	if *methodDelay != "" {
		model.DelayConfig.MethodDelay = map[string]int{}
		for _, item := range strings.Split(*methodDelay, ",") {
			name, ms, ok := strings.Cut(item, ":")
			delay, err := strconv.Atoi(ms)
			if !ok || err != nil {
				log.Fatalf("-method-delay %q: want Method:milliseconds", item)
			}
			model.DelayConfig.MethodDelay[name] = delay
		}
	}

	if *isESX {
		opts := model
		model = simulator.ESX()
		model.Datastore = opts.Datastore
		model.Machine = opts.Machine
		model.Autostart = opts.Autostart
		model.DelayConfig = opts.DelayConfig
	}
	simulator.Trace = *trace

	host, portText, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("-l %s: %s", *listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		log.Fatalf("-l %s: bad port", *listen)
	}
	esx.HostSystem.Summary.ManagementServerIp = host
	if port != 0 {
		esx.HostSystem.Summary.Config.Port = int32(port)
	}

	tag := " (govmomi simulator)"
	model.ServiceContent.About.Name += tag
	model.ServiceContent.About.FullName += tag
	model.ServiceContent.About.OsType = runtime.GOOS + "-" + runtime.GOARCH

	if err = model.Create(); err != nil {
		log.Fatal(err)
	}

	if *paging {
		pc := new(pagingCollector)
		pc.Self = simulator.Map.Get(model.ServiceContent.PropertyCollector).Reference()
		simulator.Map.Put(pc)
	}

	u := &url.URL{Host: *listen}
	if *username != "" {
		u.User = url.UserPassword(*username, *password)
	}
	model.Service.Listen = u

	if *useTLS {
		config := new(tls.Config)
		if *certFile != "" {
			cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				log.Fatalf("-cert/-key: %s", err)
			}
			config.Certificates = []tls.Certificate{cert}
		}
		model.Service.TLS = config
	}

	server := model.Service.NewServer()
	// Nobody knows the port before it is printed below, so no request is in flight yet.
	server.Config.Handler = &callCounter{counts: map[string]int{}, next: server.Config.Handler}

	public := *server.URL
	public.User = nil // never print the credentials
	fmt.Printf("export GOVC_URL=%s GOVC_SIM_PID=%d\n", public.String(), os.Getpid())
	_ = os.Stdout.Sync()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig

	model.Remove()
	server.Close()
}
