#!/usr/bin/env python3
"""What `wharf exec` costs against a plain `docker exec` of the same
container, measured in the same run (this machine's speed drifts).

Starts `wharf up`, runs one exec-enabled task, then times N runs of each,
interleaved: `wharf exec TASK -- true` (ExecuteCommand, the session's
stream through the control plane, the agent's Docker exec, the exit code
back) and `docker exec CONTAINER true`. Also the throughput of `cat` over
the stream against `docker exec -i`. Prints the figures side by side.

    python3 bench/exec_latency.py [--runs 30] [--megabytes 64] [--binary PATH]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

import boto3

from benchlib import IMAGE, KEY, SECRET, default_binary, env as bench_env, free_port, remove_containers


def timed(cmd, env, data=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    if data is not None:
        assert len(out.stdout) == len(data), (len(out.stdout), len(data))
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--megabytes", type=int, default=64)
    ap.add_argument("--binary", default=default_binary())
    a = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = bench_env()
    data_dir = tempfile.mkdtemp(prefix="wharf-exec-bench-")
    server = subprocess.Popen([a.binary, "up", "--ephemeral", "--listen", f"127.0.0.1:{port}",
                               "--data-dir", data_dir], env=env, stderr=subprocess.DEVNULL)
    arn = None
    try:
        ecs = boto3.client("ecs", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id=KEY, aws_secret_access_key=SECRET)
        deadline = time.time() + 30
        while True:
            try:
                arns = ecs.list_container_instances()["containerInstanceArns"]
                if arns and ecs.describe_container_instances(containerInstances=arns)[
                        "containerInstances"][0]["agentConnected"]:
                    break
            except Exception:
                pass
            assert time.time() < deadline, "the agent did not connect"
            time.sleep(0.2)
        ecs.register_task_definition(family="exec-bench", containerDefinitions=[{
            "name": "app", "image": IMAGE, "memory": 64, "stopTimeout": 1, "command": ["sleep", "3600"]}])
        arn = ecs.run_task(taskDefinition="exec-bench", enableExecuteCommand=True)["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
        cid = ecs.describe_tasks(tasks=[arn])["tasks"][0]["containers"][0]["runtimeId"]
        wharf = [a.binary, "exec", "--endpoint-url", url, arn, "--"]
        docker = ["docker", "exec", cid]
        timed(wharf + ["true"], env)  # warm both paths once
        timed(docker + ["true"], env)
        w, d = [], []
        for _ in range(a.runs):
            w.append(timed(wharf + ["true"], env))
            d.append(timed(docker + ["true"], env))
        payload = os.urandom(a.megabytes << 20)
        wt = timed([a.binary, "exec", "-i", "--endpoint-url", url, arn, "--", "cat"], env, payload)
        dt = timed(["docker", "exec", "-i", cid, "cat"], env, payload)

        def row(name, xs):
            xs = sorted(xs)
            p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
            return f"{name:<28} median {statistics.median(xs) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"
        print(f"exec of `true`, {a.runs} runs each, interleaved:")
        print(row("wharf exec (through API)", w))
        print(row("docker exec (local socket)", d))
        print(f"  ratio of medians: {statistics.median(w) / statistics.median(d):.2f}x   "
              f"(no target; the extra is the API call, the stream's two upgrades and the relay)")
        mb = a.megabytes
        print(f"`cat` of {mb} MiB: wharf exec -i {mb / wt:7.1f} MiB/s   docker exec -i {mb / dt:7.1f} MiB/s")
    finally:
        if arn:
            try:
                ecs.stop_task(task=arn)
            except Exception:
                pass
        server.kill()
        server.wait()
        remove_containers("com.amazonaws.ecs.cluster=default")


if __name__ == "__main__":
    main()
