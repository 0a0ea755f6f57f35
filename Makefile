# Thin wrapper: CMake does the building; these targets are the two commands in the README.
JOBS ?= 2
DATA ?= ./herald-data
LISTEN ?= 127.0.0.1:8080
FUZZ_SECONDS ?= 20

.PHONY: run test deps build build-asan build-fuzz unit e2e fuzz-smoke node-deps bench clean format

run: deps build
	./build/release/herald serve --listen $(LISTEN) --data $(DATA)

test: deps build-asan node-deps unit e2e build-fuzz fuzz-smoke

deps:
	@scripts/install-deps

build:
	cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DHERALD_TESTS=OFF >/dev/null
	cmake --build build/release -j $(JOBS)

build-asan:
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DHERALD_SANITIZE=ON >/dev/null
	cmake --build build/asan -j $(JOBS)

build-fuzz:
	CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHERALD_FUZZ=ON >/dev/null
	cmake --build build/fuzz -j $(JOBS)

node-deps:
	@[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund

unit: build-asan
	cd build/asan && ctest --output-on-failure

e2e: build-asan node-deps
	HERALD_BIN=$(CURDIR)/build/asan/herald node --test --test-concurrency=1 tests/e2e/

fuzz-smoke: build-fuzz
	scripts/fuzz-smoke $(FUZZ_SECONDS)

bench: build
	$(MAKE) -C bench

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c')

clean:
	rm -rf build
