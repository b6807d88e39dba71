#!/usr/bin/env bash
# Offline checks of the docker compose deployment (no Docker needed):
#   - docker-compose.yaml against the Compose Specification's JSON schema (the copy vendored
#     in check-jsonschema, installed once from PyPI into $WEIR_CACHE, default ~/.cache/weir);
#   - every file and directory that compose mounts or builds from, and every COPY source of
#     the Dockerfile, exists; depends_on and named volumes resolve; every long-running
#     service has a health check;
#   - deploy/prometheus/prometheus.yml by structure (known keys, durations, targets) and that
#     it scrapes weir:9898/metrics every 5 s;
#   - Grafana provisioning: datasource uid `prometheus`, dashboards path matches the mount;
#     the dashboard JSON parses and every panel query uses only metrics Weir exposes.
#
#   bash scripts/validate-deploy.sh          # checks the repository it is in
#   bash scripts/validate-deploy.sh DIR      # checks a copy (DIR holds docker-compose.yaml)
#
# Exits non-zero, naming each problem, if anything is wrong.
set -euo pipefail
root="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
cd "$(dirname "$0")/.."
[ -f "$root/docker-compose.yaml" ] || { echo "validate-deploy: no $root/docker-compose.yaml" >&2; exit 1; }

check_jsonschema_version=0.39.0
venv="${WEIR_CACHE:-$HOME/.cache/weir}/validate-deploy-$check_jsonschema_version"
if ! "$venv/bin/check-jsonschema" --version >/dev/null 2>&1; then
    echo "validate-deploy: installing check-jsonschema $check_jsonschema_version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "check-jsonschema==$check_jsonschema_version" >&2
fi

status=0
if ! "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$root/docker-compose.yaml"; then
    echo "validate-deploy: FAIL: $root/docker-compose.yaml does not match the Compose Specification" >&2
    status=1
fi

# ruamel.yaml comes with check-jsonschema; tomllib with Python 3.11.
"$venv/bin/python" - "$root" <<'PY' || status=1
import glob
import json
import os
import re
import sys
import tomllib

from ruamel.yaml import YAML

root = sys.argv[1]
errors = []


def err(where, msg):
    shown = where if os.path.samefile(root, ".") else os.path.join(root, where)
    errors.append(f"{shown}: {msg}")


def path(*parts):
    return os.path.normpath(os.path.join(root, *parts))


def load_yaml(rel):
    try:
        with open(path(rel)) as f:
            return YAML(typ="safe", pure=True).load(f)
    except FileNotFoundError:
        err(rel, "missing")
    except Exception as e:  # noqa: BLE001 - any parse error is a finding
        err(rel, f"not valid YAML: {e}")
    return None


# The metrics Weir exposes (src/metrics.rs); a histogram also has _bucket, _sum and _count.
COUNTERS = [
    "weir_records_read_total", "weir_bytes_read_total", "weir_parse_errors_total",
    "weir_late_records_total", "weir_rows_written_total", "weir_write_retries_total",
    "weir_windows_written_total", "weir_progress_writes_total",
]
GAUGES = [
    "weir_write_rows_in_flight", "weir_event_time_frontier_seconds", "weir_frontier_lag_seconds",
    "weir_durable_frontier_seconds", "weir_kafka_high_watermark", "weir_source_position",
    "weir_consumer_lag_records", "weir_durable_offset", "weir_build_info",
]
HISTOGRAMS = ["weir_write_duration_seconds"]
METRICS = set(COUNTERS) | set(GAUGES)
for h in HISTOGRAMS:
    METRICS |= {h + "_bucket", h + "_sum", h + "_count"}

# ---------------------------------------------------------------------------------------
# docker-compose.yaml: references
COMPOSE = "docker-compose.yaml"
compose = load_yaml(COMPOSE) or {}
services = compose.get("services") or {}
named_volumes = set((compose.get("volumes") or {}).keys())
mounts = {}  # service -> {container path: host path}
dockerfiles = {}  # service -> (context, dockerfile)

for name, svc in services.items():
    where = f"{COMPOSE}: services.{name}"
    svc = svc or {}
    build = svc.get("build")
    if build is not None:
        ctx = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        if not os.path.isdir(path(ctx)):
            err(where, f"build context {ctx!r} is not a directory")
        elif not os.path.isfile(path(ctx, dockerfile)):
            err(where, f"build dockerfile {os.path.join(ctx, dockerfile)!r} does not exist")
        dockerfiles[name] = (ctx, dockerfile)
    if "image" not in svc and build is None:
        err(where, "has neither image nor build")
    deps = svc.get("depends_on") or []
    for dep in deps if isinstance(deps, list) else deps.keys():
        if dep not in services:
            err(where, f"depends_on {dep!r}: no such service")
    env_files = svc.get("env_file") or []
    for ef in [env_files] if isinstance(env_files, str) else env_files:
        ef = ef if isinstance(ef, str) else ef.get("path")
        if not os.path.isfile(path(ef)):
            err(where, f"env_file {ef!r} does not exist")
    mounts[name] = {}
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) < 2:
                continue  # an anonymous volume
            source, target = parts[0], parts[1]
        else:
            source, target = vol.get("source"), vol.get("target")
        if source is None:
            continue
        if source.startswith((".", "/", "~")):
            if not os.path.exists(path(source)):
                err(where, f"volume source {source!r} does not exist")
            mounts[name][target] = path(source)
        elif source not in named_volumes:
            err(where, f"named volume {source!r} is not declared under top-level volumes")
    # Long-running services (all but one-shot ones with restart "no") need a health check.
    if str(svc.get("restart", "no")) != "no":
        hc = svc.get("healthcheck")
        if not hc or hc.get("disable") or not hc.get("test"):
            err(where, "long-running (restart policy set) but has no healthcheck")

# ---------------------------------------------------------------------------------------
# Dockerfile(s): COPY/ADD sources exist; Cargo targets the build needs are copied
for name, (ctx, dockerfile) in dockerfiles.items():
    rel = os.path.normpath(os.path.join(ctx, dockerfile))
    try:
        text = open(path(rel)).read()
    except OSError:
        continue
    text = re.sub(r"\\\n", " ", text)
    copied = set()
    for line in text.splitlines():
        m = re.match(r"\s*(COPY|ADD)\s+(.*)", line, re.I)
        if not m:
            continue
        args = m.group(2).split()
        if any(a.startswith("--from") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        for src in args[:-1]:
            if re.match(r"https?://", src):
                continue
            copied.add(os.path.normpath(src))
            if not glob.glob(path(ctx, src)):
                err(rel, f"{m.group(1)} source {src!r} does not exist in the build context")
    if not re.search(r"^\s*EXPOSE\s+.*\b9898\b", text, re.M):
        err(rel, "does not EXPOSE 9898 (Weir's status page and /metrics)")
    cargo = path(ctx, "Cargo.toml")
    if os.path.isfile(cargo) and "Cargo.toml" in copied:
        manifest = tomllib.load(open(cargo, "rb"))
        needed = {"src"}
        for kind, default_dir in (("bench", "benches"), ("bin", "src/bin"), ("example", "examples"),
                                  ("test", "tests")):
            for target in manifest.get(kind, []):
                p = target.get("path") or f"{default_dir}/{target['name']}.rs"
                needed.add(os.path.normpath(p).split(os.sep)[0])
        for member in (manifest.get("workspace") or {}).get("members", []):
            needed.add(os.path.normpath(member).split(os.sep)[0])
        for top in sorted(needed):
            if not any(c == top or c.startswith(top + os.sep) for c in copied):
                err(rel, f"the build needs {top!r} (Cargo.toml) but no COPY brings it in")

# ---------------------------------------------------------------------------------------
# deploy/prometheus/prometheus.yml: structure
PROM = "deploy/prometheus/prometheus.yml"
DURATION = re.compile(r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$")
UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def seconds(where, value):
    if not isinstance(value, str) or value in ("", "0") or not DURATION.match(value):
        err(PROM, f"{where}: {value!r} is not a Prometheus duration like 5s or 1m30s")
        return None
    return sum(int(n) * UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|y|w|d|h|m|s)", value))


def known_keys(where, obj, allowed):
    if not isinstance(obj, dict):
        err(PROM, f"{where}: expected a mapping, got {type(obj).__name__}")
        return False
    for k in obj:
        if k not in allowed:
            err(PROM, f"{where}: unknown key {k!r}")
    return True


prom = load_yaml(PROM)
if prom is not None:
    known_keys("top level", prom, {
        "global", "scrape_configs", "scrape_config_files", "rule_files", "alerting",
        "remote_write", "remote_read", "storage", "tracing", "otlp", "runtime"})
    glob_cfg = prom.get("global") or {}
    known_keys("global", glob_cfg, {
        "scrape_interval", "scrape_timeout", "evaluation_interval", "rule_query_offset",
        "external_labels", "query_log_file", "scrape_failure_log_file", "scrape_protocols",
        "body_size_limit", "sample_limit", "label_limit", "label_name_length_limit",
        "label_value_length_limit", "target_limit", "keep_dropped_targets",
        "metric_name_validation_scheme", "metric_name_escaping_scheme",
        "convert_classic_histograms_to_nhcb", "always_scrape_classic_histograms"})
    g_interval = seconds("global.scrape_interval", glob_cfg.get("scrape_interval", "1m"))
    g_timeout = seconds("global.scrape_timeout", glob_cfg.get("scrape_timeout", "10s"))
    if "evaluation_interval" in glob_cfg:
        seconds("global.evaluation_interval", glob_cfg["evaluation_interval"])
    scrape_keys = {
        "job_name", "scrape_interval", "scrape_timeout", "scrape_protocols", "metrics_path",
        "scheme", "params", "honor_labels", "honor_timestamps", "track_timestamps_staleness",
        "scrape_classic_histograms", "always_scrape_classic_histograms",
        "convert_classic_histograms_to_nhcb", "enable_compression", "body_size_limit",
        "sample_limit", "label_limit", "label_name_length_limit", "label_value_length_limit",
        "target_limit", "keep_dropped_targets", "native_histogram_bucket_limit",
        "native_histogram_min_bucket_factor", "basic_auth", "authorization", "oauth2",
        "follow_redirects", "enable_http2", "tls_config", "proxy_url", "no_proxy",
        "proxy_from_environment", "proxy_connect_header", "static_configs", "file_sd_configs",
        "dns_sd_configs", "http_sd_configs", "relabel_configs", "metric_relabel_configs",
        "fallback_scrape_protocol", "scrape_failure_log_file", "metric_name_validation_scheme",
        "metric_name_escaping_scheme"}
    jobs = prom.get("scrape_configs")
    if not isinstance(jobs, list) or not jobs:
        err(PROM, "scrape_configs: expected a non-empty list")
        jobs = []
    seen, weir_job = set(), None
    for i, job in enumerate(jobs):
        where = f"scrape_configs[{i}]"
        if not known_keys(where, job, scrape_keys):
            continue
        jn = job.get("job_name")
        if not isinstance(jn, str) or not jn:
            err(PROM, f"{where}: job_name missing")
        elif jn in seen:
            err(PROM, f"{where}: duplicate job_name {jn!r}")
        seen.add(jn)
        interval = seconds(f"{where}.scrape_interval", job.get("scrape_interval")) \
            if "scrape_interval" in job else g_interval
        timeout = seconds(f"{where}.scrape_timeout", job.get("scrape_timeout")) \
            if "scrape_timeout" in job else g_timeout
        if interval and timeout and timeout > interval:
            # Prometheus caps a defaulted timeout at the interval but rejects an explicit one.
            if "scrape_timeout" in job or "scrape_timeout" in glob_cfg:
                err(PROM, f"{where}: scrape_timeout is longer than scrape_interval")
        mp = job.get("metrics_path", "/metrics")
        if not isinstance(mp, str) or not mp.startswith("/"):
            err(PROM, f"{where}.metrics_path: {mp!r} must start with /")
        if job.get("scheme", "http") not in ("http", "https"):
            err(PROM, f"{where}.scheme: must be http or https")
        statics = job.get("static_configs", [])
        if not isinstance(statics, list):
            err(PROM, f"{where}.static_configs: expected a list")
            statics = []
        for j, sc in enumerate(statics):
            w = f"{where}.static_configs[{j}]"
            if not isinstance(sc, dict) or not isinstance(sc.get("targets"), list):
                err(PROM, f"{w}: expected a mapping with a targets list")
                continue
            for k in sc:
                if k not in ("targets", "labels"):
                    err(PROM, f"{w}: unknown key {k!r}")
            for t in sc["targets"]:
                if not isinstance(t, str) or not re.match(r"^[A-Za-z0-9._\[\]:-]+:[0-9]{1,5}$", t):
                    err(PROM, f"{w}: target {t!r} is not host:port")
                elif t == "weir:9898":
                    weir_job = (job, interval, mp)
    if weir_job is None:
        err(PROM, "no scrape job targets weir:9898")
    else:
        job, interval, mp = weir_job
        if mp != "/metrics":
            err(PROM, f"job {job.get('job_name')!r} scrapes weir at {mp!r}, not /metrics")
        if interval is not None and interval != 5:
            err(PROM, f"job {job.get('job_name')!r} scrapes weir every {interval}s, not every 5s")

# Compose runs it: weir listens on :9898 and prometheus mounts this very file.
weir = services.get("weir") or {}
env = weir.get("environment") or {}
if isinstance(env, list):
    env = dict(e.split("=", 1) for e in env if "=" in e)
if not str(env.get("WEIR_METRICS_ADDR", "")).endswith(":9898"):
    err(COMPOSE, "services.weir: WEIR_METRICS_ADDR must be set to listen on port 9898 (0.0.0.0:9898)")
if "prometheus" not in services:
    err(COMPOSE, "no prometheus service")
elif path(PROM) not in mounts.get("prometheus", {}).values():
    err(COMPOSE, f"services.prometheus does not mount {PROM}")

# ---------------------------------------------------------------------------------------
# Grafana provisioning and dashboard
DS = "deploy/grafana/provisioning/datasources/prometheus.yaml"
PROV = "deploy/grafana/provisioning/dashboards/weir.yaml"
DASH = "deploy/grafana/dashboards/weir.json"
graf_mounts = mounts.get("grafana", {})
if "grafana" not in services:
    err(COMPOSE, "no grafana service")

ds = load_yaml(DS)
if ds is not None:
    if ds.get("apiVersion") != 1:
        err(DS, "apiVersion must be 1")
    entries = [d for d in ds.get("datasources") or [] if isinstance(d, dict)]
    prom_ds = [d for d in entries if d.get("uid") == "prometheus"]
    if not prom_ds:
        err(DS, "no datasource with uid: prometheus")
    for d in prom_ds:
        if d.get("type") != "prometheus":
            err(DS, "datasource uid prometheus must have type: prometheus")
        m = re.match(r"^https?://([^:/]+)(:[0-9]+)?/?", str(d.get("url", "")))
        if not m:
            err(DS, f"datasource url {d.get('url')!r} is not an http URL")
        elif m.group(1) not in services:
            err(DS, f"datasource url host {m.group(1)!r} is not a compose service")

prov = load_yaml(PROV)
dash_container_dir = None
if prov is not None:
    if prov.get("apiVersion") != 1:
        err(PROV, "apiVersion must be 1")
    providers = [p for p in prov.get("providers") or [] if isinstance(p, dict)]
    if not providers:
        err(PROV, "no providers")
    for p in providers:
        if p.get("type", "file") != "file":
            continue
        dash_container_dir = (p.get("options") or {}).get("path")
        host = graf_mounts.get(dash_container_dir)
        if host is None:
            err(PROV, f"options.path {dash_container_dir!r} is not a directory the grafana service mounts")
        elif host != path(os.path.dirname(DASH)):
            err(PROV, f"options.path {dash_container_dir!r} is mounted from {host}, not {os.path.dirname(DASH)}")
if path("deploy/grafana/provisioning") not in graf_mounts.values():
    err(COMPOSE, "services.grafana does not mount deploy/grafana/provisioning")
genv = (services.get("grafana") or {}).get("environment") or {}
if isinstance(genv, list):
    genv = dict(e.split("=", 1) for e in genv if "=" in e)
home = genv.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
if home and dash_container_dir and home != f"{dash_container_dir.rstrip('/')}/{os.path.basename(DASH)}":
    err(COMPOSE, f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home!r} is not the provisioned {DASH}")


def metric_names(expr):
    """Metric names a PromQL expression selects (a light parse, enough for dashboards)."""
    e = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|`[^`]*`', "", expr)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*", " ", e)  # Grafana variables
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)
    words = re.findall(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()", e)
    keywords = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring",
                "group_left", "group_right", "offset", "inf", "nan", "Inf", "NaN"}
    return [w for w in words if w not in keywords]


dash = None
try:
    with open(path(DASH)) as f:
        dash = json.load(f)
except FileNotFoundError:
    err(DASH, "missing")
except json.JSONDecodeError as e:
    err(DASH, f"not valid JSON: {e}")
if dash is not None:
    if not dash.get("uid") or not dash.get("title"):
        err(DASH, "dashboard needs a uid and a title")
    ids, n_exprs = set(), 0

    def walk(panels):
        global n_exprs
        for p in panels:
            pid, title = p.get("id"), p.get("title", "?")
            where = f"panel {pid} {title!r}"
            if pid in ids:
                err(DASH, f"{where}: duplicate panel id")
            ids.add(pid)
            if "gridPos" not in p:
                err(DASH, f"{where}: no gridPos")
            if p.get("type") == "row":
                walk(p.get("panels") or [])
                continue
            targets = p.get("targets") or []
            if not targets:
                err(DASH, f"{where}: no queries")
            for t in [p] + targets:
                d = t.get("datasource")
                if t is p and d is None:
                    continue
                if not isinstance(d, dict) or d.get("uid") != "prometheus":
                    err(DASH, f"{where}: datasource must be {{\"uid\": \"prometheus\"}}, got {d!r}")
            for t in targets:
                expr = t.get("expr")
                if not isinstance(expr, str) or not expr.strip():
                    err(DASH, f"{where}: query {t.get('refId')} has no expr")
                    continue
                n_exprs += 1
                if expr.count("(") != expr.count(")") or expr.count("[") != expr.count("]") \
                        or expr.count("{") != expr.count("}"):
                    err(DASH, f"{where}: unbalanced brackets in {expr!r}")
                names = metric_names(expr)
                if not names:
                    err(DASH, f"{where}: no metric in {expr!r}")
                for name in names:
                    if name not in METRICS:
                        err(DASH, f"{where}: {name!r} is not a metric Weir exposes (in {expr!r})")

    walk(dash.get("panels") or [])
    if n_exprs == 0:
        err(DASH, "no queries at all")

# The list above matches what src/metrics.rs registers (under the prefix weir_).
metrics_rs = path("src/metrics.rs")
if os.path.isfile(metrics_rs):
    source = open(metrics_rs).read()
    for m in COUNTERS + GAUGES + HISTOGRAMS:
        base = re.sub(r"^weir_", "", m)
        base = re.sub(r"_total$|_info$", "", base)
        if f'"{base}"' not in source:
            err("src/metrics.rs", f"registers no metric {base!r} (scripts/validate-deploy.sh expects {m})")

for e in errors:
    print(f"validate-deploy: FAIL: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

if [ "$status" -ne 0 ]; then
    echo "validate-deploy: deployment files are invalid (see above)" >&2
    exit 1
fi
echo "validate-deploy: ok (docker-compose.yaml, Dockerfile, deploy/prometheus, deploy/grafana)"
