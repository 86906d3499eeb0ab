#!/usr/bin/env bash
# Builds the real servers and tools the tests run against, pinned, into a cache
# folder outside git. Re-running only builds what is missing.
set -euo pipefail

CACHE="${MENDER_BACKUP_TESTENV:-$HOME/.cache/mender-backup-testenv}"
BIN="$CACHE/bin"
LOG="$CACHE/logs"
mkdir -p "$BIN" "$LOG"

# Pinned versions (see tests/ENVIRONMENT.md for why these).
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"   # MinIO master, 2026-02-12 (MinIO tags are not semver)
FERRETDB_VERSION="v1.24.2"                          # last FerretDB v1 (SQLite backend)
HELM3_VERSION="v3.22.0"
HELM4_VERSION="v4.3.1"
MONGO_TOOLS_VERSION="100.13.0"                      # refused by the module proxy, see below
KUBERNETES_VERSION="v1.37.2"                        # kube-apiserver (k8s.io/kubernetes), for the end-to-end tests
ETCD_VERSION="v3.7.3"                               # etcd server (go.etcd.io/etcd/server/v3); k8s v1.37.2 uses etcd client v3.7.0

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

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
    echo "FAILED $out: see $LOG/$out.log"; tail -5 "$LOG/$out.log"
    rm -rf "$tmp"; return 1
  fi
  rm -rf "$tmp"
}

# in_wrapper OUTPUT WHAT COMMAND...: what every wrapper-module build shares: skip
# when built, a fresh module folder, a log, timing, no binary left by a failure.
# COMMAND runs inside the folder after `go mod init`; its last status decides.
in_wrapper() {
  local out="$1" what="$2"; shift 2
  if [[ -x "$BIN/$out" ]]; then echo "ok     $out (cached)"; return 0; fi
  echo "build  $out  ($what via wrapper module)"
  local dir="$CACHE/src/$out"; rm -rf "$dir"; mkdir -p "$dir"
  local start=$SECONDS
  (
    cd "$dir"
    go mod init "testenv/$out" >/dev/null 2>&1
    "$@"
  ) >"$LOG/$out.log" 2>&1 || { echo "FAILED $out: see $LOG/$out.log"; tail -5 "$LOG/$out.log"; rm -f "$BIN/$out"; return 1; }
  echo "built  $out in $((SECONDS - start))s"
}

# FerretDB: `go install pkg@version` is refused (the proxy will not list its versions,
# which go install asks for deprecation notices). Its module zip also lacks the
# generated build/version/version.txt that the binary embeds and panics without:
# vendor the module and write that file.
ferretdb_in_wrapper() {
  local out="$1" ver="$2" mod=github.com/FerretDB/FerretDB pkg=github.com/FerretDB/FerretDB/cmd/ferretdb
  go get -tool "$pkg@$ver"
  go mod vendor
  echo "$ver" >"vendor/$mod/build/version/version.txt"
  go build -mod=vendor -trimpath -ldflags="-s -w" -o "$BIN/$out" "$pkg"
}

# etcd: its main package lives in its root module, whose go.mod has replace lines;
# the server module has etcdmain.Main, which that main just calls.
etcd_in_wrapper() {
  local out="$1" ver="$2"
  cat >main.go <<'GO'
// etcd, as its own main.go builds it (go.etcd.io/etcd/v3 cannot be go-installed).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$ver"
  go mod tidy
  go build -trimpath -ldflags="-s -w" -o "$BIN/$out" .
  local v; v="$("$BIN/$out" --version)"; echo "$v"
  grep -qx "etcd Version: ${ver#v}" <<<"$v"
}

# A program of k8s.io/kubernetes. Its go.mod replaces every k8s.io staging module
# with ./staging/src/..., which a module that requires it cannot follow: the wrapper
# replaces each of them with the published module of the same release
# (k8s.io/api => k8s.io/api v0.37.2, ...), the list read from k8s.io/kubernetes's go.mod.
kube_in_wrapper() {
  local out="$1" ver="$2" pkg="$3"
  local gomod staging m
  gomod="$(go mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  staging="v0.${ver#v1.}"
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/src/.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@$staging"
  done
  grep -c '=> k8s.io/' go.mod | sed 's/^/staging replace lines: /'
  go get -tool "$pkg@$ver"
  # the version Kubernetes' own build stamps in (else the server reports v0.0.0-master,
  # and helm checks charts' kubeVersion against it)
  local minor="${ver#v1.}" x="" p
  minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  go build -trimpath -ldflags="-s -w$x" -o "$BIN/$out" "$pkg"
  local v; v="$("$BIN/$out" --version)"; echo "$v"
  grep -qx "Kubernetes $ver" <<<"$v"
}

status=0
build minio minio "github.com/minio/minio@$MINIO_VERSION" || status=1
in_wrapper ferretdb "github.com/FerretDB/FerretDB/cmd/ferretdb@$FERRETDB_VERSION" \
  ferretdb_in_wrapper ferretdb "$FERRETDB_VERSION" || status=1
build helm helm3 "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION" || status=1
build helm helm4 "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION" || status=1
# A Kubernetes API for the end-to-end plugin tests (tests/kube.py): no kubelet,
# no controllers, no kubectl (the plugin talks to the API itself).
in_wrapper etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" etcd_in_wrapper etcd "$ETCD_VERSION" || status=1
in_wrapper kube-apiserver "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION; 5-10 min on 2 cores" \
  kube_in_wrapper kube-apiserver "$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kube-apiserver || status=1

# mongodump/mongorestore: the module proxy reachable here refuses every version of
# github.com/mongodb/mongo-tools (403). Try once per machine and record the exact
# answer, so the interop tests can say precisely why they cannot run.
mongo_tools() {
  local t
  for t in mongodump mongorestore; do
    if [[ -x "$BIN/$t" ]]; then echo "ok     $t (cached)"; continue; fi
    if [[ -f "$BIN/$t.unavailable" ]]; then echo "n/a    $t: $(head -c 200 "$BIN/$t.unavailable")"; continue; fi
    local tmp; tmp="$(mktemp -d)"
    if GOBIN="$tmp" go install -trimpath "github.com/mongodb/mongo-tools/$t@$MONGO_TOOLS_VERSION" >"$LOG/$t.log" 2>&1; then
      mv "$tmp/$t" "$BIN/$t"; echo "built  $t"
    else
      { echo "go install github.com/mongodb/mongo-tools/$t@$MONGO_TOOLS_VERSION failed:"; grep -m1 -E "403|error|not available" "$LOG/$t.log" || tail -1 "$LOG/$t.log"; } >"$BIN/$t.unavailable"
      echo "n/a    $t: $(tail -1 "$BIN/$t.unavailable")"
    fi
    rm -rf "$tmp"
  done
}
mongo_tools

# Prometheus Pushgateway, for the metrics tests (issue 13). Like FerretDB, `go install
# pkg@version` is refused (the proxy will not list its versions): built in a wrapper
# module, the version stamped in as its release build does.
PUSHGATEWAY_VERSION="v1.11.1"
pushgateway_in_wrapper() {
  local out="$1" ver="$2" pkg=github.com/prometheus/pushgateway
  go get -tool "$pkg@$ver"
  go build -trimpath -ldflags="-s -w -X github.com/prometheus/common/version.Version=${ver#v}" -o "$BIN/$out" "$pkg"
  "$BIN/$out" --version 2>&1 | grep -q "version ${ver#v}"
}
in_wrapper pushgateway "github.com/prometheus/pushgateway@$PUSHGATEWAY_VERSION" pushgateway_in_wrapper pushgateway "$PUSHGATEWAY_VERSION" || status=1

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
  go build -trimpath -ldflags="-s -w" -o "$BIN/$out" .
}
in_wrapper rules-check "github.com/prometheus/prometheus/model/rulefmt@$PROMETHEUS_VERSION" \
  rules_check_in_wrapper rules-check "$PROMETHEUS_VERSION" || status=1
prometheusrule_crd() {
  local out="$BIN/prometheusrules.crd.yaml" dir
  if [[ -f "$out" ]]; then echo "ok     prometheusrules.crd.yaml (cached)"; return 0; fi
  dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
         | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$out" && chmod 644 "$out" \
    && echo "copied prometheusrules.crd.yaml (prometheus-operator $PROMETHEUS_OPERATOR_VERSION)"
}
prometheusrule_crd || status=1
exit $status
