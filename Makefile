# kakuin: `make run` starts the gateway on its development defaults,
# `make test` runs every test. Both install what they need from Debian.

GO        ?= go
BIN       := bin/kakuin
VAR       := var
# Debian packages the tests and `make run` use: real peers, not mocks.
DEB_PKGS  := openssl libnss3-tools python3-dkim python3-nacl python3-dnspython postfix swaks softhsm2 libmail-dkim-perl ca-certificates
# Debian's python3, where python3-dkim lives (a pyenv python3 may come first on PATH).
export KAKUIN_TEST_PYTHON ?= /usr/bin/python3

.PHONY: all build run test deps bench fuzz check-deps vet fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/kakuin

# deps installs the Debian packages once; it is idempotent and quiet when
# everything is there already.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: deps build
	./scripts/run-dev.sh

test: deps
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -timeout 20m ./...

bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

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
