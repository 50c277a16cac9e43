"""Invariants of the Helm chart's rendered objects, of deploy/install.yaml and of deploy/runtimeclasses/.

Run by scripts/test-deploy.sh, which installs the tools and sets:
  HELM              helm 3 binary
  WASM_ADMISSION    the wasm-admission binary (its `check` and `config` commands)
Each test renders the chart with `helm template` itself, in every certificate mode.
"""

import base64
import json
import os
import posixpath
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "wasm-admission"
HELM = os.environ.get("HELM", "helm")
BIN = os.environ.get("WASM_ADMISSION", str(ROOT / "target" / "debug" / "wasm-admission"))

# The server's defaults (src/commands/serve/args.rs): used when the chart passes no flag.
DEFAULT_LISTEN = "0.0.0.0:8443"
DEFAULT_CERT = "/etc/wasm-admission/tls/tls.crt"
DEFAULT_KEY = "/etc/wasm-admission/tls/tls.key"
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}

CA_BUNDLE = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n").decode()

# name -> (release, namespace, extra helm arguments)
SCENARIOS = {
    "generated": ("wasm-admission", "wasm-admission", []),
    "cert-manager": ("wasm-admission", "wasm-admission", ["--set", "certManager.enabled=true"]),
    "existing-secret": (
        "wasm-admission",
        "wasm-admission",
        ["--set", "certificates.existingSecret=my-tls", "--set", f"certificates.caBundle={CA_BUNDLE}"],
    ),
    "runtimeclasses-metrics-hard": (
        "wasm-admission",
        "wasm-admission",
        [
            "--set", "runtimeClasses.enabled=true",
            "--set", "metrics.enabled=true",
            "--set", "podAntiAffinity=hard",
            "--set", "priorityClassName=system-cluster-critical",
            "--set", "webhook.failurePolicy=Ignore",
        ],
    ),
    "other-release-and-namespace": ("edge", "platform-system", ["--set", "certManager.enabled=true"]),
}


def helm_template(release, namespace, args, check=True):
    proc = subprocess.run(
        [HELM, "template", release, str(CHART), "--namespace", namespace, "--kube-version", "1.30.0", *args],
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm template failed: {proc.stderr}")
    return proc


def load_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


_cache = {}


def render(name):
    if name not in _cache:
        release, namespace, args = SCENARIOS[name]
        _cache[name] = Rendered(release, namespace, load_docs(helm_template(release, namespace, args).stdout))
    return _cache[name]


class Rendered:
    def __init__(self, release, namespace, docs):
        self.release = release
        self.namespace = namespace
        self.docs = docs

    def all(self, kind):
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind):
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    @property
    def deployment(self):
        return self.one("Deployment")

    @property
    def container(self):
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    def flag(self, name, default=None):
        prefix = f"--{name}="
        args = self.container.get("args", [])
        values = [a[len(prefix):] for a in args if a.startswith(prefix)]
        assert f"--{name}" not in args, f"--{name} VALUE form: use --{name}=VALUE"
        assert len(values) <= 1
        if values:
            return values[0]
        env = {e["name"]: e.get("value") for e in self.container.get("env", [])}
        return env.get("WASM_ADMISSION_" + name.upper().replace("-", "_"), default)

    def container_port(self, port):
        """A Service targetPort or probe port (name or number) resolved to the container's number."""
        if isinstance(port, int):
            return port
        (match,) = [p["containerPort"] for p in self.container["ports"] if p["name"] == port]
        return match

    def webhooks(self):
        mutating = self.one("MutatingWebhookConfiguration")
        validating = self.one("ValidatingWebhookConfiguration")
        assert len(mutating["webhooks"]) == 1 and len(validating["webhooks"]) == 1
        return {"mutating": (mutating, mutating["webhooks"][0]), "validating": (validating, validating["webhooks"][0])}


ALL = list(SCENARIOS)


def listen_port(r):
    listen = r.flag("listen", DEFAULT_LISTEN)
    return int(listen.rsplit(":", 1)[1])


# ---------------------------------------------------------------- webhook configurations


@pytest.mark.parametrize("name", ALL)
def test_webhook_configurations(name):
    r = render(name)
    service = r.one("Service")
    https = [p for p in service["spec"]["ports"] if p["name"] == "https"][0]
    for which, (config, hook) in r.webhooks().items():
        path = {"mutating": "/mutate", "validating": "/validate"}[which]
        assert hook["name"].endswith(".wasm-admission.io")
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["sideEffects"] == "None"
        assert 1 <= hook["timeoutSeconds"] <= 10
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["failurePolicy"] in ("Fail", "Ignore")
        svc = hook["clientConfig"]["service"]
        assert svc["path"] == path
        assert svc["name"] == service["metadata"]["name"]
        assert svc["namespace"] == r.namespace == service["metadata"]["namespace"]
        assert svc.get("port", 443) == https["port"] == 443
        assert "url" not in hook["clientConfig"]
        if which == "mutating":
            assert hook["reinvocationPolicy"] == "IfNeeded"
        else:
            assert "reinvocationPolicy" not in hook


def test_default_timeout_and_failure_policy():
    for _, hook in render("generated").webhooks().values():
        assert hook["timeoutSeconds"] == 5
        assert hook["failurePolicy"] == "Fail"
    for _, hook in render("runtimeclasses-metrics-hard").webhooks().values():
        assert hook["failurePolicy"] == "Ignore"


def normalized_rules(hook):
    out = set()
    for rule in hook["rules"]:
        assert rule.get("scope", "*") in ("Namespaced", "*")
        for group in rule["apiGroups"]:
            for version in rule["apiVersions"]:
                for resource in rule["resources"]:
                    for op in rule["operations"]:
                        out.add((group, version, resource, op))
    return out


@pytest.mark.parametrize("name", ALL)
def test_webhook_rules(name):
    expected = {("", "v1", "pods/ephemeralcontainers", "UPDATE")}
    for group, resources in (
        ("", ["pods"]),
        ("apps", ["deployments", "statefulsets", "daemonsets", "replicasets"]),
        ("batch", ["jobs", "cronjobs"]),
    ):
        for resource in resources:
            for op in ("CREATE", "UPDATE"):
                expected.add((group, "v1", resource, op))
    for _, hook in render(name).webhooks().values():
        assert normalized_rules(hook) == expected


@pytest.mark.parametrize("name", ALL)
def test_webhook_selectors(name):
    r = render(name)
    for _, hook in r.webhooks().values():
        ns = hook["namespaceSelector"]
        assert ns["matchLabels"] == {"wasm-admission.io/inject": "enabled"}
        (expr,) = ns["matchExpressions"]
        assert expr["key"] == "kubernetes.io/metadata.name"
        assert expr["operator"] == "NotIn"
        assert set(expr["values"]) >= SYSTEM_NAMESPACES | {r.namespace}
    # The skip label opts out of mutation only.
    assert r.webhooks()["mutating"][1]["objectSelector"] == {
        "matchExpressions": [{"key": "wasm-admission.io/skip", "operator": "NotIn", "values": ["true"]}]
    }


@pytest.mark.parametrize("name", ALL)
def test_validating_webhook_has_no_selector_a_pod_author_controls(name):
    """behaviour.md §5, the boundary: nothing on the pod turns the baseline check off, so the
    validating webhook has no objectSelector, and it is sent Pod UPDATEs (a changed image)."""
    _, hook = render(name).webhooks()["validating"]
    assert "objectSelector" not in hook
    assert ("", "v1", "pods", "UPDATE") in normalized_rules(hook)
    assert ("batch", "v1", "jobs", "UPDATE") in normalized_rules(hook)


def test_excluded_namespaces_follow_the_configuration():
    proc = helm_template("w", "ops", ["--set", "config.excludedNamespaces={kube-system,monitoring}"])
    r = Rendered("w", "ops", load_docs(proc.stdout))
    for _, hook in r.webhooks().values():
        assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "monitoring", "ops"]


# ---------------------------------------------------------------- certificates


def openssl(*args, stdin=None):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)


def service_dns_names(r):
    svc = r.one("Service")["metadata"]["name"]
    return {svc, f"{svc}.{r.namespace}", f"{svc}.{r.namespace}.svc", f"{svc}.{r.namespace}.svc.cluster.local"}


def tls_volume(r):
    (volume,) = [v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    return volume


def test_generated_certificate():
    r = render("generated")
    secret = r.one("Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert tls_volume(r)["secret"]["secretName"] == secret["metadata"]["name"]
    ca = secret["data"]["ca.crt"]
    for config, hook in r.webhooks().values():
        assert hook["clientConfig"]["caBundle"] == ca
        assert "cert-manager.io/inject-ca-from" not in config["metadata"].get("annotations", {})
    assert not [d for d in r.docs if d["apiVersion"].startswith("cert-manager.io/")]
    with tempfile.TemporaryDirectory() as tmp:
        for key in ("ca.crt", "tls.crt", "tls.key"):
            Path(tmp, key).write_bytes(base64.b64decode(secret["data"][key]))
        verify = openssl("verify", "-CAfile", f"{tmp}/ca.crt", f"{tmp}/tls.crt")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        text = openssl("x509", "-in", f"{tmp}/tls.crt", "-noout", "-ext", "subjectAltName").stdout
        sans = {part.strip()[len("DNS:"):] for part in text.splitlines()[1].split(",")}
        assert sans == service_dns_names(r)
        # The key belongs to the certificate.
        cert_pub = openssl("x509", "-in", f"{tmp}/tls.crt", "-noout", "-pubkey").stdout
        key_pub = openssl("pkey", "-in", f"{tmp}/tls.key", "-pubout").stdout
        assert cert_pub and cert_pub == key_pub


@pytest.mark.parametrize("name", ["cert-manager", "other-release-and-namespace"])
def test_cert_manager_certificate(name):
    r = render(name)
    assert not r.all("Secret"), "cert-manager writes the Secret; the chart must not"
    certs = {c["metadata"]["name"]: c for c in r.all("Certificate")}
    issuers = {i["metadata"]["name"]: i for i in r.all("Issuer")}
    assert len(certs) == 2 and len(issuers) == 2
    for doc in list(certs.values()) + list(issuers.values()):
        assert doc["apiVersion"] == "cert-manager.io/v1"
        assert doc["metadata"]["namespace"] == r.namespace
    (serving,) = [c for c in certs.values() if not c["spec"].get("isCA")]
    (ca,) = [c for c in certs.values() if c["spec"].get("isCA")]
    # self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate
    (selfsigned,) = [i for i in issuers.values() if "selfSigned" in i["spec"]]
    (ca_issuer,) = [i for i in issuers.values() if "ca" in i["spec"]]
    assert ca["spec"]["issuerRef"] == {"name": selfsigned["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io"}
    assert ca_issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    assert serving["spec"]["issuerRef"] == {"name": ca_issuer["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io"}
    assert set(serving["spec"]["dnsNames"]) == service_dns_names(r)
    assert "server auth" in serving["spec"]["usages"]
    assert serving["spec"]["secretName"] == tls_volume(r)["secret"]["secretName"]
    for config, hook in r.webhooks().values():
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"{r.namespace}/{serving['metadata']['name']}"
        )
        assert "caBundle" not in hook["clientConfig"]


def test_cert_manager_with_an_existing_issuer():
    proc = helm_template(
        "w", "w", ["--set", "certManager.enabled=true", "--set", "certManager.issuerRef.name=corp-ca",
                   "--set", "certManager.issuerRef.kind=ClusterIssuer"]
    )
    r = Rendered("w", "w", load_docs(proc.stdout))
    assert not r.all("Issuer")
    assert r.one("Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def test_existing_secret():
    r = render("existing-secret")
    assert not r.all("Secret")
    assert not [d for d in r.docs if d["apiVersion"].startswith("cert-manager.io/")]
    assert tls_volume(r)["secret"]["secretName"] == "my-tls"
    for _, hook in r.webhooks().values():
        assert hook["clientConfig"]["caBundle"] == CA_BUNDLE


@pytest.mark.parametrize("url, ip", [("https://127.0.0.1:8443", "127.0.0.1"), ("https://webhook.example.com:9443/", None)])
def test_webhook_url_calls_the_url_and_the_certificate_covers_its_host(url, ip):
    r = Rendered("w", "ops", load_docs(helm_template("w", "ops", ["--set", f"webhook.url={url}"]).stdout))
    base = url.rstrip("/")
    for kind, (_, hook) in r.webhooks().items():
        path = "/mutate" if kind == "mutating" else "/validate"
        assert hook["clientConfig"]["url"] == base + path
        assert "service" not in hook["clientConfig"]
        assert hook["clientConfig"]["caBundle"] == r.one("Secret")["data"]["ca.crt"]
    # The webhook runs outside the cluster: nothing to schedule here.
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert not r.all(kind), kind
    secret = r.one("Secret")
    with tempfile.TemporaryDirectory() as tmp:
        for key in ("ca.crt", "tls.crt"):
            Path(tmp, key).write_bytes(base64.b64decode(secret["data"][key]))
        verify = openssl("verify", "-CAfile", f"{tmp}/ca.crt", f"{tmp}/tls.crt")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        text = openssl("x509", "-in", f"{tmp}/tls.crt", "-noout", "-ext", "subjectAltName").stdout
        sans = {part.strip() for part in text.splitlines()[1].split(",")}
        host = "webhook.example.com"
        assert (f"IP Address:{ip}" in sans) if ip else (f"DNS:{host}" in sans), sans


def test_webhook_url_with_cert_manager_asks_for_the_ip():
    proc = helm_template("w", "w", ["--set", "webhook.url=https://127.0.0.1:8443", "--set", "certManager.enabled=true"])
    r = Rendered("w", "w", load_docs(proc.stdout))
    (serving,) = [c for c in r.all("Certificate") if not c["spec"].get("isCA")]
    assert serving["spec"]["ipAddresses"] == ["127.0.0.1"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "certificates.existingSecret=x"], "certificates.caBundle is required"),
        (["--set", "webhook.timeoutSeconds=11"], "timeoutSeconds must be between 1 and 10"),
        (["--set", "webhook.failurePolicy=Sometimes"], "must be Fail or Ignore"),
        (["--set", "podAntiAffinity=maybe"], "podAntiAffinity must be soft or hard"),
        (["--set", "configYaml=[1"], "configYaml is not a YAML map"),
        (["--set", "webhook.url=http://127.0.0.1:8443"], "webhook.url must be an https URL"),
        (["--set", "webhook.url=https://user@127.0.0.1:8443"], "webhook.url must be an https URL"),
    ],
)
def test_refused_values(args, message):
    proc = helm_template("w", "w", args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


# ---------------------------------------------------------------- Deployment, Service, probes, mounts


@pytest.mark.parametrize("name", ALL)
def test_service_targets_the_listen_port(name):
    r = render(name)
    service = r.one("Service")
    pod_labels = r.deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert r.deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    https = [p for p in service["spec"]["ports"] if p["name"] == "https"][0]
    assert https["port"] == 443
    assert r.container_port(https["targetPort"]) == listen_port(r)
    host = r.flag("listen", DEFAULT_LISTEN).rsplit(":", 1)[0]
    assert host in ("0.0.0.0", "[::]"), "the Service cannot reach a listener on loopback"


@pytest.mark.parametrize("name", ALL)
def test_probes(name):
    r = render(name)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = r.container[probe]["httpGet"]
        assert get["path"] == path
        assert get["scheme"] == "HTTPS"
        assert r.container_port(get["port"]) == listen_port(r)


@pytest.mark.parametrize("name", ALL)
def test_metrics_port(name):
    r = render(name)
    listen = r.flag("metrics-listen")
    ports = {p["name"]: p for p in r.one("Service")["spec"]["ports"]}
    if listen is None:
        assert "metrics" not in ports
        return
    port = int(listen.rsplit(":", 1)[1])
    assert port != listen_port(r)
    assert r.container_port(ports["metrics"]["targetPort"]) == port


@pytest.mark.parametrize("name", ALL)
def test_certificate_and_config_mounts(name):
    r = render(name)
    spec = r.deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in r.container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in mounts.values():
        assert "subPath" not in m, "subPath mounts never see updates: hot reload needs folder mounts"
    cert, key = r.flag("tls-cert-file", DEFAULT_CERT), r.flag("tls-private-key-file", DEFAULT_KEY)
    tls = mounts["tls"]
    assert tls["readOnly"] is True
    assert posixpath.dirname(cert) == posixpath.dirname(key) == tls["mountPath"] == "/etc/wasm-admission/tls"
    assert posixpath.basename(cert) == "tls.crt" and posixpath.basename(key) == "tls.key"
    assert "secret" in volumes["tls"]
    config_path = r.flag("config")
    assert config_path, "the chart passes --config"
    cm_mount = mounts["config"]
    assert cm_mount["mountPath"] == posixpath.dirname(config_path) == "/etc/wasm-admission/config"
    assert cm_mount.get("readOnly") is True
    (configmap,) = [c for c in r.all("ConfigMap") if c["metadata"]["name"] == volumes["config"]["configMap"]["name"]]
    assert posixpath.basename(config_path) in configmap["data"]


@pytest.mark.parametrize("name", ALL)
def test_pod_namespace_and_skip_label(name):
    r = render(name)
    env = {e["name"]: e for e in r.container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert r.deployment["spec"]["template"]["metadata"]["labels"]["wasm-admission.io/skip"] == "true"
    assert r.container["args"][0] == "serve"
    for doc in r.docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                               "ValidatingWebhookConfiguration", "RuntimeClass", "Namespace"):
            assert doc["metadata"]["namespace"] == r.namespace, doc["kind"]


@pytest.mark.parametrize("name", ALL)
def test_restricted_security_context(name):
    r = render(name)
    spec = r.deployment["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 65532
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    c = r.container["securityContext"]
    assert c["runAsNonRoot"] is True
    assert c["runAsUser"] == 65532
    assert c["allowPrivilegeEscalation"] is False
    assert c["readOnlyRootFilesystem"] is True
    assert c["capabilities"] == {"drop": ["ALL"]}
    assert c["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not c.get("privileged")
    for v in spec["volumes"]:
        assert set(v) - {"name"} <= {"secret", "configMap", "emptyDir", "projected"}, v
    assert r.container["resources"]["requests"] and r.container["resources"]["limits"]


@pytest.mark.parametrize("name", ALL)
def test_availability(name):
    r = render(name)
    spec = r.deployment["spec"]
    assert spec["replicas"] == 2
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [
        t["podAffinityTerm"] for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]
    ]
    (term,) = terms
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    rolling = spec["strategy"]["rollingUpdate"]
    if "requiredDuringSchedulingIgnoredDuringExecution" in anti:
        # One pod per node: a surge pod would stay Pending on a two-node cluster for ever.
        assert rolling == {"maxSurge": 0, "maxUnavailable": 1}
    else:
        assert rolling == {"maxSurge": 1, "maxUnavailable": 0}


def template(*args, release="w", namespace="w"):
    return Rendered(release, namespace, load_docs(helm_template(release, namespace, list(args)).stdout))


def test_hard_anti_affinity_rolls_out_on_two_nodes():
    """maxSurge 0 with hard anti-affinity: the rollout replaces a pod in place instead of waiting
    for a third node; a single replica keeps the surge (it has the other nodes)."""
    hard = template("--set", "podAntiAffinity=hard").deployment["spec"]
    assert hard["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    single = template("--set", "podAntiAffinity=hard", "--set", "replicaCount=1").deployment["spec"]
    assert single["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_hard_anti_affinity_and_priority_class():
    spec = render("runtimeclasses-metrics-hard").deployment["spec"]["template"]["spec"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in spec["affinity"]["podAntiAffinity"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert "priorityClassName" not in render("generated").deployment["spec"]["template"]["spec"]


def test_single_replica_has_no_pdb():
    r = Rendered("w", "w", load_docs(helm_template("w", "w", ["--set", "replicaCount=1"]).stdout))
    assert not r.all("PodDisruptionBudget")


# ---------------------------------------------------------------- RBAC


@pytest.mark.parametrize("name", ALL)
def test_rbac_is_read_only_runtimeclasses_and_nodes(name):
    r = render(name)
    assert not r.all("Role") and not r.all("RoleBinding")
    role = r.one("ClusterRole")
    assert role["rules"] == [
        {"apiGroups": ["node.k8s.io"], "resources": ["runtimeclasses"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
    ]
    assert "aggregationRule" not in role
    binding = r.one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    sa = r.one("ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": r.namespace}]
    assert r.deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


# ---------------------------------------------------------------- configuration


def run_bin(*args, stdin=None):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True)


def rendered_config(r):
    (configmap,) = [c for c in r.all("ConfigMap") if "config.yaml" in c.get("data", {})]
    return configmap["data"]["config.yaml"]


@pytest.mark.parametrize("name", ALL)
def test_config_is_accepted_by_the_server_parser(name, tmp_path):
    r = render(name)
    text = rendered_config(r)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    proc = run_bin("check", "--config", str(path), str(ROOT / "examples" / "wasm" / "pod.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load(text)
    assert r.namespace not in config.get("excludedNamespaces", []), "the server adds its own namespace itself"


def test_the_parser_check_is_not_vacuous(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(rendered_config(render("generated")) + "unknownKey: 1\n")
    proc = run_bin("check", "--config", str(path), str(ROOT / "examples" / "wasm" / "pod.yaml"))
    assert proc.returncode == 2 and "unknownKey" in proc.stderr


def test_values_config_mirrors_the_server_defaults():
    """values.yaml's `config:` block is exactly `wasm-admission config` (every behaviour.md §8 key and default)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    proc = run_bin("config")
    assert proc.returncode == 0, proc.stderr
    assert values["config"] == yaml.safe_load(proc.stdout)


def test_config_yaml_replaces_config(tmp_path):
    text = "resources:\n  limits: {}\nexcludedNamespaces: [kube-system, monitoring]\n"
    given = tmp_path / "given.yaml"
    given.write_text(text)
    r = Rendered("w", "w", load_docs(helm_template("w", "w", ["--set-file", f"configYaml={given}"]).stdout))
    assert yaml.safe_load(rendered_config(r)) == yaml.safe_load(text)
    for _, hook in r.webhooks().values():
        assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "monitoring", "w"]
    path = tmp_path / "config.yaml"
    path.write_text(rendered_config(r))
    assert run_bin("check", "--config", str(path), str(ROOT / "examples" / "wasm")).returncode == 0


# ---------------------------------------------------------------- the webhook never acts on itself


@pytest.mark.parametrize("name", ALL)
def test_check_leaves_its_own_objects_unchanged(name, tmp_path):
    r = render(name)
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(r.docs))
    proc = run_bin("check", "-o", "json", "--namespace", r.namespace, str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert len(report) == len(r.docs)
    for entry in report:
        assert entry["allowed"] is True, entry
        assert entry["patch"] == [], entry
    assert [e for e in report if e["kind"] == "Deployment"]


def test_skip_label_protects_the_webhook_even_if_marked_wasm(tmp_path):
    """Even a Wasm annotation on its own pods changes nothing: the skip label is honoured."""
    proc = helm_template("w", "w", ["--set-string", "podAnnotations.wasm-admission\\.io/wasm=true"])
    path = tmp_path / "rendered.yaml"
    path.write_text(proc.stdout)
    report = json.loads(run_bin("check", "-o", "json", str(path)).stdout)
    (deployment,) = [e for e in report if e["kind"] == "Deployment"]
    assert deployment["allowed"] is True and deployment["patch"] == []


# ---------------------------------------------------------------- RuntimeClasses


def plain_runtimeclasses():
    out = {}
    for path in sorted((ROOT / "deploy" / "runtimeclasses").glob("*.yaml")):
        for doc in load_docs(path.read_text()):
            if doc["kind"] == "RuntimeClass":
                out[doc["metadata"]["name"]] = doc
    return out


def test_runtimeclass_files():
    classes = plain_runtimeclasses()
    assert set(classes) == {"wasm", "wasmedge", "spin", "wasmtime"}
    assert classes["wasmedge"]["handler"] == "wasmedge"
    assert classes["spin"]["handler"] == "spin"
    assert classes["wasmtime"]["handler"] == "wasmtime"
    for rc in classes.values():
        assert rc["apiVersion"] == "node.k8s.io/v1"
        assert rc["overhead"] == {"podFixed": {"cpu": "10m", "memory": "10Mi"}}
        selector = rc["scheduling"]["nodeSelector"]
        assert selector and all(v == "true" for v in selector.values())
    kustomization = yaml.safe_load((ROOT / "deploy" / "runtimeclasses" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(f"{n}.yaml" for n in classes)


def test_chart_runtimeclasses_match_the_plain_files():
    chart = {rc["metadata"]["name"]: rc for rc in render("runtimeclasses-metrics-hard").all("RuntimeClass")}
    plain = plain_runtimeclasses()
    assert set(chart) == set(plain)
    for name, rc in plain.items():
        for key in ("handler", "overhead", "scheduling"):
            assert chart[name][key] == rc[key], (name, key)
    assert not render("generated").all("RuntimeClass"), "off by default"


def test_every_injected_runtimeclass_exists():
    """The default class and every class named by an example have a RuntimeClass here."""
    classes = set(plain_runtimeclasses())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["config"]["runtimeClassName"] in classes
    named = set()
    for path in (ROOT / "examples").rglob("*.yaml"):
        for doc in load_docs(path.read_text()):
            for meta in (doc.get("metadata", {}), doc.get("spec", {}).get("template", {}).get("metadata", {})):
                name = (meta.get("annotations") or {}).get("wasm-admission.io/runtime-class")
                if name:
                    named.add(name)
    assert named and named <= classes


# ---------------------------------------------------------------- deploy/install.yaml


def test_install_yaml():
    docs = load_docs((ROOT / "deploy" / "install.yaml").read_text())
    assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "wasm-admission"
    labels = docs[0]["metadata"].get("labels", {})
    assert labels.get("wasm-admission.io/inject") != "enabled"
    r = Rendered("wasm-admission", "wasm-admission", docs[1:])
    assert not r.all("Secret"), "no key material in install.yaml"
    for _, hook in r.webhooks().values():
        assert "caBundle" not in hook["clientConfig"]
    assert r.all("Certificate")
    assert r.deployment["spec"]["template"]["spec"]["containers"][0]["image"].startswith("wasm-admission:")
    assert docs[1:] == render("cert-manager").docs


# ---------------------------------------------------------------- issue 24: the chart fits the process

# serve's cost per connection still in its TLS handshake (README, "Faults") and its own footprint.
HANDSHAKE_BYTES = 13 * 1024
PROCESS_BYTES = 30 * 1024 * 1024


def mebibytes(quantity):
    assert quantity.endswith("Mi"), quantity
    return int(quantity[:-2]) * 1024 * 1024


def test_max_connections_is_passed_and_fits_the_memory_limit():
    r = render("generated")
    cap = int(r.flag("max-connections"))
    assert cap == 4096
    limit = mebibytes(r.container["resources"]["limits"]["memory"])
    assert PROCESS_BYTES + cap * HANDSHAKE_BYTES < limit, "the default cap must fit the default limit"
    # The server's own default (16384) would not fit 128Mi.
    assert PROCESS_BYTES + 16384 * HANDSHAKE_BYTES > limit
    other = template("--set", "connections.max=16384", "--set", "resources.limits.memory=256Mi")
    assert other.flag("max-connections") == "16384"


def test_load_limits_are_passed_as_flags():
    r = render("generated")
    assert r.flag("max-reviews-in-flight") == "256"
    assert r.flag("max-body-memory") == "32Mi"
    assert r.flag("h2-idle-timeout") == "60s"
    assert r.flag("tls-handshake-timeout") == "10s"
    other = template(
        "--set", "load.reviewsInFlight=64", "--set", "load.bodyMemory=16Mi",
        "--set", "load.h2IdleTimeout=30s", "--set", "load.tlsHandshakeTimeout=5s",
    )
    assert other.flag("max-reviews-in-flight") == "64"
    assert other.flag("max-body-memory") == "16Mi"
    assert other.flag("h2-idle-timeout") == "30s"
    assert other.flag("tls-handshake-timeout") == "5s"


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_connections_below_one_is_refused(value):
    proc = helm_template("w", "w", ["--set", f"connections.max={value}"], check=False)
    assert proc.returncode != 0 and "connections.max must be at least 1" in proc.stderr


def test_pre_stop_sleep_and_grace_period_cover_the_drain():
    pod = render("generated").deployment["spec"]["template"]["spec"]
    sleep = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep == 5
    # serve drains requests in flight for up to 20 s after SIGTERM.
    assert pod["terminationGracePeriodSeconds"] >= sleep + 5 + 20
    off = template("--set", "preStopSleepSeconds=0").deployment["spec"]["template"]["spec"]
    assert "lifecycle" not in off["containers"][0]
    proc = helm_template("w", "w", ["--set", "terminationGracePeriodSeconds=10"], check=False)
    assert proc.returncode != 0 and "must cover preStopSleepSeconds" in proc.stderr


def test_extra_volumes_and_mounts_reach_the_pod():
    r = template(
        "--set", "extraVolumes[0].name=ca-certs",
        "--set", "extraVolumes[0].configMap.name=corporate-ca",
        "--set", "extraVolumeMounts[0].name=ca-certs",
        "--set", "extraVolumeMounts[0].mountPath=/etc/ssl/corporate",
        "--set", "extraVolumeMounts[0].readOnly=true",
    )
    volumes = {v["name"]: v for v in r.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["ca-certs"] == {"name": "ca-certs", "configMap": {"name": "corporate-ca"}}
    mounts = {m["name"]: m for m in r.container["volumeMounts"]}
    assert mounts["ca-certs"] == {"name": "ca-certs", "mountPath": "/etc/ssl/corporate", "readOnly": True}
    assert {"tls", "config"} <= mounts.keys(), "the chart's own mounts stay"


@pytest.mark.parametrize("config_yaml", [None, "runtimeClassName: spin\ndetection:\n  registry:\n    enabled: true\n"])
def test_registry_credentials_secret_is_mounted_and_named_by_the_configuration(config_yaml, tmp_path):
    args = ["--set", "registryCredentials.secretName=regcred"]
    if config_yaml:
        given = tmp_path / "given.yaml"
        given.write_text(config_yaml)
        args += ["--set-file", f"configYaml={given}"]
    r = template(*args)
    (volume,) = [v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v.get("secret", {}).get("secretName") == "regcred"]
    (mount,) = [m for m in r.container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    config = yaml.safe_load(rendered_config(r))
    path = config["detection"]["registry"]["credentialsFile"]
    assert posixpath.dirname(path) == mount["mountPath"]
    assert posixpath.basename(path) in [i["path"] for i in volume["secret"]["items"]]
    assert [i["key"] for i in volume["secret"]["items"]] == [".dockerconfigjson"]
    if config_yaml:
        assert config["runtimeClassName"] == "spin" and config["detection"]["registry"]["enabled"] is True
    # The server accepts the rendered file.
    path_file = tmp_path / "config.yaml"
    path_file.write_text(rendered_config(r))
    proc = run_bin("check", "--config", str(path_file), str(ROOT / "examples" / "wasm" / "pod.yaml"))
    assert proc.returncode == 0, proc.stderr
    # Without the value: no such volume, credentialsFile empty.
    plain = render("generated")
    assert all("regcred" not in json.dumps(v) for v in plain.deployment["spec"]["template"]["spec"]["volumes"])
    assert yaml.safe_load(rendered_config(plain))["detection"]["registry"]["credentialsFile"] == ""


def test_registry_credentials_and_another_credentials_file_are_refused():
    proc = helm_template(
        "w", "w",
        ["--set", "registryCredentials.secretName=regcred", "--set", "config.detection.registry.credentialsFile=/x"],
        check=False,
    )
    assert proc.returncode != 0 and "leave config.detection.registry.credentialsFile empty" in proc.stderr


def test_annotation_and_label_values_are_always_strings():
    """`--set metrics.serviceAnnotations.prometheus\\.io/scrape=true` gives helm a boolean; the API
    server refuses a non-string annotation, so every value is rendered quoted."""
    r = template(
        "--set", "metrics.enabled=true",
        "--set", "metrics.serviceAnnotations.prometheus\\.io/scrape=true",
        "--set", "metrics.serviceAnnotations.prometheus\\.io/port=9090",
        "--set", "service.annotations.a=1",
        "--set", "podAnnotations.b=true",
        "--set", "podLabels.tier=1",
        "--set", "serviceAccount.annotations.c=false",
        "--set", "webhook.annotations.d=2",
    )
    assert r.one("Service")["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9090", "a": "1"}
    template_meta = r.deployment["spec"]["template"]["metadata"]
    assert template_meta["annotations"] == {"b": "true"}
    assert template_meta["labels"]["tier"] == "1"
    assert r.one("ServiceAccount")["metadata"]["annotations"] == {"c": "false"}
    for config, _ in r.webhooks().values():
        assert config["metadata"]["annotations"] == {"d": "2"}


def render_notes(tmp_path, *args):
    """NOTES.txt as `helm install` prints it: `helm template` does not print notes, so a copy of
    the chart renders it into a ConfigMap with `tpl`."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        "data:\n  notes: {{ tpl (.Files.Get \"notes.txt\") . | toJson }}\n"
    )
    proc = subprocess.run(
        [HELM, "template", "w", str(chart), "--namespace", "w", "--show-only", "templates/zz-notes.yaml", *args],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return load_docs(proc.stdout)[0]["data"]["notes"]


def test_notes_name_the_class_the_configuration_really_sets(tmp_path):
    assert "runtimeClassName: wasm:" in render_notes(tmp_path / "a")
    given = tmp_path / "given.yaml"
    given.write_text("runtimeClassName: spin\n")
    notes = render_notes(tmp_path / "b", "--set-file", f"configYaml={given}")
    assert "runtimeClassName: spin:" in notes and "runtimeClassName: wasm" not in notes
    notes = render_notes(tmp_path / "c", "--set", "config.runtimeClassName=wasmtime")
    assert "runtimeClassName: wasmtime:" in notes


def test_chart_readme_names_the_service_as_the_chart_does():
    readme = (CHART / "README.md").read_text()
    assert "named like the release" not in readme
    for release in ("wasm-admission", "edge"):
        service = template(release=release).one("Service")["metadata"]["name"]
        assert f"`{service}`" in readme, service


# ---------------------------------------------------------------- mode: webhook | policies | both


def kinds(docs):
    return sorted(d["kind"] for d in docs)


def test_mode_policies_installs_the_generated_policies_and_no_webhook():
    docs = load_docs(helm_template("edge", "platform-system", ["--set", "mode=policies"]).stdout)
    assert kinds(docs) == [
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    text = json.dumps(docs)
    # The release namespace is excluded, as the webhook excludes its own.
    assert "platform-system" in text and "wasm-admission-release-namespace" not in text
    assert all(d["spec"].get("failurePolicy", "Fail") == "Fail" for d in docs if "Binding" not in d["kind"])


@pytest.mark.parametrize("mode", ["policies", "both"])
def test_failure_policy_ignore_never_reaches_the_validating_policy(mode):
    """Item 2 of issue 28: the validating policy fails closed whatever webhook.failurePolicy says;
    Ignore reaches the mutating policy only."""
    docs = load_docs(helm_template("w", "w", ["--set", f"mode={mode}", "--set", "webhook.failurePolicy=Ignore"]).stdout)
    policies = {d["kind"]: d["spec"]["failurePolicy"] for d in docs if d["kind"].endswith("AdmissionPolicy")}
    assert policies == {"MutatingAdmissionPolicy": "Ignore", "ValidatingAdmissionPolicy": "Fail"}
    validating = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"][0]["spec"]
    assert "objectSelector" not in validating["matchConstraints"]
    assert [c["name"] for c in validating["matchConditions"]] == ["outside-excluded-namespaces"]


def test_release_in_default_says_loudly_what_it_exempts(tmp_path):
    """Item 11 of issue 28: a release in default excludes default; NOTES says so loudly."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        "data:\n  notes: {{ tpl (.Files.Get \"notes.txt\") . | toJson }}\n"
    )
    def notes(namespace):
        proc = subprocess.run(
            [HELM, "template", "w", str(chart), "--namespace", namespace, "--show-only", "templates/zz-notes.yaml"],
            capture_output=True, text=True,
        )
        assert proc.returncode == 0, proc.stderr
        return load_docs(proc.stdout)[0]["data"]["notes"]
    loud = notes("default")
    assert 'WARNING: this release is in namespace "default", so namespace "default" is EXCLUDED' in loud
    assert "-n wasm-admission --create-namespace" in loud
    quiet = notes("wasm-admission")
    assert "WARNING" not in quiet
    assert "namespace wasm-admission (this release's) is never mutated or checked" in quiet
    # What the NOTES say is what the webhooks do.
    _, hook = Rendered("w", "default", load_docs(helm_template("w", "default", []).stdout)).webhooks()["validating"]
    assert "default" in hook["namespaceSelector"]["matchExpressions"][0]["values"]


def test_mode_both_installs_the_webhook_and_the_policies():
    found = kinds(load_docs(helm_template("w", "w", ["--set", "mode=both"]).stdout))
    for kind in ("Deployment", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
                 "MutatingAdmissionPolicy", "ValidatingAdmissionPolicy"):
        assert kind in found, kind
    assert "MutatingAdmissionPolicy" not in kinds(load_docs(helm_template("w", "w", []).stdout))


def test_the_chart_policies_are_what_the_binary_generates_for_the_default_configuration(tmp_path):
    """files/policies.yaml is generated (deploy/render.sh), never edited: it equals the binary's
    output for the configuration the chart renders."""
    cm = render("generated").one("ConfigMap")
    config = tmp_path / "config.yaml"
    config.write_text(cm["data"]["config.yaml"])
    generated = subprocess.run(
        [BIN, "policies", "--config", str(config), "--namespace", "wasm-admission-release-namespace"],
        capture_output=True, text=True, check=True,
    ).stdout
    committed = (CHART / "files" / "policies.yaml").read_text()
    assert load_docs(committed) == load_docs(generated)
    assert f"# config-sha256: {cm['metadata']['annotations']['wasm-admission.io/config-sha256']}" in committed


def test_mode_policies_with_another_configuration_asks_for_generated_policies(tmp_path):
    proc = helm_template("w", "w", ["--set", "mode=policies", "--set", "config.runtimeClassName=spin"], check=False)
    assert proc.returncode != 0
    assert "wasm-admission policies --config" in proc.stderr and "policies.manifest" in proc.stderr
    config = tmp_path / "config.yaml"
    config.write_text("runtimeClassName: spin\n")
    generated = tmp_path / "policies.yaml"
    generated.write_text(subprocess.run(
        [BIN, "policies", "--config", str(config), "--namespace", "w"], capture_output=True, text=True, check=True
    ).stdout)
    docs = load_docs(helm_template("w", "w", [
        "--set", "mode=policies", "--set", "config.runtimeClassName=spin",
        "--set-file", f"policies.manifest={generated}",
    ]).stdout)
    assert "'spin'" in json.dumps(docs)


def test_unknown_mode_is_refused():
    proc = helm_template("w", "w", ["--set", "mode=native"], check=False)
    assert proc.returncode != 0 and "mode must be webhook, policies or both" in proc.stderr


# The scheduled audit and node awareness (behaviour.md §11).

SEVEN_KINDS = {
    ("", "pods"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "replicasets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
}


def audit_render(*args):
    return Rendered(
        "wasm-admission",
        "wasm-admission",
        load_docs(helm_template("wasm-admission", "wasm-admission", ["--set", "audit.enabled=true", *args]).stdout),
    )


def grants(role):
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_the_audit_is_off_by_default():
    r = render("generated")
    assert r.all("CronJob") == []
    assert r.all("CustomResourceDefinition") == []


def test_the_audit_cronjob_applies_policy_reports_with_exactly_that_rbac():
    r = audit_render("--set", "audit.namespace=shop", "--set", "audit.schedule=5 4 * * *")
    cron = r.one("CronJob")
    assert cron["spec"]["schedule"] == "5 4 * * *"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "audit"
    assert args[args.index("--output") + 1] == "policyreport"
    assert "--apply" in args
    assert args[args.index("--namespace") + 1] == "shop"
    (role,) = [c for c in r.all("ClusterRole") if c["metadata"]["name"].endswith("-audit")]
    expected = {(g, res, "list") for g, res in SEVEN_KINDS}
    # Least privilege (issue 28 item 7): create any report, patch only the project's own by name,
    # never update; another tool's reports cannot be rewritten.
    expected |= {("wgpolicyk8s.io", res, v) for res in ("policyreports", "clusterpolicyreports") for v in ("create", "patch")}
    assert grants(role) == expected
    (patch_rule,) = [rule for rule in role["rules"] if "patch" in rule["verbs"]]
    assert patch_rule["resourceNames"] == ["wasm-admission"]
    (create_rule,) = [rule for rule in role["rules"] if "create" in rule["verbs"]]
    assert "resourceNames" not in create_rule
    (binding,) = [b for b in r.all("ClusterRoleBinding") if b["metadata"]["name"].endswith("-audit")]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]


def test_policy_report_crds_ship_with_the_audit_unless_turned_off():
    names = lambda r: sorted(c["metadata"]["name"] for c in r.all("CustomResourceDefinition"))
    both = ["clusterpolicyreports.wgpolicyk8s.io", "policyreports.wgpolicyk8s.io"]
    # `helm template` has no cluster: `auto`'s lookup finds none, so they are installed.
    assert names(audit_render()) == both
    assert names(audit_render("--set", "policyReports.installCRDs=true")) == both
    assert names(audit_render("--set", "policyReports.installCRDs=false")) == []
    for crd in audit_render().all("CustomResourceDefinition"):
        (version,) = crd["spec"]["versions"]
        assert crd["spec"]["group"] == "wgpolicyk8s.io" and version["name"] == "v1alpha2"


# ---------------------------------------------------------------- NOTES: the serve command for webhook.url


@pytest.mark.parametrize(
    "url, listen, dns_note",
    [
        ("https://127.0.0.1:8443", "127.0.0.1:8443", False),
        ("https://10.0.0.5", "10.0.0.5:443", False),
        ("https://[::1]:9443/", "[::1]:9443", False),
        ("https://webhook.example.com:9443", "0.0.0.0:9443", True),
        ("https://webhook.example.com", "0.0.0.0:443", True),
    ],
)
def test_notes_print_a_listen_address_serve_accepts(tmp_path, url, listen, dns_note):
    notes = render_notes(tmp_path, "--set", f"webhook.url={url}")
    (line,) = [l for l in notes.splitlines() if "wasm-admission serve" in l]
    args = line.split()
    assert args[args.index("--listen") + 1] == listen, line
    assert ("is a DNS name" in notes) == dns_note
    # serve itself parses it: --listen is an IP socket address.
    proc = subprocess.run([BIN, "serve", "--listen", listen, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- values.schema.json


MODES_FOR_SCHEMA = {
    "defaults": [],
    "mode-policies": ["--kube-version", "1.36.0", "--set", "mode=policies"],
    "mode-both": ["--kube-version", "1.36.0", "--set", "mode=both"],
    "audit": ["--set", "audit.enabled=true", "--set", "policyReports.installCRDs=true"],
    "monitoring": [
        "--set", "metrics.enabled=true",
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.prometheusRule.enabled=true",
    ],
    "webhook-url": ["--set", "webhook.url=https://127.0.0.1:8443"],
    **{name: args for name, (_, _, args) in SCENARIOS.items()},
}


def helm_template_at(args, kube="1.30.0"):
    if "--kube-version" not in args:
        args = ["--kube-version", kube, *args]
    return subprocess.run(
        [HELM, "template", "w", str(CHART), "--namespace", "w", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize("name", sorted(MODES_FOR_SCHEMA))
def test_schema_accepts_the_defaults_and_every_mode(name):
    proc = helm_template_at(MODES_FOR_SCHEMA[name])
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "replicaCont=3"], "Additional property replicaCont is not allowed"),
        (["--set", "metrics.enable=true"], "Additional property enable is not allowed"),
        (["--set", "audit.schedul=@daily"], "Additional property schedul is not allowed"),
        (["--set", "replicaCount=two"], "replicaCount: Invalid type. Expected: integer, given: string"),
        (["--set", "metrics.enabled=yes"], "metrics.enabled: Invalid type. Expected: boolean, given: string"),
        (["--set", "logFormat=xml"], "logFormat: logFormat must be one of the following"),
        (["--set", "load.h2IdleTimeout=sixty"], "load.h2IdleTimeout: Does not match pattern"),
        (["--set", "policyReports.installCRDs=maybe"], "policyReports.installCRDs: policyReports.installCRDs must be one of"),
    ],
)
def test_schema_refuses_typos_and_wrong_types_naming_the_value(args, message):
    proc = helm_template_at(args)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_schema_leaves_the_server_configuration_to_the_server(tmp_path):
    """`config` is the server's file: the schema does not close it (the server refuses unknown
    keys itself, test_config_is_accepted_by_the_server_parser), so it never drifts from the server."""
    proc = helm_template_at(["--set", "config.notAKey=1", "--show-only", "templates/configmap.yaml"])
    assert proc.returncode == 0, proc.stderr
    config = tmp_path / "config.yaml"
    config.write_text(load_docs(proc.stdout)[0]["data"]["config.yaml"])
    refused = run_bin("check", "--config", str(config), "/dev/null")
    assert refused.returncode != 0 and "notAKey" in refused.stderr


def test_schema_closes_every_block_of_values_yaml():
    """Every map of values.yaml but the open ones is closed, and the schema knows each key."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    open_maps = {"config", "resources", "audit.resources", "podAnnotations", "podLabels", "nodeSelector",
                 "service.annotations", "serviceAccount.annotations", "webhook.annotations",
                 "metrics.serviceAnnotations", "metrics.serviceMonitor.labels", "metrics.prometheusRule.labels",
                 "certManager.issuerRef", "runtimeClasses.overhead"}

    def walk(value, node, path):
        if path in open_maps or not isinstance(value, dict):
            return
        assert node.get("additionalProperties") is False, f"{path or '(root)'} is not closed"
        for key, sub in value.items():
            assert key in node["properties"], f"{path}.{key} is missing from values.schema.json"
            walk(sub, node["properties"][key], f"{path}.{key}".lstrip("."))

    walk(values, schema, "")


# ---------------------------------------------------------------- PolicyReport CRDs: never deleted by Helm


def test_policy_report_crds_are_kept_by_helm_and_live_in_their_own_template():
    docs = load_docs(helm_template_at(["--set", "audit.enabled=true"]).stdout)
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 2
    for crd in crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    shown = helm_template_at(["--set", "audit.enabled=true", "--show-only", "templates/policyreport-crds.yaml"])
    assert [d["kind"] for d in load_docs(shown.stdout)] == ["CustomResourceDefinition"] * 2
    assert "CustomResourceDefinition" not in (CHART / "templates" / "audit.yaml").read_text()


# ---------------------------------------------------------------- ServiceMonitor, PrometheusRule, dashboard


def monitoring(*args):
    proc = helm_template_at(["--set", "metrics.enabled=true", "--set", "metrics.serviceMonitor.enabled=true",
                             "--set", "metrics.prometheusRule.enabled=true", *args])
    assert proc.returncode == 0, proc.stderr
    return Rendered("w", "w", load_docs(proc.stdout))


def test_service_monitor_scrapes_the_metrics_port_of_this_release_only():
    r = monitoring("--set", "metrics.serviceMonitor.labels.release=prom")
    monitor = r.one("ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    service = r.one("Service")
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]] and endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert selector == r.deployment["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["w"]}
    assert monitor["metadata"]["labels"]["release"] == "prom"
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert kind not in [d["kind"] for d in render("generated").docs]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "metrics.serviceMonitor.enabled=true"], "needs metrics.enabled=true"),
        (["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.enabled=true",
          "--set", "webhook.url=https://127.0.0.1:8443"], "with webhook.url the webhook runs outside"),
        (["--kube-version", "1.36.0", "--set", "mode=policies", "--set", "metrics.prometheusRule.enabled=true"],
         "mode policies runs no webhook"),
    ],
)
def test_monitoring_without_anything_to_scrape_is_refused(args, message):
    proc = helm_template_at(args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_prometheus_rule_alerts_and_thresholds():
    r = monitoring("--set", "metrics.prometheusRule.denialRatio=0.2", "--set", "webhook.timeoutSeconds=8",
                   "--set", "metrics.prometheusRule.certificateExpiryDays=7")
    (group,) = r.one("PrometheusRule")["spec"]["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert set(rules) == {
        "WasmAdmissionWebhookErrors", "WasmAdmissionDenialRateHigh", "WasmAdmissionReviewsSlow",
        "WasmAdmissionAnswersPastTimeout", "WasmAdmissionCertificateExpiresSoon", "WasmAdmissionReloadFailing",
    }
    assert rules["WasmAdmissionDenialRateHigh"]["expr"].rstrip().endswith("> 0.2")
    assert rules["WasmAdmissionCertificateExpiresSoon"]["expr"].rstrip().endswith(f"< {7 * 86400}")
    assert "waits 8 s" in rules["WasmAdmissionReviewsSlow"]["annotations"]["description"]
    for rule in rules.values():
        assert 'namespace="w"' in rule["expr"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        # Prometheus' own templates survive Helm's.
        assert "{{ $labels.namespace }}" in rule["annotations"]["description"]


PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "rate", "irate", "increase", "histogram_quantile", "time", "and", "or", "unless", "label_values",
    "max_over_time", "min_over_time", "offset", "bool", "topk", "bottomk", "absent", "vector", "scalar",
}
# Labels the scrape adds to every series (Prometheus target labels), not exported by serve itself.
TARGET_LABELS = {"namespace", "pod", "service", "job", "instance", "container", "endpoint"}


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_exposition(text):
    """{sample name: {label name: set of values}} of an OpenMetrics/Prometheus text exposition."""
    import re
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s', line)
        assert m, line
        labels = samples.setdefault(m.group(1), {})
        for name, value in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""):
            labels.setdefault(name, set()).add(value)
    return samples


@pytest.fixture(scope="module")
def served_metrics(tmp_path_factory):
    """The metrics of a running `serve --dev` that answered a mutated, a denied and a malformed
    review, one after the API server's time budget and one whose registry lookup was refused:
    every family has series, so its names, labels and label values are what a rule or a panel
    may use."""
    import ssl
    import time
    import urllib.error
    import urllib.request

    tmp = tmp_path_factory.mktemp("serve")
    https, metrics = free_port(), free_port()
    log = open(tmp / "serve.log", "w")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp)}
    config = tmp / "config.yaml"
    config.write_text("detection:\n  registry:\n    enabled: true\n    allowedHosts: [registry.example.com]\n")
    proc = subprocess.Popen(
        [BIN, "serve", "--dev", "--config", str(config), "--listen", f"127.0.0.1:{https}",
         "--metrics-listen", f"127.0.0.1:{metrics}", "--watch-runtime-classes", "off"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, (tmp / "serve.log").read_text()
                assert time.monotonic() < deadline, "serve --dev did not answer /metrics within 30 s"
                time.sleep(0.2)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def review(body, query=""):
            request = urllib.request.Request(
                f"https://127.0.0.1:{https}/mutate{query}", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                return urllib.request.urlopen(request, context=context, timeout=10).status
            except urllib.error.HTTPError as e:
                return e.code

        def pod_review(uid, spec, wasm=True):
            annotations = {"wasm-admission.io/wasm": "true"} if wasm else {}
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": uid, "namespace": "apps", "annotations": annotations}, "spec": spec}
            return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "apps",
                "operation": "CREATE", "object": pod}}).encode()

        container = {"name": "app", "image": "ghcr.io/acme/app:1"}
        assert review(pod_review("ok", {"containers": [container]})) == 200
        assert review(pod_review("no", {"hostPID": True, "containers": [container]})) == 200
        assert review(b"{not json") >= 400
        # Not marked: the registry is asked, and refused (ghcr.io is not in allowedHosts); and a
        # budget of 1 µs has run out before the answer.
        assert review(pod_review("plain", {"containers": [container]}, wasm=False), "?timeout=1us") == 200
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    samples = parse_exposition(text)
    outcomes = samples.get("wasm_admission_reviews_total", {}).get("outcome", set())
    assert {"mutated", "denied", "error"} <= outcomes, outcomes
    assert "wasm_admission_reviews_over_budget_total" in samples
    assert "wasm_admission_registry_lookups_refused_total" in samples
    return samples


def promql_problems(expr, samples):
    """What in a PromQL expression names a metric, a label or a label value `serve` does not export."""
    import re
    problems = []
    expr = expr.replace("$__rate_interval", "5m")
    # Grafana's label_values(METRIC, LABEL): a metric and one of its labels.
    for name, label in re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_]+)\s*\)", expr):
        if name not in samples:
            problems.append(f"metric {name}")
        elif label not in samples[name] and label not in TARGET_LABELS:
            problems.append(f"label {label} of {name}")
    expr = re.sub(r"label_values\([^)]*\)", "", expr)
    for name, matchers in re.findall(r'([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}', expr):
        if name not in samples:
            problems.append(f"metric {name}")
            continue
        for label, value in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=~?\s*"([^"]*)"', matchers):
            if label in TARGET_LABELS and label not in samples[name]:
                continue
            if label not in samples[name]:
                problems.append(f"label {label} of {name}")
            elif "$" not in value and value not in samples[name][label]:
                problems.append(f'{name}{{{label}="{value}"}}')
    all_labels = set(TARGET_LABELS).union(*(set(l) for l in samples.values()))
    for group in re.findall(r'\b(?:by|without|on|ignoring)\s*\(([^)]*)\)', expr):
        for label in filter(None, (l.strip() for l in group.split(","))):
            if label not in all_labels:
                problems.append(f"label {label} in by/without")
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r'\{[^}]*\}|\[[^]]*\]', "", bare)
    bare = re.sub(r'\b(?:by|without|on|ignoring)\s*\([^)]*\)', "", bare)
    for word in re.findall(r'(?<![0-9.])\b[a-zA-Z_:][a-zA-Z0-9_:]*\b', bare):
        if word not in PROMQL_WORDS and word not in samples and not re.fullmatch(r"[0-9.]+[smhdwy]?", word):
            problems.append(f"metric {word}")
    return list(dict.fromkeys(problems))


@pytest.fixture(scope="module")
def promql(tmp_path_factory):
    """Prometheus' own PromQL parser (deploy/tests/promql, Go): parse(exprs) gives, for each
    expression, its parse error or None, the metric names and the label names it uses."""
    go = shutil.which("go")
    assert go, "deploy/tests/promql needs Go 1.26.7 or later (install it as scripts/cluster.sh says)"
    binary = tmp_path_factory.mktemp("promql") / "promql"
    proc = subprocess.run([go, "build", "-mod=readonly", "-o", str(binary), "."],
                          cwd=ROOT / "deploy" / "tests" / "promql", capture_output=True, text=True)
    assert proc.returncode == 0, f"building deploy/tests/promql: {proc.stderr}"

    def parse(exprs):
        out = subprocess.run([str(binary)], input=json.dumps(exprs), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [(r["error"], set(r["metrics"]), set(r["labels"])) for r in json.loads(out.stdout)]

    return parse


def grafana_to_promql(expr):
    """A panel's query as Grafana sends it: its variables replaced."""
    return expr.replace("$__rate_interval", "5m").replace("$namespace", "wasm-admission")


def dashboard_exprs():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "wasm-admission.json").read_text())
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    exprs += [(v["name"], v["query"]["query"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_the_metric_check_is_not_vacuous(served_metrics):
    assert promql_problems('rate(wasm_admission_reviews_total{outcome="error"}[5m])', served_metrics) == []
    assert promql_problems('rate(wasm_admission_review_total[5m])', served_metrics) == ["metric wasm_admission_review_total"]
    assert promql_problems('up{job="x"} == 0', served_metrics) == ["metric up"]
    assert promql_problems('sum(wasm_admission_reviews_total{outcome="failed"})', served_metrics) == [
        'wasm_admission_reviews_total{outcome="failed"}']
    assert promql_problems('wasm_admission_review_duration_seconds_bucket{le="1"}', served_metrics) == [
        'wasm_admission_review_duration_seconds_bucket{le="1"}']
    assert promql_problems('sum by (reason) (wasm_admission_registry_lookups_refused_total)', served_metrics) == []
    assert promql_problems('sum by (verdict) (wasm_admission_build_info)', served_metrics) == ["label verdict in by/without"]


def test_alerts_and_dashboard_name_only_metrics_serve_exports(served_metrics):
    (group,) = monitoring().one("PrometheusRule")["spec"]["groups"]
    exprs = [(rule["alert"], rule["expr"]) for rule in group["rules"]] + dashboard_exprs()
    assert len(exprs) > 15
    problems = {where: p for where, expr in exprs if (p := promql_problems(expr, served_metrics))}
    assert problems == {}, f"not exported by serve: {problems}"
    # Every metric serve exports is on the dashboard.
    used = " ".join(expr for _, expr in exprs)
    families = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in served_metrics}
    missing = {f for f in families if f.startswith("wasm_admission_") and f not in used and f + "_bucket" not in used
               and f + "_count" not in used}
    assert missing == set(), missing


def test_alerts_and_panels_parse_with_the_prometheus_parser(promql, served_metrics):
    (group,) = monitoring().one("PrometheusRule")["spec"]["groups"]
    exprs = [(rule["alert"], rule["expr"]) for rule in group["rules"]]
    exprs += [(where, grafana_to_promql(e)) for where, e in dashboard_exprs() if not e.startswith("label_values(")]
    all_labels = set(TARGET_LABELS).union(*(set(l) for l in served_metrics.values()))
    parsed = promql([e for _, e in exprs])
    for (where, expr), (error, metrics, labels) in zip(exprs, parsed):
        assert error is None, f"{where}: {error}\n{expr}"
        assert metrics and metrics <= set(served_metrics), f"{where}: {metrics - set(served_metrics)}"
        assert labels <= all_labels, f"{where}: {labels - all_labels}"
    # Not vacuous: a syntax error, and the names the parser sees.
    ((error, _, _), (_, metrics, labels)) = promql(["rate(x[5m", 'sum by (a) (rate(x_total{b="c"}[5m]))'])
    assert "unclosed left parenthesis" in error
    assert metrics == {"x_total"} and labels == {"a", "b"}


# ---------------------------------------------------------------- match conditions (README, "Which objects reach the webhook")


def conditions(r):
    out = {}
    for which, (_, hook) in r.webhooks().items():
        out[which] = hook.get("matchConditions")
    return out


@pytest.mark.parametrize("name", ALL)
def test_both_webhooks_skip_what_cannot_be_wasm_with_the_same_generated_conditions(name):
    r = render(name)
    found = conditions(r)
    assert found["mutating"] == found["validating"]
    assert [c["name"] for c in found["mutating"]] == ["wasm-possible", "create-or-rule-input-changed"]
    committed = yaml.safe_load((CHART / "files" / "match-conditions.yaml").read_text())
    assert found["mutating"] == committed


def test_the_chart_match_conditions_are_what_the_binary_generates_for_the_default_configuration(tmp_path):
    """files/match-conditions.yaml is generated (deploy/render.sh), never edited, and records the
    configuration it was generated for, as files/policies.yaml does."""
    cm = render("generated").one("ConfigMap")
    config = tmp_path / "config.yaml"
    config.write_text(cm["data"]["config.yaml"])
    generated = subprocess.run(
        [BIN, "policies", "--match-conditions", "--config", str(config)], capture_output=True, text=True, check=True
    ).stdout
    committed = (CHART / "files" / "match-conditions.yaml").read_text()
    assert yaml.safe_load(committed) == yaml.safe_load(generated)
    assert f"# config-sha256: {cm['metadata']['annotations']['wasm-admission.io/config-sha256']}" in committed


def test_no_match_condition_skips_on_the_skip_label_or_wasm_false():
    text = json.dumps(conditions(render("generated")))
    assert "wasm-admission.io/skip" not in text
    assert "== 'false'" not in text


def test_a_configuration_without_image_patterns_keeps_the_generated_conditions():
    proc = helm_template("w", "w", ["--set", "config.runtimeClassName=spin", "--set", "config.otel.enabled=false"])
    r = Rendered("w", "w", load_docs(proc.stdout))
    assert conditions(r) == conditions(render("generated"))


def test_image_patterns_need_conditions_generated_for_them(tmp_path):
    args = ["--set", "config.detection.imagePatterns={ghcr.io/acme/*-wasm:*}"]
    proc = helm_template("w", "w", args, check=False)
    assert proc.returncode != 0
    assert "config.detection.imagePatterns" in proc.stderr
    assert "wasm-admission policies --match-conditions" in proc.stderr
    assert "webhook.matchConditions.manifest" in proc.stderr
    config = tmp_path / "config.yaml"
    config.write_text("detection:\n  imagePatterns: ['ghcr.io/acme/*-wasm:*']\n")
    generated = tmp_path / "match-conditions.yaml"
    generated.write_text(subprocess.run(
        [BIN, "policies", "--match-conditions", "--config", str(config)], capture_output=True, text=True, check=True
    ).stdout)
    r = Rendered("w", "w", load_docs(helm_template("w", "w", [*args, "--set-file", f"webhook.matchConditions.manifest={generated}"]).stdout))
    for found in conditions(r).values():
        assert ".matches(" in found[0]["expression"]
        assert "acme/[^/]*" in found[0]["expression"]


def test_a_manifest_that_is_not_a_condition_list_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    proc = helm_template("w", "w", ["--set-file", f"webhook.matchConditions.manifest={bad}"], check=False)
    assert proc.returncode != 0 and "webhook.matchConditions.manifest must be the YAML list" in proc.stderr


def test_registry_inspection_keeps_only_the_update_condition_and_says_so(tmp_path):
    proc = helm_template("w", "w", ["--set", "config.detection.registry.enabled=true"])
    r = Rendered("w", "w", load_docs(proc.stdout))
    for found in conditions(r).values():
        assert [c["name"] for c in found] == ["create-or-rule-input-changed"]
    notes = render_notes(tmp_path, "--set", "config.detection.registry.enabled=true")
    assert "every Pod and workload CREATE in an\nopted-in namespace reaches the webhook" in notes, notes
    assert "reaches the webhook" not in render_notes(tmp_path / "default")


def test_match_conditions_can_be_turned_off(tmp_path):
    proc = helm_template("w", "w", ["--set", "webhook.matchConditions.enabled=false"])
    r = Rendered("w", "w", load_docs(proc.stdout))
    assert conditions(r) == {"mutating": None, "validating": None}
    assert "Match conditions are off" in render_notes(tmp_path, "--set", "webhook.matchConditions.enabled=false")
