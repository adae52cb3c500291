import sys, os
sys.path.insert(0, "/work/main/test/integration")
from test_replicas import *  # noqa

def test_probe(pg, pgtenant, reps):
    r = reps[0]
    with r.connect(options="-c default_transaction_isolation=serializable") as c:
        try:
            print("replica direct:", c.execute("select pg_is_in_recovery(), current_setting('transaction_isolation')").fetchone())
        except Exception as e:
            print("replica direct err:", e)
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect(options="-c default_transaction_isolation=serializable") as c:
        try:
            print("via pgtenant:", c.execute("select pg_is_in_recovery(), current_setting('transaction_isolation')").fetchone())
        except Exception as e:
            print("via pgtenant err:", e)
    print(p.log()[-3000:])
