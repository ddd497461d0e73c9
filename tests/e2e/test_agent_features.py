"""Container dependencies, volumes, links, Docker settings, restart policies and a
Docker outage, on real Docker."""
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import Wharf
from test_docker import docker_ps, wait_instance

IMAGE = "wharf-test/busybox:latest"


def run_and_wait(ecs, family, waiter="tasks_running"):
    arn = ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"]
    ecs.get_waiter(waiter).wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    return arn, t, {c["name"]: c for c in t["containers"]}


def container_ids(arn):
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.amazonaws.ecs.task-arn={arn}",
                          "--format", '{{.ID}} {{.Label "com.amazonaws.ecs.container-name"}}'],
                         capture_output=True, text=True, check=True).stdout
    return {name: cid for cid, name in (line.split() for line in out.splitlines())}


def docker_inspect(cid, fmt):
    return subprocess.run(["docker", "inspect", "-f", fmt, cid], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_depends_on_orders_start_and_stop(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    ecs.register_task_definition(family="deps", containerDefinitions=[
        # init must finish successfully before db starts; app waits for db to be HEALTHY.
        {"name": "init", "image": IMAGE, "memory": 16, "essential": False,
         "command": ["sh", "-c", "sleep 1; exit 0"]},
        {"name": "db", "image": IMAGE, "memory": 16, "stopTimeout": 2,
         "command": ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 600"],
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
         "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 5, "timeout": 2,
                         "retries": 1, "startPeriod": 0}},
        {"name": "app", "image": IMAGE, "memory": 16, "stopTimeout": 2, "command": ["sleep", "600"],
         "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
    ])
    arn, t, cs = run_and_wait(ecs, "deps")
    ids = container_ids(arn)
    started = {n: docker_inspect(ids[n], "{{.State.StartedAt}}") for n in ids}
    finished_init = docker_inspect(ids["init"], "{{.State.FinishedAt}}")
    assert finished_init < started["db"] < started["app"], (finished_init, started)
    assert cs["init"]["exitCode"] == 0 and cs["init"]["lastStatus"] == "STOPPED"
    assert cs["db"]["healthStatus"] == "HEALTHY"
    ecs.stop_task(task=arn)
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    # Reversed at stop: app (the dependent) stops before db.
    assert docker_inspect(ids["app"], "{{.State.FinishedAt}}") <= docker_inspect(ids["db"], "{{.State.FinishedAt}}")

    # A SUCCESS dependency that fails: the task fails to start and says why.
    ecs.register_task_definition(family="deps-bad", containerDefinitions=[
        {"name": "init", "image": IMAGE, "memory": 16, "essential": False, "command": ["sh", "-c", "exit 4"]},
        {"name": "app", "image": IMAGE, "memory": 16, "command": ["sleep", "600"],
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
    ])
    arn, t, cs = run_and_wait(ecs, "deps-bad", waiter="tasks_stopped")
    assert t["stopCode"] == "TaskFailedToStart"
    assert "exited with code 4" in t["stoppedReason"], t["stoppedReason"]
    assert "app" not in container_ids(arn)


def test_volumes_links_and_mounts(wharf_up, tmp_path):
    ecs = wharf_up.client()
    wait_instance(ecs)
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "in.txt").write_text("from the host\n")
    ecs.register_task_definition(family="vols", volumes=[
        {"name": "hostdir", "host": {"sourcePath": str(host_dir)}},
        {"name": "scratch"},
    ], containerDefinitions=[
        {"name": "server", "image": IMAGE, "memory": 16, "stopTimeout": 1,
         "command": ["sh", "-c", "echo written-by-server > /scratch/note; exec httpd -f -p 8080 -h /www"],
         "mountPoints": [{"sourceVolume": "hostdir", "containerPath": "/www", "readOnly": True},
                         {"sourceVolume": "scratch", "containerPath": "/scratch"}]},
        {"name": "client", "image": IMAGE, "memory": 16, "stopTimeout": 1, "links": ["server:backend"],
         "dependsOn": [{"containerName": "server", "condition": "START"}],
         "command": ["sh", "-c",
                     "sleep 1; wget -q -O /out/fetched http://backend:8080/in.txt; cat /scratch/note >> /out/fetched;"
                     " touch /www/denied 2>/dev/null || echo read-only >> /out/fetched; exec sleep 600"],
         "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": True}],
         "volumesFrom": [{"sourceContainer": "server", "readOnly": True}]},
    ])
    # The client writes into the host directory through a second, writable mount.
    ecs.register_task_definition(family="vols", volumes=[
        {"name": "hostdir", "host": {"sourcePath": str(host_dir)}},
        {"name": "out", "host": {"sourcePath": str(tmp_path)}},
        {"name": "scratch"},
    ], containerDefinitions=[
        *ecs.describe_task_definition(taskDefinition="vols:1")["taskDefinition"]["containerDefinitions"][:1],
        {**ecs.describe_task_definition(taskDefinition="vols:1")["taskDefinition"]["containerDefinitions"][1],
         "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": True},
                         {"sourceVolume": "out", "containerPath": "/out"}]},
    ])
    arn, t, _ = run_and_wait(ecs, "vols:2")
    deadline = time.time() + 15
    while time.time() < deadline and not (tmp_path / "fetched").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    lines = (tmp_path / "fetched").read_text().split()
    # Fetched over the link, read the task volume the server wrote, and /www is read-only via volumesFrom.
    assert lines == ["from", "the", "host", "written-by-server", "read-only"], lines
    task_id = arn.rsplit("/", 1)[1]
    vol = f"ecs-vols-2-scratch-{task_id}"
    assert subprocess.run(["docker", "volume", "inspect", vol], capture_output=True).returncode == 0
    ecs.stop_task(task=arn)
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    for cid in container_ids(arn).values():
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    subprocess.run(["docker", "volume", "rm", "-f", vol], capture_output=True)


class SocketProxy:
    """Stands between the agent and Docker's socket, so a test can take Docker away and bring it back."""

    def __init__(self, path, target="/var/run/docker.sock"):
        self.path, self.target = str(path), target
        self.conns, self.server = [], None

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.path)
        self.server.listen(64)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server):
        while True:
            try:
                c, _ = server.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX)
            u.connect(self.target)
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.server.close()
        os.unlink(self.path)
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []


def test_docker_outage_disconnects_and_recovers(tmp_path):
    proxy = SocketProxy(tmp_path / "docker.sock")
    proxy.start()
    w = Wharf(tmp_path / "data", mode="up", env={"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"})
    w.start()
    try:
        ecs = w.client()
        inst = wait_instance(ecs)
        ecs.register_task_definition(family="steady", containerDefinitions=[
            {"name": "main", "image": IMAGE, "memory": 16, "stopTimeout": 1, "command": ["sleep", "600"]}])
        arn, _, _ = run_and_wait(ecs, "steady")
        proxy.stop()

        def connected():
            return ecs.describe_container_instances(containerInstances=[inst])["containerInstances"][0]["agentConnected"]

        deadline = time.time() + 20
        while time.time() < deadline and connected():
            time.sleep(0.2)
        assert not connected(), "the instance should show agentConnected=false while Docker is gone"
        t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"
        # A disconnected instance takes no new task.
        failures = ecs.run_task(taskDefinition="steady")["failures"]
        assert failures and failures[0]["reason"] == "AGENT"

        proxy.start()
        deadline = time.time() + 20
        while time.time() < deadline and not connected():
            time.sleep(0.2)
        assert connected(), "the agent should reconnect when Docker returns"
        # The running container was re-adopted, not duplicated.
        rows = docker_ps(arn)
        assert len(rows) == 1 and rows[0][1] == "running"
        ecs.stop_task(task=arn)
        ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    finally:
        w.kill()
        proxy.stop() if proxy.server and proxy.server.fileno() != -1 else None
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.amazonaws.ecs.cluster=default"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def test_fargate_task_gets_its_own_network(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    ecs.register_task_definition(
        family="fg", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[
            {"name": "web", "image": IMAGE, "stopTimeout": 1, "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
             "portMappings": [{"containerPort": 8080}]},
            # The sidecar reaches the web container on localhost: one network namespace per task.
            {"name": "probe", "image": IMAGE, "essential": False, "stopTimeout": 1,
             "dependsOn": [{"containerName": "web", "condition": "START"}],
             "command": ["sh", "-c", "sleep 1; wget -q -O /tmp/got http://127.0.0.1:8080/passwd && exec sleep 600"]},
        ])
    net = {"awsvpcConfiguration": {"subnets": ["subnet-0local"], "assignPublicIp": "DISABLED"}}
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.run_task(taskDefinition="fg", launchType="FARGATE")
    ecs.register_task_definition(family="ec2only", containerDefinitions=[{"name": "a", "image": IMAGE, "memory": 16}])
    with pytest.raises(ecs.exceptions.ClientException):
        ecs.run_task(taskDefinition="ec2only", launchType="FARGATE", networkConfiguration=net)

    arn = ecs.run_task(taskDefinition="fg", launchType="FARGATE", networkConfiguration=net)["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert t["launchType"] == "FARGATE" and t["platformVersion"] == "1.4.0"
    assert "containerInstanceArn" not in t, "managed capacity is never shown"
    eni = t["attachments"][0]
    assert eni["type"] == "ElasticNetworkInterface" and eni["status"] == "ATTACHED"
    details = {d["name"]: d["value"] for d in eni["details"]}
    assert details["subnetId"] == "subnet-0local"
    ip = details["privateIPv4Address"]
    web = {c["name"]: c for c in t["containers"]}["web"]
    assert web["networkInterfaces"][0]["privateIpv4Address"] == ip
    # The task's address serves its port directly (no host port mapping in awsvpc).
    deadline = time.time() + 10
    while True:
        try:
            body = urllib.request.urlopen(f"http://{ip}:8080/passwd", timeout=2).read()
            break
        except OSError:
            assert time.time() < deadline
            time.sleep(0.2)
    assert b"root" in body
    probe = container_ids(arn)["probe"]
    deadline = time.time() + 10
    while subprocess.run(["docker", "exec", probe, "test", "-s", "/tmp/got"]).returncode != 0:
        assert time.time() < deadline, "the sidecar could not reach localhost:8080"
        time.sleep(0.3)
    # Only the EC2 instance is listed: the managed capacity is hidden.
    assert len(ecs.list_container_instances()["containerInstanceArns"]) == 1
    assert ecs.list_clusters()["clusterArns"] == [ecs.describe_clusters()["clusters"][0]["clusterArn"]]

    ecs.stop_task(task=arn)
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert t["attachments"][0]["status"] == "DELETED"
    assert all(row[1] == "exited" for row in docker_ps(arn)), docker_ps(arn)


def test_container_definition_members_reach_docker(wharf_up):
    """Every Docker-facing member of a container definition is in `docker
    inspect` of its container; what Wharf cannot honour is refused at
    registration, naming the member."""
    ecs = wharf_up.client()
    wait_instance(ecs)
    # The restart policy needs its container to run restartAttemptPeriod
    # (at least 60 s) before it exits: started first, checked last.
    ecs.register_task_definition(family="restarts", containerDefinitions=[
        {"name": "app", "image": IMAGE, "memory": 16, "stopTimeout": 1,
         "command": ["sh", "-c", "if [ -e /tmp/again ]; then exec sleep 600; fi; touch /tmp/again; sleep 61; exit 3"],
         "restartPolicy": {"enabled": True, "ignoredExitCodes": [0], "restartAttemptPeriod": 60}}])
    restarting, _, _ = run_and_wait(ecs, "restarts")
    begun = time.time()
    first_start = docker_inspect(container_ids(restarting)["app"], "{{.State.StartedAt}}")

    ecs.register_task_definition(family="knobs", ipcMode="host", containerDefinitions=[{
        "name": "app", "image": IMAGE, "memory": 64, "command": ["sleep", "600"], "stopTimeout": 1,
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
        "linuxParameters": {
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
            "initProcessEnabled": True, "sharedMemorySize": 32,
            "tmpfs": [{"containerPath": "/scratch", "size": 8, "mountOptions": ["noexec"]}],
            "devices": [{"hostPath": "/dev/null", "containerPath": "/dev/nothing", "permissions": ["read"]}],
            "maxSwap": 16, "swappiness": 10},
        "dnsServers": ["10.9.8.7"], "dnsSearchDomains": ["wharf.internal"],
        "dockerSecurityOptions": ["no-new-privileges"],
        "systemControls": [{"namespace": "net.core.somaxconn", "value": "1000"}],
        "interactive": True, "pseudoTerminal": True,
        "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}}}])
    arn, _, _ = run_and_wait(ecs, "knobs")
    cid = container_ids(arn)["app"]
    c = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True).stdout)[0]
    h = c["HostConfig"]
    assert h["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert h["CapAdd"] == ["NET_ADMIN"] and h["CapDrop"] == ["MKNOD"]
    assert h["Init"] is True and h["ShmSize"] == 32 * 1024 * 1024
    assert h["Tmpfs"] == {"/scratch": "size=8m,noexec"}
    assert h["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/nothing", "CgroupPermissions": "r"}]
    assert h["Memory"] == 64 * 1024 * 1024 and h["MemorySwap"] == 80 * 1024 * 1024
    assert h["MemorySwappiness"] == 10
    assert h["Dns"] == ["10.9.8.7"] and h["DnsSearch"] == ["wharf.internal"]
    assert "no-new-privileges" in h["SecurityOpt"], h["SecurityOpt"]  # Docker adds label=disable for ipc host
    assert h["Sysctls"] == {"net.core.somaxconn": "1000"}
    # (the daemon's own log-opts are merged in)
    assert h["LogConfig"]["Type"] == "json-file" and h["LogConfig"]["Config"]["max-size"] == "1m", h["LogConfig"]
    assert h["IpcMode"] == "host"
    assert c["Config"]["OpenStdin"] is True and c["Config"]["Tty"] is True
    inside = subprocess.run(["docker", "exec", cid, "sh", "-c", "ulimit -n; cat /etc/resolv.conf; "
                             "cat /proc/sys/net/core/somaxconn; mount | grep ' /scratch '"],
                            capture_output=True, text=True, check=True).stdout
    assert "1024" in inside and "nameserver 10.9.8.7" in inside and "search wharf.internal" in inside
    assert "1000" in inside and "noexec" in inside, inside

    refused = {
        "secrets": {"secrets": [{"name": "DB", "valueFrom": "arn:aws:secretsmanager:eu-west-1:000000000000:secret:db"}]},
        "environmentFiles": {"environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}]},
        "log driver 'awsfirelens'": {"logConfiguration": {"logDriver": "awsfirelens"}},
        "Invalid capability 'CAP_SYS_ADMIN'": {"linuxParameters": {"capabilities": {"add": ["CAP_SYS_ADMIN"]}}},
    }
    for expected, member in refused.items():
        with pytest.raises(ecs.exceptions.ClientException) as e:
            ecs.register_task_definition(family="refused", containerDefinitions=[
                {"name": "app", "image": IMAGE, "memory": 16, **member}])
        assert expected in str(e.value), e.value
    with pytest.raises(ecs.exceptions.ClientException):
        ecs.describe_task_definition(taskDefinition="refused")

    # runtimePlatform's architecture is the host's to match.
    arch = {"x86_64": ("X86_64", "ARM64"), "aarch64": ("ARM64", "X86_64")}[os.uname().machine]
    for family, platform in (("native", arch[0]), ("foreign", arch[1])):
        ecs.register_task_definition(family=family, runtimePlatform={"cpuArchitecture": platform},
                                     containerDefinitions=[{"name": "app", "image": IMAGE, "memory": 16,
                                                            "command": ["true"]}])
    assert ecs.run_task(taskDefinition="native")["tasks"]
    foreign = ecs.run_task(taskDefinition="foreign")
    assert foreign["tasks"] == [] and foreign["failures"][0]["reason"] == "MemberOf placement constraint unsatisfied.", foreign

    # The restart policy: the container exited with 3 after running 61 s and
    # was started again in place; the task never stopped.
    ids = container_ids(restarting)
    assert len(ids) == 1
    deadline = begun + 100
    while time.time() < deadline:
        t = ecs.describe_tasks(tasks=[restarting])["tasks"][0]
        assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING", t
        state = docker_inspect(ids["app"], "{{.State.Status}} {{.State.StartedAt}}").split()
        if state[0] == "running" and state[1] != first_start:
            break
        time.sleep(1)
    else:
        raise AssertionError("the container was not restarted")
    assert container_ids(restarting) == ids, "the same container, started again"
    assert docker_inspect(ids["app"], "{{.State.ExitCode}}") == "0"
    assert ecs.describe_tasks(tasks=[restarting])["tasks"][0]["lastStatus"] == "RUNNING"
