#!/usr/bin/env python3
"""How much CPU the host agent costs with N idle tasks, and what a task start
costs against a plain `docker run -d` of the same container.

Starts `wharf server` and `wharf agent` as two processes (the agent's own CPU
is then its process's), runs N long-sleeping tasks, and samples the agent's
CPU time over a window. Prints figures beside the issue's targets.

    python3 bench/agent_idle.py [--tasks 50] [--window 30] [--binary PATH]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

import boto3

from benchlib import (IMAGE, KEY, SECRET, default_binary, env as bench_env, free_port, remove_containers,
                      start_agent, wait_healthy)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--starts", type=int, default=7)
    ap.add_argument("--binary", default=default_binary())
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = bench_env()
    server = subprocess.Popen([a.binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{tmp}/s"],
                              env=env, stderr=subprocess.DEVNULL)
    wait_healthy(url)
    agent = start_agent(a.binary, url, "bench", f"{tmp}/a", env, "--image-pull-behavior", "prefer-cached")
    ecs = boto3.client("ecs", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id=KEY, aws_secret_access_key=SECRET)
    try:
        ecs.create_cluster(clusterName="bench")
        while not ecs.list_container_instances(cluster="bench")["containerInstanceArns"]:
            time.sleep(0.1)
        ecs.register_task_definition(family="idle", containerDefinitions=[
            {"name": "sleep", "image": IMAGE, "memory": 8, "stopTimeout": 1, "command": ["sleep", "3600"]}])

        # Start latency: RunTask accepted -> RUNNING visible, against docker run -d.
        ours, theirs = [], []
        for _ in range(a.starts):
            t0 = time.perf_counter()
            arn = ecs.run_task(cluster="bench", taskDefinition="idle")["tasks"][0]["taskArn"]
            while ecs.describe_tasks(cluster="bench", tasks=[arn])["tasks"][0]["lastStatus"] != "RUNNING":
                time.sleep(0.005)
            ours.append(time.perf_counter() - t0)
            ecs.stop_task(cluster="bench", task=arn)
            t0 = time.perf_counter()
            cid = subprocess.run(["docker", "run", "-d", "--memory", "8m", IMAGE, "sleep", "3600"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            theirs.append(time.perf_counter() - t0)
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)

        arns = []
        while len(arns) < a.tasks:
            n = min(10, a.tasks - len(arns))
            arns += [t["taskArn"] for t in ecs.run_task(cluster="bench", taskDefinition="idle", count=n)["tasks"]]
        deadline = time.time() + 120
        while time.time() < deadline:
            running = sum(1 for i in range(0, len(arns), 100)
                          for t in ecs.describe_tasks(cluster="bench", tasks=arns[i:i + 100])["tasks"]
                          if t["lastStatus"] == "RUNNING")
            if running == a.tasks:
                break
            time.sleep(0.5)
        time.sleep(3)  # let the last reports settle
        c0, t0 = cpu_seconds(agent.pid), time.time()
        time.sleep(a.window)
        c1, t1 = cpu_seconds(agent.pid), time.time()
        idle = 100 * (c1 - c0) / (t1 - t0)
        rss = int(open(f"/proc/{agent.pid}/status").read().split("VmRSS:")[1].split()[0])
        print(f"agent CPU with {running} idle tasks over {t1 - t0:.0f} s: {idle:.2f}% of one core "
              f"(target < 1%)  RSS {rss / 1024:.1f} MiB")
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        print(f"start latency (median of {a.starts}): RunTask->RUNNING {m_ours * 1000:.0f} ms, "
              f"docker run -d {m_theirs * 1000:.0f} ms, ratio {m_ours / m_theirs:.2f}x (target <= 1.2x)")
        for i in range(0, len(arns), 100):
            for arn in arns[i:i + 100]:
                ecs.stop_task(cluster="bench", task=arn)
    finally:
        agent.kill()
        server.kill()
        remove_containers("com.amazonaws.ecs.cluster=bench")


if __name__ == "__main__":
    main()
