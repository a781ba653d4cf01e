"""The nightly's summary: one table of every shard's JUnit report, written to the run's summary page.

Run by the nightly's `summary` job and by scripts/rehearse-nightly, so the rehearsal prints what the nightly
would. Reads junit/junit-<set>-<shard>/junit.xml (as actions/download-artifact lays the shards' reports out)
for every set in SETS and shard 1..SHARDS; exits 1 when a test failed or a shard left no report.
"""

import os
import sys
import xml.etree.ElementTree as ET

shards = int(os.environ["SHARDS"])
root = os.environ.get("JUNIT_DIR", "junit")
rows, failed, missing = [], [], []
for s in os.environ["SETS"].split():
    for n in range(1, shards + 1):
        path = os.path.join(root, f"junit-{s}-{n}", "junit.xml")
        if not os.path.exists(path):
            missing.append(f"{s}-{n}")
            rows.append(f"| {s} | {n} | no report | | | |")
            continue
        total = bad = skipped = 0
        for case in ET.parse(path).getroot().iter("testcase"):
            total += 1
            if case.find("failure") is not None or case.find("error") is not None:
                bad += 1
                failed.append(f"- {s} set, shard {n}: `{case.get('classname')}` {case.get('name')}")
            elif case.find("skipped") is not None:
                skipped += 1
        rows.append(f"| {s} | {n} | {total} | {total - bad - skipped} | {bad} | {skipped} |")
lines = [
    "## Nightly: every tier, both version sets",
    "",
    "| set | shard | tests | passed | failed | skipped |",
    "|---|---|---|---|---|---|",
    *rows,
    "",
]
if failed:
    lines += ["### Failed", "", *failed, ""]
if missing:
    lines += [f"Shards without a report (the job failed before its tests ended): {missing}", ""]
lines += [
    "Failure bundles are the run's `bundles-<set>-<shard>` artifacts; each scenario's report and outputs",
    "(the Cilium connectivity test's JUnit among them) are `scenarios-<set>-<shard>`. Each bundle's",
    "`run/timeline.svg` draws where that run's time went, per node and per phase; they are also the",
    "`timelines-<set>-<shard>` artifacts, linked from each shard's own summary.",
    "",
]
summary = os.environ.get("GITHUB_STEP_SUMMARY")
if summary:
    with open(summary, "a") as out:
        out.write("\n".join(lines))
print("\n".join(lines))
sys.exit(1 if failed or missing else 0)
