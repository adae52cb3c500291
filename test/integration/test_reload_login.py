"""A RELOAD while a client is in the middle of its password exchange: the exchange
goes on with the secret it started with (the old auth file is not freed under it)."""

import pgt


def test_reload_in_the_middle_of_a_scram_login_does_not_fail_it(pgtenant):
    users = dict(pgt.DEFAULT_USERS)
    users["admin"] = "adminpass"
    p = pgtenant({"admin_users": "admin"}, users=users)
    for _ in range(3):
        c = pgt.RawConn(p.port)
        scram = c._scram

        def scram_after_reload(password, scram=scram):
            a = pgt.RawConn(p.port)
            a.startup("admin", "pgtenant", "adminpass")
            a.query("RELOAD")
            a.close()
            scram(password)

        c._scram = scram_after_reload
        c.startup("app", "acme", pgt.APP_PASSWORD)
        assert c.query("select 1") == [["1"]]
        c.close()
    assert p.alive()
