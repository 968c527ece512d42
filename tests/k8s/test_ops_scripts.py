"""ops/cluster/*.sh, the failure drills for a real cluster. No cluster runs here, so these
tests can only check what does not need one: the scripts parse (bash -n), pass
shellcheck, document themselves (--help: what the drill proves, what to look at), refuse
bad arguments (exit 2), and stop with a clear message (exit 2) when no cluster answers.
The drills themselves are NOT exercised: that needs a cluster (k8s/README.md, "Drills")."""
import os
import shutil
import subprocess

import pytest

import k8s_checks as kc

OPS = kc.REPO / "ops" / "cluster"
DRILLS = sorted(p.name for p in OPS.glob("drill-*.sh"))
SCRIPTS = sorted(p for p in OPS.glob("*.sh")) + [kc.REPO / "scripts" / "render-diagrams.sh"]


def run(args, **kw):
    env = {**os.environ, "KUBECONFIG": "/nonexistent/kubeconfig", **kw.pop("env", {})}
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, **kw)


def test_the_drills_exist():
    assert set(DRILLS) >= {"drill-rolling-update.sh", "drill-kill-pod.sh", "drill-backend.sh",
                           "drill-hpa.sh", "drill-drain.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    r = run(["bash", "-n", str(script)])
    assert r.returncode == 0, r.stderr


def test_shellcheck():
    exe = shutil.which("shellcheck")
    if not exe:
        pytest.fail("shellcheck not found: scripts/setup.sh installs Debian's shellcheck")
    r = run([exe, "-x", *map(str, SCRIPTS)], cwd=kc.REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_shellcheck_can_fail(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/usr/bin/env bash\nrm -rf $1/*\n')
    r = run([shutil.which("shellcheck") or "shellcheck", str(bad)])
    assert r.returncode != 0 and "SC2086" in r.stdout


@pytest.mark.parametrize("drill", DRILLS)
def test_help_says_what_it_proves(drill):
    r = run([str(OPS / drill), "--help"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(drill), r.stdout[:80]
    assert "Proves" in r.stdout and "Look at" in r.stdout and "Exit status" in r.stdout
    assert "shellcheck" not in r.stdout


@pytest.mark.parametrize("drill,args", [
    ("drill-rolling-update.sh", ["--bogus"]),
    ("drill-kill-pod.sh", ["--app", "webfoo"]),
    ("drill-backend.sh", []),
    ("drill-backend.sh", ["postgres"]),
    ("drill-backend.sh", ["redis", "--member", "1"]),
    ("drill-backend.sh", ["mongo", "--down", "soon"]),
    ("drill-hpa.sh", ["--duration", "long"]),
    ("drill-drain.sh", []),
])
def test_bad_arguments_exit_2(drill, args):
    r = run([str(OPS / drill), *args])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.strip(), "says why"


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
@pytest.mark.parametrize("drill,args", [
    ("drill-rolling-update.sh", []), ("drill-kill-pod.sh", []), ("drill-backend.sh", ["redis"]),
    ("drill-hpa.sh", []), ("drill-drain.sh", ["node-1"]),
])
def test_no_cluster_is_a_clear_setup_error(drill, args):
    """Without a reachable API server every drill stops before starting any load."""
    r = run([str(OPS / drill), *args])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "drill:" in r.stderr and "load:" not in r.stdout
