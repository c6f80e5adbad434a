#!/usr/bin/python3
"""bench/peers/python/harness.py: the Python and CLI peers of bench/peers.lua.

The Docker SDK for Python (Debian's python3-docker) and the docker CLI (run as
child processes from here, so that their CPU time can be counted). Run by
bench/peers.lua with Debian's /usr/bin/python3, one suite per process; prints
one JSON object per line on stdout (samples in seconds), progress on stderr.

  harness.py step       IMAGE N           # one command in a running container
  harness.py cold       IMAGE N           # a fresh container, start..gone
  harness.py throughput IMAGE BYTES REPS  # BYTES of zeros on stdout
  harness.py scale      IMAGE N METHOD    # N at once (METHOD sdk: threads, cli: processes)

Containers get network_mode none (as every box in this bench) and nothing else
beyond each tool's defaults.
"""
import json
import os
import subprocess
import sys
import threading
import time

import docker

now = time.monotonic
cpu = time.process_time  # this process, all its threads


def children_cpu():
    t = os.times()
    return t.children_user + t.children_system


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def note(msg):
    sys.stderr.write("  python: %s\n" % msg)


suite, image = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
client = docker.DockerClient(base_url="unix:///var/run/docker.sock", max_pool_size=128)


def sdk_up():
    return client.containers.run(image, ["sleep", "3600"], detach=True, network_mode="none")


def sdk_exec(c, cmd):
    r = c.exec_run(cmd)  # create, start, collect the output, inspect for the exit code
    if r.exit_code != 0:
        raise RuntimeError("exec_run %s: exit code %s" % (cmd, r.exit_code))
    return r


def cli(*argv, out=subprocess.DEVNULL):
    return subprocess.run(("docker",) + argv, stdout=out, stderr=subprocess.PIPE, check=True)


def cli_up():
    return cli("run", "-d", "--network", "none", image, "sleep", "3600", out=subprocess.PIPE).stdout.decode().strip()


def step(n):
    c = sdk_up()
    cid = cli_up()
    try:
        for _ in range(3):
            sdk_exec(c, ["true"])
            cli("exec", cid, "true")
        a, b = [], []
        ca = cb = 0.0
        for _ in range(n):  # alternating
            c0, t0 = cpu(), now()
            sdk_exec(c, ["true"])
            a.append(now() - t0)
            ca += cpu() - c0
            c0, t0 = children_cpu(), now()
            cli("exec", cid, "true")
            b.append(now() - t0)
            cb += children_cpu() - c0
        emit({"kind": "samples", "row": "step", "method": "python exec_run", "samples": a, "cpu_s": ca})
        emit({"kind": "samples", "row": "step", "method": "docker exec (CLI)", "samples": b, "cpu_s": cb})
    finally:
        c.remove(force=True)
        cli("rm", "-f", cid)


def cold(n):
    def sdk_once():
        client.containers.run(image, ["true"], remove=True, network_mode="none")

    def cli_once():
        cli("run", "--rm", "--network", "none", image, "true")

    sdk_once()
    cli_once()
    a, b = [], []
    ca = cb = 0.0
    for _ in range(n):  # alternating
        c0, t0 = cpu(), now()
        sdk_once()
        a.append(now() - t0)
        ca += cpu() - c0
        c0, t0 = children_cpu(), now()
        cli_once()
        b.append(now() - t0)
        cb += children_cpu() - c0
    emit({"kind": "samples", "row": "cold", "method": "python containers.run(remove=True)", "samples": a, "cpu_s": ca})
    emit({"kind": "samples", "row": "cold", "method": "docker run --rm (CLI)", "samples": b, "cpu_s": cb})


def throughput(nbytes, reps):
    cmd = "dd if=/dev/zero bs=1048576 count=%d 2>/dev/null" % (nbytes // 1048576)
    c = sdk_up()
    cid = cli_up()
    try:
        for _ in range(reps):
            # exec_run with stream=True: the output as it comes, demultiplexed
            c0, t0 = cpu(), now()
            r = c.exec_run(["sh", "-c", cmd], stream=True, demux=True)
            got = 0
            for out, _err in r.output:
                if out:
                    got += len(out)
            emit({"kind": "throughput", "method": "python exec_run(stream)", "bytes": got, "want": nbytes,
                  "wall_s": now() - t0, "cpu_s": cpu() - c0})
            # the CLI's stdout read by this process
            c0, c1, t0 = children_cpu(), cpu(), now()
            p = subprocess.Popen(["docker", "exec", cid, "sh", "-c", cmd], stdout=subprocess.PIPE)
            got = 0
            while True:
                chunk = p.stdout.read1(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
            p.wait()
            emit({"kind": "throughput", "method": "docker exec (CLI)", "bytes": got, "want": nbytes,
                  "wall_s": now() - t0, "cpu_s": children_cpu() - c0 + cpu() - c1})
    finally:
        c.remove(force=True)
        cli("rm", "-f", cid)


def scale(n, method):
    errors = []

    def sdk_life():
        c = sdk_up()
        try:
            sdk_exec(c, ["true"])
        finally:
            c.remove(force=True)

    # the CLI: one background shell per box, running three docker commands
    cli_script = ('id=$(docker run -d --network none "$0" sleep 3600) && docker exec "$id" true; '
                  'c=$?; [ -n "$id" ] && docker rm -f "$id" >/dev/null; exit $c')

    if method == "sdk":
        sdk_life()  # warm-up

        def task():
            try:
                sdk_life()
            except Exception as e:  # noqa: BLE001 (counted, reported)
                errors.append(e)

        c0, t0 = cpu(), now()
        threads = [threading.Thread(target=task) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, used = now() - t0, cpu() - c0
        name = "python threads"
    else:
        subprocess.run(["sh", "-c", cli_script, image], check=True, stdout=subprocess.DEVNULL)
        c0, t0 = children_cpu(), now()
        procs = [subprocess.Popen(["sh", "-c", cli_script, image], stdout=subprocess.DEVNULL) for _ in range(n)]
        for p in procs:
            if p.wait() != 0:
                errors.append(p.returncode)
        wall, used = now() - t0, children_cpu() - c0
        name = "CLI processes"
    if errors:
        note("%d of %d failed: %s" % (len(errors), n, errors[0]))
    emit({"kind": "scale", "method": name, "n": n, "wall_s": wall, "cpu_s": used, "errors": len(errors)})


if suite == "step":
    step(int(args[0]))
elif suite == "cold":
    cold(int(args[0]))
elif suite == "throughput":
    throughput(int(args[0]), int(args[1]))
elif suite == "scale":
    scale(int(args[0]), args[1])
else:
    raise SystemExit("unknown suite " + suite)
