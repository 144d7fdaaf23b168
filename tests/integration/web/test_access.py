"""Who may open the status page: admin tokens yes; no token, a wrong one, an agent's, no."""

from __future__ import annotations

import subprocess

from tests.integration.web.fleet import SCRIPT, build_fleet
from tests.support.web import WebServer


def test_the_page_without_a_token_is_refused_with_the_sign_in_form(web: WebServer) -> None:
    answer = web.get("/")
    assert answer.status == 401
    assert 'name="token"' in answer.text
    site = web.get("/sites/anything")
    assert site.status == 401
    assert 'value="/sites/anything"' in site.text  # back there after signing in


def test_an_agent_credential_is_refused_as_bearer_and_as_cookie(web: WebServer) -> None:
    creds = build_fleet(web)
    agent = creds["shop-ok-1"]
    as_bearer = web.get("/", token=agent)
    assert as_bearer.status == 403
    assert "agent credential cannot open the status page" in as_bearer.text
    assert "shop-ok-1" not in as_bearer.text
    assert web.get("/sites/shop-ok-1", token=agent).status == 403
    assert web.get("/", cookie=f"storesafe_session={agent}").status == 403
    assert web.post_form("/login", {"token": agent}).status == 403


def test_a_wrong_admin_token_and_a_bad_header_are_refused(web: WebServer) -> None:
    good = web.handle.admin_token
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert web.get("/", token=forged).status == 401
    assert web.get("/", token="ssadm_0000000000000000_nosuchsecret").status == 401
    answer = web.get("/", token=good)
    assert answer.status == 200


def test_sign_in_sets_a_strict_httponly_secure_cookie_that_opens_the_page(web: WebServer) -> None:
    answer = web.post_form("/login", {"token": web.handle.admin_token, "next": "/?status=ok"})
    assert answer.status == 303
    assert answer.headers["Location"] == "/?status=ok"
    cookie = answer.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite"} <= attributes
    assert "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    assert web.get("/", cookie=session).status == 200
    assert web.post_form("/login", {"token": "nonsense"}).status == 401
    offsite = web.post_form("/login", {"token": web.handle.admin_token, "next": "//evil.example"})
    assert offsite.headers["Location"] == "/"


def test_site_names_and_problem_texts_are_escaped(web: WebServer) -> None:
    build_fleet(web)
    token = web.handle.admin_token
    fleet = web.get("/?status=failing", token=token)
    assert fleet.status == 200
    assert SCRIPT not in fleet.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in fleet.text
    site = web.get("/sites/shop-ok-1", token=token)
    assert SCRIPT not in site.text and "&lt;script&gt;" in site.text  # its hostname
    assert fleet.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_bad_query_parameters_and_unknown_sites_get_precise_answers(web: WebServer) -> None:
    token = web.handle.admin_token
    bad = web.get("/?status=<b>sunny</b>", token=token)
    assert bad.status == 400
    assert "is not one of" in bad.text and "<b>sunny</b>" not in bad.text
    assert web.get("/?sort=price", token=token).status == 400
    assert web.get("/?page=0", token=token).status == 400
    assert web.get("/sites/no-such-site", token=token).status == 404


def test_metrics_and_healthz_need_no_token(web: WebServer) -> None:
    assert web.get("/metrics").status == 200
    assert web.get("/healthz").status == 200


def test_a_revoked_admin_token_is_refused_at_once(web: WebServer) -> None:
    from tests.support.server import BIN

    def admin_token(*args: str) -> str:
        cmd = [str(BIN / "storesafe-server"), "admin-token", *args]
        cmd += ["--data-dir", str(web.handle.data_dir)]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    token = admin_token("create", "--name", "wallboard")
    assert web.get("/", token=token).status == 200
    admin_token("revoke", "wallboard")
    refused = web.get("/", token=token)
    assert refused.status == 401
    assert "unknown or revoked" in refused.text
