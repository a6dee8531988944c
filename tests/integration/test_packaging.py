"""Packaging, checked without a container engine: docker/Dockerfile,
docker/compose.yaml, the Kubernetes example in docs/examples/k8s/, the
systemd unit and every shipped configuration. What can be checked statically
is: the files parse, they agree with each other (paths, ports, service names),
the image's build stage configures from exactly the files it copies, and every
memrelay config they carry passes `memrelay --check-config`."""
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

SOURCE_DIR = os.environ.get("MEMRELAY_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DOCKER = os.path.join(SOURCE_DIR, "docker")
K8S = os.path.join(SOURCE_DIR, "docs", "examples", "k8s")


def src(*parts):
    return os.path.join(SOURCE_DIR, *parts)


def read(*parts):
    with open(src(*parts)) as f:
        return f.read()


# --------------------------------------------------------------------------
# --check-config, with the admin listener's key when this build has it


def _admin_supported(memrelay_bin):
    out = subprocess.run([memrelay_bin, "--help"], capture_output=True, text=True, timeout=10).stdout
    return "--admin" in out


def _without_admin_listen(text):
    return "".join(line for line in text.splitlines(True) if not re.match(r"\s+admin_listen:", line))


def check_config(memrelay_bin, text, tmp_path, name="memrelay.yaml"):
    """Run --check-config on `text`; returns the printed configuration.

    A build without the HTTP admin listener does not know `admin_listen`;
    it is then left out and the rest of the file is still checked."""
    if not _admin_supported(memrelay_bin):
        text = _without_admin_listen(text)
    path = tmp_path / name
    path.write_text(text)
    r = subprocess.run([memrelay_bin, "-c", str(path), "--check-config"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, "%s fails --check-config:\n%s%s" % (name, r.stdout, r.stderr)
    return r.stdout


def admin_port(config_text):
    m = re.search(r'^\s+admin_listen:\s*"?([^"\s]+):(\d+)"?', config_text, re.M)
    assert m, "no admin_listen in the memrelay section"
    return m.group(1), int(m.group(2))


def test_admin_listen_is_accepted_by_this_build(memrelay_bin, tmp_path):
    if not _admin_supported(memrelay_bin):
        pytest.skip("this build has no HTTP admin listener (--admin): admin_listen is checked once it has")
    for text in (read("docker", "memrelay.yaml"), _k8s_config_text()):
        check_config(memrelay_bin, text, tmp_path)


# --------------------------------------------------------------------------
# Dockerfile


def dockerfile_stages():
    """[(from_line, [(INSTRUCTION, args)])] with continuation lines joined."""
    text = read("docker", "Dockerfile")
    logical, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        if cur and line.lstrip().startswith("#"):
            continue
        logical.append(cur + line)
        cur = ""
    stages = []
    for line in logical:
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append((rest.strip(), []))
        else:
            assert stages, "instruction before FROM: %s" % line
            stages[-1][1].append((word, rest.strip()))
    return stages


def _json_or_shell(args):
    args = args.strip()
    if args.startswith("["):
        return yaml.safe_load(args)
    return shlex.split(args)


def apt_installed(instructions):
    pkgs = set()
    for word, args in instructions:
        if word != "RUN":
            continue
        for cmd in args.split("&&"):
            toks = cmd.split()
            if "apt-get" in toks and "install" in toks:
                pkgs |= {t for t in toks[toks.index("install") + 1:] if not t.startswith("-")}
    return pkgs


def test_dockerfile_is_a_debian_12_multi_stage_build():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build_from, build = stages[0]
    run_from, run = stages[-1]
    assert re.match(r"debian:12(\S*)\s+AS\s+build$", build_from, re.I), build_from
    assert re.match(r"debian:12(-slim)?$", run_from), run_from
    assert any(w == "RUN" and "cmake -S" in a for w, a in build), "the build stage runs cmake"
    copied = [a for w, a in run if w == "COPY"]
    assert any(a.startswith("--from=build ") and "memrelay" in a for a in copied), copied


def test_runtime_stage_has_runtime_libraries_only():
    run = dockerfile_stages()[-1][1]
    pkgs = apt_installed(run)
    assert {"libev4", "libyaml-0-2", "libmicrohttpd12"} <= pkgs, pkgs
    assert not [p for p in pkgs if p.endswith("-dev") or p in ("cmake", "gcc", "make", "build-essential")], pkgs


def test_runtime_stage_links_what_the_binary_links(memrelay_bin):
    """Every library the binary needs (from ldd) comes from a package the runtime stage installs
    or from the base image (libc)."""
    if shutil.which("ldd") is None or shutil.which("dpkg") is None:
        pytest.skip("needs ldd and dpkg")
    pkgs = apt_installed(dockerfile_stages()[-1][1])
    # apt installs what those packages depend on, too.
    deps = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                           "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + sorted(pkgs),
                          capture_output=True, text=True, timeout=60).stdout
    pkgs = pkgs | {line.strip().split(":")[-1].strip().split(":")[0] for line in deps.splitlines()
                   if line.strip() and not line.startswith(" ")}
    out = subprocess.run(["ldd", memrelay_bin], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line)
        if not m or "libasan" in m.group(1) or "libubsan" in m.group(1):
            continue
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(m.group(2))], capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", m.group(2)], capture_output=True, text=True)
        pkg = owner.stdout.split(":")[0]
        if pkg in ("libc6", "libgcc-s1", "libstdc++6"):
            continue  # in every Debian image
        assert pkg in pkgs, "%s comes from %s, which the runtime stage does not install" % (m.group(1), pkg)


def test_image_runs_as_a_non_root_user():
    run = dockerfile_stages()[-1][1]
    users = [a for w, a in run if w == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert user.isdigit(), "a numeric uid lets runAsNonRoot verify it: %s" % users[-1]


def test_healthcheck_asks_the_admin_listener_for_healthz():
    run = dockerfile_stages()[-1][1]
    checks = [a for w, a in run if w == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    cmd = _json_or_shell(checks[-1].split("CMD", 1)[1])
    tool = cmd[0]
    assert tool in apt_installed(run), "%s is not installed in the runtime stage" % tool
    url = next(a for a in cmd if a.startswith("http://"))
    m = re.match(r"http://([^/:]+):(\d+)/healthz$", url)
    assert m, url
    host, port = admin_port(read("docker", "memrelay.yaml"))
    assert (m.group(1), int(m.group(2))) == (host, port), "the check probes %s, the config listens on %s:%d" % (
        url, host, port)


def test_image_config_passes_check_config_and_is_the_one_run(memrelay_bin, tmp_path):
    run = dockerfile_stages()[-1][1]
    copies = [a.split() for w, a in run if w == "COPY" and not a.startswith("--from")]
    config_copy = [c for c in copies if c[-1].endswith(".yaml")]
    assert config_copy, copies
    src_path, dest = config_copy[-1][0], config_copy[-1][-1]
    cmd = _json_or_shell(next(a for w, a in run if w == "CMD"))
    assert cmd[cmd.index("-c") + 1] == dest
    check_config(memrelay_bin, read(src_path), tmp_path)


def test_build_stage_configures_from_exactly_the_files_it_copies(tmp_path):
    """What `docker build` would see: only the COPYed paths, and the stage's cmake flags."""
    if shutil.which("cmake") is None:
        pytest.skip("needs cmake")
    build = dockerfile_stages()[0][1]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for word, args in build:
        if word != "COPY":
            continue
        parts = args.split()
        sources, dest = parts[:-1], parts[-1]
        for s in sources:
            s = s.rstrip("/")
            assert os.path.exists(src(s)), "COPY %s: no such path in the repository" % s
            target = ctx / (s if dest in ("./", ".") else dest.rstrip("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.path.isdir(src(s)):
                shutil.copytree(src(s), str(target))
            else:
                shutil.copy(src(s), str(target))
    run_cmake = next(a for w, a in build if w == "RUN" and "cmake -S" in a)
    cmake = shlex.split(run_cmake.split("&&")[0])
    defs = [a for a in cmake if a.startswith("-D")]
    r = subprocess.run(["cmake", "-S", str(ctx), "-B", str(tmp_path / "b")] + defs, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


# --------------------------------------------------------------------------
# compose.yaml


def compose():
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        return yaml.safe_load(f)


def test_compose_has_an_app_a_memrelay_sidecar_and_two_memcached():
    services = compose()["services"]
    assert {"app", "memrelay"} <= set(services)
    memcacheds = [n for n, s in services.items() if "memcached" in str(s.get("image", ""))]
    assert len(memcacheds) == 2, memcacheds
    relay = services["memrelay"]
    assert relay["network_mode"] == "service:app", "memrelay shares the app's network namespace"
    assert "app" in relay["depends_on"] and set(memcacheds) <= set(relay["depends_on"])
    assert relay["build"]["dockerfile"] == "docker/Dockerfile"
    assert os.path.isfile(os.path.join(DOCKER, relay["build"]["context"], relay["build"]["dockerfile"]))


def test_compose_memrelay_config_points_at_the_memcached_services(memrelay_bin, tmp_path):
    services = compose()["services"]
    relay = services["memrelay"]
    mounts = [v.split(":") for v in relay["volumes"]]
    host_path = next(m[0] for m in mounts if m[1] == "/etc/memrelay/memrelay.yaml")
    text = open(os.path.join(DOCKER, host_path)).read()
    check_config(memrelay_bin, text, tmp_path)
    config = yaml.safe_load(text)
    pools = {k: v for k, v in config.items() if k != "memrelay"}
    hosts = {s.split(":")[0] for p in pools.values() for s in p.get("servers", [])}
    assert hosts and hosts <= set(services), "servers %s are not compose services" % hosts
    listen = [p["listen"] for p in pools.values() if "listen" in p]
    assert any(addr.startswith("127.0.0.1:") for addr in listen), "a sidecar listens on loopback"


def test_compose_healthcheck_is_the_admin_healthz():
    relay = compose()["services"]["memrelay"]
    test = relay["healthcheck"]["test"]
    host, port = admin_port(read("docker", "memrelay.yaml"))
    assert "http://%s:%d/healthz" % (host, port) in test, test


def test_compose_app_talks_to_memrelay_on_loopback():
    services = compose()["services"]
    app = services["app"]
    build = os.path.join(DOCKER, app["build"]["context"])
    assert os.path.isfile(os.path.join(build, "Dockerfile"))
    env = app.get("environment", {})
    config = yaml.safe_load(read("docker", "memrelay.yaml"))
    listens = {p["listen"] for k, p in config.items() if k != "memrelay" and "listen" in p}
    assert "%s:%s" % (env["MEMRELAY_HOST"], env["MEMRELAY_PORT"]) in listens
    compile(open(os.path.join(build, "app.py")).read(), "app.py", "exec")


# --------------------------------------------------------------------------
# Kubernetes example


def k8s_docs():
    docs = []
    for name in sorted(os.listdir(K8S)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(K8S, name)) as f:
                docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def _k8s(kind):
    found = [d for d in k8s_docs() if d.get("kind") == kind]
    assert len(found) == 1, "expected one %s, found %d" % (kind, len(found))
    return found[0]


def _k8s_config_text():
    return _k8s("ConfigMap")["data"]["memrelay.yaml"]


def _memrelay_container(deploy):
    spec = deploy["spec"]["template"]["spec"]
    containers = spec["containers"] + [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    return spec, next(c for c in containers if c["name"] == "memrelay")


def test_k8s_manifests_parse_and_hold_a_configmap_a_deployment_and_memcached():
    kinds = sorted(d["kind"] for d in k8s_docs())
    assert kinds == ["ConfigMap", "Deployment", "Service", "StatefulSet"], kinds
    deploy = _k8s("Deployment")
    spec, _ = _memrelay_container(deploy)
    assert len(spec["containers"]) >= 2, "an app container and the memrelay sidecar"
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_configmap_config_passes_check_config(memrelay_bin, tmp_path):
    check_config(memrelay_bin, _k8s_config_text(), tmp_path)


def test_k8s_configmap_is_mounted_as_a_directory_at_the_config_path():
    spec, c = _memrelay_container(_k8s("Deployment"))
    config_path = c["args"][c["args"].index("-c") + 1]
    cm = _k8s("ConfigMap")
    vol = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"])
    mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
    assert os.path.join(mount["mountPath"], "memrelay.yaml") == config_path
    assert "memrelay.yaml" in cm["data"]


def test_k8s_probes_use_the_admin_port():
    spec, c = _memrelay_container(_k8s("Deployment"))
    host, port = admin_port(_k8s_config_text())
    assert host == "0.0.0.0", "the kubelet probes the pod IP, not loopback"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == port


def test_k8s_sidecar_runs_as_the_image_user_and_outlives_its_drain():
    spec, c = _memrelay_container(_k8s("Deployment"))
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    user = [a for w, a in dockerfile_stages()[-1][1] if w == "USER"][-1].split(":")[0]
    assert str(sc["runAsUser"]) == user
    config = yaml.safe_load(_k8s_config_text())
    drain_s = config.get("memrelay", {}).get("shutdown_timeout", 10000) / 1000.0
    assert spec["terminationGracePeriodSeconds"] > drain_s


# --------------------------------------------------------------------------
# systemd unit and shipped configs


def unit():
    out = {}
    for line in read("conf", "memrelay.service").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_systemd_unit_reloads_with_sighup_and_logs_to_the_journal():
    u = unit()
    assert u["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert u.get("StandardError", ["journal"])[-1] in ("journal", "inherit")
    start, pre = shlex.split(u["ExecStart"][0]), shlex.split(u["ExecStartPre"][0])
    assert pre[:len(start)] == start and "--check-config" in pre, "ExecStartPre checks the file ExecStart runs"
    assert u["KillSignal"] == ["SIGTERM"]


@pytest.mark.parametrize("path", ["conf/memrelay.yaml", "conf/examples/nutcracker.yml", "docker/memrelay.yaml"])
def test_shipped_configs_pass_check_config(memrelay_bin, tmp_path, path):
    check_config(memrelay_bin, read(path), tmp_path)


def test_every_shipped_config_is_covered():
    shipped = []
    for d in ("conf", os.path.join("conf", "examples"), "docker"):
        for name in os.listdir(src(d)):
            if name.endswith((".yaml", ".yml")) and name != "compose.yaml":
                shipped.append(os.path.join(d, name))
    covered = {"conf/memrelay.yaml", "conf/examples/nutcracker.yml", "docker/memrelay.yaml"}
    assert set(shipped) <= covered, "add new config files to test_shipped_configs_pass_check_config: %s" % (
        set(shipped) - covered)


def test_k8s_configmap_reads_the_srv_records_of_the_memcached_service():
    """The ConfigMap's servers_srv is the SRV name cluster DNS gives the headless Service's port."""
    svc, sts = _k8s("Service"), _k8s("StatefulSet")
    assert svc["spec"]["clusterIP"] == "None", "a headless Service names the pods"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    port = svc["spec"]["ports"][0]
    want = "_%s._%s.%s.%s.svc.cluster.local" % (port["name"], port["protocol"].lower(), svc["metadata"]["name"],
                                                svc["metadata"]["namespace"])
    cfg = yaml.safe_load(_k8s_config_text())
    assert cfg["cache"]["servers_srv"] == want
    assert sts["spec"]["selector"]["matchLabels"].items() <= svc["spec"]["selector"].items()
