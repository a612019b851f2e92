#!/usr/bin/env python3
"""Checks of deploy/ that need no server (CI: .ci/run, block "deploy").

- The Grafana dashboard is a dashboard Grafana can import: JSON, unique panel ids, a data source
  variable that every panel and query uses, at least one PromQL query per panel.
- Every PromQL expression of the dashboard and of the alerts parses (promtool), once Grafana's
  variables are given values.
- Every metric that the dashboard and the alerts read is one the service exports: its name is
  emitted somewhere in src/ (a `counter!`/`gauge!`/`histogram!` call, or a family rendered at
  scrape time). With --scrape FILE, every such metric also has samples in FILE, a scrape of a
  real server.
- The compose example holds together: services, volume, auth file secret (or the explicit
  insecure switch), Prometheus configuration and alerts, Grafana provisioning and dashboard,
  each path present in the repository.

Usage: check.py REPO_ROOT [--scrape FILE]
"""

import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from ruamel.yaml import YAML

FAILURES = []


def fail(message):
    FAILURES.append(message)
    print(f"FAIL: {message}")


def load_yaml(path):
    return YAML(typ="safe").load(path.read_text())


# --- PromQL --------------------------------------------------------------------------------

# Values given to Grafana's variables so that the panel queries parse as PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".+",
}

PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}

# Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = {"up"}


def grafana_to_promql(expr):
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        fail(f"a Grafana variable without a value for the check: {expr}")
    return expr


def metric_names(expr):
    """The metric names an expression selects (names not followed by '(' once strings, label
    matchers, grouping clauses, ranges and durations are removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def promtool_parses(named_exprs, what):
    """Runs `promtool check rules` over recording rules made of the expressions."""
    rules = {"groups": [{"name": what, "rules": [
        {"record": f"check:{name}", "expr": expr} for name, expr in named_exprs]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules, f)  # JSON is YAML
        path = f.name
    run = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
    Path(path).unlink()
    if run.returncode != 0:
        fail(f"{what}: promtool cannot parse every expression:\n{run.stdout}{run.stderr}")
    else:
        print(f"ok: {len(named_exprs)} {what} expressions parse")


# --- what the service exports --------------------------------------------------------------


def exported_metrics(repo):
    """(names, histograms) emitted in src/: counters, gauges and histograms of the `metrics`
    facade, and the gauge families that src/telemetry.rs renders at scrape time."""
    emitted = re.compile(r'(counter|gauge|histogram)!\(\s*"(suppressd_\w+)"')
    rendered = re.compile(r'\bfamily\(\s*\w+,\s*"(suppressd_\w+)"')
    names, histograms = set(), set()
    for path in (repo / "src").rglob("*.rs"):
        text = path.read_text()
        for kind, name in emitted.findall(text):
            names.add(name)
            if kind == "histogram":
                histograms.add(name)
        names.update(rendered.findall(text))
    return names, histograms


def base_name(name, histograms):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)]
    return name


def scraped_samples(path):
    names = set()
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][\w:]*", line).group(0))
    return names


# --- the dashboard -------------------------------------------------------------------------


def dashboard_exprs(path):
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(f"{path}: not JSON: {e}")
        return [], set()
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in dash:
            fail(f"{path}: no {key}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail(f"{path}: no Prometheus data source variable named datasource")
    exprs, selected = [], set()
    ids = set()
    for panel in dash.get("panels", []):
        pid = panel.get("id")
        if pid in ids:
            fail(f"{path}: panel id {pid} twice")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        if not all(k in grid for k in ("h", "w", "x", "y")) or grid["x"] + grid["w"] > 24:
            fail(f"{path}: panel {pid} has no place on the 24-column grid: {grid}")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            fail(f"{path}: panel {pid} ({panel.get('title')}) has no query")
        for target in [panel] + targets:
            if target.get("datasource", {}).get("uid") != "${datasource}":
                fail(f"{path}: panel {pid} does not use the datasource variable")
        for target in targets:
            expr = target.get("expr", "")
            if not expr.strip():
                fail(f"{path}: panel {pid} query {target.get('refId')} has no expression")
                continue
            exprs.append((f"panel_{pid}_{target.get('refId')}", grafana_to_promql(expr)))
    for name, variable in variables.items():
        if variable.get("type") != "query":
            continue
        definition = variable.get("definition", "")
        m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", definition)
        if not m:
            fail(f"{path}: variable {name}: expected label_values(metric, label): {definition}")
            continue
        selected.add(m.group(1))
    print(f"ok: {path.name} is JSON with {len(ids)} panels")
    return exprs, selected


# --- the compose example -------------------------------------------------------------------


def bind_mounts(service):
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            yield source, target


def check_compose(repo):
    deploy = repo / "deploy"
    compose = load_yaml(deploy / "compose.yaml")
    services = compose.get("services", {})
    for name in ("suppressd", "suppressd-insecure", "prometheus", "grafana"):
        if name not in services:
            fail(f"compose.yaml: no service {name}")
            return
    named_volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                if not (deploy / source).exists():
                    fail(f"compose.yaml: {name} mounts {source}, absent from deploy/")
            elif source not in named_volumes:
                fail(f"compose.yaml: {name} mounts volume {source}, not declared")
        if "build" in service and not (deploy / service["build"]["context"] / "Dockerfile").exists():
            fail(f"compose.yaml: {name} builds from a context without a Dockerfile")

    server = services["suppressd"]
    env = server.get("environment", {})
    data_dir = "/var/lib/suppressd/data"
    if not any(v.split(":")[1] == data_dir for v in server.get("volumes", [])):
        fail(f"compose.yaml: suppressd keeps no volume on {data_dir}")
    secrets = compose.get("secrets", {})
    auth = env.get("SUPPRESSD_AUTH_FILE", "")
    secret = auth.removeprefix("/run/secrets/")
    if secret not in server.get("secrets", []) or secret not in secrets:
        fail(f"compose.yaml: SUPPRESSD_AUTH_FILE={auth} is not a secret given to suppressd")
    else:
        auth_file = deploy / secrets[secret]["file"]
        try:
            principals = tomllib.loads(auth_file.read_text()).get("principal", [])
        except (OSError, tomllib.TOMLDecodeError) as e:
            fail(f"compose.yaml: auth file {auth_file}: {e}")
            principals = []
        if not principals or not all(
            re.fullmatch(r"[0-9a-f]{64}", p.get("token_sha256", "")) for p in principals
        ):
            fail(f"{auth_file}: expected [[principal]] entries with a token_sha256")
    insecure = services["suppressd-insecure"]
    ienv = insecure.get("environment", {})
    if str(ienv.get("SUPPRESSD_INSECURE_NO_AUTH")).lower() != "true" or "SUPPRESSD_AUTH_FILE" in ienv:
        fail("compose.yaml: suppressd-insecure must set SUPPRESSD_INSECURE_NO_AUTH and no auth file")
    if "profiles" not in insecure:
        fail("compose.yaml: suppressd-insecure must start only on request (a profile)")

    # Prometheus: its configuration and alerts, scraping the server's metrics port.
    metrics_port = env.get("SUPPRESSD_METRICS_LISTEN", "").rsplit(":", 1)[-1]
    mounts = dict(bind_mounts(services["prometheus"]))
    config_dir = next((s for s, t in mounts.items() if t == "/etc/prometheus"), None)
    if config_dir is None:
        fail("compose.yaml: prometheus does not mount its configuration on /etc/prometheus")
    else:
        config_path = deploy / config_dir / "prometheus.yml"
        run = subprocess.run(["promtool", "check", "config", str(config_path)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            fail(f"{config_path}: {run.stdout}{run.stderr}")
        config = load_yaml(config_path)
        targets = [t for job in config.get("scrape_configs", [])
                   for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        if f"suppressd:{metrics_port}" not in targets:
            fail(f"{config_path}: does not scrape suppressd:{metrics_port}")
        if "alerts.yml" not in config.get("rule_files", []):
            fail(f"{config_path}: does not load alerts.yml")

    # Grafana: the data source and the dashboard, provisioned.
    mounts = dict(bind_mounts(services["grafana"]))
    provisioning = next((s for s, t in mounts.items() if t == "/etc/grafana/provisioning"), None)
    dashboard_target = next((t for s, t in mounts.items() if s.endswith("suppressd.json")), None)
    if provisioning is None or dashboard_target is None:
        fail("compose.yaml: grafana must mount the provisioning folder and suppressd.json")
        return
    prov = deploy / provisioning
    sources = [d for f in (prov / "datasources").glob("*.yaml")
               for d in load_yaml(f).get("datasources", [])]
    if not any(d.get("type") == "prometheus" and d.get("url") == "http://prometheus:9090"
               for d in sources):
        fail("grafana provisioning: no Prometheus data source at http://prometheus:9090")
    providers = [p for f in (prov / "dashboards").glob("*.yaml")
                 for p in load_yaml(f).get("providers", [])]
    if not any(p.get("options", {}).get("path") == str(Path(dashboard_target).parent)
               for p in providers):
        fail(f"grafana provisioning: no dashboard provider over {Path(dashboard_target).parent}")
    print("ok: compose.yaml: services, volume, auth secret, Prometheus and Grafana hold together")


def main():
    repo = Path(sys.argv[1]).resolve()
    scrape = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--scrape" else None
    exported, histograms = exported_metrics(repo)

    panel_exprs, variable_metrics = dashboard_exprs(repo / "deploy/grafana/suppressd.json")
    promtool_parses(panel_exprs, "dashboard")
    alerts = load_yaml(repo / "deploy/prometheus/alerts.yml")
    alert_exprs = [(rule["alert"], rule["expr"])
                   for group in alerts["groups"] for rule in group["rules"]]

    used = {}  # metric name -> where
    for where, expr in panel_exprs + alert_exprs:
        for name in metric_names(expr):
            used.setdefault(name, where)
    for name in variable_metrics:
        used.setdefault(name, "dashboard variable")
    for name, where in sorted(used.items()):
        if name in PROMETHEUS_SERIES:
            continue
        if base_name(name, histograms) not in exported:
            fail(f"{where} reads {name}, which the service does not export")
    print(f"ok: checked {len(used)} metric names against src/: "
          f"{', '.join(sorted(used))}")

    if scrape:
        present = scraped_samples(scrape)
        missing = sorted(n for n in used if n not in PROMETHEUS_SERIES and n not in present)
        if missing:
            fail(f"not in the scrape of a running server: {', '.join(missing)}")
        else:
            print(f"ok: every metric the dashboard and alerts read is in {scrape}")

    check_compose(repo)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
