#!/bin/bash
# xenlab.sh - test infrastructure of virtabs-xen: a real Xen 4.17 hypervisor with a Debian PV dom0
# (real xl, real xenstored) booted inside QEMU (TCG) on a Debian 12 host, reachable over ssh on
# 127.0.0.1:$VIRTABS_XENLAB_PORT. Built from the verified recipe in xen-under-qemu.md section 7.
#
# usage: xenlab.sh start|stop|status|ssh [cmd...]|env|rebuild|clean
#
#   start    build what is not cached (debootstrap ~45-75 s, image ~2 s), boot (~25-70 s under TCG) and wait
#            until `xl info` answers over ssh; writes $RUN/ready. Idempotent and serialised by a lock:
#            a second `start` while one is running or booting only waits for readiness.
#   stop     stop QEMU (pidfile) and forget the per-boot overlay; the cache is kept.
#   status   "running pid N" (exit 0) or "stopped" (exit 1).
#   ssh      run a command in dom0 (the remote shell joins the arguments: quote them yourself).
#   env      print the paths and port a test needs (shell assignments).
#   rebuild  stop and rebuild the dom0 tree and image from the cached debootstrap.
#   clean    stop and delete everything under the work dir.
#
# Environment:
#   VIRTABS_XENLAB_DIR   work dir (default /var/tmp/virtabs-xenlab): cache/ (built once), run/ (per boot)
#   VIRTABS_XENLAB_PORT  host port forwarded to dom0:22 (default 22422)
#   VIRTABS_XENLAB_MEM (2048), VIRTABS_XENLAB_DOM0_MEM (768M), VIRTABS_XENLAB_SMP (2),
#   VIRTABS_XENLAB_CPU (qemu64,+npt), VIRTABS_XENLAB_BOOT_TIMEOUT (900 s)
#
# ssh: root logs in with a key this script generates (cache/id_ed25519); dom0's host key is generated
# here too (cache/ssh_host_ed25519_key) and written to run/known_hosts, so clients check the host key
# (StrictHostKeyChecking=yes) instead of turning checking off.
set -euo pipefail

LAB=${VIRTABS_XENLAB_DIR:-/var/tmp/virtabs-xenlab}
PORT=${VIRTABS_XENLAB_PORT:-22422}
VM_MEM=${VIRTABS_XENLAB_MEM:-2048}
DOM0_MEM=${VIRTABS_XENLAB_DOM0_MEM:-768M}
SMP=${VIRTABS_XENLAB_SMP:-2}
ACCEL=tcg,thread=multi                   # kvm does not work here (no vmx/svm): Xen prints nothing
CPU=${VIRTABS_XENLAB_CPU:-qemu64,+npt}   # +npt: TCG emulates SVM+NPT -> HAP ("max" crashes dom0)
BOOT_TIMEOUT=${VIRTABS_XENLAB_BOOT_TIMEOUT:-900}
SUITE=bookworm
# The recipe of the customised dom0 tree (rc.sh, the guest): a cache built by another recipe is customised
# again from its debootstrap (and the image rebuilt). 2: the guest prints its run clock (a tick a second).
# 3: xenconsoled stamps each line of a guest's console log with the dom0's time (--timestamp=guest), so that
# the run clock can tell the current run's ticks from an earlier run's in the same log.
ROOTFS_RECIPE=3

CACHE=$LAB/cache   # built once: xen.elf, vmlinuz, initrd.img, rootfs/, root.img, ssh keys
RUN=$LAB/run       # per boot: qcow2 overlay, serial log, pid file, known_hosts, ready marker
KEY=$CACHE/id_ed25519
HOSTKEY=$CACHE/ssh_host_ed25519_key
SSH_OPTS=(-i "$KEY" -p "$PORT" -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$RUN/known_hosts"
          -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR -o ConnectTimeout=5
          -o BatchMode=yes -o ControlMaster=auto -o ControlPath="$RUN/ssh-mux" -o ControlPersist=300)

log() { echo "[xenlab $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; mkdir -p "$RUN"; echo "$*" > "$RUN/failed"; exit 1; }

check_host_tools() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  command -v qemu-img        >/dev/null || missing+=(qemu-utils)
  command -v debootstrap     >/dev/null || missing+=(debootstrap)
  command -v mke2fs          >/dev/null || missing+=(e2fsprogs)
  command -v cpio            >/dev/null || missing+=(cpio)
  command -v ssh             >/dev/null || missing+=(openssh-client)
  command -v modprobe        >/dev/null || missing+=(kmod)
  { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
  ls /boot/xen-4.17-amd64.gz >/dev/null 2>&1 || missing+=(xen-hypervisor-4.17-amd64)
  ls /boot/vmlinuz-*-amd64 2>/dev/null | grep -qv -- -cloud- || missing+=(linux-image-amd64)
  [ ${#missing[@]} -eq 0 ] || die "missing host packages: apt-get install -y --no-install-recommends ${missing[*]}"
  [ "$(id -u)" = 0 ] || die "needs root (debootstrap, device nodes in the dom0 image)"
}

# the generic Debian kernel, as in the verified recipe (not the -cloud- flavour)
kver() { ls /boot/vmlinuz-*-amd64 | grep -v -- -cloud- | sed 's#.*/vmlinuz-##' | sort -V | tail -1; }

# ---------------------------------------------------------------- build (cached)
build_boot_files() {
  [ -f "$CACHE/.boot.done" ] && return 0
  local K; K=$(kver)
  log "boot files: xen 4.17 + kernel $K"
  mkdir -p "$CACHE"
  gunzip -c /boot/xen-4.17-amd64.gz > "$CACHE/xen.elf"   # QEMU's multiboot loader needs the plain ELF
  cp /boot/vmlinuz-"$K" "$CACHE/vmlinuz"
  cp /boot/initrd.img-"$K" "$CACHE/initrd.img"          # has virtio_blk + ext4
  echo "$K" > "$CACHE/kver"
  touch "$CACHE/.boot.done"
}

build_rootfs() {
  local R=$CACHE/rootfs K; K=$(cat "$CACHE/kver")
  # qemu-utils: qemu-img for the driver's directory storage pools on the dom0; qemu-system-xen: QEMU's
  # qdisk back-end, which the contract target's disks use (no block hotplug script; see the Xen README)
  local PKGS=xen-utils-4.17,openssh-server,iproute2,busybox,kmod,procps,less,qemu-utils,qemu-system-xen
  # a cached tree built from another package list is rebuilt (and with it the image)
  [ "$(cat "$CACHE/.rootfs.done" 2>/dev/null)" = "$ROOTFS_RECIPE" ] \
    && [ "$(cat "$CACHE/.debootstrap.done" 2>/dev/null)" = "$PKGS" ] && return 0
  if [ "$(cat "$CACHE/.debootstrap.done" 2>/dev/null)" != "$PKGS" ]; then
    rm -rf "$R"
    # the host's apt mirror, read at run time and never stored
    local MIRROR
    MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    [ -n "$MIRROR" ] || die "no apt mirror found in /etc/apt"
    log "debootstrap $SUITE minbase + $PKGS"
    debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$R" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
    echo "# offline virtabs xenlab dom0" > "$R/etc/apt/sources.list"
    rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb \
           "$R"/var/log/bootstrap.log "$CACHE/debootstrap.log"
    echo "$PKGS" > "$CACHE/.debootstrap.done"
  fi
  log "customising the dom0 tree"

  # kernel modules dom0 needs (from the host kernel, with their dependencies)
  local mods="xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback xen-netback
              loop virtio_pci virtio_blk virtio_net ext4 bridge tun"
  for m in $mods; do
    modprobe -S "$K" --show-depends "$m" | awk '$1=="insmod"{print $2}'
  done | sort -u | while read -r f; do
    mkdir -p "$R$(dirname "$f")"; cp "$f" "$R$f"
  done
  cp /lib/modules/"$K"/modules.order /lib/modules/"$K"/modules.builtin* "$R/lib/modules/$K/"
  depmod -b "$R" "$K"

  # ssh: root by key only; a host key generated here so that clients can check it
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C virtabs-xenlab -f "$KEY"
  [ -f "$HOSTKEY" ] || ssh-keygen -q -t ed25519 -N '' -C xenlab-dom0 -f "$HOSTKEY"
  install -d -m 700 "$R/root/.ssh"
  install -m 600 "$KEY.pub" "$R/root/.ssh/authorized_keys"
  rm -f "$R"/etc/ssh/ssh_host_*
  install -m 600 "$HOSTKEY" "$R/etc/ssh/ssh_host_ed25519_key"
  install -m 644 "$HOSTKEY.pub" "$R/etc/ssh/ssh_host_ed25519_key.pub"
  printf 'PermitRootLogin prohibit-password\nUseDNS no\nUsePAM no\nHostKey /etc/ssh/ssh_host_ed25519_key\nMaxSessions 64\nMaxStartups 64\n' \
    > "$R/etc/ssh/sshd_config.d/xenlab.conf"

  # PID 1 = busybox init; the Xen/dom0 setup is done by hand in rc.sh (no systemd, no udev)
  printf '#!/bin/sh\nexec /bin/busybox init\n' > "$R/sbin/xenlab-init"
  chmod 755 "$R/sbin/xenlab-init"
  for a in poweroff reboot halt; do [ -e "$R/sbin/$a" ] || ln -s /bin/busybox "$R/sbin/$a"; done
  printf '::sysinit:/etc/xenlab/rc.sh\nhvc0::respawn:/bin/busybox sh\n' > "$R/etc/inittab"
  mkdir -p "$R/etc/xenlab"
  cat > "$R/etc/xenlab/rc.sh" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys  || mount -t sysfs sysfs /sys
mountpoint -q /dev  || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -o remount,rw /
hostname xenlab-dom0
ip link set lo up
modprobe virtio_net
# what /etc/init.d/xen would do
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback xen-netback loop; do
  modprobe $m
done
mount -t xenfs xenfs /proc/xen
grep -q control_d /proc/xen/capabilities || echo "xenlab: NOT running as Xen dom0" >&2
mkdir -p -m 700 /run/xen
mkdir -p /run/xenstored /var/log/xen/console /var/lib/xen
XENSTORED_ROOTDIR=/run/xenstored /usr/lib/xen-4.17/bin/xenstored --pid-file /run/xenstore.pid
i=0; until xenstore-read -s / >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 1; done
/usr/lib/xen-4.17/bin/xen-init-dom0 >/dev/null
/usr/lib/xen-4.17/bin/xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console \
  --timestamp=guest
# QEMU user-mode networking: fixed addresses
IF=$(ls /sys/class/net | grep -v '^lo$' | head -1)
ip link set "$IF" up
ip addr add 10.0.2.15/24 dev "$IF"
ip route add default via 10.0.2.2
# xl's default bridge for guest vifs (vif-bridge enslaves each vifN.M to it)
ip link add name xenbr0 type bridge stp_state 0 forward_delay 0
ip link set xenbr0 up
mkdir -p /run/sshd
/usr/sbin/sshd
echo "XENLAB-DOM0-READY"
EOF
  chmod 755 "$R/etc/xenlab/rc.sh"
  echo xenlab-dom0 > "$R/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 xenlab-dom0\n' > "$R/etc/hosts"

  # ---- the tiny PV guest: the Debian kernel + a busybox initramfs ----
  local G=$R/root/guest T; T=$(mktemp -d); [ -d "$T" ] || die mktemp
  mkdir -p "$G" "$T"/{bin,sbin,etc,proc,sys,dev,tmp,root}
  cp /bin/busybox "$T/bin/busybox"
  for a in sh mount umount ls cat echo sleep poweroff reboot halt ps mkdir dmesg free df insmod lsmod grep; do
    ln -s busybox "$T/bin/$a"
  done
  ln -s ../bin/busybox "$T/sbin/init"
  ln -s ../bin/busybox "$T/sbin/poweroff"   # the kernel runs /sbin/poweroff on 'xl shutdown'
  ln -s ../bin/busybox "$T/sbin/reboot"
  ln -s sbin/init "$T/init"
  printf '::sysinit:/etc/rc\nhvc0::respawn:/bin/sh\n::shutdown:/bin/echo xenlab-guest: shutting down\n' > "$T/etc/inittab"
  # PV front-end drivers are modules in the Debian kernel
  mkdir -p "$T/lib/modules"
  for m in xen-blkfront xen-netfront; do
    modprobe -S "$K" --show-depends "$m" | awk '$1=="insmod"{print $2}'
  done | while read -r f; do cp "$f" "$T/lib/modules/"; echo "insmod /lib/modules/${f##*/}"; done > "$T/etc/modules.sh"
  cat > "$T/etc/rc" <<'EOF'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
. /etc/modules.sh
# stand-in for udev: bring hot-added vCPUs (xl vcpu-set) online
( while sleep 1; do
    for c in /sys/devices/system/cpu/cpu[1-9]*/online; do
      [ -f "$c" ] && [ "$(cat "$c")" = 0 ] && echo 1 > "$c"
    done
  done ) &
echo "xenlab-guest: up, kernel $(cat /proc/sys/kernel/osrelease)"
# the guest's run clock (virtabs_xen.testing's run_clock): it goes on across xl save/restore, and starts
# again from 1 after a boot
( t=0; while sleep 1; do t=$((t + 1)); echo "xenlab-guest: tick $t"; done ) &
EOF
  chmod 755 "$T/etc/rc"
  (cd "$T" && find . | cpio -o -H newc --quiet | gzip -9) > "$G/initrd.gz"
  rm -rf "$T"
  cp "$CACHE/vmlinuz" "$G/vmlinuz"
  cat > "$G/tiny.cfg" <<'EOF'
name    = "tiny"
type    = "pv"
kernel  = "/root/guest/vmlinuz"
ramdisk = "/root/guest/initrd.gz"
extra   = "console=hvc0 quiet"
memory  = 128
maxmem  = 128
vcpus   = 1
maxvcpus = 2
vif     = []
disk    = []
on_poweroff = "destroy"
on_reboot   = "restart"
on_crash    = "destroy"
EOF
  echo "$ROOTFS_RECIPE" > "$CACHE/.rootfs.done"
  rm -f "$CACHE/.image.done"
}

build_image() {
  [ -f "$CACHE/.image.done" ] && return 0
  log "ext4 image from the dom0 tree (mke2fs -d)"
  rm -f "$CACHE/root.img"
  mke2fs -q -t ext4 -L xenlab-root -d "$CACHE/rootfs" "$CACHE/root.img" 3G
  touch "$CACHE/.image.done"
}

# ---------------------------------------------------------------- run
qemu_pid() {
  local p
  [ -f "$RUN/qemu.pid" ] || return 1
  p=$(cat "$RUN/qemu.pid")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -q virtabs-xenlab "/proc/$p/cmdline" 2>/dev/null && echo "$p"
}

write_known_hosts() {
  mkdir -p "$RUN"
  printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1,2 "$HOSTKEY.pub")" > "$RUN/known_hosts"
}

dom0_ssh() { ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@"; }

wait_ready() {
  local t0=$1
  while :; do
    if dom0_ssh xl info >/dev/null 2>&1; then
      log "dom0 ready: 'xl info' ok after $(( $(date +%s) - t0 ))s (ssh -p $PORT root@127.0.0.1)"
      echo "$PORT" > "$RUN/ready"
      return 0
    fi
    qemu_pid >/dev/null || { tail -30 "$RUN/serial.log" >&2 || true; die "QEMU exited during boot"; }
    if [ $(( $(date +%s) - t0 )) -gt "$BOOT_TIMEOUT" ]; then
      tail -30 "$RUN/serial.log" >&2 || true; stop; die "dom0 not ready after ${BOOT_TIMEOUT}s (QEMU stopped)"
    fi
    sleep 2
  done
}

start_locked() {
  local t0; t0=$(date +%s)
  if qemu_pid >/dev/null; then log "already running (pid $(qemu_pid))"; wait_ready "$t0"; return 0; fi
  check_host_tools
  build_boot_files; build_rootfs; build_image
  mkdir -p "$RUN"; rm -f "$RUN"/dom0.qcow2 "$RUN"/serial.log "$RUN"/qemu.pid "$RUN"/ready "$RUN"/ssh-mux
  write_known_hosts
  # a new copy-on-write overlay each boot: every boot starts from a clean dom0
  qemu-img create -q -f qcow2 -b "$CACHE/root.img" -F raw "$RUN/dom0.qcow2"
  local XEN_ARGS="console=com1 com1=115200,8n1 dom0_mem=$DOM0_MEM,max:$DOM0_MEM dom0_max_vcpus=$SMP loglvl=all guest_loglvl=all noreboot"
  local DOM0_ARGS="root=/dev/vda rootfstype=ext4 rw console=hvc0 earlyprintk=xen net.ifnames=0 init=/sbin/xenlab-init"
  log "launching QEMU (accel=$ACCEL, cpu=$CPU, ${VM_MEM}M, $SMP cpus, port $PORT); serial log: $RUN/serial.log"
  qemu-system-x86_64 -name virtabs-xenlab -machine pc -accel "$ACCEL" -cpu "$CPU" -smp "$SMP" -m "$VM_MEM" \
    -kernel "$CACHE/xen.elf" -append "$XEN_ARGS" \
    -initrd "$CACHE/vmlinuz $DOM0_ARGS,$CACHE/initrd.img" \
    -drive file="$RUN/dom0.qcow2",if=virtio,format=qcow2,cache=unsafe \
    -netdev user,id=n0,hostfwd=tcp:127.0.0.1:"$PORT"-:22 -device virtio-net-pci,netdev=n0 \
    -display none -monitor none -serial file:"$RUN/serial.log" \
    -daemonize -pidfile "$RUN/qemu.pid"
  wait_ready "$t0"
}

start() {
  mkdir -p "$LAB" "$RUN"
  rm -f "$RUN/failed"
  exec 9>"$LAB/lock"
  flock 9          # one start at a time; a second one waits, then only checks readiness
  start_locked
}

stop() {
  local p
  [ -S "$RUN/ssh-mux" ] && ssh -o ControlPath="$RUN/ssh-mux" -O exit root@127.0.0.1 2>/dev/null || true
  if p=$(qemu_pid); then
    log "stopping QEMU pid $p"
    kill "$p"
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p"
  else
    log "not running"
  fi
  rm -f "$RUN/qemu.pid" "$RUN/dom0.qcow2" "$RUN/ssh-mux" "$RUN/ready"
}

case "${1:-}" in
  start)   start ;;
  stop)    stop ;;
  status)  if p=$(qemu_pid); then echo "running pid $p"; else echo "stopped"; exit 1; fi ;;
  ssh)     shift; dom0_ssh "$@" ;;
  env)     printf 'XENLAB_DIR=%q\nXENLAB_PORT=%q\nXENLAB_KEY=%q\nXENLAB_KNOWN_HOSTS=%q\nXENLAB_READY=%q\n' \
             "$LAB" "$PORT" "$KEY" "$RUN/known_hosts" "$RUN/ready" ;;
  rebuild) stop; rm -f "$CACHE"/.rootfs.done "$CACHE"/.image.done ;;   # keeps the debootstrap
  clean)   stop; rm -rf "$CACHE" "$RUN" ;;
  *) echo "usage: $0 start|stop|status|ssh [cmd...]|env|rebuild|clean" >&2; exit 2 ;;
esac
