"""The husk Helm chart rendered by Helm's own engine (helm-python-sdk bundles it), with the
default and with custom values; the rendered objects are checked like the API server would."""

import pathlib

import helm_python as helm
import pytest
import yaml

CHART = pathlib.Path(__file__).resolve().parent.parent / "husk"


def render(values=None):
    manifests = helm.Chart.load(str(CHART)).render(values or {}, name="rel", namespace="husk-system", is_install=True)
    objects = {}
    for path, text in manifests.items():
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    notes = next((t for p, t in manifests.items() if p.endswith("NOTES.txt")), "")
    return objects, notes


def test_lint_passes():
    result = helm.lint(str(CHART))
    assert result["total_charts_linted"] == 1
    assert result["errors"] == [], result
    # Only informational messages (severity 1) are allowed.
    assert all(m["severity"] <= 1 for m in result["messages"]), result["messages"]


def test_defaults_render_a_daemonset_and_a_runtimeclass():
    objs, notes = render()
    ds = objs[("DaemonSet", "rel-husk")]
    assert ds["apiVersion"] == "apps/v1"
    assert ds["metadata"]["namespace"] == "husk-system"
    spec = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    init = spec["initContainers"][0]
    assert init["command"][:3] == ["/husk-node-installer", "install", "--shim"]
    assert init["args"] == ["--config", "/etc/containerd/config.toml", "--bin-dir", "/host/usr/local/bin", "--drop-in-dir", "/etc/containerd/conf.d", "--label-node"]
    assert init["image"] == "husk/husk-installer:0.1.0"
    hold = spec["containers"][0]
    assert hold["command"] == ["/husk-node-installer", "hold", "--uninstall-on-exit"]
    mounts = {m["name"]: m["mountPath"] for m in hold["volumeMounts"]}
    vols = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    assert mounts == {"containerd-config": "/etc/containerd", "bin": "/host/usr/local/bin"}
    assert vols == {"containerd-config": "/etc/containerd", "bin": "/usr/local/bin"}
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["priorityClassName"] == "system-node-critical"
    # Restart (host systemd) and the uninstall's running-pod check need the host's PIDs.
    assert spec["hostPID"] is True
    assert init["args"][-1] == "--label-node" and hold["args"][-1] == "--label-node"
    for ctr in (init, hold):
        env = {e["name"]: e for e in ctr["env"]}
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    sa = objs[("ServiceAccount", "rel-husk")]
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["metadata"]["namespace"] == "husk-system"
    role = objs[("ClusterRole", "rel-husk-node-labeller")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    binding = objs[("ClusterRoleBinding", "rel-husk-node-labeller")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "rel-husk-node-labeller"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-husk", "namespace": "husk-system"}]
    assert "--restart" in init["command"]
    cmd = init["command"]
    assert cmd[cmd.index("--registration") + 1] == "auto"
    # runtime_path is the host's path of the shim, not the pod's /host mount of it.
    assert cmd[cmd.index("--runtime-path") + 1] == "/usr/local/bin/containerd-shim-husk-v2"
    rc = objs[("RuntimeClass", "husk")]
    assert rc["apiVersion"] == "node.k8s.io/v1" and rc["handler"] == "husk"
    assert rc["scheduling"]["nodeSelector"] == {"husk.dev/runtime-ready": "true"}
    assert "overhead" not in rc
    assert "runtimeClassName: husk" in notes


def test_custom_values():
    objs, _ = render({
        "runtimeClass": {"name": "fast", "overhead": {"memory": "8Mi", "cpu": "10m"}, "nodeSelector": None},
        "containerd": {"configPath": "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", "configVersion": 3, "restart": False},
        "installDir": "/opt/bin",
        "image": {"repository": "registry.local/husk", "tag": "dev"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "uninstallOnDelete": False,
    })
    ds = objs[("DaemonSet", "rel-husk")]["spec"]["template"]["spec"]
    init = ds["initContainers"][0]
    assert init["image"] == "registry.local/husk:dev"
    cmd = init["command"]
    assert cmd[cmd.index("--config-version") + 1] == "3"
    assert cmd[cmd.index("--runtime-path") + 1] == "/opt/bin/containerd-shim-husk-v2"
    assert "--restart" not in cmd
    assert "--bin-dir" in init["args"] and "/host/opt/bin" in init["args"]
    assert ds["containers"][0]["command"] == ["/husk-node-installer", "hold"]
    assert ds["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert {v["name"]: v["hostPath"]["path"] for v in ds["volumes"]}["containerd-config"] == "/var/lib/rancher/k3s/agent/etc/containerd"
    rc = objs[("RuntimeClass", "fast")]
    assert rc["handler"] == "husk"
    assert "hostPID" not in ds, "without restart and uninstall the installer needs no host PIDs"
    assert "--label-node" in init["args"]
    assert rc["overhead"] == {"podFixed": {"memory": "8Mi", "cpu": "10m"}}
    assert "scheduling" not in rc


def test_registration_can_be_chosen():
    for reg in ("runc-type", "native"):
        objs, _ = render({"containerd": {"registration": reg}})
        cmd = objs[("DaemonSet", "rel-husk")]["spec"]["template"]["spec"]["initContainers"][0]["command"]
        assert cmd[cmd.index("--registration") + 1] == reg


def test_runtimeclass_can_be_left_out():
    objs, _ = render({"runtimeClass": {"create": False}})
    assert not any(kind == "RuntimeClass" for kind, _ in objs)


def test_node_labelling_can_be_turned_off():
    objs, notes = render({"labelNode": False})
    ds = objs[("DaemonSet", "rel-husk")]["spec"]["template"]["spec"]
    assert "--label-node" not in ds["initContainers"][0]["args"]
    assert not any(kind in ("ClusterRole", "ClusterRoleBinding") for kind, _ in objs)
    assert "label the nodes where the installer has run" in notes


def test_notes_say_the_installer_labels_ready_nodes():
    _, notes = render()
    assert "husk.dev/runtime-ready=true" in notes
    assert "installer sets the label" in notes
