# kakuin: `make run` starts the gateway on its development defaults,
# `make test` runs every test. Both install what they need from Debian.

GO        ?= go
BIN       := bin/kakuin
VAR       := var
# Debian packages the tests and `make run` use: real peers, not mocks
# (gcc: cgo, for -race and for loading PKCS#11 modules such as SoftHSM's;
# libssl-dev: the libcrypto headers, RSA signing through OpenSSL, pki/libcrypto_cgo.go).
# (systemd: systemd-analyze verify checks deploy/systemd's unit; nothing is started.)
DEB_PKGS  := gcc libssl-dev openssl libnss3-tools softhsm2 python3-dkim python3-nacl python3-dnspython postfix libsasl2-modules swaks libmail-dkim-perl ca-certificates systemd
# promtool checks and unit-tests the alert rules in deploy/prometheus. It is
# taken out of Debian's prometheus package, which is not installed: that
# would also start a Prometheus server.
export PROMTOOL ?= $(CURDIR)/bin/tools/promtool
# What `make bench` adds: the Postfix + OpenDKIM baseline it measures against.
BENCH_DEB_PKGS := opendkim opendkim-tools
# What `make mua-check` adds: Thunderbird under Xvfb, read back by OCR.
MUA_DEB_PKGS := thunderbird xvfb xdotool x11-apps imagemagick tesseract-ocr tesseract-ocr-eng fonts-noto-cjk
# Debian's python3, where python3-dkim lives (a pyenv python3 may come first on PATH).
export KAKUIN_TEST_PYTHON ?= /usr/bin/python3

.PHONY: all build run test deps bench-deps bench fuzz check-deps clean mua-check

all: build

build:
	$(GO) build -o $(BIN) ./cmd/kakuin

# deps installs the Debian packages once; it is idempotent and quiet when
# everything is there already.
deps:
	@./scripts/apt-install.sh $(DEB_PKGS)
	@./scripts/deb-tool.sh prometheus usr/bin/promtool $(PROMTOOL)

bench-deps: deps
	@./scripts/apt-install.sh $(BENCH_DEB_PKGS)

check-deps:
	@./scripts/check-deps.sh

run: deps build
	./scripts/run-dev.sh

test: deps
	$(GO) vet ./...
	@./scripts/check-deps.sh
	$(GO) test -race -shuffle=on -timeout 20m ./...

# bench: the Go benchmarks, then the gateway against Postfix + OpenDKIM
# (deploy/bench/bench.sh, about 5 minutes).
bench: bench-deps build
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...
	./deploy/bench/bench.sh all

# mua-check opens a signed and an altered message in Thunderbird and reads
# its S/MIME panel (scripts/thunderbird-check.sh; a GUI, so not in make test).
mua-check: deps build
	@./scripts/apt-install.sh $(MUA_DEB_PKGS)
	./scripts/thunderbird-check.sh

# fuzz runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
