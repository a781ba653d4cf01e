#!/usr/bin/env python3
"""Many short boots of the node image with raw QEMU, each only to the root mount, counting stalls per condition.

Issue 30: one node boot in about a hundred stopped in the small initrd right after
`virtio_blk virtio1: [vda] ... logical blocks`, QEMU idle. This boots the same kernel, initrd, command line and
disk flags as the domain XML libvirt runs (`virsh domxml-to-native qemu-argv` of the failed node's XML: i440fx
10.0, TCG with a 64 MiB TB cache, qemu64, the overlay on the image's qcow2 with cache=unsafe and discard=unmap,
virtio-blk-pci at slot 3, two virtio-net-pci, virtio-rng at slot 4), and stops each boot as soon as the console
shows `EXT4-fs (vda): mounted` (a pass) or nothing new for --stall seconds (a stall). On a stall it asks QEMU
itself, through the human monitor, what it sees: the block device's virtqueues (was the request submitted; did
the used index advance; was the guest signalled), the interrupt controllers and each vCPU's registers.

Conditions vary one thing at a time: virtio-blk queues (num-queues=2, QEMU's default with 2 vCPUs, or 1), vCPUs
(-smp 2 or 1), and how many boots run at once (3: a cluster's boot, the host's 2 cores oversubscribed; 1: idle).
The conditions are interleaved batch by batch, so that the shared host's load falls on all of them alike.

A boot is stalled only if its console stays quiet --stall seconds, then --confirm seconds more while QEMU is
asked; one that mounts in the confirm window is "late" (a slow boot, not a hang). Every boot also records the
longest quiet gap of its console (so the stall window can be checked against passes) and two early signs of
interrupt delivery that the evidence's stalled boot lacked and its good neighbour had: `serio: i8042 AUX port`
(printed only if the i8042 AUX loop test's IRQ 12 arrived within 250 ms, Linux drivers/input/serio/i8042.c
`i8042_check_aux`) and `input: AT Translated Set 2 keyboard` (atkbd's probe, which needs IRQ 1). On a stall
the rings are also read from guest memory, and QEMU asked a second time after the confirm window. (Asking the
guest by magic SysRq through the monitor's `sendkey alt-sysrq-w` printed nothing here, with
`sysrq_always_enabled`, even on a booted node, so the script does not try.)

Usage: boot-stall-trials.py IMAGE_DIR OUT_DIR [--rounds N] [--until HH:MM] [--stall S] [--confirm S]
                            [--conditions q2s2p3,q1s2p3,...]
       boot-stall-trials.py --summary OUT_DIR/trials.jsonl
Each batch takes /tmp/kthw-vm.lock and releases it afterwards. Results: OUT_DIR/trials.jsonl (one line a boot),
OUT_DIR/stalls/<n>/ (console, monitor answers), and a summary on stdout.
"""

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MOUNTED = "EXT4-fs (vda): mounted"
VDA = re.compile(r"virtio_blk virtio\d+: \[vda\]")
CMDLINE = "root=/dev/vda rw rootfstype=ext4 console=ttyS0,115200 net.ifnames=0 mitigations=off"
AUX = "serio: i8042 AUX port"
ATKBD = "input: AT Translated Set 2 keyboard"
DISK = "/machine/peripheral/virtio-disk0/virtio-backend"
I8042_PNP = re.compile(r"^\[\s*([0-9.]+)\] i8042: PNP: PS/2 Controller", re.M)
I8042_KBD = re.compile(r"^\[\s*([0-9.]+)\] serio: i8042 KBD port", re.M)


def i8042_ms(text):
    """Guest milliseconds from i8042's PNP line to its KBD port line: the AUX IRQ test sits between them, a few
    ms when IRQ 12 arrives, its 250 ms timeout when it does not."""
    a, b = I8042_PNP.search(text), I8042_KBD.search(text)
    return round((float(b[1]) - float(a[1])) * 1000) if a and b else None
MONITOR_QUERIES = [
    "info status",
    "info virtio",
    f"info virtio-status {DISK}",
    f"info virtio-queue-status {DISK} 0",
    f"info virtio-queue-status {DISK} 1",
    f"info virtio-queue-element {DISK} 0",
    f"info virtio-queue-element {DISK} 1",
    "info pci",
    "info irq",
    "info pic",
    "info lapic 0",
    "info lapic 1",
    "info cpus",
    "info registers -a",
]


def parse_condition(text):
    m = re.fullmatch(r"q(\d)s(\d)p(\d)", text)
    if not m:
        raise SystemExit(f"bad condition {text!r}: want q<queues>s<vcpus>p<parallel>, e.g. q2s2p3")
    return {"name": text, "queues": int(m[1]), "smp": int(m[2]), "parallel": int(m[3])}


def qemu_argv(image, overlay, console, monitor, queues, smp):
    """The domain XML's QEMU command line, less libvirt's own plumbing (secret, QMP socket, tap fd, sandbox)."""
    blockdev_base = {
        "driver": "file", "filename": f"{image}/disk.qcow2", "node-name": "base-storage",
        "auto-read-only": True, "discard": "unmap", "cache": {"direct": False, "no-flush": True},
    }
    base_fmt = {
        "node-name": "base-format", "read-only": True, "discard": "unmap",
        "cache": {"direct": False, "no-flush": True}, "driver": "qcow2", "file": "base-storage", "backing": None,
    }
    top = dict(blockdev_base, filename=overlay, **{"node-name": "top-storage"})
    top_fmt = {
        "node-name": "top-format", "read-only": False, "discard": "unmap",
        "cache": {"direct": False, "no-flush": True}, "driver": "qcow2", "file": "top-storage",
        "backing": "base-format",
    }
    blk = {"driver": "virtio-blk-pci", "bus": "pci.0", "addr": "0x3", "drive": "top-format", "id": "virtio-disk0",
           "bootindex": 1, "write-cache": "on", "num-queues": queues}
    kernel = "vmlinux" if os.path.exists(f"{image}/vmlinux") else "vmlinuz"
    return [
        "qemu-system-x86_64", "-machine", "pc-i440fx-10.0,usb=off,dump-guest-core=off,acpi=on",
        "-accel", "tcg,tb-size=64", "-cpu", "qemu64,hypervisor=on,lahf-lm=on", "-m", "2048",
        "-smp", f"{smp},sockets={smp},cores=1,threads=1", "-display", "none", "-no-user-config", "-nodefaults",
        "-monitor", f"unix:{monitor},server=on,wait=off", "-rtc", "base=utc", "-boot", "strict=on",
        "-kernel", f"{image}/{kernel}", "-initrd", f"{image}/initrd.img", "-append", CMDLINE,
        "-blockdev", json.dumps(blockdev_base), "-blockdev", json.dumps(base_fmt),
        "-blockdev", json.dumps(top), "-blockdev", json.dumps(top_fmt), "-device", json.dumps(blk),
        "-netdev", "hubport,id=hostnet0,hubid=0",
        "-device", "virtio-net-pci,netdev=hostnet0,id=net0,mac=52:54:00:20:86:b5,bus=pci.0,addr=0x2",
        "-chardev", f"file,id=charserial0,path={console},append=on",
        "-device", "isa-serial,chardev=charserial0,id=serial0,index=0",
        "-object", "rng-random,id=objrng0,filename=/dev/urandom",
        "-device", "virtio-rng-pci,rng=objrng0,id=rng0,bus=pci.0,addr=0x4",
        "-netdev", "user,id=mgmt,restrict=on",
        "-device", "virtio-net-pci,netdev=mgmt,mac=52:54:00:a0:7f:c7,bus=pci.0,addr=0x10",
    ]


def hmp(path, commands):
    """Each command's answer from QEMU's human monitor on the unix socket `path`."""
    out = {}
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(path)

        def until_prompt():
            buf = b""
            while not buf.endswith(b"(qemu) "):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return buf.decode(errors="replace")

        until_prompt()
        for c in commands:
            s.sendall(c.encode() + b"\n")
            text = until_prompt()
            # The monitor echoes the command with terminal escapes; keep what follows the first line.
            out[c] = text.split("\n", 1)[1].rsplit("(qemu) ", 1)[0] if "\n" in text else text
        s.close()
    except OSError as e:
        out["error"] = str(e)
    return out


def ring_words(path, statuses):
    """The guest's own view of each disk virtqueue, read from guest memory (`xp`): avail.idx (what the driver
    published), used.idx (what QEMU completed), and the two event-index words that decide whether a kick or an
    interrupt is sent (VIRTIO_RING_F_EVENT_IDX: used_event after the avail ring, avail_event after the used
    ring; virtio 1.x spec, "Driver Area"/"Device Area")."""
    commands = []
    for text in statuses:
        num = re.search(r"num:\s+(\d+)", text)
        avail = re.search(r"avail:\s+(0x[0-9a-f]+)", text)
        used = re.search(r"used:\s+(0x[0-9a-f]+)", text)
        if not (num and avail and used):
            continue
        n, a, u = int(num[1]), int(avail[1], 16), int(used[1], 16)
        commands += [f"xp /2hx {a:#x}", f"xp /1hx {a + 4 + 2 * n:#x}", f"xp /2hx {u:#x}",
                     f"xp /1hx {u + 4 + 8 * n:#x}"]
    return hmp(path, commands) if commands else {}


class Boot:
    def __init__(self, n, cond, image, scratch):
        self.n, self.cond = n, cond
        d = os.path.join(scratch, f"b{n}")
        os.makedirs(d)
        self.dir = d
        self.overlay, self.console, self.monitor = f"{d}/disk.qcow2", f"{d}/console.log", f"{d}/mon.sock"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", f"{image}/disk.qcow2",
                        self.overlay], check=True)
        open(self.console, "w").close()
        argv = qemu_argv(image, self.overlay, self.console, self.monitor, cond["queues"], cond["smp"])
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(f"{d}/qemu.err", "w"))
        self.size, self.progressed, self.max_gap = 0, self.started, 0.0
        self.vda_at = None
        self.result = None

    def text(self):
        return open(self.console, errors="replace").read()

    def poll(self, stall, confirm):
        if self.result:
            return
        now = time.monotonic()
        text = self.text()
        if len(text) != self.size:
            self.max_gap = max(self.max_gap, now - self.progressed)
            self.size, self.progressed = len(text), now
        if self.vda_at is None and VDA.search(text):
            self.vda_at = now - self.started
        if MOUNTED in text:
            self.finish("mounted", text)
        elif self.proc.poll() is not None:
            self.finish("qemu-exited", text)
        elif now - self.progressed > stall:
            self.stalled(text, confirm)

    def stalled(self, text, confirm):
        """Quiet for the stall window: ask QEMU, then wait the confirm window for the mount; only a boot still
        quiet after both is a stall."""
        quiet_at = time.monotonic()
        cpu = cpu_percent(self.proc.pid)
        monitor = hmp(self.monitor, MONITOR_QUERIES)
        statuses = [monitor.get(f"info virtio-queue-status {DISK} {q}", "") for q in (0, 1)]
        monitor.update(ring_words(self.monitor, statuses))
        deadline = quiet_at + confirm
        while time.monotonic() < deadline and MOUNTED not in self.text() and self.proc.poll() is None:
            time.sleep(0.5)
        late = self.text()
        if MOUNTED in late or len(late) != len(text):
            self.finish("late" if MOUNTED in late else "progressed", late, monitor=monitor, cpu=cpu)
            return
        # A second look after the confirm window: did anything move while nothing reached the console?
        monitor_again = hmp(self.monitor, [f"info virtio-queue-status {DISK} 0",
                                           f"info virtio-queue-status {DISK} 1", "info cpus"])
        monitor.update({f"again: {k}": v for k, v in monitor_again.items()})
        self.finish("stall", late, monitor=monitor, cpu=cpu)

    def finish(self, outcome, text, monitor=None, cpu=None):
        now = time.monotonic()
        last = [line for line in text.splitlines() if line.strip()][-1:] or [""]
        self.result = {
            "n": self.n, "condition": self.cond["name"], "queues": self.cond["queues"], "smp": self.cond["smp"],
            "parallel": self.cond["parallel"], "outcome": outcome, "wall_s": round(now - self.started, 2),
            "vda_s": None if self.vda_at is None else round(self.vda_at, 2),
            "max_gap_s": round(self.max_gap, 2), "aux_port": AUX in text, "atkbd": ATKBD in text,
            "i8042_ms": i8042_ms(text),
            "last_line": last[0][-160:], "loadavg": os.getloadavg()[0], "utc": time.strftime("%H:%M:%S"),
        }
        if monitor is not None:
            self.result["monitor"] = monitor
            self.result["cpu_percent"] = cpu
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def cpu_percent(pid, seconds=3.0):
    """The stalled QEMU's CPU use over a few seconds: idle (waiting for an interrupt) or spinning."""
    def ticks():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    try:
        a = ticks()
        time.sleep(seconds)
        return round(100.0 * (ticks() - a) / os.sysconf("SC_CLK_TCK") / seconds, 1)
    except OSError:
        return None


def batch(cond, image, scratch, first, stall, confirm):
    boots = [Boot(first + i, cond, image, scratch) for i in range(cond["parallel"])]
    try:
        while not all(b.result for b in boots):
            time.sleep(0.1)
            for b in boots:
                b.poll(stall, confirm)
    finally:
        for b in boots:
            if b.result is None:
                b.proc.kill()
                b.proc.wait()
    return boots


def past(until):
    """True once the UTC wall clock is past HH:MM (today)."""
    if not until:
        return False
    h, m = (int(x) for x in until.split(":"))
    now = time.gmtime()
    return (now.tm_hour, now.tm_min) >= (h, m)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("out")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--until", help="UTC HH:MM after which no new batch starts")
    ap.add_argument("--stall", type=float, default=20.0, help="seconds without console output that make a stall")
    ap.add_argument("--confirm", type=float, default=30.0, help="seconds more, after asking QEMU, to call it a stall")
    ap.add_argument("--conditions", default="q2s2p3,q1s2p3")
    args = ap.parse_args()
    # A SIGTERM unwinds like an error, so that the batch's `finally` kills its QEMUs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    conds = [parse_condition(c) for c in args.conditions.split(",")]
    os.makedirs(f"{args.out}/stalls", exist_ok=True)
    log = open(f"{args.out}/trials.jsonl", "a")
    n = sum(1 for _ in open(f"{args.out}/trials.jsonl"))
    for r in range(args.rounds):
        for cond in conds:
            if past(args.until):
                summary(f"{args.out}/trials.jsonl")
                return
            scratch = tempfile.mkdtemp(prefix="kthw-stall-trials-")
            try:
                with open("/tmp/kthw-vm.lock", "w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    boots = batch(cond, os.path.abspath(args.image), scratch, n, args.stall, args.confirm)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            for b in boots:
                res = b.result
                if res["outcome"] != "mounted" or not (res["aux_port"] and res["atkbd"]):
                    keep = f"{args.out}/stalls/{res['n']}"
                    os.makedirs(keep, exist_ok=True)
                    for f in ("console.log", "qemu.err"):
                        shutil.copy(f"{b.dir}/{f}", keep)
                    with open(f"{keep}/monitor.json", "w") as f:
                        json.dump(res.get("monitor", {}), f, indent=1)
                log.write(json.dumps({k: v for k, v in res.items() if k != "monitor"}) + "\n")
                log.flush()
                print(f"round {r} {cond['name']} boot {res['n']}: {res['outcome']} in {res['wall_s']} s "
                      f"(vda at {res['vda_s']} s, max gap {res['max_gap_s']} s, aux {res['aux_port']}, "
                      f"load {res['loadavg']:.1f})", flush=True)
                n += 1
            shutil.rmtree(scratch, ignore_errors=True)
    summary(f"{args.out}/trials.jsonl")


def wilson(k, n, z=1.96):
    """The 95% Wilson score interval of a rate k/n (at k = 0 its upper end is close to the rule of three)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def pct(values, q):
    """The q-th percentile by nearest rank."""
    if not values:
        return float("nan")
    v = sorted(values)
    return v[max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))]


def summary(path):
    rows = [json.loads(line) for line in open(path)]
    by = {}
    for r in rows:
        c = by.setdefault(r["condition"], {"boots": 0, "stalls": 0, "late": 0, "died": 0, "walls": [], "gaps": [],
                                           "probed": 0, "noaux": 0, "noatkbd": 0, "noaux_stalls": 0})
        c["boots"] += 1
        c["stalls"] += r["outcome"] == "stall"
        c["late"] += r["outcome"] in ("late", "progressed")
        c["died"] += r["outcome"] == "qemu-exited"
        # Only a boot that got past i8042's probe says anything about its interrupts (a QEMU that died
        # earlier printed neither line).
        if r["outcome"] in ("mounted", "stall", "late", "progressed"):
            c["probed"] += 1
            c["noaux"] += not r["aux_port"]
            c["noatkbd"] += not r["atkbd"]
            c["noaux_stalls"] += r["outcome"] == "stall" and not r["aux_port"]
        if r["outcome"] == "mounted":
            c["walls"].append(r["wall_s"])
            c["gaps"].append(r["max_gap_s"])
    print("condition  boots  stalls  stall rate [95% Wilson]  late  QEMU died  to mount p50/p95/max (s)  "
          "quiet gap p95/max (s)  no AUX port (stalled)  no atkbd")
    for name, c in sorted(by.items()):
        lo, hi = wilson(c["stalls"], c["boots"])
        w, g = c["walls"], c["gaps"]
        print(f"{name:9}  {c['boots']:5}  {c['stalls']:6}  {c['stalls'] / c['boots']:5.1%} [{lo:.1%}, {hi:.1%}]  "
              f"{c['late']:4}  {c['died']:9}  {pct(w, 50):4.1f} / {pct(w, 95):4.1f} / "
              f"{max(w, default=float('nan')):4.1f}  {pct(g, 95):4.1f} / {max(g, default=float('nan')):4.1f}  "
              f"{c['noaux']:4}/{c['probed']} ({c['noaux_stalls']})  {c['noatkbd']:4}/{c['probed']}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--summary":
        summary(sys.argv[2])
    else:
        main()
