"""The HTTP API through FastAPI's TestClient: every endpoint, and every kind of bad input is a 4xx JSON answer.

The client re-raises any exception the app did not turn into a 4xx, so a bug shows as a failing
test, never as a passing 500.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile

import numpy as np
import pytest
from PIL import Image

from serve_helpers import LABELS, photo, same_predictions as _same, tiny_classifier

from fastapi.testclient import TestClient  # noqa: E402  (after serve_helpers' importorskip)

from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.serve.app import ZeroShotService, create_app
from kgzsl.serve.inputs import ServeLimits

from badfiles import corpus_bytes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clf(tiny_run) -> ZeroShotClassifier:
    return tiny_classifier(tiny_run)


@pytest.fixture(scope="module")
def client(clf) -> TestClient:
    return TestClient(create_app(clf))


@pytest.fixture(scope="module")
def cat() -> bytes:
    return photo("chelsea.png").read_bytes()


def _json_request(image: bytes, **parameters) -> dict:
    return {"inputs": base64.b64encode(image).decode("ascii"), "parameters": parameters}


def _refused(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    # "error" repeats "detail": Hugging Face's clients show that key
    assert set(body) == {"detail", "kind", "error"} and body["detail"] and body["error"] == body["detail"], body
    for word in words:
        assert word in body["detail"], body
    return body


def test_health_names_the_run(client, clf):
    body = client.get("/health").json()
    assert body["run"] == "tiny" and body["backbone"] == "efficientnet-lite0" and body["model"] == "dgp"
    assert body["nodes"] == len(clf.wnids) and body["abstain"] is False
    assert body["limits"]["max_pixels"] == ServeLimits().max_pixels


def test_predict_json_and_form_equal_the_library(client, clf, cat):
    expected = clf.predict(photo("chelsea.png"), LABELS, top_k=3)
    got = client.post("/predict", json=_json_request(cat, candidate_labels=LABELS, top_k=3))
    assert got.status_code == 200 and _same(got.json(), expected)
    assert [p["score"] for p in expected] == sorted((p["score"] for p in expected), reverse=True)
    assert expected[0]["label"] == "tabby" and set(expected[0]) == {"label", "wnid", "synset", "score"}
    form = client.post("/predict", files={"image": ("cat.png", cat, "image/png")},
                       data={"candidate_labels": ", ".join(LABELS), "top_k": "3"})
    assert form.status_code == 200 and _same(form.json(), expected)
    data_url = _json_request(cat, candidate_labels=LABELS, top_k=3)
    data_url["inputs"] = "data:image/png;base64," + data_url["inputs"]
    assert _same(client.post("/predict", json=data_url).json(), expected)


def test_without_top_k_every_candidate_as_the_hugging_face_api(client, clf, cat):
    labels = LABELS + ["goldfish", "great white shark", "hammerhead"]
    body = client.post("/predict", json=_json_request(cat, candidate_labels=labels)).json()
    assert len(body) == len(labels) > 5 and _same(body, clf.predict(photo("chelsea.png"), labels))


def test_predict_without_labels_scores_every_class(client, clf, cat):
    body = client.post("/predict", json={"inputs": base64.b64encode(cat).decode()}).json()
    assert _same(body, clf.predict(photo("chelsea.png"), top_k=5)) and len(body) == 5


def test_abstain_returns_predicts_record(clf, cat, tiny_run):
    calibrated = ZeroShotClassifier.load(tiny_run, device="cpu", backbone=clf.backbone)
    best = clf.predict(photo("chelsea.png"), LABELS, abstain=False)
    calibrated.set_abstain({"threshold": 1e6})  # no logit reaches it: every image is "none of these"
    client = TestClient(create_app(calibrated))
    assert client.get("/health").json()["abstain"] is True
    record = client.post("/predict", json=_json_request(cat, candidate_labels=LABELS, abstain=True)).json()
    assert record["abstained"] is True and record["threshold"] == 1e6 and _same(record["predictions"], best[:5])
    assert set(record) == {"predictions", "abstained", "max_logit", "threshold"}
    plain = client.post("/predict", files={"image": cat}, data={"candidate_labels": ",".join(LABELS)})
    assert _same(plain.json(), best)  # abstain not asked for: the plain list


def test_abstain_on_an_uncalibrated_run_is_a_400(client, cat):
    _refused(client.post("/predict", json=_json_request(cat, abstain=True)), 400, "kgzsl calibrate")


def test_explain_json_and_png(client, cat):
    result = client.post("/explain", json=_json_request(cat, label="tabby", top_k=3))
    assert result.status_code == 200
    body = result.json()
    assert body["label"] == "tabby" and body["synset"] == "tabby.n.01" and len(body["similar_seen"]) == 3
    assert body["image_evidence"][0]["synset"] in {"tabby.n.01", "tiger_cat.n.02", "egyptian_cat.n.01"}
    png = client.post("/explain?format=png", files={"image": cat}, data={"label": "tabby"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    _refused(client.post("/explain", json=_json_request(cat)), 400, "label", "got none")
    _refused(client.post("/explain", json=_json_request(cat, label="tabby,tench")), 400, "one label")
    _refused(client.post("/explain", json=_json_request(cat, label="zzqx")), 400, "unknown label")
    _refused(client.post("/explain?format=gif", json=_json_request(cat, label="tabby")), 422, "format")


def test_explain_gets_the_label_so_the_image_picks_its_sense_as_in_predict(client, cat, monkeypatch):
    import kgzsl.tasks.explain as explain_module

    asked = []
    real = explain_module.explain
    monkeypatch.setattr(explain_module, "explain", lambda clf, image, label, top_k: asked.append(label) or
                        real(clf, image, label, top_k=top_k))
    assert client.post("/explain", json=_json_request(cat, label="Tabby")).status_code == 200
    assert asked == ["Tabby"]  # the word, not its first sense's wnid: a word of several senses is chosen by the image


def test_label_suggestions(client):
    hits = client.get("/labels", params={"q": "tab"}).json()
    assert hits[0] == {"label": "tabby", "synset": "tabby.n.01", "wnid": "n02123045", "lemma": "tabby",
                       "definition": "a cat with a grey or tawny coat mottled with black"}  # to tell senses apart
    assert client.get("/labels", params={"q": "n0212304"}).json()[0]["wnid"] == "n02123045"
    assert len(client.get("/labels", params={"q": "t", "limit": 2}).json()) == 2
    assert client.get("/labels", params={"q": "zzqx"}).json() == []
    _refused(client.get("/labels"), 422, "q")
    _refused(client.get("/labels", params={"q": "cat", "limit": 0}), 422, "limit")


def test_a_label_added_by_a_prediction_is_suggested_next(tiny_run, tmp_path, cat):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "run")
    own = TestClient(create_app(ZeroShotClassifier.load(tmp_path / "run", device="cpu")))
    assert not any(h["synset"] == "pagoda.n.01" for h in own.get("/labels", params={"q": "pagoda"}).json())
    answer = own.post("/predict", files={"image": cat}, data={"candidate_labels": "pagoda,cat"})
    assert answer.status_code == 200 and {p["synset"] for p in answer.json()} == {"pagoda.n.01", "cat.n.01"}
    assert own.get("/labels", params={"q": "pagoda"}).json()[0]["synset"] == "pagoda.n.01"


def test_page_assets_and_openapi_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "https://" not in page.text
    for asset in ("app.js", "style.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and "http://" not in response.text and "https://" not in response.text
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/explain", "/labels", "/health"} <= set(schema["paths"])
    _refused(client.get("/docs"), 404)  # the CDN-loaded docs page is left out
    _refused(client.get("/nothing-here"), 404)


@pytest.mark.parametrize("name", sorted(corpus_bytes()))
def test_the_bad_file_corpus(client, name):
    data = corpus_bytes()[name]
    response = client.post("/predict", files={"image": (name, data)}, data={"candidate_labels": "tabby,tench"})
    if name.startswith("ok_"):
        assert response.status_code == 200 and response.json()[0]["label"] in {"tabby", "tench"}
    else:
        _refused(response, 400, "cannot load image")


def test_pixel_and_size_limits_are_configurable(clf):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 100, 3), dtype=np.uint8)).save(buf, "PNG")
    image = buf.getvalue()
    client = TestClient(create_app(clf, ServeLimits(max_pixels=10_000, max_body_bytes=len(image) + 2_000)))
    _refused(client.post("/predict", files={"image": image}), 400, "max_pixels=10,000")
    big = image * 2
    _refused(client.post("/predict", files={"image": big}), 413, f"{len(image) + 2_000:,} bytes")
    body = json.dumps(_json_request(big)).encode()

    def chunks():  # no Content-Length: the limit holds while the body arrives
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    _refused(client.post("/predict", content=chunks(), headers={"content-type": "application/json"}), 413)
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("request_kwargs, status, words", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, ["not valid JSON"]),
    ({"json": ["a list"]}, 400, ["inputs"]),
    ({"json": {"inputs": 12}}, 400, ["inputs"]),
    ({"json": {"inputs": "bm90IGFuIGltYWdl!!"}}, 400, ["base64"]),
    ({"json": {"inputs": "/etc/passwd"}}, 400, ["base64"]),  # a path is not an image, and is never opened
    ({"json": {"inputs": "https://example.com/cat.jpg"}}, 400, ["is a URL: this server fetches nothing"]),
    ({"json": {"inputs": base64.b64encode(b"/etc/passwd").decode()}}, 400, ["cannot load image"]),
    ({"json": {"inputs": "", "parameters": {}}}, 400, ["0 bytes"]),
    ({"json": {"inputs": "aGk=", "parameters": [1]}}, 400, ["parameters"]),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, ["application/json"]),
    ({"content": b"hello"}, 415, ["content type"]),
    ({}, 415, ["a request without a body", "application/json"]),
    ({"content": b"x", "headers": {"content-type": "multipart/form-data"}}, 400, ["boundary"]),
    ({"content": b"--b\r\nnonsense", "headers": {"content-type": "multipart/form-data; boundary=b"}}, 400, []),
    ({"data": {"candidate_labels": "tabby"}, "files": {"other": b"x"}}, 400, ["\"image\""]),
])
def test_malformed_requests(client, request_kwargs, status, words):
    _refused(client.post("/predict", **request_kwargs), status, *words)


@pytest.mark.parametrize("parameters, words", [
    ({"candidate_labels": []}, ["empty"]),
    ({"candidate_labels": ""}, ["empty"]),
    ({"candidate_labels": 3}, ["list of strings"]),
    ({"candidate_labels": ["tabby", 3]}, ["list of strings"]),
    ({"candidate_labels": [f"label{i}" for i in range(101)]}, ["at most 100"]),
    ({"candidate_labels": ["x" * 101]}, ["longer than 100"]),
    ({"candidate_labels": ["tabby", ""]}, ["empty label"]),
    ({"candidate_labels": ["tabby", "catt"]}, ["unknown label 'catt'", "did you mean cat"]),
    ({"candidate_labels": ["tabby", "standing desk"]}, ["unknown label 'standing desk'", "`kgzsl add-concept RUN "
                                                        "'standing desk' --parents ...` (on the server, RUN being "
                                                        "the run it serves; the server sees it at the next "
                                                        "request)"]),
    ({"candidate_labels": ["tabby", "tabby.n.01"]}, ["both resolve"]),
    ({"candidate_labels": ["n99999999"]}, ["n99999999"]),
    ({"top_k": 0}, ["top_k"]),
    ({"top_k": "three"}, ["top_k"]),
    ({"top_k": True}, ["top_k"]),
    ({"abstain": "maybe"}, ["abstain"]),
    ({"candidate_labels": [1, None]}, ["list of strings", "item 0 is int 1", "item 1 is null"]),
    ({"candidate_labels": {"a": 1}}, ["list of strings", "got dict"]),
    ({"top_k": "2"}, ["top_k", "not a string", "'2'"]),  # as the Python API: an int, not its text
])
def test_bad_parameters(client, cat, parameters, words):
    body = _refused(client.post("/predict", json=_json_request(cat, **parameters)), 400, *words)
    assert body["kind"] in {"RequestError", "LabelError"}


def test_an_error_that_adding_a_concept_cannot_fix_gives_no_such_advice(client, cat):
    body = _refused(client.post("/predict", json=_json_request(cat, candidate_labels=["tabby", "tabby"])), 400,
                    "both resolve")
    assert "add-concept" not in body["detail"] and "restart" not in body["detail"]


@pytest.mark.parametrize("query", ["candidate_labels=tabby,tench", "top_k=1", "labels=tabby"])
def test_query_parameters_are_refused_not_ignored(client, cat, query):
    """``/predict?candidate_labels=...`` used to rank every class: the query string was never read."""
    name = query.split("=")[0]
    body = _refused(client.post(f"/predict?{query}", files={"image": cat}), 400, "unknown query parameter",
                    repr(name))
    assert ("JSON body" in body["detail"]) and ("accepted" in body["detail"]) == (name == "labels")
    assert client.post("/explain?format=json", files={"image": cat}, data={"label": "tabby"}).status_code == 200


def test_a_form_field_may_hold_a_json_list_of_labels(client, cat):
    want = client.post("/predict", files={"image": cat}, data={"candidate_labels": "tabby,tench"}).json()
    got = client.post("/predict", files={"image": cat}, data={"candidate_labels": '["tabby", "tench"]'})
    assert got.status_code == 200 and _same(got.json(), want)
    _refused(client.post("/predict", files={"image": cat}, data={"candidate_labels": '["tabby", 1]'}), 400,
             "item 1 is int 1")
    _refused(client.post("/predict", files={"image": cat}, data={"candidate_labels": "[tabby, tench]"}), 400,
             "looks like a JSON list", "comma-separated")


def test_flags_take_json_numbers_as_the_form_takes_their_text(client, cat):
    for value in (0, False, "0", "no"):
        assert client.post("/predict", json=_json_request(cat, candidate_labels=["tabby"], abstain=value)
                           ).status_code == 200
    _refused(client.post("/predict", json=_json_request(cat, candidate_labels=["tabby"], abstain=2)), 400,
             "abstain must be true or false")


def test_a_request_can_leave_its_list_unfitted_on_a_calibrated_run(tiny_run, tmp_path, cat):
    import shutil

    import torch

    from kgzsl.tasks.calibrate import calibrate_scores

    shutil.copytree(tiny_run, tmp_path / "run")
    clf = tiny_classifier(tmp_path / "run")
    rows = torch.nn.functional.normalize(clf.backbone.classifier_rows()[:, :-1], dim=1)
    at = {w: i for i, w in enumerate(clf.backbone.wnids)}
    g = torch.Generator().manual_seed(3)
    calibrate_scores(clf, torch.cat([torch.rand(20, rows.size(1), generator=g) * 2 + 12 * rows[at[w]]
                                     for w in ("n02123045", "n02099601")]), save=False)
    client = TestClient(create_app(clf))
    labels = ["cat", "dog"]
    fitted = client.post("/predict", json=_json_request(cat, candidate_labels=labels)).json()
    unfitted = client.post("/predict", files={"image": cat}, data={"candidate_labels": "cat,dog", "adapt": "false"})
    assert unfitted.status_code == 200
    assert _same(unfitted.json(), clf.predict(photo("chelsea.png"), labels, adapt=False))
    assert _same(fitted, clf.predict(photo("chelsea.png"), labels)) and not _same(fitted, unfitted.json())
    assert clf.adapt_to_images  # the request changed nothing for the others
    _refused(client.post("/predict", json=_json_request(cat, candidate_labels=labels, adapt="maybe")), 400, "adapt")


def test_uploads_never_touch_the_disk(client, monkeypatch, tmp_path):
    """A multipart upload far above python-multipart's 1 MiB spooling threshold stays in memory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (800, 700, 3), dtype=np.uint8)).save(buf, "PNG")
    assert len(buf.getvalue()) > 1_500_000
    response = client.post("/predict", files={"image": ("big.png", buf.getvalue())}, data={"candidate_labels": "tabby"})
    assert response.status_code == 200 and list(tmp_path.iterdir()) == []


def test_form_top_k_is_text_read_as_a_number(client, cat):
    answer = client.post("/predict", files={"image": cat}, data={"candidate_labels": "tabby,tench,airliner",
                                                                  "top_k": " 2 "})
    assert answer.status_code == 200 and len(answer.json()) == 2
    for bad in ("three", "2.0", "-1", "\u00b2"):
        _refused(client.post("/predict", files={"image": cat}, data={"top_k": bad}), 400, "top_k")


@pytest.mark.parametrize("endpoint, request_kwargs, words", [
    ("/predict", {"data": {"candidate_label": "tabby,tench"}},
     ["unknown form field", "'candidate_label'", "did you mean candidate_labels?",
      "accepted: image, candidate_labels, top_k, abstain"]),
    ("/predict", {"data": {"foo": "bar", "top_k": "2"}}, ["unknown form field", "'foo'", "accepted:"]),
    ("/predict", {"json": {"parameters": {"candidate_label": ["tabby"]}}},
     ["unknown key in \"parameters\"", "'candidate_label'", "did you mean candidate_labels?"]),
    ("/predict", {"json": {"candidate_labels": ["tabby"]}},
     ["unknown key in the JSON body", "'candidate_labels'", "under \"parameters\"", "accepted: inputs, parameters"]),
    ("/predict", {"json": {"input": "x"}}, ["'input'", "did you mean inputs?"]),
    ("/predict", {"json": {"extras": {}, "foo": 1}}, ["unknown keys in the JSON body", "'extras', 'foo'"]),
    ("/predict", {"json": {"parameters": {"hypothesis_template": "a photo of {}"}}},
     ["'hypothesis_template'", "not text prompts"]),
    ("/predict", {"json": {"parameters": {"label": "tabby"}}}, ["'label'", "candidate_labels, top_k, abstain"]),
    ("/explain", {"data": {"label": "tabby", "candidate_labels": "tabby"}},
     ["'candidate_labels'", "accepted: image, label, top_k"]),
    ("/explain", {"json": {"parameters": {"label": "tabby", "abstain": True}}}, ["'abstain'", "label, top_k"]),
])
def test_unknown_fields_are_refused(client, cat, endpoint, request_kwargs, words):
    """A typo (candidate_label) or a misplaced key is a 400 naming it, never a ranking over every class."""
    if "data" in request_kwargs:
        request_kwargs = {**request_kwargs, "files": {"image": cat}}
    else:
        request_kwargs = {"json": {"inputs": base64.b64encode(cat).decode(), **request_kwargs["json"]}}
    body = _refused(client.post(endpoint, **request_kwargs), 400, *words)
    assert body["kind"] == "RequestError"


def test_deeply_nested_json_is_a_400(client):
    body = b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    _refused(client.post("/predict", content=body, headers={"content-type": "application/json"}), 400,
             "not valid JSON", "nested too deeply")


def test_a_client_gone_mid_upload_is_one_info_line(clf, caplog):
    """No 500 path, no traceback: the client closed the connection, nothing is wrong with the server."""
    import asyncio
    import logging

    app = create_app(clf)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000000")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    messages = iter([{"type": "http.request", "body": b'{"inputs": "', "more_body": True},
                     {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(app(scope, receive, send))  # a bug would be logged, answered 500 and raised again here
    records = [r for r in caplog.records if r.name.startswith("kgzsl")]
    assert [(r.levelno, r.exc_info) for r in records] == [(logging.INFO, None)], caplog.text
    assert "disconnected" in records[0].getMessage() and "/predict" in records[0].getMessage()
    assert all(m.get("status", 400) < 500 for m in sent)


def test_the_servers_path_stays_in_its_log_not_in_the_answer(client, clf, cat, caplog):
    with caplog.at_level("INFO", logger="kgzsl.serve"):
        body = _refused(client.post("/predict", json=_json_request(cat, candidate_labels=["tabby", "standing desk"])),
                        400, "kgzsl add-concept RUN")
    assert str(clf.run_dir) not in body["detail"]
    assert f"kgzsl add-concept {clf.run_dir} 'standing desk'" in caplog.text  # the operator's log has the command


def test_a_post_from_a_page_of_another_origin_is_refused_unless_allowed(clf, cat):
    form = {"files": {"image": ("cat.png", cat, "image/png")}, "data": {"candidate_labels": "tabby,tench"}}
    client = TestClient(create_app(clf))  # TestClient's requests come from host "testserver"
    _refused(client.post("/predict", headers={"Origin": "http://evil.example"}, **form), 403,
             "another origin (http://evil.example)", "--cors-origin http://evil.example")
    assert client.post("/predict", headers={"Origin": "http://testserver"}, **form).status_code == 200  # its page
    proxied = {"Origin": "https://shop.example", "X-Forwarded-Host": "shop.example"}  # its page behind a proxy
    assert client.post("/predict", headers=proxied, **form).status_code == 200
    on_a_port = {"Origin": "http://shop.example:8080", "X-Forwarded-Host": "shop.example"}  # nginx's $host: no port
    assert client.post("/predict", headers=on_a_port, **form).status_code == 200
    _refused(client.post("/predict", headers={**on_a_port, "Origin": "http://evil.example:8080"}, **form), 403)
    assert client.post("/predict", **form).status_code == 200  # curl, Python: no Origin header
    assert client.get("/health", headers={"Origin": "http://evil.example"}).status_code == 200  # reads are fine

    allowing = TestClient(create_app(clf, cors_origins=["http://localhost:3000/"]))
    preflight = allowing.options("/predict", headers={"Origin": "http://localhost:3000",
                                                      "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    answer = allowing.post("/predict", headers={"Origin": "http://localhost:3000"}, **form)
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "http://localhost:3000"
    _refused(allowing.post("/predict", headers={"Origin": "http://evil.example"}, **form), 403, "another origin")


def test_the_image_file_as_the_body_ranks_every_class_as_hugging_faces_image_classification(client, cat):
    raw = client.post("/predict", content=cat, headers={"content-type": "image/png"})
    as_json = client.post("/predict", json=_json_request(cat))
    assert raw.status_code == 200 and raw.json() == as_json.json() and len(raw.json()) == 5
    octets = client.post("/predict", content=cat, headers={"content-type": "application/octet-stream"})
    assert octets.json() == as_json.json()
    _refused(client.post("/predict", content=b"", headers={"content-type": "image/jpeg"}), 400, "empty")
    _refused(client.post("/predict", content=b"not an image", headers={"content-type": "image/jpeg"}), 400)


def test_the_inference_apis_options_are_taken_and_change_nothing(client, cat):
    plain = client.post("/predict", json=_json_request(cat, candidate_labels=["tabby", "tench"]))
    request = {**_json_request(cat, candidate_labels=["tabby", "tench"]),
               "options": {"wait_for_model": True, "use_cache": False}}
    assert client.post("/predict", json=request).json() == plain.json()
    _refused(client.post("/predict", json={**request, "options": "fast"}), 400, "\"options\" must be a JSON object")


def test_openapi_describes_the_bodies_read_by_hand_and_the_error_answers(client):
    paths = client.get("/openapi.json").json()["paths"]
    predict, explain = paths["/predict"]["post"], paths["/explain"]["post"]
    assert set(predict["requestBody"]["content"]) == {"application/json", "multipart/form-data", "image/*",
                                                      "application/octet-stream"}
    assert "422" not in predict["responses"]  # it has no query parameters: any is a 400
    parameters = predict["requestBody"]["content"]["application/json"]["schema"]["properties"]["parameters"]
    assert set(parameters["properties"]) == set(ZeroShotService.PREDICT_PARAMETERS)  # as the endpoint takes them
    form = explain["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert set(form) == {"image", *ZeroShotService.EXPLAIN_PARAMETERS}
    assert "image/png" in explain["responses"]["200"]["content"]
    for operation in (predict, explain):
        assert {"400", "403", "413", "415"} <= set(operation["responses"])
        for code, answer in operation["responses"].items():
            if code != "200":  # every error answer is the {"detail", "kind", "error"} the server sends
                schema = answer["content"]["application/json"]["schema"]
                assert schema["required"] == ["detail", "kind", "error"] and "$ref" not in schema
    assert "$ref" not in paths["/labels"]["get"]["responses"]["422"]["content"]["application/json"]["schema"]
