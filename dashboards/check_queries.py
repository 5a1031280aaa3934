#!/usr/bin/env python3
"""Runs every PromQL expression of the dashboard and the alert rules through a live
Prometheus's HTTP API (/api/v1/query) and fails if one is invalid or returns no series.

Dashboard variables are substituted as Grafana would: $job and $instance match
everything, $__rate_interval becomes 1m. Alert expressions are written as
`<query> <comparison> <threshold>` (see alerts.yml); the comparison is stripped, because
the full expression is legitimately empty while the edge is healthy, and <query> must
return series. Also checks that the dashboard is set up for import (`__inputs` with
DS_PROMETHEUS, a `datasource` template variable of type prometheus, every panel and
target using it) and that Prometheus reports the rules healthy and the target up.

usage: check_queries.py PROMETHEUS_URL DASHBOARD_JSON ALERTS_YML
"""

import json
import re
import sys
import urllib.parse
import urllib.request

COMPARISON = re.compile(r"^(?P<query>.+?)\s*(?:>|<|==|!=|>=|<=)\s*[0-9.eE+-]+\s*$")
SUBSTITUTIONS = {"$__rate_interval": "1m", "$job": ".*", "$instance": ".*"}


def api(base: str, path: str, **params: str) -> dict:
    url = f"{base}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        # Prometheus answers bad queries with 400 and a JSON error body.
        return json.load(error)


def dashboard_queries(path: str) -> list[tuple[str, str]]:
    with open(path) as file:
        dashboard = json.load(file)
    problems = []
    inputs = [i for i in dashboard.get("__inputs", []) if i.get("name") == "DS_PROMETHEUS"]
    if not inputs or inputs[0].get("pluginId") != "prometheus":
        problems.append("__inputs has no DS_PROMETHEUS prometheus datasource")
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    source = variables.get("datasource", {})
    if source.get("type") != "datasource" or source.get("query") != "prometheus":
        problems.append("no `datasource` template variable of type prometheus")
    queries = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        for target in [panel, *panel.get("targets", [])]:
            if target.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"panel {panel['title']!r} does not use ${{datasource}}")
        if not panel.get("targets"):
            problems.append(f"panel {panel['title']!r} has no query")
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in SUBSTITUTIONS.items():
                expr = expr.replace(name, value)
            queries.append((f"dashboard panel {panel['title']!r} {target['refId']}", expr))
    if problems:
        raise SystemExit("dashboard not importable: " + "; ".join(problems))
    return queries


def alert_queries(path: str) -> list[tuple[str, str]]:
    queries = []
    alert = None
    with open(path) as file:
        for line in file:
            stripped = line.strip()
            if stripped.startswith("- alert:"):
                alert = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("expr:"):
                expr = stripped.split(":", 1)[1].strip()
                match = COMPARISON.match(expr)
                if not match:
                    raise SystemExit(f"alert {alert}: expr is not `<query> <op> <threshold>`")
                queries.append((f"alert {alert}", match.group("query")))
    if not queries:
        raise SystemExit(f"no alert expressions found in {path}")
    return queries


def main() -> int:
    base, dashboard, alerts = sys.argv[1], sys.argv[2], sys.argv[3]
    failures = []
    queries = dashboard_queries(dashboard) + alert_queries(alerts)
    for where, expr in queries:
        answer = api(base, "/api/v1/query", query=expr)
        if answer.get("status") != "success":
            failures.append(f"{where}: invalid: {answer.get('error')}\n    {expr}")
        elif not answer["data"]["result"]:
            failures.append(f"{where}: no series\n    {expr}")
    answered = len(queries) - len(failures)
    rules = api(base, "/api/v1/rules")["data"]["groups"]
    loaded = [rule for group in rules for rule in group["rules"]]
    for rule in loaded:
        if rule.get("health") != "ok":
            failures.append(f"rule {rule['name']}: health {rule.get('health')}: {rule.get('lastError')}")
    if len(loaded) != len(alert_queries(alerts)):
        failures.append(f"Prometheus loaded {len(loaded)} rules")
    targets = api(base, "/api/v1/targets")["data"]["activeTargets"]
    if not targets or any(t["health"] != "up" for t in targets):
        failures.append(f"scrape targets not up: {[(t['scrapeUrl'], t['lastError']) for t in targets]}")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"{answered} of {len(queries)} queries returned series; {len(loaded)} rules loaded")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
