# Entry points. `make demo` is the README's first command; `make test` is the one test command
# (CI calls it from .ci/run).

.PHONY: demo test setup build

## demo: moto + a tagged pool and an Auto Scaling group + vmscaler on a replayed real trace (~2 min)
demo:
	scripts/demo.sh

## test: the moto venv, then every unit and integration test of the workspace
test: setup
	cargo test --workspace

## setup: .venv with the pinned moto server (idempotent)
setup:
	scripts/setup-venv.sh

## build: the vmscaler binary (release)
build:
	cargo build --release --bin vmscaler
