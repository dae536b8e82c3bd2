# Entry points. `make demo` is the README's first command; `make test` is the one test command
# (CI calls it from .ci/run).

.PHONY: demo test setup build localstack-dry-run

## demo: moto + a tagged pool and an Auto Scaling group + vmscaler on a replayed real trace (~2 min)
demo:
	scripts/demo.sh

## test: the moto venv, then every unit and integration test of the workspace
test: setup
	cargo test --workspace

## setup: .venv with the pinned moto server, and Prometheus + Alertmanager packages (idempotent)
setup:
	scripts/setup-venv.sh
	scripts/setup-prometheus.sh

## build: the vmscaler binary (release)
build:
	cargo build --release --bin vmscaler

## localstack-dry-run: the daemon in --dry-run against LocalStack 4.14 community (EC2 + CloudWatch)
localstack-dry-run:
	scripts/localstack-dry-run.sh
