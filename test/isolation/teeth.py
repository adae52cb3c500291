#!/usr/bin/python3
"""
Proof of teeth: runs isocheck on narrowed mixes (tenants and ops chosen so that
one known fault class is the only way to fail) and prints, per fault, whether it
was found, the failure class, the seed and the seconds to find it. A baseline
with the same tenants and only plain ops must stay clean for the attribution
to mean anything.

    PGTENANT_BIN=./pgtenant test/isolation/teeth.py [--seconds 20] [--only 1,2]
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

EXPERIMENTS = [
    # (id, fault, config, tenants, ops, faults?)
    ("base", "baseline: plain statements and transactions", "txn", "s1,s2,d1", "probe,insert,tx_commit,multi_statement,pipelined", False),
    ("1", "failing COMMIT undoes the state SET", "txn", "s1,s2", "probe,tx_failing_commit", False),
    ("1p", "PREPARE TRANSACTION (accepted or refused)", "txn", "s1,s2", "probe,tx_prepare", False),
    ("2", "ROLLBACK AND CHAIN keeps previous search_path", "txn", "s1,s2", "probe,tx_chain", False),
    ("3a", "ROLLBACK; SELECT in one unit", "txn", "s1,s2", "probe,rollback_then_select", False),
    ("3b", "procedure/DO that commits or rolls back", "txn", "s1,s2", "probe,procedure", False),
    ("4", "unit starting with DISCARD gets no state", "txn", "s1,s2", "probe,discard", False),
    ("5", "database tenant on the schema tenants' database", "txn", "s1,d0", "probe,insert,guard", False),
    ("6", "schema tenant whose schema does not exist", "txn", "s1,sx", "probe", False),
    ("8", "named statement re-prepared never marks", "txn", "s1,s2", "probe,named_statement,named_state", False),
    ("9", "failing DISCARD ALL ignored", "txn", "s1,s2", "probe,many_temps,temp_table,listen_notify", False),
    ("10", "U&\"search\\005fpath\" passes the guard", "txn", "s1,s2", "probe,guard", False),
    ("11", "client vanishing while unread leaves server active", "txn", "s1,s2,s3,s1,s2,s3", "probe,vanish_unread,insert", "want:server-leak|client-leak|starved|hang"),
    ("12", "malformed message after a queued state SET", "txn", "s1,s2,s3,s1", "probe,malformed_first,insert", False),
    ("13", "BEGIN; SELECT 1/0 as first unit", "txn", "s1,s2,d1", "probe,first_unit_error", "want:rollback-failed|stray-abort|hang"),
    ("14", "COPY FROM STDIN over the extended protocol", "txn", "s1,s2", "probe,copy", False),
    ("15", "DEALLOCATE ALL wipes pgtenant's statements", "txn", "s1,s2", "named_statement,sql_prepare", False),
    ("16", "invalid startup parameter / TimeZone leak", "txn", "s1,s2", "probe,reconnect", False),
    ("21", "server connection dies under a client", "txn", "s1,s2,d1", "probe,tx_commit,large_result", "want+faults:57P01|08006|closed-without|desync"),
    ("sess", "session mode, full mix", "session", "", "", True),
    ("repl", "replica routing, plain reads", "replica", "s1,s2,h1", "probe,insert,tx_commit", False),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    rows = []
    for eid, what, cfg, tenants, ops, faults in EXPERIMENTS:
        if only and eid not in only:
            continue
        cmd = [sys.executable, os.path.join(HERE, "isocheck.py"), "--config", cfg, "--seed",
               str(args.seed), "--seconds", str(args.seconds), "--stop-on-failure",
               "--log-tail", "0"]
        if tenants:
            cmd += ["--tenants", tenants]
        if ops:
            cmd += ["--ops", ops]
        want = None
        if isinstance(faults, str):  # "want:RE" (no chaos) or "want+faults:RE"
            want = re.compile(faults.split(":", 1)[1])
            cmd.remove("--stop-on-failure")
            if not faults.startswith("want+faults"):
                cmd.append("--no-faults")
        elif not faults:
            cmd.append("--no-faults")
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 200)
        out = p.stdout
        m = re.search(r"FAILURES: (.*)", out)
        sigs = re.findall(r"^\s+\d+\s+([\d.]+)s\s+(\[.*)$", out, re.M)
        if want is not None:
            sigs = [x for x in sigs if want.search(x[1])]
            m = bool(sigs)
        sig = None
        if sigs:
            t, text = min(sigs, key=lambda x: float(x[0]))
            sig = type("S", (), {"group": lambda self, i, t=t, text=text: t if i == 1 else text})()
        found = "yes" if m else "no"
        first = sig.group(1) + "s" if sig else "-"
        detail = sig.group(2)[:150] if sig else ""
        rows.append((eid, what, found, first, detail))
        print(f"{eid:5} {found:3} {first:>7}  {what}\n              {detail}", flush=True)
        with open(os.path.join(os.environ.get("TEETH_OUT", "/tmp"), f"teeth-{eid}.txt"), "w") as f:
            f.write(" ".join(cmd) + "\n" + out + p.stderr)


if __name__ == "__main__":
    main()
