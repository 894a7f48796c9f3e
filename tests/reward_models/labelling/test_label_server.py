"""The Flask app through its test client: the page, the API, validation, tokens, headers."""

import pytest
from label_helpers import PAIRS

from reward_models.labelling import LabelStore
from reward_models.labelling.serve import LabelServer, is_loopback
from reward_models.labelling.server import CONTENT_SECURITY_POLICY, TOKEN_COOKIE, TOKEN_HEADER, create_app


@pytest.fixture
def store(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.import_pairs(PAIRS)
    return store


@pytest.fixture
def client(store):
    return create_app(store, per_pair=1).test_client()


def test_page_and_assets_are_served_with_a_restrictive_csp(client):
    page = client.get("/")
    assert page.status_code == 200 and b'<script src="/static/app.js"' in page.data
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["X-Frame-Options"] == "DENY"
    script = client.get("/static/app.js").data.decode()
    assert "textContent" in script and "innerHTML" not in script.replace("innerHTML would throw", "")
    assert client.get("/static/app.css").status_code == 200


def test_next_answer_undo_progress_round_trip(client, store):
    shown = client.post("/api/next", json={"annotator": "ann"}).get_json()
    pair = shown["pair"]
    assert pair["id"] == "p0" and {pair["left"], pair["right"]} == {PAIRS[0].a, PAIRS[0].b}
    assert shown["you"] == {"answered": 0, "remaining": 5}
    assert shown["progress"] == {"answers": 0, "target": 5, "pairs": 5, "complete_pairs": 0, "done": False}
    saved = client.post("/api/answer", json={"annotator": "ann", "pair_id": "p0", "choice": "left"})
    assert saved.status_code == 200 and saved.get_json()["progress"]["answers"] == 1
    answer = store.answers()[0]
    left_text = PAIRS[0].a if answer.shown_left == "a" else PAIRS[0].b
    assert left_text == pair["left"] and answer.verdict == answer.shown_left  # what was shown left won
    assert client.post("/api/next", json={"annotator": "ann"}).get_json()["pair"]["id"] == "p1"
    undone = client.post("/api/undo", json={"annotator": "ann"}).get_json()
    assert undone == {"undone": {"pair_id": "p0", "choice": "left"}} and store.answers() == []
    assert client.post("/api/next", json={"annotator": "ann"}).get_json()["pair"] == pair
    assert client.get("/api/progress").get_json()["answers"] == 0


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "malformed body"),
        ({"json": ["a", "list"]}, 400, "expected a JSON object"),
        ({"data": "annotator=ann", "content_type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
        ({"json": {"annotator": "ann", "pair_id": "p0"}}, 400, "missing ['choice']"),
        ({"json": {"annotator": "ann", "pair_id": "p0", "choice": "left", "x": 1}}, 400, "unknown ['x']"),
        ({"json": {"annotator": "ann", "pair_id": "p0", "choice": "best"}}, 400, "choice 'best' is invalid"),
        ({"json": {"annotator": "ann", "pair_id": 3, "choice": "left"}}, 400, "must be strings"),
        ({"json": {"annotator": "", "pair_id": "p0", "choice": "left"}}, 400, "annotator"),
        ({"json": {"annotator": "ann", "pair_id": "nope", "choice": "left"}}, 404, "unknown pair id 'nope'"),
        ({"json": {"annotator": "ann", "pair_id": "p3", "choice": "left"}}, 409, "was not shown to 'ann'"),
        ({"data": "x" * 70_000, "content_type": "application/json"}, 413, ""),
    ],
)
def test_bad_answers_get_a_4xx_with_a_message_and_store_nothing(client, store, kwargs, status, message):
    client.post("/api/next", json={"annotator": "ann"})  # p0 is on ann's screen
    response = client.post("/api/answer", **kwargs)
    assert response.status_code == status
    assert message in response.get_json()["error"]
    assert store.answers() == []


def test_answering_twice_is_a_conflict(client, store):
    client.post("/api/next", json={"annotator": "ann"})
    body = {"annotator": "ann", "pair_id": "p0", "choice": "tie"}
    assert client.post("/api/answer", json=body).status_code == 200
    again = client.post("/api/answer", json={**body, "choice": "left"})
    assert again.status_code == 409 and "already answered" in again.get_json()["error"]
    assert [a.choice for a in store.answers()] == ["tie"]


def test_without_a_token_only_loopback_hosts_are_served(client):
    assert client.get("/", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8000"}).status_code == 200
    rebound = client.post("/api/next", json={"annotator": "ann"}, headers={"Host": "evil.example:8000"})
    assert rebound.status_code == 403 and "only on localhost" in rebound.get_json()["error"]


def test_a_token_is_required_on_every_request(store):
    client = create_app(store, per_pair=1, token="s3cret-token").test_client()
    for path in ("/", "/static/app.js", "/api/progress"):
        refused = client.get(path, headers={"Host": "192.168.1.5:8000"})
        assert refused.status_code == 401 and "access token" in refused.get_json()["error"]
    assert client.post("/api/next", json={"annotator": "ann"}).status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert store.answers() == [] and store.next_pair("probe") is not None  # the refused call assigned nothing
    # the token in the URL once: a redirect that drops it from the address bar and sets a cookie
    first = client.get("/?token=s3cret-token", headers={"Host": "192.168.1.5:8000"})
    assert first.status_code == 303 and first.headers["Location"] == "/"
    cookie = first.headers["Set-Cookie"]
    assert (
        cookie.startswith(f"{TOKEN_COOKIE}=s3cret-token")
        and "HttpOnly" in cookie
        and "SameSite=Strict" in cookie
    )
    lan = {"Host": "192.168.1.5:8000"}
    assert client.get("/", headers=lan).status_code == 200  # the test client sends the cookie back
    assert client.post("/api/next", json={"annotator": "ann"}, headers=lan).status_code == 200
    fresh = create_app(store, per_pair=1, token="s3cret-token").test_client()
    assert fresh.get("/api/progress", headers={TOKEN_HEADER: "s3cret-token"}).status_code == 200


def test_label_server_requires_a_token_off_localhost(store):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    exposed = LabelServer(None, store.path, host="0.0.0.0", port=0)
    assert exposed.token and len(exposed.token) >= 24 and exposed.url.endswith(f"?token={exposed.token}")
    assert LabelServer(None, store.path).token is None
    assert LabelServer(None, store.path, token="given-token").token == "given-token"
    with pytest.raises(ValueError, match="port=70000"):
        LabelServer(None, store.path, port=70000)
    with pytest.raises(ValueError, match="token is invalid"):
        LabelServer(None, store.path, token="short")
    with pytest.raises(ValueError, match="holds no pairs"):
        LabelServer(None, store.path.parent / "empty.sqlite")
