#!/usr/bin/env python3
"""Prints a table of a ctest run from its JUnit file (ctest --output-junit): one row per test with its result
(PASS, FAIL, SKIP with the reason GoogleTest gave) and seconds, then totals, with the GPU tests (suites whose
name contains Cuda or Gpu) counted separately. Used by scripts/gpu-check."""
import argparse
import re
import sys
import xml.etree.ElementTree as ET


def result_of(case):
    status = case.get("status", "")
    out = "".join(e.text or "" for e in case.iter("system-out"))
    if case.find("failure") is not None or status == "fail":
        return "FAIL", ""
    if case.find("skipped") is not None or status in ("skipped", "notrun", "disabled"):
        m = re.search(r"Skipped\s*\n?(.*)", out) or re.search(r"\[  SKIPPED \] *(.*)", out)
        return "SKIP", (m.group(1).strip()[:60] if m else "")
    return "PASS", ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("junit")
    ap.add_argument("--build-seconds", type=int)
    ap.add_argument("--test-seconds", type=int)
    a = ap.parse_args()
    rows = []
    for case in ET.parse(a.junit).getroot().iter("testcase"):
        res, why = result_of(case)
        rows.append((case.get("name", "?"), res, float(case.get("time", "0") or 0), why))
    if not rows:
        print("no tests in", a.junit)
        return 1
    w = max(len(r[0]) for r in rows)
    print(f"{'test':<{w}}  result  seconds  note")
    print("-" * (w + 26))
    for name, res, t, why in rows:
        print(f"{name:<{w}}  {res:<6}  {t:7.2f}  {why}")
    print("-" * (w + 26))

    def counts(sel):
        c = {"PASS": 0, "FAIL": 0, "SKIP": 0}
        for r in sel:
            c[r[1]] += 1
        return c

    gpu = [r for r in rows if re.search(r"cuda|gpu", r[0].split(".")[0], re.I)]
    for label, sel in (("all tests", rows), ("GPU tests", gpu)):
        c = counts(sel)
        print(f"{label}: {len(sel)} ({c['PASS']} passed, {c['FAIL']} failed, {c['SKIP']} skipped)")
    if a.build_seconds is not None:
        print(f"build: {a.build_seconds} s, tests: {a.test_seconds} s")
    return 1 if counts(rows)["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
