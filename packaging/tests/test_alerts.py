"""The Prometheus alerting rules: `promtool check rules` (syntax, templates) and
`promtool test rules` (packaging/prometheus/airlock-alerts.test.yml: each alert fires on
series shaped like the daemons' /metrics and stays quiet where it should). Whether the
metric names are the ones the daemons export is checked against live daemons by the tests
crate (ops_monitoring). Needs promtool (Debian's prometheus package).

Run: python3 -m unittest discover -s packaging/tests -v
"""

import json
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

PROMETHEUS = Path(__file__).resolve().parents[1] / "prometheus"
GRAFANA = Path(__file__).resolve().parents[1] / "grafana"


def promtool(*args, cwd=PROMETHEUS):
    if shutil.which("promtool") is None:
        raise FileNotFoundError("promtool is missing: apt-get install prometheus (scripts/install-test-deps does)")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)


class Alerts(unittest.TestCase):
    def test_rules_check(self):
        out = promtool("check", "rules", "airlock-alerts.yml")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("SUCCESS", out.stdout)

    def test_rules_unit_tests(self):
        out = promtool("test", "rules", "airlock-alerts.test.yml")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("SUCCESS", out.stdout)

    def test_every_alert_has_a_unit_test_that_fires_it(self):
        rules = (PROMETHEUS / "airlock-alerts.yml").read_text()
        tests = (PROMETHEUS / "airlock-alerts.test.yml").read_text()
        alerts = [l.split(":", 1)[1].strip() for l in rules.splitlines() if l.strip().startswith("- alert:")]
        self.assertGreaterEqual(len(alerts), 10)
        for alert in alerts:
            self.assertIn(f"alertname: {alert}\n", tests, f"{alert} has no promtool test")


class Dashboard(unittest.TestCase):
    def test_dashboard_is_grafana_json_with_a_datasource_input(self):
        dash = json.loads((GRAFANA / "airlock-dashboard.json").read_text())
        self.assertEqual(dash["uid"], "airlock")
        self.assertEqual(dash["__inputs"][0]["pluginId"], "prometheus")
        panels = [p for p in dash["panels"] if p["type"] != "row"]
        self.assertGreaterEqual(len(panels), 15)
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for p in panels:
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                self.assertIn("airlock_", t["expr"], p["title"])

    def test_every_dashboard_query_is_valid_promql(self):
        # promtool parses PromQL offline only inside rule files: each query becomes a
        # recording rule, with the dashboard's variables set to "any instance".
        dash = json.loads((GRAFANA / "airlock-dashboard.json").read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        lines = ["groups:", "  - name: dashboard", "    rules:"]
        for i, e in enumerate(exprs):
            e = e.replace("$receiver", ".*").replace("$sender", ".*")
            lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(e)}"]
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "dashboard-rules.yml").write_text("\n".join(lines) + "\n")
            out = promtool("check", "rules", "dashboard-rules.yml", cwd=d)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"SUCCESS: {len(exprs)} rules found", out.stdout)


if __name__ == "__main__":
    unittest.main()
