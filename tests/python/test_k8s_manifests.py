#!/usr/bin/env python3
"""deploy/k8s/ against the daemon itself: every manifest parses; every
container runs the image deploy/README.md builds as the Dockerfile's uid;
ports, probe ports and scrape annotations agree with the ConfigMap's
addresses; readiness probes ask for the health service name the daemon
registers (server/service/generation_service.h) and liveness for ""; Service,
PDB and ServiceMonitor select the pods; the pods mount the ConfigMap where
--config points; GPUs are requested; and the ConfigMap's config uses only
keys and values `moegraphd --help` lists, and a real moegraphd started with
it (on the CPU and the tiny model) becomes ready, reports its health under
the probes' names and serves the configured slots. Exits 77 without PyYAML.
"""

import glob
import os
import re
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SOURCE_DIR, Daemon, daemon_binary  # noqa: E402

try:
    import yaml  # Debian's python3-yaml
except ImportError:
    print("SKIP: no PyYAML (python3-yaml)")
    sys.exit(77)

K8S = os.path.join(SOURCE_DIR, "deploy", "k8s")
errors = []


def check(ok, message):
    if not ok:
        errors.append(message)


def read(*parts):
    with open(os.path.join(SOURCE_DIR, *parts)) as f:
        return f.read()


def daemon_facts():
    """What the daemon and its image say: health service name, image tag, uid,
    config keys with their allowed values."""
    service = re.search(r'kServiceName = "([^"]+)"',
                        read("server", "service", "generation_service.h")).group(1)
    tag = re.search(r"docker build -t (\S+) \.", read("deploy", "README.md")).group(1)
    uid = int(re.search(r"useradd .*--uid (\d+)", read("Dockerfile")).group(1))
    help_text = subprocess.run([daemon_binary(), "--help"], capture_output=True, text=True,
                               check=True, timeout=30).stdout
    keys = {}  # key -> allowed words, or None when the range is not a list
    config_part = help_text.split("Configuration:", 1)[1]
    for m in re.finditer(r"^  --(\S+) \S+\n(?:      .*\n)*?      Default: .*Allowed: (.*)$",
                         config_part, re.MULTILINE):
        allowed = m.group(2).rstrip(".")
        words = re.split(r", | or ", allowed)
        keys[m.group(1)] = words if all(re.fullmatch(r"[a-z:N]+", w) for w in words) else None
    return service, tag, uid, keys


def flatten(config, prefix=""):
    for k, v in config.items():
        if isinstance(v, dict):
            yield from flatten(v, prefix + k + ".")
        else:
            yield prefix + k, v


def pod_specs(doc):
    """(where, pod template) of each pod template in a workload manifest."""
    kind = doc["kind"]
    if kind == "Deployment":
        yield doc["metadata"]["name"], doc["spec"]["template"]
    elif kind == "LeaderWorkerSet":
        lwt = doc["spec"]["leaderWorkerTemplate"]
        for part in ("leaderTemplate", "workerTemplate"):
            yield f"{doc['metadata']['name']}/{part}", lwt[part]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def report():
    for e in errors:
        print("FAIL:", e)
    return 1


def main():
    service_name, tag, uid, known_keys = daemon_facts()
    image = tag if ":" in tag else tag + ":latest"
    files = sorted(glob.glob(os.path.join(K8S, "**", "*.yaml"), recursive=True))
    docs = []
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                rel = os.path.relpath(path, K8S)
                check(doc and {"apiVersion", "kind"} <= doc.keys(), f"{rel}: no apiVersion/kind")
                if doc and doc.get("kind") != "Kustomization":
                    check("name" in doc.get("metadata", {}), f"{rel}: no metadata.name")
                docs.append((rel, doc))
    kinds = {d["kind"] for _, d in docs}
    for kind in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "ServiceMonitor",
                 "LeaderWorkerSet", "Kustomization"):
        check(kind in kinds, f"no {kind} in deploy/k8s")

    # Kustomization resources exist.
    for rel, d in docs:
        if d["kind"] == "Kustomization":
            for r in d["resources"]:
                check(os.path.exists(os.path.join(K8S, os.path.dirname(rel), r)),
                      f"{rel}: resource {r} missing")

    # The ConfigMap's config: known keys, allowed values, addresses.
    configmaps = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "ConfigMap"}
    configs = {}
    for name, cm in configmaps.items():
        for key, text in cm["data"].items():
            config = yaml.safe_load(text)
            configs[(name, key)] = (config, text)
            for k, v in flatten(config):
                check(k in known_keys, f"ConfigMap {name}/{key}: {k} is not a moegraphd key")
                allowed = known_keys.get(k)
                if allowed is not None:
                    check(str(v) in allowed, f"ConfigMap {name}/{key}: {k}: {v} not in {allowed}")
    check(len(configs) == 1, f"expected one config file, got {list(configs)}")
    (cm_name, cm_key), (config, config_text) = next(iter(configs.items()))
    grpc_port = int(config["listen_address"].rsplit(":", 1)[1])
    metrics_port = int(config["metrics_address"].rsplit(":", 1)[1])
    check(config["listen_address"].startswith("0.0.0.0:"), "listen_address not on all interfaces")
    check(config["metrics_address"].startswith("0.0.0.0:"), "metrics_address not on all interfaces")

    # Pods.
    pods = []
    for rel, d in docs:
        for where, template in pod_specs(d):
            pods.append((f"{rel}:{where}", template))
            spec, labels = template["spec"], template["metadata"]["labels"]
            annotations = template["metadata"].get("annotations", {})
            check(annotations.get("prometheus.io/scrape") == "true", f"{where}: no scrape annotation")
            check(annotations.get("prometheus.io/port") == str(metrics_port),
                  f"{where}: prometheus.io/port {annotations.get('prometheus.io/port')}")
            check(annotations.get("prometheus.io/path") == "/metrics", f"{where}: scrape path")
            sc = spec.get("securityContext", {})
            check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == uid,
                  f"{where}: runAsNonRoot/runAsUser {sc} (the image's uid is {uid})")
            check(spec.get("terminationGracePeriodSeconds", 30) > config["drain_grace_seconds"] + 5,
                  f"{where}: terminationGracePeriodSeconds leaves no time to drain")
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for c in spec["containers"]:
                check(c["image"] == image, f"{where}: image {c['image']}, not {image}")
                ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                check(ports == {"grpc": grpc_port, "metrics": metrics_port},
                      f"{where}: ports {ports}, config says {grpc_port}/{metrics_port}")
                gpus = int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
                check(gpus >= 1, f"{where}: no nvidia.com/gpu limit")
                # --config points at the mounted ConfigMap.
                config_args = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--config=")]
                mounted = [m["mountPath"] + "/" + cm_key for m in c["volumeMounts"]
                           if volumes[m["name"]].get("configMap", {}).get("name") == cm_name]
                check(config_args and config_args[0] in mounted,
                      f"{where}: --config {config_args} is not the mounted ConfigMap {mounted}")
                for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                    probe = c.get(probe_name)
                    if probe is None:
                        continue
                    check("grpc" in probe, f"{where}: {probe_name} is not a gRPC probe")
                    g = probe.get("grpc", {})
                    check(g.get("port") == grpc_port, f"{where}: {probe_name} port {g.get('port')}")
                    want = "" if probe_name == "livenessProbe" else service_name
                    check(g.get("service", "") == want,
                          f"{where}: {probe_name} asks for '{g.get('service')}', not '{want}'")
                check("livenessProbe" in c, f"{where}: no liveness probe")
                if not where.endswith("workerTemplate"):  # workers take no traffic
                    check("readinessProbe" in c, f"{where}: no readiness probe")
    multi = [gpus for w, t in pods for c in t["spec"]["containers"]
             if (gpus := int(c["resources"]["limits"]["nvidia.com/gpu"])) > 1]
    check(multi, "no multi-GPU variant")

    # Services, PDB and ServiceMonitor select pods; Service ports name container ports.
    all_labels = [t["metadata"]["labels"] for _, t in pods]
    services = [(rel, d) for rel, d in docs if d["kind"] == "Service"]
    for rel, d in docs:
        kind = d["kind"]
        if kind == "Service":
            check(any(selects(d["spec"]["selector"], l) for l in all_labels),
                  f"{rel}: Service selects no pod")
            ports = {p["name"]: p for p in d["spec"]["ports"]}
            check(ports.get("grpc", {}).get("port") == grpc_port and
                  ports["grpc"].get("targetPort") == "grpc", f"{rel}: Service grpc port {ports}")
            check(ports.get("metrics", {}).get("port") == metrics_port and
                  ports["metrics"].get("targetPort") == "metrics", f"{rel}: Service metrics port")
        elif kind == "PodDisruptionBudget":
            check(any(selects(d["spec"]["selector"]["matchLabels"], l) for l in all_labels),
                  f"{rel}: PDB selects no pod")
        elif kind == "ServiceMonitor":
            sel = d["spec"]["selector"]["matchLabels"]
            matched = [s for _, s in services if selects(sel, s["metadata"]["labels"])]
            check(matched, f"{rel}: ServiceMonitor selects no Service")
            for ep in d["spec"]["endpoints"]:
                check(all(ep["port"] in {p["name"] for p in s["spec"]["ports"]} for s in matched),
                      f"{rel}: endpoint port {ep['port']} not on the Service")
                check(ep.get("path", "/metrics") == "/metrics", f"{rel}: path {ep.get('path')}")

    if errors:  # the manifests first: a daemon that refuses the config says less
        return report()

    # The daemon with the ConfigMap's config, moved to this machine: the CPU,
    # the tiny model, loopback ports (the harness's flags override those keys).
    with Daemon(config_yaml=config_text, flags=["--device=cpu", "--graphs=off"]) as daemon:
        check(daemon.health("") == "SERVING", "daemon: liveness '' not SERVING")
        check(daemon.health(service_name) == "SERVING", f"daemon: {service_name} not SERVING")
        with urllib.request.urlopen(f"http://{daemon.metrics_address}/metrics", timeout=10) as r:
            text = r.read().decode()
        slots = re.search(r"^moegraph_slots_capacity (\S+)$", text, re.MULTILINE)
        check(slots and float(slots.group(1)) == config["slots"],
              f"daemon: moegraph_slots_capacity {slots and slots.group(1)}, config {config['slots']}")
        code = daemon.stop()
        check(code == 0, f"daemon exited {code}")

    if errors:
        return report()
    print(f"ok: {len(files)} files, {len(docs)} manifests, {len(pods)} pod templates; "
          f"image {image}, uid {uid}, ports {grpc_port}/{metrics_port}, readiness {service_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
