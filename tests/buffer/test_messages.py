"""Message format versions 1 and 2: round trips through pika, validation and compatibility."""

from __future__ import annotations

import dataclasses
import json

import pika
import pytest
from pika import frame

from buffer.messages import (
    FORMAT_VERSION,
    MessageError,
    RelayedRequest,
    RelayedResponse,
    decode_request,
    decode_response,
    request_headers_table,
    response_headers_table,
)

REQUEST = RelayedRequest(
    method="POST",
    path="/caf\xe9%2Fb",  # WSGI gives the raw path as latin-1 text
    query="x=1&x=2",
    headers=(("X-A", "1"), ("X-A", "2"), ("X-Note", 'quote " and \\ slash')),
    body=b"\x00\x01",
    flavour="low",
    forced=True,
    deadline_ms=1_800_000_000_000,
)
RESPONSE = RelayedResponse(201, (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")), b"ok", "mid")

VALID_REQUEST_FIELDS = {
    "version": 2,
    "method": "GET",
    "path": "/",
    "query": "",
    "headers": [],
    "flavour": "high",
    "forced": False,
    "deadline": 0,
}
VALID_RESPONSE_FIELDS = {"version": 2, "status": 200, "headers": [], "flavour": "high"}


def through_pika(headers: dict) -> pika.BasicProperties:
    """Marshal properties into a content-header frame and parse it back, as publish and delivery do."""
    data = frame.Header(1, 0, pika.BasicProperties(headers=headers)).marshal()
    return frame.decode_frame(data)[1].properties


def request_properties(fields: dict) -> pika.BasicProperties:
    return pika.BasicProperties(headers={"cr": json.dumps(fields)})


def without(fields: dict, key: str) -> dict:
    return {name: value for name, value in fields.items() if name != key}


@pytest.mark.parametrize("version", [1, 2])
def test_request_round_trip_per_version(version):
    properties = through_pika(request_headers_table(REQUEST, version=version))

    decoded = decode_request(properties, REQUEST.body)

    assert decoded == dataclasses.replace(REQUEST, format_version=version)


@pytest.mark.parametrize("version", [1, 2])
def test_response_round_trip_per_version(version):
    properties = through_pika(response_headers_table(RESPONSE, version=version))

    assert decode_response(properties, RESPONSE.body) == RESPONSE


def test_version_2_is_one_json_header():
    request_table = request_headers_table(REQUEST)
    response_table = response_headers_table(RESPONSE)

    assert FORMAT_VERSION == 2
    assert list(request_table) == ["cr"]
    assert json.loads(request_table["cr"]) == {
        "version": 2,
        "method": "POST",
        "path": "/caf\xe9%2Fb",
        "query": "x=1&x=2",
        "headers": [["X-A", "1"], ["X-A", "2"], ["X-Note", 'quote " and \\ slash']],
        "flavour": "low",
        "forced": True,
        "deadline": 1_800_000_000_000,
    }
    assert list(response_table) == ["cr"]
    assert json.loads(response_table["cr"]) == {
        "version": 2,
        "status": 201,
        "headers": [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]],
        "flavour": "mid",
    }


def test_version_1_table_still_decodes():
    # Written out as a router before format version 2 published it.
    table = {
        "cr-version": 1,
        "cr-method": "GET",
        "cr-path": "/echo",
        "cr-query": "a=b",
        "cr-headers": '[["Accept", "*/*"]]',
        "cr-flavour": "high",
        "cr-forced": 1,
        "cr-deadline": 1_800_000_000_000,
    }

    request = decode_request(through_pika(table), b"body")

    assert request == RelayedRequest(
        method="GET",
        path="/echo",
        query="a=b",
        headers=(("Accept", "*/*"),),
        body=b"body",
        flavour="high",
        forced=True,
        deadline_ms=1_800_000_000_000,
        format_version=1,
    )


def test_version_1_reply_still_decodes():
    table = {"cr-version": 1, "cr-status": 404, "cr-headers": "[]", "cr-flavour": "low"}

    assert decode_response(through_pika(table), b"gone") == RelayedResponse(404, (), b"gone", "low")


def test_unknown_version_2_keys_are_ignored():
    fields = {**VALID_REQUEST_FIELDS, "priority": "later addition"}

    request = decode_request(request_properties(fields), b"")

    assert request.method == "GET"
    assert request.format_version == 2


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        *[
            (without(VALID_REQUEST_FIELDS, key), f"cr.{key} is missing")
            for key in VALID_REQUEST_FIELDS
            if key != "version"
        ],
        (without(VALID_REQUEST_FIELDS, "version"), "cr.version is missing, expected 2"),
        ({**VALID_REQUEST_FIELDS, "version": 3}, "cr.version is 3, but this process reads only"),
        ({**VALID_REQUEST_FIELDS, "version": 1}, "cr.version is 1, expected 2"),
        ({**VALID_REQUEST_FIELDS, "version": "2"}, "cr.version is '2', expected 2"),
        ({**VALID_REQUEST_FIELDS, "version": 2.0}, "cr.version is 2.0, expected 2"),
        ({**VALID_REQUEST_FIELDS, "method": ""}, "cr.method is '', expected a non-empty string"),
        ({**VALID_REQUEST_FIELDS, "method": 5}, "cr.method is 5, expected a non-empty string"),
        ({**VALID_REQUEST_FIELDS, "path": None}, "cr.path is None"),
        ({**VALID_REQUEST_FIELDS, "query": ["a"]}, "cr.query is ['a'], expected a string"),
        ({**VALID_REQUEST_FIELDS, "flavour": ""}, "cr.flavour is ''"),
        ({**VALID_REQUEST_FIELDS, "headers": "[]"}, "cr.headers is '[]', expected a JSON list"),
        ({**VALID_REQUEST_FIELDS, "headers": [[1, 2]]}, "cr.headers must be a JSON list of [name, value]"),
        ({**VALID_REQUEST_FIELDS, "headers": [["a"]]}, "cr.headers must be"),
        ({**VALID_REQUEST_FIELDS, "forced": 1}, "cr.forced is 1, expected true or false"),
        ({**VALID_REQUEST_FIELDS, "deadline": "123"}, "cr.deadline is '123', expected an integer"),
        ({**VALID_REQUEST_FIELDS, "deadline": 1.5}, "cr.deadline is 1.5"),
        ({**VALID_REQUEST_FIELDS, "deadline": True}, "cr.deadline is True"),
    ],
)
def test_version_2_request_names_the_bad_field(fields, fragment):
    with pytest.raises(MessageError) as raised:
        decode_request(request_properties(fields), b"")

    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("{bad", "the cr header is not valid JSON"),
        ("[" * 100_000, "the cr header is not valid JSON"),  # nesting too deep for the parser
        ("[1, 2]", "the cr header is [1, 2], expected a JSON object"),
        (b"\xff{}", "the cr header is not valid UTF-8"),
        (7, "the cr header is 7, expected a JSON object as a string"),
    ],
)
def test_malformed_cr_header_is_rejected(header, fragment):
    properties = pika.BasicProperties(headers={"cr": header})

    with pytest.raises(MessageError) as raised:
        decode_request(properties, b"")
    assert fragment in str(raised.value)

    with pytest.raises(MessageError) as raised:
        decode_response(properties, b"")
    assert fragment in str(raised.value)


def test_long_invalid_value_is_shortened_in_message():
    fields = {**VALID_REQUEST_FIELDS, "method": ["x" * 1000]}

    with pytest.raises(MessageError) as raised:
        decode_request(request_properties(fields), b"")

    assert len(str(raised.value)) < 200


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (without(VALID_RESPONSE_FIELDS, "status"), "cr.status is missing"),
        (without(VALID_RESPONSE_FIELDS, "headers"), "cr.headers is missing"),
        (without(VALID_RESPONSE_FIELDS, "flavour"), "cr.flavour is missing"),
        ({**VALID_RESPONSE_FIELDS, "version": 9}, "cr.version is 9"),
        ({**VALID_RESPONSE_FIELDS, "status": 700}, "cr.status is 700, expected an HTTP status 100-599"),
        ({**VALID_RESPONSE_FIELDS, "status": "200"}, "cr.status is '200', expected an integer"),
        ({**VALID_RESPONSE_FIELDS, "status": True}, "cr.status is True"),
        ({**VALID_RESPONSE_FIELDS, "headers": [["a", 1]]}, "cr.headers must be"),
        ({**VALID_RESPONSE_FIELDS, "flavour": None}, "cr.flavour is None, expected a string"),
    ],
)
def test_version_2_reply_names_the_bad_field(fields, fragment):
    properties = pika.BasicProperties(headers={"cr": json.dumps(fields)})

    with pytest.raises(MessageError) as raised:
        decode_response(properties, b"")

    assert fragment in str(raised.value)


def test_version_2_reply_without_flavour_name_decodes():
    # The consumer's own error replies may carry an empty flavour.
    properties = pika.BasicProperties(headers={"cr": json.dumps({**VALID_RESPONSE_FIELDS, "flavour": ""})})

    assert decode_response(properties, b"").flavour == ""


def test_version_1_deeply_nested_headers_are_rejected():
    table = {
        "cr-version": 1,
        "cr-method": "GET",
        "cr-path": "/",
        "cr-query": "",
        "cr-headers": "[" * 100_000,
        "cr-flavour": "high",
    }

    with pytest.raises(MessageError, match="cr-headers is not valid JSON"):
        decode_request(pika.BasicProperties(headers=table), b"")


@pytest.mark.parametrize("version", [0, 3, "2"])
def test_unsupported_version_cannot_be_written(version):
    with pytest.raises(ValueError, match="not supported, expected 1 or 2"):
        request_headers_table(REQUEST, version=version)
    with pytest.raises(ValueError, match="not supported, expected 1 or 2"):
        response_headers_table(RESPONSE, version=version)
