"""The MongoDB scripts' logic, run by node with a stand-in for mongosh's globals
(no mongod here): the replica-set initiation and the app user are idempotent."""
import json
import shutil
import subprocess

import pytest

import k8s_checks as kc

NODE = shutil.which("node") or shutil.which("nodejs")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the mongosh scripts' logic is not exercised")

HARNESS = r"""
const vm = require("vm");
const [script, scenario] = [process.argv[2], JSON.parse(process.argv[3])];
const calls = [];
const users = new Set(scenario.users || []);
const ctx = {
  process: { env: scenario.env || {} },
  print: (...a) => calls.push(["print", a.join(" ")]),
  printjson: (o) => calls.push(["printjson", o]),
  rs: {
    status: () => {
      if (!scenario.initiated) { const e = new Error("no replset config"); e.code = 94; e.codeName = "NotYetInitialized"; throw e; }
      return { ok: 1 };
    },
    initiate: (cfg) => { calls.push(["initiate", cfg]); return { ok: 1 }; },
  },
  db: {
    getSiblingDB: (name) => ({
      getUser: (u) => users.has(name + "." + u) ? { user: u } : null,
      createUser: (spec) => { calls.push(["createUser", name, spec]); users.add(name + "." + spec.user); },
      updateUser: (u, spec) => calls.push(["updateUser", name, u, spec]),
    }),
  },
};
try {
  vm.runInNewContext(require("fs").readFileSync(script, "utf8"), ctx);
  console.log(JSON.stringify({ ok: true, calls }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), calls }));
}
"""


def run(script: str, scenario: dict, tmp_path) -> dict:
    scripts = next(d for d in kc.kustomize("k8s/overlays/wasm-replicaset")
                   if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "mongodb-scripts")["data"]
    path = tmp_path / script
    path.write_text(scripts[script])
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    out = subprocess.run([NODE, str(harness), str(path), json.dumps(scenario)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_rs_init_initiates_once(tmp_path):
    first = run("rs-init.js", {"initiated": False, "env": {"POD_NAMESPACE": "ns1"}}, tmp_path)
    assert first["ok"], first
    (initiate,) = [c for c in first["calls"] if c[0] == "initiate"]
    cfg = initiate[1]
    assert cfg["_id"] == "rs0"
    assert [m["host"] for m in cfg["members"]] == [f"mongo-{i}.mongo.ns1.svc.cluster.local:27017" for i in range(3)]
    assert [m["_id"] for m in cfg["members"]] == [0, 1, 2]
    again = run("rs-init.js", {"initiated": True}, tmp_path)
    assert again["ok"] and not [c for c in again["calls"] if c[0] == "initiate"]


def test_app_user_created_then_updated(tmp_path):
    env = {"MONGO_APP_DATABASE": "visits", "MONGO_APP_USERNAME": "visits", "MONGO_APP_PASSWORD": "pw"}
    first = run("ensure-app-user.js", {"env": env}, tmp_path)
    assert [c[0] for c in first["calls"] if c[0] != "print"] == ["createUser"]
    assert first["calls"][0][2]["roles"] == [{"role": "readWrite", "db": "visits"}]
    again = run("ensure-app-user.js", {"env": env, "users": ["visits.visits"]}, tmp_path)
    assert [c[0] for c in again["calls"] if c[0] != "print"] == ["updateUser"]
    missing = run("ensure-app-user.js", {"env": {"MONGO_APP_DATABASE": "visits"}}, tmp_path)
    assert not missing["ok"] and "MONGO_APP_USERNAME" in missing["error"]
