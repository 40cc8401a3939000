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
//   - -disks: a VIRTUAL DISK DOUBLE. 0.24.2's CreateVirtualDisk_Task makes two empty files and
//     ignores the spec's capacityKb, it has no ExtendVirtualDisk_Task (MethodNotFound), and its
//     datastore browser never sets VmDiskFileInfo.capacityKb. With -disks the simulator's
//     VirtualDiskManager and datastore browsers are wrapped (same references), written here without
//     upstream code:
//     (1) CreateVirtualDisk_Task writes "<name>.vmdk" as a text descriptor in the layout of VMware's
//     Virtual Disk Format 1.1 ("# Disk DescriptorFile", version=1, createType "vmfsThin" for a thin
//     disk and "vmfs" for the thick kinds, one extent line `RW <sectors> VMFS "<name>-flat.vmdk"` in
//     512-byte sectors, ddb.* lines) carrying the requested capacity, and an empty
//     "<name>-flat.vmdk" (no data is ever written); an existing file is FileAlreadyExists, as in 0.24.2.
//     (2) ExtendVirtualDisk_Task(name, datacenter, newCapacityKb, eagerZero) grows the last extent to
//     newCapacityKb. The vSphere API reference, ExtendVirtualDiskRequestType
//     (https://developer.broadcom.com/xapis/virtual-infrastructure-json-api/latest/data-structures/ExtendVirtualDiskRequestType):
//     "newCapacityKb: the new capacity of the virtual disk in Kb", "eagerZero: if true, the extended
//     part of the disk will be explicitly filled with zeroes"; the method expands a disk and has no
//     shrinking (pyvmomi issue #529 asks for a way to decrease a disk and got none). A smaller
//     newCapacityKb is therefore a FileFault that leaves the disk alone, which is also what govmomi's
//     later simulator answers ("cannot shrink disk", simulator/virtual_disk_manager.go); the same
//     capacity succeeds unchanged; a missing disk is FileNotFound; a file that is no text descriptor
//     is a FileFault. eagerZero is accepted and changes nothing here.
//     (3) SearchDatastore_Task / SearchDatastoreSubFolders_Task answer a VmDiskFileQuery with
//     VmDiskFileInfo.capacityKb (and thin, diskType when asked) read from the descriptor, as ESX
//     reports a disk's capacity there.
//     (4) The disks 0.24.2 makes for VMs (the model's, CreateVM_Task's, ReconfigVM_Task's new disks:
//     empty files) get a descriptor with the VM device's capacityInKB once the task has succeeded; a
//     ReconfigVM_Task that grows a disk grows its extent.
//     Not simulated: a disk in use by a running VM (ESX grows those through ReconfigVM_Task), zeroing,
//     copies and moves rewriting the descriptor (0.24.2 copies the two files as they are), datastores
//     created after the start (their browser is 0.24.2's).
//     A flag, like -paging, so that a run without it is the simulator as Debian ships it
//     (tests/test_vcsim_tooling.py shows that one has no ExtendVirtualDisk_Task).
//   - a SOAP call counter: GET /vcsim/calls returns {"Method": count, ...} for every
//     POST to /sdk since the start or the last POST /vcsim/calls/reset.
//
// Build offline in GOPATH mode:
//
//	GO111MODULE=off GOPATH=$PWD/gopath:/usr/share/gocode go build -o vcsim virtabs-vcsim
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
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
	disks := flag.Bool("disks", false, "VMDK descriptors with their capacity, ExtendVirtualDisk_Task, capacityKb (disk double)")
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
	if *disks {
		installDiskDouble(model.ServiceContent)
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

// ---- the virtual disk double (-disks) ----------------------------------------------------------------

// sectorSize is the unit of a VMDK extent's size (VMware Virtual Disk Format 1.1, "Extent Descriptions").
const sectorSize = 512

// maxDescriptor bounds what is read as a text descriptor: real ones are well under 2 KiB; a larger
// file (a monolithic sparse disk, an extent) is not one.
const maxDescriptor = 64 << 10

// diskExtent is one extent line of a descriptor: access, size in sectors, type, file name.
type diskExtent struct {
	access  string
	sectors int64
	kind    string
	file    string
}

// diskDescriptor is what the double reads back from a text descriptor.
type diskDescriptor struct {
	createType string
	extents    []diskExtent
	thin       bool
	ddb        []string // the ddb.* lines as written, kept in order when the descriptor is rewritten
}

func (d *diskDescriptor) capacityBytes() int64 {
	var total int64
	for _, e := range d.extents {
		total += e.sectors * sectorSize
	}
	return total
}

var extentRE = regexp.MustCompile(`^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(FLAT|SPARSE|ZERO|VMFS|VMFSSPARSE|VMFSRDM|VMFSRAW|SESPARSE)(?:\s+"([^"]*)")?(?:\s+\d+)?$`)

// readDescriptor parses a text descriptor; an empty or binary file (what 0.24.2's own disk creation
// leaves) is "not a descriptor" (ok false), never a zero-sized disk.
func readDescriptor(file string) (*diskDescriptor, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	data, err := ioutil.ReadAll(io.LimitReader(f, maxDescriptor+1))
	if err != nil {
		return nil, false, err
	}
	if len(data) > maxDescriptor || !bytes.HasPrefix(data, []byte("# Disk DescriptorFile")) {
		return nil, false, nil
	}
	d := &diskDescriptor{}
	for _, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "createType="):
			d.createType = strings.Trim(strings.TrimPrefix(line, "createType="), `"`)
		case strings.HasPrefix(line, "ddb."):
			d.ddb = append(d.ddb, line)
			if strings.ReplaceAll(line, " ", "") == `ddb.thinProvisioned="1"` {
				d.thin = true
			}
		default:
			if m := extentRE.FindStringSubmatch(line); m != nil {
				sectors, _ := strconv.ParseInt(m[2], 10, 64)
				d.extents = append(d.extents, diskExtent{access: m[1], sectors: sectors, kind: m[3], file: m[4]})
			}
		}
	}
	if len(d.extents) == 0 {
		return nil, false, nil
	}
	return d, true, nil
}

// text renders the descriptor in the layout ESX writes for a VMFS disk.
func (d *diskDescriptor) text(cid string) string {
	var b strings.Builder
	b.WriteString("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\n")
	fmt.Fprintf(&b, "CID=%s\nparentCID=ffffffff\ncreateType=\"%s\"\n\n# Extent description\n", cid, d.createType)
	for _, e := range d.extents {
		fmt.Fprintf(&b, "%s %d %s \"%s\"\n", e.access, e.sectors, e.kind, e.file)
	}
	b.WriteString("\n# The Disk Data Base\n#DDB\n\n")
	for _, line := range d.ddb {
		b.WriteString(line + "\n")
	}
	return b.String()
}

// writeDescriptor replaces file atomically (a reader never sees half a descriptor).
func writeDescriptor(file string, d *diskDescriptor) error {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s:%d", file, d.capacityBytes())))
	tmp := file + ".vcsim-tmp"
	if err := ioutil.WriteFile(tmp, []byte(d.text(hex.EncodeToString(sum[:4]))), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// newDescriptor is the descriptor of a new disk of capacityKb: thin disks are createType "vmfsThin" with
// ddb.thinProvisioned, the thick kinds "vmfs"; one VMFS extent, the "<name>-flat.vmdk" next to it.
func newDescriptor(file string, capacityKb int64, diskType, adapterType string) *diskDescriptor {
	sectors := capacityKb * 1024 / sectorSize
	thin := diskType == string(types.VirtualDiskTypeThin)
	d := &diskDescriptor{createType: "vmfs", thin: thin}
	if thin {
		d.createType = "vmfsThin"
	}
	flat := strings.TrimSuffix(path.Base(file), ".vmdk") + "-flat.vmdk"
	d.extents = []diskExtent{{access: "RW", sectors: sectors, kind: "VMFS", file: flat}}
	adapter := strings.ToLower(adapterType)
	if adapter == "" {
		adapter = "lsilogic"
	}
	heads, perTrack := int64(255), int64(63)
	if adapter == "ide" {
		heads = 16
	}
	id := uuid.NewSHA1(uuid.NameSpaceURL, []byte(file))
	var hexID []string
	for _, c := range id[:] {
		hexID = append(hexID, fmt.Sprintf("%02x", c))
	}
	d.ddb = []string{
		fmt.Sprintf(`ddb.adapterType = "%s"`, adapter),
		fmt.Sprintf(`ddb.geometry.cylinders = "%d"`, sectors/(heads*perTrack)),
		fmt.Sprintf(`ddb.geometry.heads = "%d"`, heads),
		fmt.Sprintf(`ddb.geometry.sectors = "%d"`, perTrack),
	}
	if thin {
		d.ddb = append(d.ddb, `ddb.thinProvisioned = "1"`)
	}
	d.ddb = append(d.ddb,
		fmt.Sprintf(`ddb.uuid = "%s"`, strings.Join(hexID, " ")),
		`ddb.virtualHWVersion = "13"`,
	)
	return d
}

// resolveDiskPath turns "[datastore] dir/x.vmdk" into the simulator's local file, as the FileManager
// does: a datacenter is required on a vCenter (InvalidArgument "dc"), the datastore must exist.
func resolveDiskPath(dc *types.ManagedObjectReference, name string) (string, types.BaseMethodFault) {
	var p object.DatastorePath
	if !p.FromString(name) {
		return "", &types.InvalidDatastorePath{DatastorePath: name}
	}
	if dc == nil && simulator.Map.IsVPX() {
		return "", &types.InvalidArgument{InvalidProperty: "dc"}
	}
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		if ds.Name == p.Datastore {
			return path.Join(ds.Info.GetDatastoreInfo().Url, p.Path), nil
		}
	}
	return "", &types.InvalidDatastore{Name: p.Datastore}
}

func fileFault(fault types.BaseFileFault, name string) types.BaseMethodFault {
	fault.GetFileFault().File = name
	return fault.(types.BaseMethodFault)
}

// diskManager is the VirtualDiskManager of the double: CreateVirtualDisk_Task writes a descriptor with
// the requested capacity, ExtendVirtualDisk_Task grows it. Delete, move and copy stay 0.24.2's (they
// handle "x.vmdk" and "x-flat.vmdk" as two files).
type diskManager struct {
	simulator.VirtualDiskManager
}

// CreateVirtualDiskTask makes "<name>" (the descriptor) and an empty "<name-flat>" extent (a thin disk
// has nothing allocated; no data is ever written). An existing file is FileAlreadyExists, as in 0.24.2.
func (m *diskManager) CreateVirtualDiskTask(_ *simulator.Context, req *types.CreateVirtualDisk_Task) soap.HasFault {
	task := simulator.CreateTask(m, "createVirtualDisk", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		file, fault := resolveDiskPath(req.Datacenter, req.Name)
		if fault != nil {
			return nil, fault
		}
		spec, ok := req.Spec.(types.BaseFileBackedVirtualDiskSpec)
		if !ok {
			return nil, &types.InvalidArgument{InvalidProperty: "spec"}
		}
		fb := spec.GetFileBackedVirtualDiskSpec()
		if fb.CapacityKb <= 0 {
			return nil, &types.InvalidArgument{InvalidProperty: "spec.capacityKb"}
		}
		flat := strings.TrimSuffix(file, ".vmdk") + "-flat.vmdk"
		for _, f := range []string{file, flat} {
			if _, err := os.Stat(f); err == nil {
				return nil, fileFault(new(types.FileAlreadyExists), f)
			}
		}
		if _, err := os.Stat(path.Dir(file)); err != nil {
			return nil, fileFault(new(types.FileNotFound), path.Dir(file))
		}
		if err := ioutil.WriteFile(flat, nil, 0o644); err != nil {
			return nil, fileFault(new(types.CannotCreateFile), flat)
		}
		if err := writeDescriptor(file, newDescriptor(file, fb.CapacityKb, fb.DiskType, fb.AdapterType)); err != nil {
			_ = os.Remove(flat)
			return nil, fileFault(new(types.CannotCreateFile), file)
		}
		return req.Name, nil
	})
	return &methods.CreateVirtualDisk_TaskBody{
		Res: &types.CreateVirtualDisk_TaskResponse{Returnval: task.Run()},
	}
}

// ExtendVirtualDiskTask grows the disk's last extent to newCapacityKb. A smaller capacity is a
// FileFault (vSphere cannot shrink a virtual disk), the same capacity succeeds without change, a
// missing descriptor is FileNotFound, a file that is no text descriptor a FileFault. eagerZero is
// accepted and changes nothing (the double writes no data).
func (m *diskManager) ExtendVirtualDiskTask(_ *simulator.Context, req *types.ExtendVirtualDisk_Task) soap.HasFault {
	task := simulator.CreateTask(m, "extendVirtualDisk", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		file, fault := resolveDiskPath(req.Datacenter, req.Name)
		if fault != nil {
			return nil, fault
		}
		if req.NewCapacityKb <= 0 {
			return nil, &types.InvalidArgument{InvalidProperty: "newCapacityKb"}
		}
		d, ok, err := readDescriptor(file)
		switch {
		case os.IsNotExist(err):
			return nil, fileFault(new(types.FileNotFound), req.Name)
		case err != nil || !ok:
			return nil, fileFault(new(types.FileFault), req.Name)
		}
		current := d.capacityBytes()
		wanted := req.NewCapacityKb * 1024
		if wanted < current {
			return nil, fileFault(new(types.FileFault), req.Name)
		}
		last := &d.extents[len(d.extents)-1]
		last.sectors += (wanted - current) / sectorSize
		if err := writeDescriptor(file, d); err != nil {
			return nil, fileFault(new(types.CannotAccessFile), req.Name)
		}
		return nil, nil
	})
	return &methods.ExtendVirtualDisk_TaskBody{
		Res: &types.ExtendVirtualDisk_TaskResponse{Returnval: task.Run()},
	}
}

// diskBrowser is a datastore browser of the double: after 0.24.2's search, every .vmdk a
// VmDiskFileQuery found is answered as a VmDiskFileInfo with capacityKb (and thin, diskType) read
// from its descriptor, as ESX does (the VMs' disks get theirs from vmDiskSync).
type diskBrowser struct {
	simulator.HostDatastoreBrowser
}

// SearchDatastoreTask is 0.24.2's search with the disk details filled in.
func (b *diskBrowser) SearchDatastoreTask(s *types.SearchDatastore_Task) soap.HasFault {
	res := b.HostDatastoreBrowser.SearchDatastoreTask(s)
	if body, ok := res.(*methods.SearchDatastore_TaskBody); ok && body.Res != nil {
		addDiskDetails(body.Res.Returnval, s.SearchSpec)
	}
	return res
}

// SearchDatastoreSubFoldersTask is 0.24.2's recursive search with the disk details filled in.
func (b *diskBrowser) SearchDatastoreSubFoldersTask(s *types.SearchDatastoreSubFolders_Task) soap.HasFault {
	res := b.HostDatastoreBrowser.SearchDatastoreSubFoldersTask(s)
	if body, ok := res.(*methods.SearchDatastoreSubFolders_TaskBody); ok && body.Res != nil {
		addDiskDetails(body.Res.Returnval, s.SearchSpec)
	}
	return res
}

// diskQuery is the spec's VmDiskFileQuery, nil without one.
func diskQuery(spec *types.HostDatastoreBrowserSearchSpec) *types.VmDiskFileQuery {
	if spec == nil {
		return nil
	}
	for _, q := range spec.Query {
		if dq, ok := q.(*types.VmDiskFileQuery); ok {
			return dq
		}
	}
	return nil
}

// vmDiskSync gives the disks 0.24.2 makes for VMs (an empty "<name>.vmdk" when a VM is created,
// reconfigured with a new disk, cloned) the descriptor ESX would have written, with the device's
// capacityInKB; a disk a reconfiguration grew gets its extent grown. It runs when a task has
// succeeded, on the VMs the task names (its entity, its result), without taking their locks: the
// task's own method holds them.
type vmDiskSync struct{}

// Reference names the handler in the simulator's registry.
func (vmDiskSync) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VirtabsDiskDouble", Value: "vm-disks"}
}

// PutObject ignores new objects: a task is put before it runs.
func (vmDiskSync) PutObject(mo.Reference) {}

// RemoveObject ignores removals.
func (vmDiskSync) RemoveObject(types.ManagedObjectReference) {}

// UpdateObject syncs the VMs of a task that has just succeeded.
func (vmDiskSync) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	task, ok := obj.(*mo.Task)
	if !ok {
		return
	}
	for _, c := range changes {
		if c.Name == "info.state" && c.Val == types.TaskInfoStateSuccess {
			if task.Info.Entity != nil {
				syncVMDisks(*task.Info.Entity)
			}
			if ref, ok := task.Info.Result.(types.ManagedObjectReference); ok {
				syncVMDisks(ref)
			}
		}
	}
}

// syncVMDisks writes or grows the descriptors of the VM's disks (nothing for another kind of object).
func syncVMDisks(ref types.ManagedObjectReference) {
	if ref.Type != "VirtualMachine" {
		return
	}
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok || vm.Config == nil {
		return
	}
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok || disk.CapacityInKB <= 0 {
			continue
		}
		backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		var dcRef *types.ManagedObjectReference
		if dc := vmDatacenter(vm); dc != nil {
			dcRef = &dc.Self
		}
		file, fault := resolveDiskPath(dcRef, backing.FileName)
		if fault != nil {
			continue
		}
		d, isDescriptor, err := readDescriptor(file)
		switch {
		case err != nil:
		case !isDescriptor:
			thin := backing.ThinProvisioned != nil && *backing.ThinProvisioned
			diskType := string(types.VirtualDiskTypeThick)
			if thin {
				diskType = string(types.VirtualDiskTypeThin)
			}
			_ = writeDescriptor(file, newDescriptor(file, disk.CapacityInKB, diskType, "lsiLogic"))
		case disk.CapacityInKB*1024 > d.capacityBytes():
			d.extents[len(d.extents)-1].sectors += (disk.CapacityInKB*1024 - d.capacityBytes()) / sectorSize
			_ = writeDescriptor(file, d)
		}
	}
}

// vmDatacenter is the datacenter above a VM (its folder chain).
func vmDatacenter(vm *simulator.VirtualMachine) *simulator.Datacenter {
	var ref *types.ManagedObjectReference = vm.Parent
	for ref != nil {
		obj := simulator.Map.Get(*ref)
		if dc, ok := obj.(*simulator.Datacenter); ok {
			return dc
		}
		entity, ok := obj.(mo.Entity)
		if !ok {
			break
		}
		ref = entity.Entity().Parent
	}
	return nil
}

// addDiskDetails completes the finished search task's result in place (its result is not yet read).
func addDiskDetails(taskRef types.ManagedObjectReference, spec *types.HostDatastoreBrowserSearchSpec) {
	query := diskQuery(spec)
	task, ok := simulator.Map.Get(taskRef).(*simulator.Task)
	if query == nil || !ok || task.Info.State != types.TaskInfoStateSuccess {
		return
	}
	var results []types.HostDatastoreBrowserSearchResults
	switch r := task.Info.Result.(type) {
	case types.HostDatastoreBrowserSearchResults:
		results = []types.HostDatastoreBrowserSearchResults{r}
	case types.ArrayOfHostDatastoreBrowserSearchResults:
		results = r.HostDatastoreBrowserSearchResults
	default:
		return
	}
	details := query.Details
	if details == nil {
		details = &types.VmDiskFileQueryFlags{}
	}
	for _, res := range results {
		var ds *simulator.Datastore
		if res.Datastore != nil {
			ds, _ = simulator.Map.Get(*res.Datastore).(*simulator.Datastore)
		}
		if ds == nil {
			continue
		}
		var folder object.DatastorePath
		if !folder.FromString(res.FolderPath) {
			continue
		}
		dir := strings.Trim(folder.Path, "/")
		for i, f := range res.File {
			info := f.GetFileInfo()
			if path.Ext(info.Path) != ".vmdk" || strings.HasSuffix(info.Path, "-flat.vmdk") {
				continue
			}
			disk, isDisk := f.(*types.VmDiskFileInfo)
			if !isDisk {
				disk = &types.VmDiskFileInfo{FileInfo: *info}
				res.File[i] = disk // the slice shares its array with the task's result
			}
			d, ok, _ := readDescriptor(path.Join(ds.Info.GetDatastoreInfo().Url, dir, info.Path))
			if !ok {
				continue // no descriptor, no capacity: reported as 0.24.2 does
			}
			if details.CapacityKb {
				disk.CapacityKb = d.capacityBytes() / 1024
			}
			if details.Thin != nil && *details.Thin {
				disk.Thin = types.NewBool(d.thin)
			}
			if details.DiskType {
				disk.DiskType = "VirtualDiskFlatVer2BackingInfo"
			}
		}
	}
}

// installDiskDouble puts the double's VirtualDiskManager and every datastore's browser in place of the
// simulator's (same references; the simulator dispatches by reference).
func installDiskDouble(content types.ServiceContent) {
	vdm := new(diskManager)
	vdm.Self = *content.VirtualDiskManager
	simulator.Map.Put(vdm)
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		old, ok := simulator.Map.Get(ds.Browser).(*simulator.HostDatastoreBrowser)
		if !ok {
			continue
		}
		browser := &diskBrowser{HostDatastoreBrowser: *old}
		simulator.Map.Put(browser)
	}
	for _, e := range simulator.Map.All("VirtualMachine") { // the model's VMs, made before the handler
		syncVMDisks(e.Reference())
	}
	simulator.Map.AddHandler(vmDiskSync{})
}
