#!/usr/bin/env bash
# Builds the real servers and tools the tests run against, pinned, into a cache folder
# outside git. Re-running only builds what is missing. tests/ENVIRONMENT.md says what
# each part is, where it comes from and what it costs.
#
#   testenv/build.sh          everything `make test` needs
#   testenv/build.sh --demo   only what `make demo` runs: MinIO and DocumentDB
#
# As root it installs the Debian packages it needs (skipped when they are there).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${MENDER_BACKUP_TESTENV:-$HOME/.cache/mender-backup-testenv}"
BIN="$CACHE/bin"
LOG="$CACHE/logs"
mkdir -p "$BIN" "$LOG"
: >"$LOG/times.txt"    # this run's time per part
DEMO=0
[[ "${1:-}" == "--demo" ]] && DEMO=1

# The project's shared folder (DocumentDB, mongo-tools and Mender Server sources): next to the clone,
# wherever CI put it, or where the developers' machines have it.
SHARED="${MENDER_BACKUP_SHARED:-$REPO/../shared}"
[[ -d "$SHARED" || -n "${MENDER_BACKUP_SHARED:-}" ]] || SHARED=/work/shared
if [[ ! -x "$SHARED/documentdb/build.sh" || ! -x "$SHARED/mongo-tools/build.sh" || ! -x "$SHARED/mender-server/build.sh" ]]; then
  echo "FAILED the shared folder with documentdb/, mongo-tools/ and mender-server/ is not at $SHARED: set MENDER_BACKUP_SHARED"
  exit 1
fi
mkdir -p "$CACHE" && ln -sfn "$(realpath "$SHARED")" "$CACHE/shared"   # the tests run its recipes (testenv/mender_cluster.py)

# Pinned versions (see tests/ENVIRONMENT.md for why these).
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"   # MinIO master, 2026-02-12 (MinIO tags are not semver)
FERRETDB_VERSION="v1.24.2"                          # last FerretDB v1 (SQLite backend): the oplog
HELM3_VERSION="v3.22.0"
HELM4_VERSION="v4.3.1"
KUBERNETES_VERSION="v1.37.2"                        # keep: the node runs on cgroup v1, deprecated upstream
KUBE_CMDS="kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl"   # one build: they share most packages
ACTIONLINT_VERSION="v1.7.12"                        # the GitHub workflows' linter (tests/test_workflows.py)
SEAWEEDFS_VERSION="v0.0.0-20261109003541-7506e5f91cd6"   # SeaweedFS master of 2026-11-09 (its tags are not semver)
REGISTRY_VERSION="v3.1.2"                           # the CNCF distribution registry: where a release is pushed (tests/test_oci_release.py)
ETCD_VERSION="v3.7.3"                               # etcd server (go.etcd.io/etcd/server/v3); k8s v1.37.2 uses etcd client v3.7.0
DEBIAN_SUITE="bookworm"                             # the test image's base, made by mmdebstrap
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY="${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
NODE_PACKAGES=(podman mmdebstrap uidmap fuse-overlayfs slirp4netns runc containerd containernetworking-plugins iptables socat gnupg)

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

# failed NAME LOG: the one line a failed part prints (its log's last line), after
# which the part removes what it half made.
failed() { echo "FAILED $1: $(grep -v '^[[:space:]]*$' "$2" | tail -1 | cut -c1-300) (log: $2)"; }

# timed NAME COMMAND...: run a part, record its time in logs/times.txt (tests/ENVIRONMENT.md's table).
timed() {
  local name="$1" start=$SECONDS; shift
  "$@" || return 1
  echo "$name $((SECONDS - start))" >>"$LOG/times.txt"
}

# build NAME OUTPUT PACKAGE@VERSION: go install into a private GOBIN, then rename,
# so two versions of one program (helm v3/v4) can live side by side.
build() {
  local name="$1" out="$2" pkg="$3"
  if [[ -x "$BIN/$out" ]]; then echo "ok     $out (cached)"; return 0; fi
  echo "build  $out  ($pkg)"
  local tmp; tmp="$(mktemp -d)"
  local start=$SECONDS
  if GOBIN="$tmp" go install -trimpath -ldflags="-s -w" "$pkg" >"$LOG/$out.log" 2>&1; then
    mv "$tmp/$name" "$BIN/$out"
    echo "built  $out in $((SECONDS - start))s"
  else
    failed "$out" "$LOG/$out.log"; rm -rf "$tmp"; return 1
  fi
  rm -rf "$tmp"
}

# in_wrapper NAME WHAT COMMAND...: what every wrapper-module build shares: skip when
# built, a fresh module folder, a log, timing, no binary left by a failure. COMMAND
# runs inside the folder after `go mod init` and writes its programs into $OUT; they
# move to bin/ only when it succeeded. The programs of NAME: $OUTPUTS, else NAME.
# (COMMAND runs where `set -e` is off: each of its steps ends in `|| return 1`.)
in_wrapper() {
  local name="$1" what="$2"; shift 2
  local outs="${OUTPUTS:-$name}" o missing=0
  for o in $outs; do [[ -x "$BIN/$o" ]] || missing=1; done
  if [[ $missing == 0 ]]; then echo "ok     $outs (cached)"; return 0; fi
  echo "build  $outs  ($what via wrapper module)"
  local dir="$CACHE/src/$name"; rm -rf "$dir"; mkdir -p "$dir/out"
  local start=$SECONDS
  if ! (
    cd "$dir"
    go mod init "testenv/$name" >/dev/null 2>&1
    OUT="$dir/out" "$@"
  ) >"$LOG/$name.log" 2>&1; then
    failed "$name" "$LOG/$name.log"; rm -rf "$dir/out"; return 1
  fi
  for o in $outs; do mv "$dir/out/$o" "$BIN/$o"; done
  echo "built  $outs in $((SECONDS - start))s"
}

# FerretDB: `go install pkg@version` is refused (the proxy will not list its versions,
# which go install asks for deprecation notices). Its module zip also lacks the
# generated build/version/version.txt that the binary embeds and panics without:
# vendor the module and write that file.
ferretdb_in_wrapper() {
  local mod=github.com/FerretDB/FerretDB pkg=github.com/FerretDB/FerretDB/cmd/ferretdb
  go get -tool "$pkg@$FERRETDB_VERSION" || return 1
  go mod vendor || return 1
  echo "$FERRETDB_VERSION" >"vendor/$mod/build/version/version.txt" || return 1
  go build -mod=vendor -trimpath -ldflags="-s -w" -o "$OUT/ferretdb" "$pkg" || return 1
}

# etcd: its main package lives in its root module, whose go.mod has replace lines;
# the server module has etcdmain.Main, which that main just calls.
etcd_in_wrapper() {
  cat >main.go <<'GO'
// etcd, as its own main.go builds it (go.etcd.io/etcd/v3 cannot be go-installed).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" || return 1
  go mod tidy || return 1
  go build -trimpath -ldflags="-s -w" -o "$OUT/etcd" . || return 1
  local v; v="$("$OUT/etcd" --version)"; echo "$v"
  grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$v"
}

# The programs of k8s.io/kubernetes, in one module and one `go build` (they share
# most packages: one compile of them). Its go.mod replaces every k8s.io staging
# module with ./staging/src/..., which a module that requires it cannot follow: the
# wrapper replaces each of them with the published module of the same release
# (k8s.io/api => k8s.io/api v0.37.2, ...), the list read from k8s.io/kubernetes's go.mod.
kube_in_wrapper() {
  local ver="$KUBERNETES_VERSION" gomod staging m c
  gomod="$(go mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [[ -f "$gomod" ]] || return 1
  staging="v0.${ver#v1.}"
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/src/.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@$staging" || return 1
  done
  grep -c '=> k8s.io/' go.mod | sed 's/^/staging replace lines: /'
  local pkgs=()
  for c in $KUBE_CMDS; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  go get -tool "${pkgs[@]/%/@$ver}" || return 1
  # the version Kubernetes' own build stamps in (else the server reports v0.0.0-master,
  # helm checks charts' kubeVersion against it, and the kubelet's node shows it)
  local minor="${ver#v1.}" x="" p
  minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  go build -trimpath -ldflags="-s -w$x" -o "$OUT/" "${pkgs[@]}" || return 1
  for c in $KUBE_CMDS; do
    local v
    if [[ $c == kubectl ]]; then v="$("$OUT/$c" version --client | sed -n 's/^Client Version: /Kubernetes /p')"
    else v="$("$OUT/$c" --version)"; fi
    echo "$c: $v"
    grep -qx "Kubernetes $ver" <<<"$v" || return 1
  done
}

# The sandbox ("pause") image containerd starts every pod with: registry.k8s.io is not
# reachable, so a 1.4 MB one is built here (reaps children, exits on SIGTERM).
pause_in_wrapper() {
  cat >main.go <<'GO'
// The pod sandbox process: holds the pod's namespaces, reaps zombies, exits on SIGINT/SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range c {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  go build -trimpath -ldflags="-s -w" -o "$OUT/pause" . || return 1
}

# mongodump, mongorestore, bsondump: from the upstream source in the shared folder
# (the module proxy refuses github.com/mongodb/mongo-tools), or from PATH when the
# user has all three.
mongo_tools() {
  local t have=1 built=1
  for t in mongodump mongorestore bsondump; do
    [[ -x "$BIN/$t" ]] || built=0
    command -v "$t" >/dev/null 2>&1 || have=0
  done
  if [[ $built == 1 ]]; then echo "ok     mongodump mongorestore bsondump (cached)"; return 0; fi
  if [[ $have == 1 ]]; then
    for t in mongodump mongorestore bsondump; do ln -sf "$(command -v "$t")" "$BIN/$t"; done
    echo "ok     mongodump mongorestore bsondump (from PATH: $(command -v mongodump))"; return 0
  fi
  echo "build  mongodump mongorestore bsondump  ($SHARED/mongo-tools)"
  local tmp="$CACHE/src/mongo-tools" start=$SECONDS
  rm -rf "$tmp"; mkdir -p "$tmp"
  if ! "$SHARED/mongo-tools/build.sh" "$tmp" >"$LOG/mongo-tools.log" 2>&1; then
    failed mongo-tools "$LOG/mongo-tools.log"; rm -rf "$tmp"; return 1
  fi
  for t in mongodump mongorestore bsondump; do mv "$tmp/$t" "$BIN/$t"; done
  rm -rf "$tmp"
  echo "built  mongodump mongorestore bsondump in $((SECONDS - start))s"
}

# Debian packages: the node (containerd, runc), podman and mmdebstrap for the images.
# DocumentDB's build.sh installs its own (PostgreSQL 15 and its build dependencies).
apt_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [[ ${#missing[@]} == 0 ]]; then echo "ok     Debian packages (installed)"; return 0; fi
  if [[ $(id -u) != 0 ]]; then echo "FAILED Debian packages missing, install them as root: ${missing[*]}"; return 1; fi
  echo "apt    ${missing[*]}"
  local start=$SECONDS
  if ! { apt-get -o DPkg::Lock::Timeout=600 update &&
         DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
       } >"$LOG/apt.log" 2>&1; then
    failed apt-get "$LOG/apt.log"; return 1
  fi
  echo "done   apt in $((SECONDS - start))s"
}

# FerretDB v2 + PostgreSQL 15 + DocumentDB, from the shared sources. Its build.sh is
# idempotent (a fraction of a second when built) and refreshes its copy of PostgreSQL
# when Debian updates it, so it always runs.
# Started by root, its servers run as `postgres`, which must reach the prefix: a cache in
# a private home (/root is 0700) gets the prefix in /var/cache, linked from the cache.
documentdb() {
  local start=$SECONDS prefix="$CACHE/documentdb" p="$CACHE" mode
  while [[ $(id -u) == 0 && $p != / && ! -L "$CACHE/documentdb" ]]; do
    mode="$(stat -c %A "$p")"
    if [[ ${mode:9:1} != [xt] ]]; then
      prefix=/var/cache/mender-backup-testenv/documentdb
      mkdir -p "$prefix" && rm -rf "$CACHE/documentdb" && ln -s "$prefix" "$CACHE/documentdb"
      break
    fi
    p="$(dirname "$p")"
  done
  [[ -L "$CACHE/documentdb" ]] && prefix="$(readlink "$CACHE/documentdb")"
  if ! "$SHARED/documentdb/build.sh" "$prefix" >"$LOG/documentdb.log" 2>&1; then
    failed documentdb "$LOG/documentdb.log"; return 1
  fi
  echo "ok     documentdb: PostgreSQL 15 + DocumentDB + FerretDB v2 ($((SECONDS - start))s)"
}

# The test image's base: Debian with python3 from Debian's packages (the public Python
# image is on a registry these machines cannot reach).
rootfs() {
  local out="$CACHE/images/debian-python-$DEBIAN_SUITE.tar"
  if [[ -s "$out" ]]; then echo "ok     rootfs (cached)"; return 0; fi
  echo "build  rootfs  (mmdebstrap $DEBIAN_SUITE minbase + python3, python3-venv, ca-certificates)"
  mkdir -p "$CACHE/images"
  local start=$SECONDS
  if ! mmdebstrap --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates "$DEBIAN_SUITE" "$out.tmp" \
       "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
       "deb $DEBIAN_SECURITY $DEBIAN_SUITE-security main" >"$LOG/rootfs.log" 2>&1; then
    failed rootfs "$LOG/rootfs.log"; rm -f "$out.tmp"; return 1
  fi
  mv "$out.tmp" "$out"
  echo "built  rootfs in $((SECONDS - start))s"
}

# podman with its own storage and settings under the cache (not /var/lib/containers).
# These machines need runc (crun 1.8: "cgroups in hybrid mode not supported"), cgroupfs
# (no systemd), and rlimits they may set (no CAP_SYS_RESOURCE: podman's default
# nofile/nproc give "setrlimit ...: Operation not permitted").
podman_config() {
  mkdir -p "$CACHE/podman/tmp"
  cat >"$CACHE/podman/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/podman/storage"
runroot = "$CACHE/podman/run"
EOF
  cat >"$CACHE/podman/containers.conf" <<EOF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$CACHE/podman/tmp"
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
EOF
}

# The base image and the pause image in podman, and the pause image's OCI archive
# (what the node imports into containerd). Our own image is built by the tests, from
# the checkout (testenv/image.py, `make image`).
images() {
  export CONTAINERS_STORAGE_CONF="$CACHE/podman/storage.conf" CONTAINERS_CONF="$CACHE/podman/containers.conf"
  local start=$SECONDS ctx
  ctx="$(mktemp -d)"
  # (`set -e` does not apply inside a function called with ||: every step is chained)
  if ! {
    { podman image exists "localhost/mender-backup-base:$DEBIAN_SUITE" ||
      podman import --change 'CMD ["/bin/bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$CACHE/images/debian-python-$DEBIAN_SUITE.tar" "localhost/mender-backup-base:$DEBIAN_SUITE"; } &&
    { [[ -s "$CACHE/images/pause-oci.tar" ]] || {
      cp "$BIN/pause" "$ctx/pause" &&
      printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Containerfile" &&
      podman build -t localhost/pause:testenv "$ctx" &&
      podman save --format oci-archive -o "$CACHE/images/pause-oci.tar.tmp" localhost/pause:testenv &&
      mv "$CACHE/images/pause-oci.tar.tmp" "$CACHE/images/pause-oci.tar"; }; }
  } >"$LOG/images.log" 2>&1; then
    rm -rf "$ctx" "$CACHE/images/pause-oci.tar.tmp"; failed images "$LOG/images.log"; return 1
  fi
  rm -rf "$ctx"
  echo "ok     images: localhost/mender-backup-base:$DEBIAN_SUITE, pause ($((SECONDS - start))s)"
}

# The Go builds (CPU) run in the background while apt, mmdebstrap and the DocumentDB
# build (mostly waiting on the network and disk) run in the foreground.
# Prometheus Pushgateway, for the metrics tests (issue 13). Like FerretDB, `go install
# pkg@version` is refused (the proxy will not list its versions): built in a wrapper
# module, the version stamped in as its release build does.
PUSHGATEWAY_VERSION="v1.11.1"
pushgateway_in_wrapper() {
  local out="$1" ver="$2" pkg=github.com/prometheus/pushgateway
  go get -tool "$pkg@$ver"
  go build -trimpath -ldflags="-s -w -X github.com/prometheus/common/version.Version=${ver#v}" -o "$OUT/$out" "$pkg"
  "$OUT/$out" --version 2>&1 | grep -q "version ${ver#v}"
}

# The alerts of the chart's PrometheusRule (issue 13): Prometheus's own rule parser
# (model/rulefmt: structure, PromQL, templates, as `promtool check rules` runs it, without
# promtool's service-discovery dependencies), and prometheus-operator's PrometheusRule CRD,
# which the tests install into the kube-apiserver so that it validates the rendered object.
PROMETHEUS_VERSION="v0.316.0"              # the Go module version of Prometheus v3.16
PROMETHEUS_OPERATOR_VERSION="v0.89.0"
rules_check_in_wrapper() {
  local out="$1" ver="$2"
  cat >main.go <<'GO'
// rules-check FILE...: Prometheus's rule-file parser, as `promtool check rules` runs it.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	status := 0
	for _, f := range os.Args[1:] {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, parser.NewParser(parser.Options{}),
			slog.New(slog.NewTextHandler(os.Stderr, nil)))
		for _, err := range errs {
			fmt.Fprintln(os.Stderr, err)
			status = 1
		}
		if len(errs) == 0 {
			n := 0
			for _, g := range groups.Groups {
				n += len(g.Rules)
			}
			fmt.Printf("%s: SUCCESS: %d rules found\n", f, n)
		}
	}
	os.Exit(status)
}
GO
  go get "github.com/prometheus/prometheus@$ver"
  go mod tidy
  go build -trimpath -ldflags="-s -w" -o "$OUT/$out" .
}
prometheusrule_crd() {
  local out="$BIN/prometheusrules.crd.yaml" dir
  if [[ -f "$out" ]]; then echo "ok     prometheusrules.crd.yaml (cached)"; return 0; fi
  dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
         | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$out" && chmod 644 "$out" \
    && echo "copied prometheusrules.crd.yaml (prometheus-operator $PROMETHEUS_OPERATOR_VERSION)"
}

# SeaweedFS, the artifact store Mender's docs name for the open-source chart from 6.x (chart
# 8.2.1's storage proxy points at seaweedfs-s3:8333): `weed mini`, master + volume + filer +
# S3 gateway in one process. Its go.mod has a replace directive, so `go install pkg@version`
# refuses it: built inside the module itself (module cache, read-only), where its own go.mod
# and go.sum rule.
seaweedfs_in_module() {
  local dir
  dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p') || return 1
  [[ -d $dir ]] || return 1
  (cd "$dir" && go build -trimpath -ldflags="-s -w" -o "$OUT/weed" ./weed) || return 1
}

# The real Mender Server backend (v4.1.3, the services of chart mender-8.2.1), from the
# source tarball in the shared folder: its build.sh (idempotent: 0 s when built) into
# $CACHE/mender-server, with a copy of its start.sh, smoke.sh and stop.sh in scripts/ (taken
# anew on every run), which the tests run (testenv/servers.py mender_server()). A half-made
# prefix is removed.
mender_server() {
  local prefix="$CACHE/mender-server" start=$SECONDS f
  if ! "$SHARED/mender-server/build.sh" "$prefix" >"$LOG/mender-server.log.new" 2>&1; then
    mv "$LOG/mender-server.log.new" "$LOG/mender-server.log"
    failed mender-server "$LOG/mender-server.log"; rm -rf "$prefix"; return 1
  fi
  mkdir -p "$prefix/scripts"
  for f in start.sh smoke.sh stop.sh; do install -m 755 "$SHARED/mender-server/$f" "$prefix/scripts/$f" || return 1; done
  if grep -q '^ok ' "$LOG/mender-server.log.new"; then    # built before: keep that build's log
    rm -f "$LOG/mender-server.log.new"; echo "ok     mender-server ($(cat "$prefix/VERSION"), cached)"; return 0
  fi
  mv "$LOG/mender-server.log.new" "$LOG/mender-server.log"
  echo "built  mender-server in $((SECONDS - start))s"
}

# Older Mender Servers, for the tests that cross versions (tests/test_live_release.py): v4.0.1
# (chart mender-6.9.0's appVersion) for the cross-version restore, v4.1.2 (7.9.4's) for the
# guarded upgrade to 8.2.1. testenv/mender-version.sh runs the shared recipes at the tag from
# testenv/sources/. The Go proxy here refuses a version each pins (v4.0.1: its mender-artifact;
# v4.1.2: aws-sdk-go-v2/service/iot v1.75.1, used by iot-manager only): each takes the nearest
# one served (v4.1.2: v1.77.0, what v4.1.3 pins), by GO_REPLACE, named in the prefix's VERSION.
declare -A MENDER_COMMIT=([v4.0.1]=52ef503191f76b5449ead519405dac23f5476ef2
                          [v4.1.2]=666df297bf2ee85b63b1b1ccc7c1311a33b99fe4)
declare -A MENDER_GO_REPLACE=(
  [v4.0.1]="github.com/mendersoftware/mender-artifact=github.com/mendersoftware/mender-artifact@v0.0.0-20250724101633-c5f6563a4bcf"
  [v4.1.2]="github.com/aws/aws-sdk-go-v2/service/iot=github.com/aws/aws-sdk-go-v2/service/iot@v1.77.0")
MENDER_VERSIONS=(v4.1.2 v4.0.1)    # v4.1.2 first: the nearest to v4.1.3
mender_version() {
  local version=$1 images=${2:-} start=$SECONDS
  local prefix="$CACHE/mender-server-$version" log="$LOG/mender-$version.log"
  if [[ -n $images && -s "$images/mender-images.tar" && "$images/mender-images.tar" -nt "$prefix/VERSION" ]]; then
    echo "ok     mender $version images (cached)"; return 0
  fi
  if ! MENDER_BACKUP_SHARED="$SHARED" GO_REPLACE="${MENDER_GO_REPLACE[$version]}" "$REPO/testenv/mender-version.sh" \
       "$version" "${MENDER_COMMIT[$version]}" "$prefix" $images >"$log" 2>&1; then
    failed "mender $version" "$log"
    if [[ -n $images ]]; then rm -f "$images/mender-images.tar"; else rm -rf "$prefix"; fi
    return 1
  fi
  # smoke.sh talks to the services as the gateway would. v4.1.3's inventory takes a device's
  # update at /api/devices/v1/inventory/device/attributes; v4.0.1's only where chart 6.9.0's
  # gateway rewrites that path to (its inventoryV1-replacepathregex): /api/0.1.0/attributes.
  if [[ -z $images ]]; then
    mkdir -p "$prefix/scripts"
    if [[ $version == v4.0.1 ]]; then
      sed 's|/api/devices/v1/inventory/device/attributes|/api/0.1.0/attributes|g' "$SHARED/mender-server/smoke.sh" \
        >"$prefix/scripts/smoke.sh"
      grep -q '/api/0.1.0/attributes' "$prefix/scripts/smoke.sh" \
        || { echo "FAILED mender $version: smoke.sh no longer names the device attributes path"; return 1; }
    else
      cp "$SHARED/mender-server/smoke.sh" "$prefix/scripts/smoke.sh"
    fi
    chmod 755 "$prefix/scripts/smoke.sh"
  fi
  if [[ -z $images ]] && grep -q '^ok ' "$log"; then
    echo "ok     mender $version (cached)"; return 0
  fi
  echo "built  mender $version${images:+ images} in $((SECONDS - start))s"
}

# Azurite, Microsoft's Azure Storage emulator (npm), the Azure Blob server of the tests: the
# versions in testenv/azurite/package-lock.json, integrity-checked by `npm ci`. 3.35.0 is the
# newest that runs on this machine's Node.js 20 (3.36 wants 21, 3.37 wants 22).
azurite() {
  local dir="$CACHE/azurite" start=$SECONDS
  if [[ -x "$BIN/azurite-blob" ]] && cmp -s "$REPO/testenv/azurite/package-lock.json" "$dir/package-lock.json"; then
    echo "ok     azurite (cached)"; return 0
  fi
  rm -rf "$dir" && mkdir -p "$dir" && cp "$REPO/testenv/azurite/package.json" "$REPO/testenv/azurite/package-lock.json" "$dir/"
  if ! (cd "$dir" && npm ci --no-audit --no-fund) >"$LOG/azurite.log" 2>&1; then
    failed azurite "$LOG/azurite.log"; rm -rf "$dir"; return 1
  fi
  ln -sfn "$dir/node_modules/.bin/azurite-blob" "$BIN/azurite-blob"
  echo "built  azurite in $((SECONDS - start))s"
}

# CoreDNS, for the cluster that runs the real Mender chart (../shared/mender-on-k8s): its
# build-tools.sh finds kube-proxy and kubectl already in bin/ (built above, in the one
# Kubernetes build) and builds only CoreDNS, a main with the 9 plugins a one-node cluster needs.
coredns() {
  if "$BIN/coredns" -version >/dev/null 2>&1; then echo "ok     coredns (cached)"; return 0; fi
  local start=$SECONDS
  if ! "$SHARED/mender-on-k8s/build-tools.sh" "$BIN" >"$LOG/coredns.log" 2>&1; then
    failed coredns "$LOG/coredns.log"; rm -f "$BIN/coredns"; return 1
  fi
  echo "built  coredns in $((SECONDS - start))s"
}

# The Mender Server images the real chart's pods run (../shared/mender-on-k8s/build-images.sh:
# FROM scratch, as the official Dockerfiles, with the chart's default names), from the
# mender-server prefix, saved as one archive the cluster imports. Remade when the prefix is newer.
mender_images() {
  local out="$CACHE/images/mender" start=$SECONDS
  if [[ -s "$out/mender-images.tar" && "$out/mender-images.tar" -nt "$CACHE/mender-server/VERSION" ]]; then
    echo "ok     mender images (cached)"; return 0
  fi
  if ! MENDER_PREFIX="$CACHE/mender-server" "$SHARED/mender-on-k8s/build-images.sh" "$out" >"$LOG/mender-images.log" 2>&1; then
    failed mender-images "$LOG/mender-images.log"; rm -f "$out/mender-images.tar"; return 1
  fi
  echo "built  mender images in $((SECONDS - start))s ($(du -m "$out/mender-images.tar" | cut -f1) MB)"
}

# The Go builds in two lanes side by side: a cold build spends much of its time in one
# thread (module downloads, linking), so two at once keep both cores busy (time(1) of a cold
# `.ci/run` with one lane: user+sys about one core on average).
go_lane_a() {
  local status=0
  timed minio build minio minio "github.com/minio/minio@$MINIO_VERSION" || status=1
  [[ $DEMO == 1 ]] && return $status
  timed helm3 build helm helm3 "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION" || status=1
  timed helm4 build helm helm4 "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION" || status=1
  timed pushgateway in_wrapper pushgateway "github.com/prometheus/pushgateway@$PUSHGATEWAY_VERSION" \
    pushgateway_in_wrapper pushgateway "$PUSHGATEWAY_VERSION" || status=1
  timed rules-check in_wrapper rules-check "github.com/prometheus/prometheus/model/rulefmt@$PROMETHEUS_VERSION" \
    rules_check_in_wrapper rules-check "$PROMETHEUS_VERSION" || status=1
  timed prometheus-crd prometheusrule_crd || status=1
  timed actionlint build actionlint actionlint "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" || status=1
  OUTPUTS=weed timed seaweedfs in_wrapper seaweedfs "github.com/seaweedfs/seaweedfs/weed@$SEAWEEDFS_VERSION, in its own module" \
    seaweedfs_in_module || status=1
  return $status
}

go_lane_b() {
  local status=0
  [[ $DEMO == 1 ]] && return 0
  timed ferretdb in_wrapper ferretdb "github.com/FerretDB/FerretDB/cmd/ferretdb@$FERRETDB_VERSION" \
    ferretdb_in_wrapper || status=1
  timed etcd in_wrapper etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" etcd_in_wrapper || status=1
  OUTPUTS="$KUBE_CMDS" timed kubernetes in_wrapper kubernetes \
    "k8s.io/kubernetes/cmd/{$(tr ' ' , <<<"$KUBE_CMDS")}@$KUBERNETES_VERSION; 5-10 min on 2 cores" kube_in_wrapper || status=1
  timed mongo-tools mongo_tools || status=1
  timed pause in_wrapper pause "a pod sandbox process" pause_in_wrapper || status=1
  # after kube-proxy and kubectl (the Kubernetes build above): its script finds them in bin/
  timed coredns coredns || status=1
  return $status
}

# image-sign (scripts/image-sign, our own module: cosign-format image signatures through the
# containers/image library, see its main.go): built as `make release` builds it.
# make rebuilds it only when its sources are newer.
image_sign() {
  if ! make -C "$REPO" --no-print-directory image-sign IMAGE_SIGN="$BIN/image-sign" >"$LOG/image-sign.log" 2>&1; then
    failed image-sign "$LOG/image-sign.log"; return 1
  fi
  echo "ok     image-sign"
}

go_builds() {
  local status=0
  go_lane_b & local b=$!
  go_lane_a || status=1
  wait $b || status=1
  return $status
}

system_steps() {
  local status=0
  if [[ $DEMO == 1 ]]; then
    timed documentdb documentdb || status=1
    return $status
  fi
  timed apt apt_packages "${NODE_PACKAGES[@]}" || return 1
  timed azurite azurite || status=1
  timed rootfs rootfs & local rootfs_pid=$!
  timed documentdb documentdb || status=1
  wait $rootfs_pid || status=1
  # Go builds, here rather than in go_builds: this side ends first. The three Mender
  # versions one after another: the older ones then find most of their packages (the same
  # dependencies, the same sources) compiled by v4.1.3's build in Go's cache; side by side,
  # each compiled them anew.
  timed mender-server mender_server || status=1
  for v in "${MENDER_VERSIONS[@]}"; do timed "mender-$v" mender_version "$v" || status=1; done
  # the release's tools (tests/test_oci_release.py): here too, not beside Kubernetes, the longest
  timed registry build registry registry "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION" || status=1
  timed image-sign image_sign || status=1
  return $status
}

start=$SECONDS
go_builds & go_pid=$!
status=0
system_steps || status=1
wait $go_pid || status=1
if [[ $DEMO == 0 && $status == 0 ]]; then
  podman_config
  timed images images || status=1
  timed mender-images mender_images || status=1
  for v in "${MENDER_VERSIONS[@]}"; do
    timed "mender-$v-images" mender_version "$v" "$CACHE/images/mender-$v" || status=1
  done
fi
# leftovers of earlier layouts of this cache
rm -rf "$CACHE/src/kube-apiserver" "$BIN"/*.unavailable
echo "times (s): $(tr '\n' ' ' <"$LOG/times.txt")"
if [[ $status == 0 ]]; then echo "test environment ready in $CACHE ($((SECONDS - start))s)"; fi
exit $status
