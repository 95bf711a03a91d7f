# Kong side and observability pack (issue 4): static checks of the Kong configuration,
# the alert rules and the dashboard, a spec with a real Prometheus, and docker compose.
#
#   make kong-check       static checks (scripts/check_kong.py), part of `make test`
#   make prometheus-spec  real Prometheus scraping real Envoy: the expiry alert fires
#   make compose-up       Kong + upstreams + Prometheus + Grafana (needs Docker)
#   make compose-down

CARGO_TARGET_DIR ?= target
KONG_CLI := $(CARGO_TARGET_DIR)/debug/mtls-guard
KONG_NAMES := $(CARGO_TARGET_DIR)/kong-metric-names.json
COMPOSE = $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)

.PHONY: kong-setup kong-check prometheus-spec compose-up compose-down

# Debian packages: promtool and prometheus, pcre2grep (PCRE, as Kong's ngx.re), and
# docker-compose (a real Compose implementation; `config` needs no engine). Installed
# only when missing.
kong-setup:
	@missing=""; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v pcre2grep >/dev/null || missing="$$missing pcre2-utils"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(PYTHON) -c "import jsonschema, yaml" 2>/dev/null || $(PYTHON) -m pip install --quiet jsonschema pyyaml

kong-check: kong-setup
	$(CARGO) build --bin mtls-guard
	MTLS_GUARD_METRIC_NAMES_OUT=$(abspath $(KONG_NAMES)) \
	  $(CARGO) test --test prometheus_alerts metric_names_for_the_kong_label_pattern_check -- --exact
	$(PYTHON) scripts/check_kong.py --cli $(KONG_CLI) --names $(KONG_NAMES)

prometheus-spec: build setup-envoy kong-setup
	$(CARGO) test --test prometheus_alerts -- --test-threads 1

TEST_EXTRA += kong-check prometheus-spec

compose-up: build
	$(COMPOSE) up -d
	@echo "Kong proxy http://127.0.0.1:8000 (try /orders, /impostor, /orders-report, /impostor-report)"
	@echo "Prometheus http://127.0.0.1:9090   Grafana http://127.0.0.1:3000   see docs/kong.md"

compose-down:
	$(COMPOSE) down -v
