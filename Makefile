# etcdplay: build, test, and a lab of real hosts on this machine.
#   make demo    boot 3 lab hosts and deploy etcd onto them (root, Debian/Ubuntu)
#   make test    unit tests, then the integration tests (which need root + systemd-nspawn)

export PATH := $(PATH):/usr/local/go/bin
GO ?= go

LAB_NAME  ?= demo
LAB_BLOCK ?= 1
LAB_HOSTS ?= 3
LAB_STATE ?= $(or $(ETCDPLAY_LAB_STATE),/run/etcdplay-lab)
LAB_DIR   := $(LAB_STATE)/$(LAB_NAME)
LAB       := bin/etcdplay-lab
DEMO_PLAYBOOK ?= $(if $(wildcard playbooks/site.yml),playbooks/site.yml,playbooks/generic-demo.yml)

# Integration tests boot containers: one package at a time on 2 cores.
TEST_TIMEOUT ?= 60m

.PHONY: all build lab-tool lab-deps bench-deps test lint unit-test fuzz integration-test soak lab-up lab-down mirror demo bench clean

all: build

# First the lean agent (cmd/etcdplay-agent, for linux on this machine's
# architecture), which etcdplay embeds and sends to hosts: 2.3 MB gzipped.
# CGO_ENABLED=0: etcdplay itself is the agent of hosts that need it whole
# (a backup timer's program), as `etcdplay agent`. Stripped (-s -w: no
# symbol table or DWARF; stack traces keep function names and lines)
# because hosts get a copy.
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BUILD_FLAGS := -trimpath -ldflags "-s -w -X github.com/etcdplay/etcdplay/internal/cli.Version=$(VERSION)"
build:
	VERSION=$(VERSION) $(GO) generate ./internal/leanagent
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o bin/etcdplay ./cmd/etcdplay

lab-tool:
	CGO_ENABLED=0 $(GO) build -o $(LAB) ./integration/cmd/etcdplay-lab

# What the lab needs from the OS, as command:package. As root with apt-get
# (Debian, Ubuntu) what is missing is installed, saying so; elsewhere the
# missing packages are named and the target fails. The integration tests
# also run ansible-playbook: the example written for Ansible runs under
# both tools (TestAnsibleExpressions).
LAB_CMDS ?= systemd-nspawn:systemd-container debootstrap:debootstrap iptables:iptables ssh:openssh-client
TEST_CMDS ?= $(LAB_CMDS) ansible-playbook:ansible-core
lab-deps:
	@missing=""; for cp in $(LAB_CMDS); do \
		command -v "$${cp%%:*}" >/dev/null 2>&1 || missing="$$missing $${cp#*:}"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "==> installing what the lab needs:$$missing"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null || exit 1; \
	else \
		echo "==> the lab needs:$$missing (as root on Debian or Ubuntu: apt-get install$$missing)"; exit 1; \
	fi

test: lint unit-test fuzz integration-test

# Go fuzz targets of the parsers operators feed (inventory YAML and INI,
# playbooks, known_hosts): briefly in make test, longer on demand
# (make fuzz FUZZTIME=1000000x). Inputs that failed once are kept under
# testdata/fuzz/ and run by every go test. Budgets are counts, not
# durations: a duration's deadline races the workers' shutdown in Go's
# fuzz coordinator and fails a clean run with "context deadline exceeded"
# (golang/go#75804, fixed in Go 1.27; seen in CI on go1.26.8).
FUZZTIME ?= 15000x
FUZZ_TARGETS ?= ./internal/inventory:FuzzLoadYAML ./internal/inventory:FuzzLoadINI ./internal/playbook:FuzzParse ./internal/playbook:FuzzParseSplit ./internal/transport:FuzzKnownHosts
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "==> fuzz $${t#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1000x "$${t%%:*}" || exit 1; \
	done

# gofmt, a tidy go.mod, go vet and staticcheck (installed from the Go
# module proxy when missing).
STATICCHECK ?= $(shell command -v staticcheck || echo $$($(GO) env GOPATH)/bin/staticcheck)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$(GO) vet ./...
	@[ -x "$(STATICCHECK)" ] || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(STATICCHECK) ./...

# After build: the lean agent it embeds is under test too.
unit-test: build
	$(GO) test -timeout 10m $$($(GO) list ./... | grep -v /integration)

# The integration packages skip themselves without root or systemd-nspawn;
# say so up front so a green run is never mistaken for a full one.
integration-test:
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory lab-deps LAB_CMDS="$(TEST_CMDS)" || true; fi
	@if [ "$$(id -u)" != 0 ]; then \
		echo "==> integration tests: SKIPPED (not root; they boot systemd-nspawn containers)"; \
	elif ! command -v systemd-nspawn >/dev/null; then \
		echo "==> integration tests: SKIPPED (systemd-nspawn missing: apt-get install systemd-container)"; \
	else \
		echo "==> integration tests: RUNNING on real lab hosts (root, systemd-nspawn found)"; \
	fi
	$(GO) test -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./integration/...

# The soak: SOAK_ITERATIONS random runbooks under random faults on a
# 5-host lab, a client writing and watching, invariants checked after
# every step; SOAK_SEED reproduces a run.
SOAK_ITERATIONS ?= 100
SOAK_SEED ?=
soak: build lab-deps
	ETCDPLAY_SOAK_ITERATIONS=$(SOAK_ITERATIONS) ETCDPLAY_SOAK_SEED=$(SOAK_SEED) \
		$(GO) test -count=1 -p 1 -run '^TestSoak$$' -v -timeout 4h ./integration/

mirror: lab-tool
	$(LAB) mirror

lab-up: lab-tool
	$(LAB) up -n $(LAB_HOSTS) -block $(LAB_BLOCK) -name $(LAB_NAME)

# Tears down every lab and the mirror server, including leftovers of a
# crashed or interrupted run.
lab-down: lab-tool
	$(LAB) down

demo: lab-deps build lab-tool
	$(LAB) serve -detach
	$(LAB) up -n $(LAB_HOSTS) -block $(LAB_BLOCK) -name $(LAB_NAME)
	bin/etcdplay apply $(DEMO_PLAYBOOK) -i $(LAB_DIR)/inventory.yml --known-hosts $(LAB_DIR)/known_hosts \
		-e etcd_release_url=$$(cat $(LAB_STATE)/mirror.url)
	bin/etcdplay status -i $(LAB_DIR)/inventory.yml --known-hosts $(LAB_DIR)/known_hosts
	@echo
	@echo "The lab is still up. Try:"
	@echo "  bin/etcdplay apply $(DEMO_PLAYBOOK) -i $(LAB_DIR)/inventory.yml --known-hosts $(LAB_DIR)/known_hosts -e etcd_release_url=$$(cat $(LAB_STATE)/mirror.url) --check --diff"
	@echo "  ssh -i $(LAB_DIR)/id_ed25519 -o UserKnownHostsFile=$(LAB_DIR)/known_hosts root@127.0.$(LAB_BLOCK).1"
	@echo "Take it down with: make lab-down"

# The bench compares with Ansible on the same lab: ansible-core and
# Mitogen from Debian, installed here (as root with apt-get) and never for
# make test. Without them the bench prints etcdplay's figures alone.
BENCH_PKGS ?= ansible-core ansible-mitogen
bench-deps:
	@if ! command -v ansible-playbook >/dev/null 2>&1 || [ ! -d /usr/lib/python3/dist-packages/ansible_mitogen ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "==> installing Ansible for the comparison: $(BENCH_PKGS)"; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(BENCH_PKGS) >/dev/null || exit 1; \
		else \
			echo "==> no Ansible comparison: apt-get install $(BENCH_PKGS)"; \
		fi; \
	fi

bench: build lab-deps bench-deps
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 1x -timeout $(TEST_TIMEOUT) ./integration/...

clean:
	rm -rf bin internal/leanagent/bin/etcdplay-agent.*
