"""The nightly's summary: one table of every shard's report, written to the run's summary page.

Run by the nightly's `summary` job, by kthw-tests.yml (a user's run) and by scripts/rehearse-nightly, so the
rehearsal prints what the nightly would. Each shard's report is a directory JUNIT_DIR/junit-<set>-<shard>/
(scripts/nightly-shard `run` writes it under target/kthw-reports/; the summary job downloads them all with
`merge-multiple`) holding:
  junit.xml     nextest's JUnit report: only the tests that ran (nextest leaves out the ones it skipped)
  skipped.txt   the tests the shard skipped because they are #[ignore]d, one a line
The reports expected are junit-<set>-<n> for every set in SETS and n in 1..SHARDS, or the names in REPORTS.
Exits 1 when a test failed or an expected report is missing.
"""

import os
import sys
import xml.etree.ElementTree as ET

root = os.environ.get("JUNIT_DIR", "junit")
if os.environ.get("REPORTS"):
    expected = os.environ["REPORTS"].split()
else:
    shards = int(os.environ["SHARDS"])
    expected = [f"junit-{s}-{n}" for s in os.environ["SETS"].split() for n in range(1, shards + 1)]

rows, failed, missing = [], [], []
for name in expected:
    label = name.removeprefix("junit-")
    path = os.path.join(root, name, "junit.xml")
    if not os.path.exists(path):
        missing.append(label)
        rows.append(f"| {label} | no report | | | |")
        continue
    total = bad = skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            bad += 1
            failed.append(f"- {label}: `{case.get('classname')}` {case.get('name')}")
        elif case.find("skipped") is not None:
            skipped += 1
    listed = os.path.join(root, name, "skipped.txt")
    ignored = 0
    if os.path.exists(listed):
        with open(listed) as f:
            ignored = sum(1 for line in f if line.strip())
    rows.append(f"| {label} | {total + ignored} | {total - bad - skipped} | {bad} | {skipped + ignored} |")

lines = [
    "## kthw tests: every report",
    "",
    "| report | tests | passed | failed | skipped |",
    "|---|---|---|---|---|",
    *rows,
    "",
    "Skipped: the tests a shard did not run because they are `#[ignore]`d (its `skipped.txt`) or that skipped",
    "themselves in JUnit.",
    "",
]
if failed:
    lines += ["### Failed", "", *failed, ""]
if missing:
    lines += [f"Reports missing (the job failed before its tests ended): {missing}", ""]
lines += [
    "Failure bundles are the `bundles-*` artifacts; each scenario's report and outputs (the Cilium",
    "connectivity test's JUnit among them) are `scenarios-*`. Each bundle's `run/timeline.svg` draws where",
    "that run's time went, per node and per phase; in the nightly they are also the `timelines-*` artifacts,",
    "linked from each shard's own summary.",
    "",
]
summary = os.environ.get("GITHUB_STEP_SUMMARY")
if summary:
    with open(summary, "a") as out:
        out.write("\n".join(lines))
print("\n".join(lines))
sys.exit(1 if failed or missing else 0)
